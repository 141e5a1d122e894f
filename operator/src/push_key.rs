//! The operator's push signing key: an Ed25519 key kept in a Secret of the operator's own
//! namespace, generated on first start and read on every later one, so every replica and every
//! restart signs with the key the sidecars trust.
//!
//! Owns that one Secret. The private key must never appear in a log, an event, a status or an
//! error: only the Secret's name and the key id (a digest of the public key) are ever shown.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use portcullis_crds::push::{private_key_pem, SigningKey};

use crate::controller::service_token::MANAGED_BY;
use crate::{Error, Result};

/// Default name of the Secret.
pub const SECRET_NAME: &str = "portcullis-push-key";
/// Key of the PKCS#8 PEM private key.
pub const PRIVATE_KEY: &str = "private-key.pem";
/// Key of the public key in base64 (`VerifyingKey::to_base64`), what sidecars are given as
/// `--push-public-key` (the chart mounts it).
pub const PUBLIC_KEY: &str = "public-key";

/// Reads the key from `namespace/name`, creating the Secret with a new key when it does not
/// exist. Two operators starting at once both try to create it: the loser reads the winner's.
pub async fn ensure(client: Client, namespace: &str, name: &str) -> Result<SigningKey> {
    let secrets = Api::<Secret>::namespaced(client, namespace);
    let what = format!("Secret {namespace}/{name}");
    if let Some(secret) = secrets.get_opt(name).await.map_err(Error::kube(format!("reading {what}")))? {
        return from_secret(&secret, &what);
    }
    let (key, secret) = new_secret(namespace, name)?;
    match secrets.create(&PostParams::default(), &secret).await {
        Ok(_) => {
            tracing::info!(secret = %what, key_id = key.verifying_key().key_id(), "generated the push signing key");
            Ok(key)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let secret = secrets.get(name).await.map_err(Error::kube(format!("reading {what}")))?;
            from_secret(&secret, &what)
        }
        Err(e) => Err(Error::write_secret(format!("{namespace}/{name}"))(e)),
    }
}

/// The key stored in `secret`. A Secret without a usable key is an error, not replaced: the
/// sidecars trust its public key, and a silent new key would make every push fail.
fn from_secret(secret: &Secret, what: &str) -> Result<SigningKey> {
    let unusable = |detail: String| Error::PushKey { secret: what.to_owned(), detail };
    let pem = secret
        .data
        .as_ref()
        .and_then(|d| d.get(PRIVATE_KEY))
        .ok_or_else(|| unusable(format!("it has no {PRIVATE_KEY} key")))?;
    let pem = std::str::from_utf8(&pem.0).map_err(|_| unusable(format!("{PRIVATE_KEY} is not text")))?;
    SigningKey::from_pem(pem).map_err(|e| unusable(format!("{PRIVATE_KEY}: {e}")))
}

/// A new key and the Secret holding it.
fn new_secret(namespace: &str, name: &str) -> Result<(SigningKey, Secret)> {
    let (key, der) = SigningKey::generate()
        .map_err(|e| Error::PushKey { secret: format!("Secret {namespace}/{name}"), detail: e.to_string() })?;
    let data = BTreeMap::from([
        (PRIVATE_KEY.to_owned(), ByteString(private_key_pem(&der).into_bytes())),
        (PUBLIC_KEY.to_owned(), ByteString(key.verifying_key().to_base64().into_bytes())),
    ]);
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
            ..Default::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Default::default()
    };
    Ok((key, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_secret_reads_back_as_the_same_key() {
        let (key, secret) = new_secret("portcullis-system", SECRET_NAME).unwrap();
        let read = from_secret(&secret, "Secret portcullis-system/portcullis-push-key").unwrap();
        assert_eq!(read.verifying_key(), key.verifying_key());
        let public = &secret.data.as_ref().unwrap()[PUBLIC_KEY].0;
        assert_eq!(std::str::from_utf8(public).unwrap(), key.verifying_key().to_base64());
    }

    #[test]
    fn an_unusable_secret_is_an_error_without_its_content() {
        let (_, mut secret) = new_secret("ns", SECRET_NAME).unwrap();
        let pem = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ5dGVz\n-----END PRIVATE KEY-----\n";
        secret.data.as_mut().unwrap().insert(PRIVATE_KEY.into(), ByteString(pem.as_bytes().to_vec()));
        let e = from_secret(&secret, "Secret ns/portcullis-push-key").unwrap_err();
        assert_eq!(e.reason(), "PushKeyUnusable");
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        secret.data = None;
        assert!(from_secret(&secret, "s").unwrap_err().to_string().contains(PRIVATE_KEY));
    }

    #[tokio::test]
    async fn a_missing_secret_is_created_once() {
        use crate::fixtures::Scenario;
        let (ctx, verifier, _) = crate::Context::test(jiff::Timestamp::UNIX_EPOCH);
        let mock = verifier.run("ops", vec![Scenario::GetSecret(None), Scenario::CreateSecret]);
        let key = ensure(ctx.client.clone(), "ops", SECRET_NAME).await.unwrap();
        drop(ctx);
        let seen = mock.await.unwrap();
        let created: Secret = serde_json::from_value(seen[1].body.clone()).unwrap();
        let read = from_secret(&created, "s").unwrap();
        assert_eq!(read.verifying_key(), key.verifying_key());
    }
}
