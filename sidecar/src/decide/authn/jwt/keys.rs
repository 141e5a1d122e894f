//! One issuer's verification keys, parsed from a JWKS document (RFC 7517).
//!
//! Owns the JWK → key conversion and the rules for picking a key for a token (by `kid`, or the
//! single key of the algorithm's type). Must not fetch anything (that is `crate::jwks`) and must
//! not fail a whole set because one key is of a kind we do not verify: issuers publish
//! encryption keys and newer key types beside their signing keys.

use jsonwebtoken::DecodingKey;
use portcullis_crds::snapshot::Algorithm;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Why a JWKS document gave no usable key set. Carries no key material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("the JWKS is not valid JSON or not an object with a \"keys\" array (RFC 7517 §5): {0}")]
    NotJwks(String),
    #[error(
        "the JWKS has no usable signing key ({skipped} skipped: only RSA ≥ 2048 bits, EC P-256/P-384 and \
         Ed25519 keys with use \"sig\" are verified)"
    )]
    NoUsableKeys { skipped: usize },
}

impl JwksError {
    /// Stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            JwksError::NotJwks(_) => "jwks_invalid",
            JwksError::NoUsableKeys { .. } => "jwks_no_usable_keys",
        }
    }
}

/// The key type an algorithm needs (RFC 7518 §3, RFC 8037 §3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum KeyType {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyType {
    pub(crate) fn for_alg(alg: Algorithm) -> KeyType {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyType::Rsa,
            Algorithm::ES256 => KeyType::P256,
            Algorithm::ES384 => KeyType::P384,
            Algorithm::EdDSA => KeyType::Ed25519,
        }
    }

    fn tag(self) -> u8 {
        match self {
            KeyType::Rsa => 1,
            KeyType::P256 => 2,
            KeyType::P384 => 3,
            KeyType::Ed25519 => 4,
        }
    }
}

/// The `jsonwebtoken` name of one of our algorithms (ours is a subset: no HMAC, no `none`).
pub(crate) fn jwt_alg(alg: Algorithm) -> jsonwebtoken::Algorithm {
    use jsonwebtoken::Algorithm as J;
    match alg {
        Algorithm::RS256 => J::RS256,
        Algorithm::RS384 => J::RS384,
        Algorithm::RS512 => J::RS512,
        Algorithm::PS256 => J::PS256,
        Algorithm::PS384 => J::PS384,
        Algorithm::PS512 => J::PS512,
        Algorithm::ES256 => J::ES256,
        Algorithm::ES384 => J::ES384,
        Algorithm::EdDSA => J::EdDSA,
    }
}

/// One usable public key.
pub(crate) struct Key {
    pub(crate) kid: Option<String>,
    pub(crate) key_type: KeyType,
    /// The JWK's own `alg`, when it names one: the key is then used with that algorithm only
    /// (RFC 7517 §4.4).
    pub(crate) alg: Option<Algorithm>,
    pub(crate) decoding: DecodingKey,
}

impl Key {
    /// Whether a token signed with `alg` may be verified with this key.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        self.key_type == KeyType::for_alg(alg) && self.alg.is_none_or(|a| a == alg)
    }
}

/// How [`KeySet::select`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Selection {
    /// No key with this kid (or, without kid, no key of the type): a refresh may bring it.
    Unknown,
    /// The kid names a key of another type or algorithm.
    Mismatch,
    /// No kid, and more than one key of the type: we will not guess.
    Ambiguous,
}

/// The keys of one issuer. Immutable; a refresh builds a new one.
pub struct KeySet {
    keys: Vec<Key>,
    skipped: usize,
    generation: u64,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_deref().unwrap_or("-")).collect();
        f.debug_struct("KeySet")
            .field("kids", &kids)
            .field("skipped", &self.skipped)
            .field("generation", &self.generation)
            .finish()
    }
}

/// The JWK members we read; everything else (including `x5c`, `x5u`) is ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

// === impl KeySet ===

