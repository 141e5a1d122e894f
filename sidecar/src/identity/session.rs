//! The application's session key: signs the session JWTs the sidecar mints at sign-in and the
//! short-lived sign-in state cookie, and publishes its public half as the JWKS of the
//! application's implicit session issuer (so the sidecar accepts its own sessions through the
//! same JWT verification as any other token).
//!
//! Owns key loading (PEM PKCS#8 Ed25519, PKCS#8 or SEC1 ECDSA P-256), generation (a standalone
//! sidecar without `sessionKeyRef`, api.md) and compact JWS signing and verifying. Must not
//! log or display key material; errors name the problem only.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING,
    ED25519,
};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use serde::de::DeserializeOwned;

use crate::decide::sign_in::b64url;

/// Why a session key could not be loaded. Never carries key bytes.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    #[error("the session key is not a PEM private key")]
    NotPem,
    #[error(
        "the session key is neither Ed25519 nor ECDSA P-256 (generate one with `openssl genpkey -algorithm ED25519`)"
    )]
    Unsupported,
    #[error("the session key could not be generated")]
    Generate,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

/// A signing key and its public JWK.
pub struct SessionKey {
    pair: Pair,
    /// `kid`: a digest of the public key, so a changed key is a new kid.
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey").field("alg", &self.alg()).field("kid", &self.kid).finish_non_exhaustive()
    }
}

// === impl SessionKey ===

impl SessionKey {
    /// Parses a PEM private key: PKCS#8 Ed25519, or ECDSA P-256 as PKCS#8 or SEC1.
    pub fn from_pem(pem: &str) -> Result<SessionKey, SessionKeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| SessionKeyError::NotPem)?;
        let pair = match &der {
            PrivateKeyDer::Pkcs8(p) => {
                if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(p.secret_pkcs8_der()) {
                    Pair::Ed25519(k)
                } else {
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, p.secret_pkcs8_der())
                        .map(Pair::P256)
                        .map_err(|_| SessionKeyError::Unsupported)?
                }
            }
            PrivateKeyDer::Sec1(s) => {
                EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, s.secret_sec1_der())
                    .map(Pair::P256)
                    .map_err(|_| SessionKeyError::Unsupported)?
            }
            _ => return Err(SessionKeyError::Unsupported),
        };
        Ok(Self::new(pair))
    }

    /// A fresh Ed25519 key (sessions signed with it end when the process does).
    pub fn generate() -> Result<SessionKey, SessionKeyError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|_| SessionKeyError::Generate)?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| SessionKeyError::Generate)?;
        Ok(Self::new(Pair::Ed25519(pair)))
    }

    fn new(pair: Pair) -> SessionKey {
        let public = match &pair {
            Pair::Ed25519(k) => k.public_key().as_ref().to_vec(),
            Pair::P256(k) => k.public_key().as_ref().to_vec(),
        };
        let kid = b64url(&sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&public))[..12]);
        SessionKey { pair, kid, rng: SystemRandom::new() }
    }

    /// The JOSE algorithm.
    pub fn alg(&self) -> &'static str {
        match self.pair {
            Pair::Ed25519(_) => "EdDSA",
            Pair::P256(_) => "ES256",
        }
    }

    /// The public key as a one-key JWKS document (RFC 7517; RFC 8037 for OKP).
    pub fn public_jwks(&self) -> String {
        let jwk = match &self.pair {
            Pair::Ed25519(k) => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64url(k.public_key().as_ref()),
                "kid": self.kid, "use": "sig", "alg": "EdDSA",
            }),
            Pair::P256(k) => {
                // Uncompressed point: 0x04 || X (32) || Y (32).
                let p = k.public_key().as_ref();
                serde_json::json!({
                    "kty": "EC", "crv": "P-256", "x": b64url(&p[1..33]), "y": b64url(&p[33..65]),
                    "kid": self.kid, "use": "sig", "alg": "ES256",
                })
            }
        };
        serde_json::json!({ "keys": [jwk] }).to_string()
    }

    /// A compact JWS of `claims` with header `{alg, kid, typ}`.
    pub fn sign(&self, typ: &str, claims: &serde_json::Value) -> Result<String, SessionKeyError> {
        let header = serde_json::json!({ "alg": self.alg(), "kid": self.kid, "typ": typ });
        let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let signature = match &self.pair {
            Pair::Ed25519(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            Pair::P256(k) => {
                k.sign(&self.rng, input.as_bytes()).map_err(|_| SessionKeyError::Generate)?.as_ref().to_vec()
            }
        };
        Ok(format!("{input}.{}", b64url(&signature)))
    }

    /// Verifies a compact JWS this key signed with header `typ` and returns its claims; `None`
    /// for anything else (another key, another type, a bad signature, bad encoding).
    pub fn verify<T: DeserializeOwned>(&self, typ: &str, token: &str) -> Option<T> {
        let (input, signature) = token.rsplit_once('.')?;
        let (header, payload) = input.split_once('.')?;
        let decode = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok();
        let signature = decode(signature)?;
        let ok = match &self.pair {
            Pair::Ed25519(k) => UnparsedPublicKey::new(&ED25519, k.public_key().as_ref()),
            Pair::P256(k) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, k.public_key().as_ref()),
        }
        .verify(input.as_bytes(), &signature)
        .is_ok();
        if !ok {
            return None;
        }
        let header: serde_json::Value = serde_json::from_slice(&decode(header)?).ok()?;
        if header.get("typ").and_then(|t| t.as_str()) != Some(typ)
            || header.get("alg").and_then(|a| a.as_str()) != Some(self.alg())
        {
            return None;
        }
        serde_json::from_slice(&decode(payload)?).ok()
    }
}

