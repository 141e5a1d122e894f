//! The webhook's certificates: a self-signed CA and a serving certificate for
//! `<service>.<namespace>.svc` it signs, how they are kept in a Secret, when to renew them, and
//! turning PEM into what rustls serves. Pure apart from key generation (the OS CSPRNG).
//!
//! The CA's private key is not kept: each renewal makes a new CA and serving certificate, and the
//! CA bundle the API server trusts holds the new CA and the one before it, so that a replica
//! still serving the previous certificate stays trusted until it reloads.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

/// Secret key: the serving certificate (PEM).
pub const TLS_CRT: &str = "tls.crt";
/// Secret key: its private key (PKCS#8 PEM).
pub const TLS_KEY: &str = "tls.key";
/// Secret key: the CA bundle (PEM, current CA first) that goes into the webhooks' caBundle.
pub const CA_CRT: &str = "ca.crt";
/// Secret annotation: when the serving certificate expires (RFC 3339).
pub const NOT_AFTER_ANNOTATION: &str = "access.portcullis.dev/not-after";

/// How long a generated certificate is valid.
pub const VALIDITY: SignedDuration = SignedDuration::from_hours(365 * 24);
/// Renewed when less than this is left (a third of [`VALIDITY`]): months of margin for a
/// replica that cannot reach the API server for a while.
pub const RENEW_BEFORE: SignedDuration = SignedDuration::from_hours(121 * 24);
/// Certificates are valid from a little before they are made, for clocks slightly behind.
const BACKDATE: SignedDuration = SignedDuration::from_mins(5);

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating the webhook certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what} holds no usable {item}: {detail}")]
    Unusable { what: String, item: &'static str, detail: String },
    #[error("the time {0} cannot be a certificate date")]
    Date(Timestamp),
}

/// A serving certificate, its key and the CA bundle that verifies it.
#[derive(Clone, PartialEq, Eq)]
pub struct Bundle {
    pub cert_pem: String,
    /// PKCS#8 PEM; never logged (Debug redacts it).
    pub key_pem: String,
    pub ca_pem: String,
    pub not_after: Timestamp,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

// === impl Bundle ===

impl Bundle {
    /// A new CA and a serving certificate for the webhook Service, valid from `now` for
    /// [`VALIDITY`], for the Service's names and `extra_names` (DNS names or IP addresses).
    /// `previous_ca` (PEM) stays in the bundle after the new CA.
    pub fn generate(
        service: &str,
        namespace: &str,
        extra_names: &[String],
        now: Timestamp,
        previous_ca: Option<&str>,
    ) -> Result<Self, TlsError> {
        let not_before = date(now - BACKDATE)?;
        let not_after_ts = now + VALIDITY;
        let not_after = date(not_after_ts)?;

        let mut ca = CertificateParams::default();
        ca.distinguished_name = rcgen::DistinguishedName::new();
        ca.distinguished_name.push(DnType::CommonName, format!("portcullis-webhook-ca {namespace}"));
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = not_before;
        ca.not_after = not_after;
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut names = dns_names(service, namespace);
        names.extend(extra_names.iter().cloned());
        let mut leaf = CertificateParams::new(names)?;
        leaf.distinguished_name = rcgen::DistinguishedName::new();
        leaf.distinguished_name.push(DnType::CommonName, format!("{service}.{namespace}.svc"));
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        leaf.not_before = not_before;
        leaf.not_after = not_after;
        let leaf_key = KeyPair::generate()?;
        let cert = leaf.signed_by(&leaf_key, &issuer)?;

        let mut ca_pem = ca_cert.pem();
        if let Some(previous) = previous_ca.and_then(first_pem_block) {
            ca_pem.push_str(&previous);
        }
        Ok(Self { cert_pem: cert.pem(), key_pem: leaf_key.serialize_pem(), ca_pem, not_after: not_after_ts })
    }

    /// Whether it should be replaced at `now`.
    pub fn needs_renewal(&self, now: Timestamp) -> bool {
        self.not_after.duration_since(now) < RENEW_BEFORE
    }

    /// Reads the bundle kept in `secret`; `None` when a key or the date is missing or unreadable
    /// (then a new one is made). The PEM is checked by [`Bundle::certified_key`].
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| data.get(key).and_then(|v| String::from_utf8(v.0.clone()).ok());
        let not_after = secret.metadata.annotations.as_ref()?.get(NOT_AFTER_ANNOTATION)?.parse().ok()?;
        Some(Self { cert_pem: text(TLS_CRT)?, key_pem: text(TLS_KEY)?, ca_pem: text(CA_CRT)?, not_after })
    }

