//! Keeps the webhook's certificate in the [`CertSlot`], from one of two sources:
//! - [`CertSource::Managed`]: the operator's own CA and certificate ([`super::tls`]) in a Secret
//!   of its namespace, shared by every replica, renewed before expiry, and the CA bundle written
//!   into the `caBundle` of the webhook configurations it is given the names of;
//! - [`CertSource::Files`]: `tls.crt` and `tls.key` in a directory (cert-manager's Secret
//!   mounted into the pod), reloaded when they change; cert-manager's CA injector fills `caBundle`.
//!
//! Failures are logged and retried: the controllers run whether or not the webhook can serve.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::server::CertSlot;
use super::tls::{self, Bundle, TlsError};
use crate::controller::service_token::MANAGED_BY;
use crate::controller::FIELD_MANAGER;

/// How often the Secret (or the files) are looked at again: another replica may have renewed.
const RECHECK: Duration = Duration::from_secs(300);
/// How often mounted files are compared (a Secret volume updates within about a minute).
const FILE_RECHECK: Duration = Duration::from_secs(30);
/// Wait after a failure.
const RETRY: Duration = Duration::from_secs(15);

/// Why a certificate could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{what}: {source}; check the API server and the operator's RBAC")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// Writing the certificate Secret failed; only the HTTP status is kept (the API server's
    /// message could quote the private key).
    #[error("writing {what} failed: {detail}; check the API server and the operator's RBAC (secrets create/update)")]
    WriteSecret { what: String, detail: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("reading {path}: {source}; mount the cert-manager Secret there (keys tls.crt and tls.key)")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn kube_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Kube { what, source }
}

/// Where the certificate comes from.
pub enum CertSource {
    /// Boxed: much larger than a path, and made once.
    Managed(Box<Managed>),
    Files(PathBuf),
}

/// The operator's own certificate.
pub struct Managed {
    pub client: Client,
    /// The operator's namespace, where the Secret and the Service are.
    pub namespace: String,
    /// The Secret holding the bundle.
    pub secret: String,
    /// The webhook Service's name (the certificate's DNS names).
    pub service: String,
    /// More certificate names (DNS or IP) besides the Service's.
    pub extra_names: Vec<String>,
    /// MutatingWebhookConfiguration whose caBundle is kept.
    pub mutating: Option<String>,
    /// ValidatingWebhookConfiguration whose caBundle is kept.
    pub validating: Option<String>,
}

/// Keeps `slot` filled from `source` until the task is dropped.
pub async fn keep(source: CertSource, slot: Arc<CertSlot>) {
    let mut last_files: Option<(Vec<u8>, Vec<u8>)> = None;
    loop {
        let result = match &source {
            CertSource::Managed(managed) => managed.refresh(&slot).await.map(|()| RECHECK),
            CertSource::Files(dir) => refresh_files(dir, &slot, &mut last_files).map(|()| FILE_RECHECK),
        };
        let wait = result.unwrap_or_else(|e| {
            tracing::error!(error = %e, "webhook certificate not loaded; the webhooks cannot answer until it is");
            RETRY
        });
        tokio::time::sleep(wait).await;
    }
}

/// Loads `dir/tls.crt` and `dir/tls.key` when they differ from what was loaded last.
fn refresh_files(
    dir: &std::path::Path,
    slot: &CertSlot,
    last: &mut Option<(Vec<u8>, Vec<u8>)>,
) -> Result<(), CertError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| CertError::Io { path, source })
    };
    let files = (read(tls::TLS_CRT)?, read(tls::TLS_KEY)?);
    if last.as_ref() == Some(&files) {
        return Ok(());
    }
    let key = tls::certified_key(&files.0, &files.1, &format!("{}", dir.display()))?;
    slot.store(key);
    tracing::info!(dir = %dir.display(), "webhook certificate loaded from files");
    *last = Some(files);
    Ok(())
}

// === impl Managed ===

impl Managed {
    /// Makes sure the Secret holds a current bundle, serves it, and writes its CA bundle into the
    /// webhook configurations.
    async fn refresh(&self, slot: &CertSlot) -> Result<(), CertError> {
        let bundle = self.ensure_bundle(jiff::Timestamp::now()).await?;
        slot.store(bundle.certified_key(&format!("Secret {}/{}", self.namespace, self.secret))?);
        self.write_ca_bundle(&bundle.ca_pem).await
    }

    /// The bundle in the Secret, made (or renewed) when missing, unusable or close to expiry.
    /// Replicas race on create (409: read the winner's) and on replace (resourceVersion: same).
    async fn ensure_bundle(&self, now: jiff::Timestamp) -> Result<Bundle, CertError> {
        let api = Api::<Secret>::namespaced(self.client.clone(), &self.namespace);
        let what = format!("Secret {}/{}", self.namespace, self.secret);
        let existing = api.get_opt(&self.secret).await.map_err(kube_err(format!("reading {what}")))?;
        if let Some(bundle) = existing.as_ref().and_then(Bundle::from_secret) {
            if !bundle.needs_renewal(now) && bundle.certified_key(&what).is_ok() {
                return Ok(bundle);
            }
        }
        let previous_ca = existing
            .as_ref()
            .and_then(|s| s.data.as_ref()?.get(tls::CA_CRT))
            .and_then(|ca| String::from_utf8(ca.0.clone()).ok());
        let bundle = Bundle::generate(&self.service, &self.namespace, &self.extra_names, now, previous_ca.as_deref())?;
        let (data, annotations) = bundle.secret_data();
        let mut secret = Secret {
            metadata: ObjectMeta {
                name: Some(self.secret.clone()),
                namespace: Some(self.namespace.clone()),
                annotations: Some(annotations),
                labels: Some([(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned())].into()),
                ..Default::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            data: Some(data),
            ..Default::default()
        };
        let written = match existing {
            None => api.create(&PostParams::default(), &secret).await,
            Some(old) => {
                secret.metadata.resource_version = old.metadata.resource_version;
                api.replace(&self.secret, &PostParams::default(), &secret).await
            }
        };
        match written {
            Ok(_) => {
                tracing::info!(secret = %what, not_after = %bundle.not_after, "webhook certificate generated");
                Ok(bundle)
            }
            // Another replica wrote first: use its bundle.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let secret = api.get(&self.secret).await.map_err(kube_err(format!("reading {what}")))?;
                Bundle::from_secret(&secret).ok_or_else(|| {
                    CertError::Tls(TlsError::Unusable {
                        what,
                        item: "certificate bundle",
                        detail: "written concurrently without tls.crt, tls.key, ca.crt and the not-after annotation"
                            .into(),
                    })
                })
            }
            Err(e) => Err(CertError::WriteSecret { detail: crate::redacted_detail(&e), what }),
        }
    }