/// The key every application without `sessionKeyRef` shares in this process, generated once at
/// start so a configuration reload does not end every session. Applications still cannot
/// accept each other's sessions: each has its own issuer and audience.
pub struct GeneratedKey(Option<Arc<SessionKey>>);

impl GeneratedKey {
    pub fn new() -> Self {
        match SessionKey::generate() {
            Ok(k) => Self(Some(Arc::new(k))),
            Err(e) => {
                tracing::error!(error = %e, "cannot generate a session key; sign-in without sessionKeyRef is refused");
                Self(None)
            }
        }
    }

    pub fn get(&self) -> Option<Arc<SessionKey>> {
        self.0.clone()
    }
}

impl Default for GeneratedKey {
    fn default() -> Self {
        Self::new()
    }
}

/// Random bytes from the system generator, base64url: `state`, `nonce` and PKCE verifiers.
pub fn random_b64url(bytes: usize) -> Option<String> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).ok()?;
    Some(b64url(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519_PEM: &str = include_str!("../../../tests/fixtures/keys/ed25519.pem");
    const EC_PEM: &str = include_str!("../../../tests/fixtures/keys/ec.pem");
    const RSA_PEM: &str = include_str!("../../../tests/fixtures/keys/rsa.pem");

    #[test]
    fn loads_ed25519_and_p256_and_refuses_rsa() {
        assert_eq!(SessionKey::from_pem(ED25519_PEM).unwrap().alg(), "EdDSA");
        assert_eq!(SessionKey::from_pem(EC_PEM).unwrap().alg(), "ES256");
        assert!(matches!(SessionKey::from_pem(RSA_PEM), Err(SessionKeyError::Unsupported)));
        assert!(matches!(SessionKey::from_pem("nope"), Err(SessionKeyError::NotPem)));
    }

    #[test]
    fn signs_what_it_verifies_and_nothing_else() {
        for key in [SessionKey::from_pem(ED25519_PEM).unwrap(), SessionKey::from_pem(EC_PEM).unwrap()] {
            let claims = serde_json::json!({ "a": 1 });
            let token = key.sign("t", &claims).unwrap();
            assert_eq!(key.verify::<serde_json::Value>("t", &token), Some(claims.clone()));
            assert_eq!(key.verify::<serde_json::Value>("other", &token), None);
            let other = SessionKey::generate().unwrap();
            assert_eq!(other.verify::<serde_json::Value>("t", &token), None);
            // Flip one payload character.
            let mut tampered = token.clone().into_bytes();
            let dot = token.find('.').unwrap() + 2;
            tampered[dot] = if tampered[dot] == b'A' { b'B' } else { b'A' };
            assert_eq!(key.verify::<serde_json::Value>("t", &String::from_utf8(tampered).unwrap()), None);
            assert!(!format!("{key:?}").contains("PRIVATE"));
        }
    }

    #[test]
    fn the_public_jwks_verifies_signed_tokens() {
        for key in [SessionKey::generate().unwrap(), SessionKey::from_pem(EC_PEM).unwrap()] {
            let set = crate::decide::authn::jwt::KeySet::from_jwks_json(key.public_jwks().as_bytes()).unwrap();
            assert_eq!(set.len(), 1);
        }
    }

    #[test]
    fn random_values_are_long_and_distinct() {
        let a = random_b64url(32).unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_b64url(32).unwrap());
    }
}