    /// The Secret's data and annotations for this bundle (type `kubernetes.io/tls`).
    pub fn secret_data(&self) -> (BTreeMap<String, ByteString>, BTreeMap<String, String>) {
        let data = [(TLS_CRT, &self.cert_pem), (TLS_KEY, &self.key_pem), (CA_CRT, &self.ca_pem)]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), ByteString(v.clone().into_bytes())))
            .collect();
        let annotations = BTreeMap::from([(NOT_AFTER_ANNOTATION.to_owned(), self.not_after.to_string())]);
        (data, annotations)
    }

    /// What rustls serves.
    pub fn certified_key(&self, what: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        certified_key(self.cert_pem.as_bytes(), self.key_pem.as_bytes(), what)
    }
}

/// A certificate chain and key in PEM as rustls' served key. `what` names their source in errors.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8], what: &str) -> Result<Arc<CertifiedKey>, TlsError> {
    let unusable = |item: &'static str, detail: String| TlsError::Unusable { what: what.to_owned(), item, detail };
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unusable("certificate", e.to_string()))?;
    if chain.is_empty() {
        return Err(unusable("certificate", "no CERTIFICATE block".into()));
    }
    // Only the error's kind is shown: its text could quote the key.
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| unusable("private key", "no PEM private key".into()))?;
    let key = aws_lc_rs::sign::any_supported_type(&key)
        .map_err(|_| unusable("private key", "not a supported key type".into()))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

/// The names the API server may call the webhook Service by.
fn dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ]
}

/// The first PEM block of `pem` (the CA that was current), with its line end.
fn first_pem_block(pem: &str) -> Option<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let start = pem.find("-----BEGIN CERTIFICATE-----")?;
    let end = pem[start..].find(END)? + start + END.len();
    Some(format!("{}\n", &pem[start..end]))
}

fn date(at: Timestamp) -> Result<time::OffsetDateTime, TlsError> {
    time::OffsetDateTime::from_unix_timestamp(at.as_second()).map_err(|_| TlsError::Date(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_generated_bundle_serves_and_round_trips_through_its_secret() {
        let bundle = Bundle::generate("portcullis-webhook", "portcullis", &[], now(), None).unwrap();
        assert!(bundle.certified_key("generated").is_ok());
        assert_eq!(bundle.ca_pem.matches("BEGIN CERTIFICATE").count(), 1);
        let (data, annotations) = bundle.secret_data();
        let secret = Secret {
            metadata: kube::api::ObjectMeta { annotations: Some(annotations), ..Default::default() },
            data: Some(data),
            ..Default::default()
        };
        assert_eq!(Bundle::from_secret(&secret), Some(bundle.clone()));
        assert!(!format!("{bundle:?}").contains("PRIVATE"), "Debug must not show the key");
    }

    #[test]
    fn renewal_comes_a_third_before_expiry_and_keeps_the_previous_ca() {
        let first = Bundle::generate("svc", "ns", &[], now(), None).unwrap();
        assert!(!first.needs_renewal(now()));
        assert!(!first.needs_renewal(now() + SignedDuration::from_hours(240 * 24)));
        assert!(first.needs_renewal(now() + SignedDuration::from_hours(250 * 24)));
        let second = Bundle::generate("svc", "ns", &[], now(), Some(&first.ca_pem)).unwrap();
        assert_eq!(second.ca_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(second.ca_pem.ends_with(&first.ca_pem), "the previous CA follows the new one");
        // A third renewal drops the oldest CA.
        let third = Bundle::generate("svc", "ns", &[], now(), Some(&second.ca_pem)).unwrap();
        assert_eq!(third.ca_pem.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(!third.ca_pem.contains(first.ca_pem.trim()));
    }

    #[test]
    fn unusable_pem_is_an_error_that_does_not_quote_the_key() {
        let bundle = Bundle::generate("svc", "ns", &[], now(), None).unwrap();
        let e = certified_key(b"nothing", bundle.key_pem.as_bytes(), "files").unwrap_err();
        assert!(e.to_string().contains("certificate"), "{e}");
        let bad_key = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n";
        let e = certified_key(bundle.cert_pem.as_bytes(), bad_key.as_bytes(), "files").unwrap_err();
        assert!(!e.to_string().contains("c2VjcmV0"), "{e}");
        let empty = Secret::default();
        assert_eq!(Bundle::from_secret(&empty), None);
    }
}
