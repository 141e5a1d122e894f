//! The session key of an application with browser sign-in and no `login.sessionKeyRef`: the
//! operator keeps one Ed25519 key per application in a Secret it owns, so that every sidecar
//! replica signs and accepts the same session cookies (a key per sidecar process would end a
//! session whenever a request lands on another replica, or the sidecar restarts).
//!
//! The key is created once and never rewritten: replacing it would sign every user out. It is
//! written only to that Secret (and, compiled, into the pushes of the application's sidecars).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Resource, ResourceExt};
use portcullis_crds::push::{private_key_pem, SigningKey};
use portcullis_crds::v1alpha1::{AccessApplication, SecretKeyRef};

use crate::controller::service_token::MANAGED_BY;
use crate::{Context, Error, Result};

/// Key of the PEM (PKCS#8) private key in the Secret.
pub const KEY: &str = "session-key.pem";

/// The Secret's name for `application`.
pub fn secret_name(application: &str) -> String {
    format!("{application}-portcullis-session")
}

/// Whether the operator provides `app`'s session key: it signs users in and names no key.
pub fn provided(app: &AccessApplication) -> bool {
    app.spec.login.as_ref().is_some_and(|l| l.session_key_ref.is_none())
}

/// The applications as they compile: one whose session key the operator provides, and whose
/// Secret exists in `secrets`, points at it. Without the Secret (not created yet) it compiles
/// without a key, and its sidecars generate one until the next push.
pub fn with_provided_keys(
    applications: Vec<Arc<AccessApplication>>,
    secrets: &[Secret],
) -> Vec<Arc<AccessApplication>> {
    applications
        .into_iter()
        .map(|app| {
            if !provided(&app) {
                return app;
            }
            let name = secret_name(&app.name_any());
            let exists = secrets.iter().any(|s| s.metadata.name.as_deref() == Some(name.as_str()) && has_key(s));
            if !exists {
                return app;
            }
            let mut app = Arc::unwrap_or_clone(app);
            if let Some(login) = app.spec.login.as_mut() {
                login.session_key_ref = Some(SecretKeyRef { name, key: KEY.to_owned() });
            }
            Arc::new(app)
        })
        .collect()
}

fn has_key(secret: &Secret) -> bool {
    secret.data.as_ref().is_some_and(|d| d.contains_key(KEY))
}

/// Creates `app`'s session key Secret when the operator provides its key and `secrets` (the
/// namespace's, as just listed) has none of that name; returns the Secret it created, so the
/// caller compiles with it at once. A Secret of that name that someone else made is left alone
/// (compile then reports a missing key if it lacks one).
pub async fn ensure(ctx: &Context, app: &AccessApplication, secrets: &[Secret]) -> Result<Option<Secret>> {
    if !provided(app) {
        return Ok(None);
    }
    let name = secret_name(&app.name_any());
    if secrets.iter().any(|s| s.metadata.name.as_deref() == Some(name.as_str())) {
        return Ok(None);
    }
    let namespace = app.namespace().ok_or(Error::MissingObjectKey { kind: "AccessApplication", field: "namespace" })?;
    let key = format!("{namespace}/{name}");
    let what = format!("Secret {key}");
    let api = Api::<Secret>::namespaced(ctx.client.clone(), &namespace);
    let owner =
        app.controller_owner_ref(&()).ok_or(Error::MissingObjectKey { kind: "AccessApplication", field: "uid" })?;
    let (_, der) =
        SigningKey::generate().map_err(|e| Error::SessionKey { secret: what.clone(), detail: e.to_string() })?;
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace),
            labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(KEY.to_owned(), ByteString(private_key_pem(&der).into_bytes()))])),
        ..Secret::default()
    };
    match api.create(&PostParams::default(), &secret).await {
        Ok(created) => {
            tracing::info!(secret = %what, "generated the application's session key");
            Ok(Some(created))
        }
        // Created meanwhile (another reconcile): theirs is as good, and its watch event brings
        // it to the next reconcile.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
        Err(e) => Err(Error::write_secret(key)(e)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn app(login: serde_json::Value) -> AccessApplication {
        serde_json::from_value(json!({
            "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
            "metadata": {"name": "api", "namespace": "shop", "uid": "uid-api"},
            "spec": {"domains": ["api.example.com"], "login": login},
        }))
        .unwrap()
    }

    fn secret(name: &str, key: &str) -> Secret {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "shop"}, "data": {key: "LS0t"}})).unwrap()
    }

    #[test]
    fn an_application_without_a_key_of_its_own_gets_the_provided_one_once_it_exists() {
        let oidc = json!({"oidc": {"issuer": "https://idp.example", "clientId": "c"}});
        let a = app(oidc.clone());
        assert!(provided(&a));
        let none = with_provided_keys(vec![Arc::new(a.clone())], &[]);
        assert_eq!(none[0].spec.login.as_ref().unwrap().session_key_ref, None, "no Secret yet: no reference");
        let wrong_key = with_provided_keys(vec![Arc::new(a.clone())], &[secret("api-portcullis-session", "other")]);
        assert_eq!(wrong_key[0].spec.login.as_ref().unwrap().session_key_ref, None);
        let with = with_provided_keys(vec![Arc::new(a.clone())], &[secret("api-portcullis-session", KEY)]);
        let reference = with[0].spec.login.as_ref().unwrap().session_key_ref.clone().unwrap();
        assert_eq!((reference.name.as_str(), reference.key.as_str()), ("api-portcullis-session", KEY));

        let mut own = oidc;
        own["sessionKeyRef"] = json!({"name": "mine", "key": "k"});
        let own = app(own);
        assert!(!provided(&own));
        let kept = with_provided_keys(vec![Arc::new(own.clone())], &[secret("api-portcullis-session", KEY)]);
        assert_eq!(kept[0].spec.login.as_ref().unwrap().session_key_ref.as_ref().unwrap().name, "mine");

        let mut no_login = app(json!(null));
        no_login.spec.login = None;
        assert!(!provided(&no_login));
    }
}
