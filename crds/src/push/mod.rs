//! The config push wire format: a [`Snapshot`] addressed to one pod and one boot of its
//! sidecar, sealed to that boot's key ([`boot`], [`hpke`]) and signed with Ed25519 by the
//! operator; the sidecar verifies the signature before it reads anything else, checks boot,
//! pod, order and age, and only then opens the config.
//!
//! Pure apart from drawing randomness: keys, boot and time come in as arguments. The signature
//! covers the exact bytes sent (the base64 strings), so nothing is re-serialised between signing
//! and verifying. No secret of the snapshot is on the wire in clear: the whole snapshot is
//! sealed, and only the routing header (sequence, pod, time, boot id) is readable.

pub mod boot;
pub mod hpke;
mod refused;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

pub use boot::{BootInfo, BootKey};
pub use refused::Refused;

use crate::snapshot::Snapshot;

/// The envelope format this build sends and accepts. The unsealed envelope of earlier builds
/// (`payload`, `signature`, `key_id`) has no `format` and is refused as `unsupported_format`.
pub const FORMAT: &str = "portcullis-push-v2";

/// HPKE `info`: binds every seal to this protocol and format, so a ciphertext made for another
/// use of the same key (there is none today) could not be passed off as a push.
const HPKE_INFO: &[u8] = b"portcullis config push v2";

/// The pod a push is meant for: a push captured for one pod cannot be replayed to another.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PushTarget {
    pub namespace: String,
    pub pod: String,
}

/// What the operator sends one sidecar, before it is sealed and signed.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigPush {
    /// Strictly increasing per operator deployment (the operator uses Unix milliseconds of the
    /// compile): a sidecar refuses a push older than the one it runs.
    pub sequence: u64,
    pub target: PushTarget,
    /// Unix seconds; a sidecar refuses pushes older than its maximum age (replay window).
    pub issued_at: i64,
    pub snapshot: Snapshot,
}

/// The readable part of a push: everything the sidecar checks before it opens the config. It is
/// signed, and it is the AAD of the seal, so the sealed config cannot be moved under another
/// header.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PushHeader {
    pub sequence: u64,
    pub target: PushTarget,
    pub issued_at: i64,
    /// The boot of the sidecar this push was sealed for ([`BootInfo::boot_id`]).
    pub boot_id: String,
}

/// The envelope, as sent over the wire (`PUT /config`). Every field but `format` and `key_id` is
/// base64.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SealedPush {
    /// Always [`FORMAT`].
    pub format: String,
    /// Which key signed (the first 16 hex digits of SHA-256 of the public key), so a sidecar
    /// can hold the old and new key during a key rotation.
    pub key_id: String,
    /// JSON of a [`PushHeader`].
    pub header: String,
    /// The HPKE encapsulated key.
    pub enc: String,
    /// The HPKE ciphertext of the [`Snapshot`]'s JSON.
    pub sealed: String,
    /// Ed25519 over [`signed_bytes`] of the fields above.
    pub signature: String,
}

/// What the signature covers: every field, in order, newline-separated (base64 and the fixed
/// `format`/`key_id` alphabets hold no newline, so the split is unambiguous).
fn signed_bytes(p: &SealedPush) -> Vec<u8> {
    [p.format.as_str(), &p.key_id, &p.header, &p.enc, &p.sealed].join("\n").into_bytes()
}

/// Why a push was refused, with what the log needs; [`PushError::reason`] is the wire reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the push is not a sealed envelope: {0}")]
    Malformed(String),
    #[error("the push is {0}; this sidecar takes only {FORMAT} (sealed, bound to its boot): upgrade the operator")]
    UnsupportedFormat(String),
    #[error("no trusted key has id {0}; give the sidecar the operator's current public key")]
    UnknownKey(String),
    #[error("the signature does not verify: the push was not made by a trusted operator key")]
    BadSignature,
    #[error("the push was sealed for boot {got}, this sidecar runs boot {want}: read GET /config/boot again")]
    StaleBoot { got: String, want: String },
    #[error("the push is for pod {got}, this sidecar is {want}")]
    WrongTarget { got: String, want: String },
    #[error("the push is sequence {got}, older than the running {running}")]
    Stale { got: u64, running: u64 },
    #[error("the push was issued {age_secs} s ago, beyond the {max_secs} s replay window")]
    Expired { age_secs: i64, max_secs: i64 },
    #[error("the sealed config does not open with this boot's key")]
    Unsealable,
}