impl KeySet {
    /// Parses a JWKS document, keeping the keys we can verify with and skipping the others
    /// (encryption keys, HMAC `oct` keys, unknown types, malformed members).
    pub fn from_jwks_json(bytes: &[u8]) -> Result<KeySet, JwksError> {
        let raw: RawJwks = serde_json::from_slice(bytes).map_err(|e| JwksError::NotJwks(e.to_string()))?;
        let mut keys = Vec::with_capacity(raw.keys.len());
        let mut skipped = 0;
        let mut fingerprint = Sha256::new();
        for value in raw.keys {
            let parsed = serde_json::from_value::<RawJwk>(value).ok().and_then(|jwk| parse_key(&jwk));
            match parsed {
                Some((key, material)) => {
                    // The generation is a digest of what verification depends on, so a refresh
                    // returning the same keys keeps cached verifications valid.
                    for part in
                        [key.kid.as_deref().unwrap_or("").as_bytes(), key.alg.map_or("", Algorithm::name).as_bytes()]
                    {
                        fingerprint.update((part.len() as u64).to_be_bytes());
                        fingerprint.update(part);
                    }
                    fingerprint.update([key.key_type.tag()]);
                    fingerprint.update((material.len() as u64).to_be_bytes());
                    fingerprint.update(&material);
                    keys.push(key);
                }
                None => skipped += 1,
            }
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKeys { skipped });
        }
        let digest = fingerprint.finalize();
        let mut generation = [0u8; 8];
        generation.copy_from_slice(&digest[..8]);
        Ok(KeySet { keys, skipped, generation: u64::from_be_bytes(generation) })
    }

    /// Identifies the key material: equal for equal keys, different (with overwhelming
    /// probability) otherwise. Cached verifications are valid only for the generation they
    /// were made with.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys in the document that we do not verify with.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// The `kid`s of the usable keys (for logs; key ids are public).
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().filter_map(|k| k.kid.as_deref())
    }

    /// The key for a token: by `kid` when it has one; without, the one key that fits `alg`
    /// (api.md: "a token without kid matches the one key of the type its alg implies").
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<&Key, Selection> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).peekable();
                if named.peek().is_none() {
                    return Err(Selection::Unknown);
                }
                named.find(|k| k.fits(alg)).ok_or(Selection::Mismatch)
            }
            None => {
                let want = KeyType::for_alg(alg);
                let mut of_type = self.keys.iter().filter(|k| k.key_type == want);
                match (of_type.next(), of_type.next()) {
                    (None, _) => Err(Selection::Unknown),
                    (Some(k), None) if k.fits(alg) => Ok(k),
                    (Some(_), None) => Err(Selection::Mismatch),
                    (Some(_), Some(_)) => Err(Selection::Ambiguous),
                }
            }
        }
    }
}

/// A usable key and the bytes that identify it; `None` to skip it.
fn parse_key(jwk: &RawJwk) -> Option<(Key, Vec<u8>)> {
    // Only signature keys: `use` other than "sig", or `key_ops` without "verify", mark keys the
    // issuer does not sign tokens with (RFC 7517 §4.2, §4.3).
    if jwk.use_.as_deref().is_some_and(|u| u != "sig") {
        return None;
    }
    if jwk.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|o| o == "verify")) {
        return None;
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        // An algorithm we do not verify (HS256, RSA-OAEP, …): not a key for us.
        Some(name) => Some(Algorithm::from_name(name)?),
    };
    let (key_type, decoding, material) = match (jwk.kty.as_deref()?, jwk.crv.as_deref()) {
        ("RSA", _) => {
            let n = b64(jwk.n.as_deref()?)?;
            let e = b64(jwk.e.as_deref()?)?;
            let n_trimmed = strip_leading_zeros(&n);
            // RFC 7518 §3.3: 2048 bits or larger. aws-lc refuses smaller keys at verification
            // anyway; skipping them here keeps them out of kid-less selection.
            if n_trimmed.len() < 256 || e.is_empty() {
                return None;
            }
            let mut material = n_trimmed.to_vec();
            material.extend_from_slice(strip_leading_zeros(&e));
            (KeyType::Rsa, DecodingKey::from_rsa_raw_components(n_trimmed, &e), material)
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (key_type, len) = if crv == "P-256" { (KeyType::P256, 32) } else { (KeyType::P384, 48) };
            let x = b64(jwk.x.as_deref()?)?;
            let y = b64(jwk.y.as_deref()?)?;
            if x.len() != len || y.len() != len {
                return None;
            }
            // SEC1 uncompressed point, what jsonwebtoken's EC verifier takes.
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (key_type, DecodingKey::from_ec_der(&point), point)
        }
        ("OKP", Some("Ed25519")) => {
            let x = b64(jwk.x.as_deref()?)?;
            if x.len() != 32 {
                return None;
            }
            (KeyType::Ed25519, DecodingKey::from_ed_der(&x), x)
        }
        _ => return None,
    };
    if alg.is_some_and(|a| KeyType::for_alg(a) != key_type) {
        return None;
    }
    Some((Key { kid: jwk.kid.clone(), key_type, alg, decoding }, material))
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}
