//! The config push wire format: a [`Snapshot`] addressed to one pod, sequenced and signed with
//! Ed25519 by the operator, verified by the sidecar before anything else is read.
//!
//! Pure: keys and time come in as arguments. The signature covers the exact payload bytes
//! (base64 of the JSON), so nothing is re-serialised between signing and verifying.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::snapshot::Snapshot;

/// The pod a push is meant for: a push captured for one pod cannot be replayed to another.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PushTarget {
    pub namespace: String,
    pub pod: String,
}

/// What the operator sends one sidecar.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConfigPush {
    /// Strictly increasing per operator deployment (the operator uses Unix milliseconds of the
    /// compile): a sidecar refuses a push older than the one it runs.
    pub sequence: u64,
    pub target: PushTarget,
    /// Unix seconds; a sidecar refuses pushes older than its maximum age (replay window).
    pub issued_at: i64,
    pub snapshot: Snapshot,
}

/// The signed envelope, as sent over the wire (`PUT /config`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SignedPush {
    /// Base64 of the JSON of a [`ConfigPush`]: the signed bytes.
    pub payload: String,
    /// Base64 of the Ed25519 signature over the payload string's bytes.
    pub signature: String,
    /// Which key signed (the first 16 hex digits of SHA-256 of the public key), so a sidecar
    /// can hold the old and new key during a key rotation.
    pub key_id: String,
}

/// Why a push was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the push is not a signed envelope: {0}")]
    Malformed(String),
    #[error("no trusted key has id {0}; give the sidecar the operator's current public key")]
    UnknownKey(String),
    #[error("the signature does not verify: the push was not made by a trusted operator key")]
    BadSignature,
    #[error("the push is for pod {got}, this sidecar is {want}")]
    WrongTarget { got: String, want: String },
    #[error("the push is sequence {got}, older than the running {running}")]
    Stale { got: u64, running: u64 },
    #[error("the push was issued {age_secs} s ago, beyond the {max_secs} s replay window")]
    Expired { age_secs: i64, max_secs: i64 },
}

impl PushError {
    /// Label for metrics and the JSON error body.
    pub fn reason(&self) -> &'static str {
        match self {
            PushError::Malformed(_) => "malformed",
            PushError::UnknownKey(_) => "unknown_key",
            PushError::BadSignature => "bad_signature",
            PushError::WrongTarget { .. } => "wrong_target",
            PushError::Stale { .. } => "stale",
            PushError::Expired { .. } => "expired",
        }
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM {0} block")]
    NotPem(&'static str),
    #[error("invalid Ed25519 key: {0}")]
    Invalid(String),
}

/// The operator's signing key (PKCS#8 Ed25519). Debug never shows it.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.key_id)
    }
}

impl SigningKey {
    /// A new random key and its PKCS#8 DER (to be stored in the operator's Secret).
    pub fn generate() -> Result<(Self, Vec<u8>), KeyError> {
        let der = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let der = der.as_ref().to_vec();
        Ok((Self::from_pkcs8_der(&der)?, der))
    }

    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|e| KeyError::Invalid(e.to_string()))?;
        let key_id = key_id(pair.public_key().as_ref());
        Ok(Self { pair, key_id })
    }

    /// From a `-----BEGIN PRIVATE KEY-----` PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        Self::from_pkcs8_der(&pem_body(pem, "PRIVATE KEY")?)
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey { raw: self.pair.public_key().as_ref().to_vec(), key_id: self.key_id.clone() }
    }

    pub fn sign(&self, push: &ConfigPush) -> SignedPush {
        // Serialising plain data structs cannot fail; see `Snapshot::new`.
        let payload = B64.encode(serde_json::to_vec(push).unwrap_or_default());
        let signature = B64.encode(self.pair.sign(payload.as_bytes()).as_ref());
        SignedPush { payload, signature, key_id: self.key_id.clone() }
    }
}

/// A public key a sidecar trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey {
    raw: Vec<u8>,
    key_id: String,
}

impl VerifyingKey {
    /// From a `-----BEGIN PUBLIC KEY-----` PEM (SPKI) or the raw 32 bytes in base64.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        let raw = if text.starts_with("-----BEGIN") {
            let der = pem_body(text, "PUBLIC KEY")?;
            // SPKI for Ed25519 is a fixed 12-byte prefix and the 32-byte key (RFC 8410 §4).
            if der.len() != 44 || !der.starts_with(&[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70]) {
                return Err(KeyError::Invalid("not an Ed25519 SubjectPublicKeyInfo".into()));
            }
            der[12..].to_vec()
        } else {
            B64.decode(text).map_err(|_| KeyError::NotPem("PUBLIC KEY"))?
        };
        if raw.len() != 32 {
            return Err(KeyError::Invalid(format!("{} bytes, want 32", raw.len())));
        }
        Ok(Self { key_id: key_id(&raw), raw })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The raw key in base64 (what the operator hands sidecars).
    pub fn to_base64(&self) -> String {
        B64.encode(&self.raw)
    }
}