    /// Sets `caBundle` on every webhook of the named configurations where it differs.
    async fn write_ca_bundle(&self, ca_pem: &str) -> Result<(), CertError> {
        let want = ca_pem.as_bytes();
        if let Some(name) = &self.mutating {
            self.keep_ca_bundle::<MutatingWebhookConfiguration>(name, want, |c| {
                c.webhooks.iter().flatten().map(|w| (w.name.clone(), w.client_config.ca_bundle.clone())).collect()
            })
            .await?;
        }
        if let Some(name) = &self.validating {
            self.keep_ca_bundle::<ValidatingWebhookConfiguration>(name, want, |c| {
                c.webhooks.iter().flatten().map(|w| (w.name.clone(), w.client_config.ca_bundle.clone())).collect()
            })
            .await?;
        }
        Ok(())
    }

    /// Patches the webhooks of configuration `name` whose `caBundle` (as `bundles` reads them)
    /// is not `want`.
    async fn keep_ca_bundle<K>(
        &self,
        name: &str,
        want: &[u8],
        bundles: impl Fn(&K) -> Vec<(String, Option<ByteString>)>,
    ) -> Result<(), CertError>
    where
        K: kube::Resource<Scope = kube::core::ClusterResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let api = Api::<K>::all(self.client.clone());
        let config = api.get(name).await.map_err(kube_err(format!("reading {kind} {name}")))?;
        let current = bundles(&config);
        if let Some(patch) = ca_bundle_patch(current.iter().map(|(n, b)| (n.as_str(), b.as_ref())), want) {
            api.patch(name, &patch_params(), &Patch::Strategic(patch))
                .await
                .map_err(kube_err(format!("patching caBundle of {kind} {name}")))?;
            tracing::info!(%kind, configuration = %name, "caBundle updated");
        }
        Ok(())
    }
}

/// A plain (not server-side apply) patch under the operator's field manager.
fn patch_params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..Default::default() }
}

/// The strategic-merge patch (webhooks merge by `name`) setting `caBundle` to `want` on every
/// webhook whose bundle differs; `None` when all are current.
pub fn ca_bundle_patch<'a>(
    webhooks: impl Iterator<Item = (&'a str, Option<&'a ByteString>)>,
    want: &[u8],
) -> Option<Value> {
    let stale: Vec<Value> = webhooks
        .filter(|(_, current)| current.map(|b| b.0.as_slice()) != Some(want))
        .map(|(name, _)| json!({ "name": name, "clientConfig": { "caBundle": ByteString(want.to_vec()) } }))
        .collect();
    (!stale.is_empty()).then(|| json!({ "webhooks": stale }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_webhooks_are_patched() {
        let current = ByteString(b"CA1".to_vec());
        let webhooks = [("a.example", Some(&current)), ("b.example", None)];
        let patch = ca_bundle_patch(webhooks.into_iter(), b"CA1").unwrap();
        assert_eq!(patch, json!({ "webhooks": [{ "name": "b.example", "clientConfig": { "caBundle": "Q0Ex" } }] }));
        let all_current = [("a.example", Some(&current))];
        assert_eq!(ca_bundle_patch(all_current.into_iter(), b"CA1"), None);
        let patch = ca_bundle_patch([("a.example", Some(&current))].into_iter(), b"CA2").unwrap();
        assert_eq!(patch["webhooks"][0]["clientConfig"]["caBundle"], "Q0Ey");
    }

    #[test]
    fn files_are_loaded_and_reloaded_only_when_they_change() {
        let dir = std::env::temp_dir().join(format!("portcullis-webhook-certs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let slot = CertSlot::default();
        let mut last = None;
        let e = refresh_files(&dir, &slot, &mut last).unwrap_err();
        assert!(e.to_string().contains("tls.crt"), "{e}");
        assert!(!slot.is_loaded());

        let now = jiff::Timestamp::now();
        let bundle = Bundle::generate("svc", "ns", &[], now, None).unwrap();
        std::fs::write(dir.join(tls::TLS_CRT), &bundle.cert_pem).unwrap();
        std::fs::write(dir.join(tls::TLS_KEY), &bundle.key_pem).unwrap();
        refresh_files(&dir, &slot, &mut last).unwrap();
        assert!(slot.is_loaded());
        let loaded = last.clone();
        refresh_files(&dir, &slot, &mut last).unwrap();
        assert_eq!(last, loaded);

        std::fs::write(dir.join(tls::TLS_KEY), "not a key").unwrap();
        assert!(refresh_files(&dir, &slot, &mut last).is_err());
        assert_eq!(last, loaded, "a broken file keeps the last good certificate");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