impl PushError {
    pub fn reason(&self) -> Refused {
        match self {
            PushError::Malformed(_) => Refused::Malformed,
            PushError::UnsupportedFormat(_) => Refused::UnsupportedFormat,
            PushError::UnknownKey(_) => Refused::UnknownKey,
            PushError::BadSignature => Refused::BadSignature,
            PushError::StaleBoot { .. } => Refused::StaleBoot,
            PushError::WrongTarget { .. } => Refused::WrongTarget,
            PushError::Stale { .. } => Refused::Stale,
            PushError::Expired { .. } => Refused::Expired,
            PushError::Unsealable => Refused::Unsealable,
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
    /// The sidecar's boot key or boot info is unusable (or no randomness to make one).
    #[error("boot key: {0}")]
    Boot(String),
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

    /// Seals `push`'s snapshot to the sidecar boot `boot` describes and signs the envelope.
    /// Fails only when the boot info is not something this build can seal to.
    pub fn seal(&self, push: &ConfigPush, boot: &BootInfo) -> Result<SealedPush, KeyError> {
        let recipient = boot.sealing_key()?;
        let header = PushHeader {
            sequence: push.sequence,
            target: push.target.clone(),
            issued_at: push.issued_at,
            boot_id: boot.boot_id.clone(),
        };
        // Serialising plain data structs cannot fail; see `Snapshot::new`.
        let header = B64.encode(serde_json::to_vec(&header).unwrap_or_default());
        let plaintext = serde_json::to_vec(&push.snapshot).unwrap_or_default();
        let (enc, sealed) = hpke::seal(&recipient, HPKE_INFO, header.as_bytes(), &plaintext)
            .map_err(|e| KeyError::Boot(e.to_string()))?;
        let mut out = SealedPush {
            format: FORMAT.to_owned(),
            key_id: self.key_id.clone(),
            header,
            enc: B64.encode(enc),
            sealed: B64.encode(sealed),
            signature: String::new(),
        };
        out.signature = B64.encode(self.pair.sign(&signed_bytes(&out)).as_ref());
        Ok(out)
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

/// A push whose signature verified: its header is the operator's, its config still sealed.
#[derive(Debug)]
pub struct Verified {
    pub header: PushHeader,
    /// The exact header bytes signed: the AAD of the seal.
    aad: String,
    enc: Vec<u8>,
    sealed: Vec<u8>,
}

/// Reads the envelope, verifies it against the trusted keys and decodes its header. Boot,
/// target, order and age are checked by [`check`], which needs the sidecar's state; the config
/// is opened by [`Verified::open`].
pub fn verify(body: &[u8], trusted: &[VerifyingKey]) -> Result<Verified, PushError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| PushError::Malformed(format!("envelope: {e}")))?;
    match value.get("format") {
        Some(serde_json::Value::String(f)) if f == FORMAT => {}
        Some(serde_json::Value::String(f)) => {
            return Err(PushError::UnsupportedFormat(format!("format {:?}", f.chars().take(64).collect::<String>())))
        }
        None if value.get("payload").is_some() => {
            return Err(PushError::UnsupportedFormat("an unsealed push (payload in clear)".to_owned()))
        }
        _ => return Err(PushError::Malformed("envelope: no format".to_owned())),
    }
    let signed: SealedPush =
        serde_json::from_value(value).map_err(|e| PushError::Malformed(format!("envelope: {e}")))?;
    let key = trusted
        .iter()
        .find(|k| k.key_id == signed.key_id)
        .ok_or_else(|| PushError::UnknownKey(signed.key_id.chars().take(32).collect()))?;
    let signature = B64.decode(&signed.signature).map_err(|_| PushError::BadSignature)?;
    UnparsedPublicKey::new(&ED25519, &key.raw)
        .verify(&signed_bytes(&signed), &signature)
        .map_err(|_| PushError::BadSignature)?;
    let field = |name: &str, b64: &str| B64.decode(b64).map_err(|e| PushError::Malformed(format!("{name}: {e}")));
    let header = serde_json::from_slice(&field("header", &signed.header)?)
        .map_err(|e| PushError::Malformed(format!("header: {e}")))?;
    Ok(Verified {
        header,
        enc: field("enc", &signed.enc)?,
        sealed: field("sealed", &signed.sealed)?,
        aad: signed.header,
    })
}

// === impl Verified ===

impl Verified {
    /// Opens the config with this boot's key. Call after [`check`]: a push for another boot
    /// is refused as `stale_boot` there, before any decryption is tried.
    pub fn open(&self, boot: &BootKey) -> Result<Snapshot, PushError> {
        let plaintext =
            boot.open(&self.enc, HPKE_INFO, self.aad.as_bytes(), &self.sealed).map_err(|_| PushError::Unsealable)?;
        serde_json::from_slice(&plaintext).map_err(|e| PushError::Malformed(format!("snapshot: {e}")))
    }
}

/// What the receiving sidecar knows about itself.
pub struct Receiver<'a> {
    pub target: &'a PushTarget,
    /// This process's boot id ([`BootKey::id`]).
    pub boot_id: &'a str,
    /// Sequence of the running config, if any.
    pub running: Option<u64>,
    pub now: i64,
    pub max_age_secs: i64,
}

/// Boot, target, order and age checks of a verified push's header.
pub fn check(push: &PushHeader, r: &Receiver<'_>) -> Result<(), PushError> {
    // First: after a restart the sequence memory is gone, and only the boot id refuses a
    // push captured before it.
    if push.boot_id != r.boot_id {
        return Err(PushError::StaleBoot { got: short(&push.boot_id), want: short(r.boot_id) });
    }
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

/// The first characters of a boot id, for messages (enough to tell boots apart in a log).
fn short(boot_id: &str) -> String {
    boot_id.chars().take(12).collect()
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
mod tests;