/// Verifies the envelope against the trusted keys and decodes it. Target, order and age are
/// checked by [`check`], which needs the sidecar's state.
pub fn verify(signed: &SignedPush, trusted: &[VerifyingKey]) -> Result<ConfigPush, PushError> {
    let key = trusted
        .iter()
        .find(|k| k.key_id == signed.key_id)
        .ok_or_else(|| PushError::UnknownKey(signed.key_id.chars().take(32).collect()))?;
    let signature = B64.decode(&signed.signature).map_err(|_| PushError::BadSignature)?;
    UnparsedPublicKey::new(&ED25519, &key.raw)
        .verify(signed.payload.as_bytes(), &signature)
        .map_err(|_| PushError::BadSignature)?;
    let json = B64.decode(&signed.payload).map_err(|e| PushError::Malformed(format!("payload: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| PushError::Malformed(format!("payload: {e}")))
}

/// What the receiving sidecar knows about itself.
pub struct Receiver<'a> {
    pub target: &'a PushTarget,
    /// Sequence of the running config, if any.
    pub running: Option<u64>,
    pub now: i64,
    pub max_age_secs: i64,
}

/// Target, order and age checks of a verified push.
pub fn check(push: &ConfigPush, r: &Receiver<'_>) -> Result<(), PushError> {
    if &push.target != r.target {
        return Err(PushError::WrongTarget {
            got: format!("{}/{}", push.target.namespace, push.target.pod),
            want: format!("{}/{}", r.target.namespace, r.target.pod),
        });
    }
    if let Some(running) = r.running {
        if push.sequence < running {
            return Err(PushError::Stale { got: push.sequence, running });
        }
    }
    let age = r.now - push.issued_at;
    if age > r.max_age_secs {
        return Err(PushError::Expired { age_secs: age, max_secs: r.max_age_secs });
    }
    Ok(())
}

fn key_id(raw: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(raw)[..8])
}

/// The base64 body of a PEM block with the given label.
fn pem_body(pem: &str, label: &'static str) -> Result<Vec<u8>, KeyError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).ok_or(KeyError::NotPem(label))? + begin.len();
    let stop = pem[start..].find(&end).ok_or(KeyError::NotPem(label))? + start;
    let body: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    B64.decode(body).map_err(|_| KeyError::NotPem(label))
}

/// PEM encoding of a PKCS#8 private key (for the operator's Secret).
pub fn private_key_pem(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END PRIVATE KEY-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(seq: u64, pod: &str, issued_at: i64) -> ConfigPush {
        ConfigPush {
            sequence: seq,
            target: PushTarget { namespace: "shop".into(), pod: pod.into() },
            issued_at,
            snapshot: Snapshot::empty(),
        }
    }

    #[test]
    fn sign_and_verify_round_trip_through_pem() {
        let (_, der) = SigningKey::generate().unwrap();
        let key = SigningKey::from_pem(&private_key_pem(&der)).unwrap();
        let signed = key.sign(&push(7, "api-0", 100));
        let trusted = VerifyingKey::parse(&key.verifying_key().to_base64()).unwrap();
        assert_eq!(verify(&signed, &[trusted]).unwrap(), push(7, "api-0", 100));
        assert!(!format!("{key:?}").contains(&B64.encode(&der)));
    }

    #[test]
    fn refuses_forged_tampered_and_unknown() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let trusted = vec![key.verifying_key()];
        let signed = key.sign(&push(1, "api-0", 0));

        let forged = SignedPush { key_id: key.verifying_key().key_id().into(), ..other.sign(&push(1, "api-0", 0)) };
        assert_eq!(verify(&forged, &trusted), Err(PushError::BadSignature));

        let mut tampered = signed.clone();
        tampered.payload = B64.encode(serde_json::to_vec(&push(99, "api-0", 0)).unwrap());
        assert_eq!(verify(&tampered, &trusted), Err(PushError::BadSignature));

        let unknown = other.sign(&push(1, "api-0", 0));
        assert!(matches!(verify(&unknown, &trusted), Err(PushError::UnknownKey(_))));

        let mut garbage = signed;
        garbage.signature = "!!".into();
        assert_eq!(verify(&garbage, &trusted), Err(PushError::BadSignature));
    }

    #[test]
    fn checks_target_order_and_age() {
        let me = PushTarget { namespace: "shop".into(), pod: "api-0".into() };
        let r = |running| Receiver { target: &me, running, now: 1_000, max_age_secs: 600 };
        assert_eq!(check(&push(5, "api-0", 900), &r(None)), Ok(()));
        assert_eq!(check(&push(5, "api-0", 900), &r(Some(5))), Ok(()), "same sequence: idempotent");
        assert_eq!(check(&push(4, "api-0", 900), &r(Some(5))).unwrap_err().reason(), "stale");
        assert_eq!(check(&push(6, "api-1", 900), &r(Some(5))).unwrap_err().reason(), "wrong_target");
        assert_eq!(check(&push(6, "api-0", 100), &r(Some(5))).unwrap_err().reason(), "expired");
    }

    #[test]
    fn parses_public_keys_in_pem_and_base64() {
        let (key, _) = SigningKey::generate().unwrap();
        let raw = B64.decode(key.verifying_key().to_base64()).unwrap();
        let mut spki = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        spki.extend_from_slice(&raw);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", B64.encode(&spki));
        assert_eq!(VerifyingKey::parse(&pem).unwrap(), key.verifying_key());
        assert!(VerifyingKey::parse("AAAA").is_err());
        assert!(VerifyingKey::parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err());
    }
}
