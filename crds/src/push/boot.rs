//! One boot of one sidecar: a random boot id and an X25519 key pair made at start and never
//! written anywhere, so that a push captured before a restart names a boot that no longer
//! exists and its sealed config opens for nobody after it.
//!
//! [`BootKey`] is the sidecar's half (the private key stays in memory, `Debug` redacts it);
//! [`BootInfo`] is what it serves on `GET /config/boot` and what the operator seals to. Pure
//! apart from drawing randomness.

use aws_lc_rs::agreement::{PrivateKey, X25519};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::hpke::{self, HpkeError};
use super::{KeyError, PushTarget};

/// Random bytes of a boot id: 256 bits, so two boots never share one.
const BOOT_ID_BYTES: usize = 32;

/// The HPKE suite pushes are sealed with, as RFC 9180 names it; served so that an operator
/// meeting a sidecar that seals differently says so instead of sending what it cannot open.
pub const HPKE_SUITE: &str = "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305";

/// `GET /config/boot` on a sidecar's admin port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BootInfo {
    /// Base64 of 32 random bytes drawn at start.
    pub boot_id: String,
    /// Base64 of the raw 32-byte X25519 public key pushes are sealed to.
    pub public_key: String,
    /// Always [`HPKE_SUITE`] for this format.
    pub hpke: String,
    /// The pod this sidecar is (`--pod-namespace`, `--pod-name`), so that the operator does not
    /// seal one pod's config to whatever answers at a reused IP.
    pub target: PushTarget,
}

impl BootInfo {
    /// The raw public key, if this is boot info this build can seal to.
    pub fn sealing_key(&self) -> Result<Vec<u8>, KeyError> {
        if self.hpke != HPKE_SUITE {
            return Err(KeyError::Boot(format!("the sidecar seals with {:?}, not {HPKE_SUITE:?}", self.hpke)));
        }
        let raw = B64.decode(&self.public_key).map_err(|_| KeyError::Boot("public key: not base64".into()))?;
        if raw.len() != hpke::N_PK {
            return Err(KeyError::Boot(format!("public key: {} bytes, want {}", raw.len(), hpke::N_PK)));
        }
        Ok(raw)
    }
}

/// The sidecar's boot id and private key.
pub struct BootKey {
    id: String,
    private: PrivateKey,
    public: Vec<u8>,
}

impl std::fmt::Debug for BootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BootKey({})", self.id)
    }
}

impl BootKey {
    /// A new boot: fresh id, fresh key pair.
    pub fn generate() -> Result<Self, KeyError> {
        let mut id = [0; BOOT_ID_BYTES];
        SystemRandom::new().fill(&mut id).map_err(|_| KeyError::Boot("no randomness for the boot id".into()))?;
        let private = PrivateKey::generate(&X25519).map_err(|_| KeyError::Boot("X25519 key generation".into()))?;
        let public =
            private.compute_public_key().map_err(|_| KeyError::Boot("X25519 public key".into()))?.as_ref().to_vec();
        Ok(Self { id: B64.encode(id), private, public })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// What `GET /config/boot` answers for the pod `target`.
    pub fn info(&self, target: &PushTarget) -> BootInfo {
        BootInfo {
            boot_id: self.id.clone(),
            public_key: B64.encode(&self.public),
            hpke: HPKE_SUITE.to_owned(),
            target: target.clone(),
        }
    }

    /// Opens a message sealed to this boot's key.
    pub(super) fn open(&self, enc: &[u8], info: &[u8], aad: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, HpkeError> {
        hpke::open(&self.private, &self.public, enc, info, aad, ciphertext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_boot_is_new_and_debug_shows_no_key() {
        let me = PushTarget { namespace: "shop".into(), pod: "api-0".into() };
        let (a, b) = (BootKey::generate().unwrap(), BootKey::generate().unwrap());
        assert_ne!(a.id(), b.id());
        assert_eq!(B64.decode(a.id()).unwrap().len(), BOOT_ID_BYTES);
        let info = a.info(&me);
        assert_ne!(info.public_key, b.info(&me).public_key);
        assert_eq!(info.sealing_key().unwrap().len(), 32);
        assert_eq!(format!("{a:?}"), format!("BootKey({})", a.id()));

        let other_suite =
            BootInfo { hpke: "DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM".into(), ..info.clone() };
        assert!(other_suite.sealing_key().is_err());
        let short = BootInfo { public_key: B64.encode([1; 16]), ..info };
        assert!(short.sealing_key().is_err());
    }
}
