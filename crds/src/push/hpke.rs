//! HPKE base mode (RFC 9180), single shot, for one suite: DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, ChaCha20-Poly1305 — what seals a config push to a sidecar's boot key.
//!
//! Built on aws-lc-rs primitives (X25519, HMAC, HKDF-Expand, ChaCha20-Poly1305), which the tree
//! already uses for the push signatures and TLS, rather than on a second crypto stack; the
//! RFC's own known-answer vector (Appendix A.2.1) pins the key schedule in the tests. Only base
//! mode and sequence number 0 exist here: each push is one message to one boot key, so there
//! is no PSK, no sender authentication (the Ed25519 signature over the sealed push does that)
//! and no context reuse. It must not grow other modes or suites without their vectors.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use aws_lc_rs::{hkdf, hmac};

/// `kem_id` 0x0020: DHKEM(X25519, HKDF-SHA256) (RFC 9180 §7.1).
const KEM_SUITE: &[u8] = b"KEM\x00\x20";
/// `"HPKE" || kem_id || kdf_id (0x0001, HKDF-SHA256) || aead_id (0x0003, ChaCha20Poly1305)`.
const HPKE_SUITE: &[u8] = b"HPKE\x00\x20\x00\x01\x00\x03";
/// `Nsecret`, `Nk` and `Nn` of the suite; `Npk`/`Nenc` of X25519.
const N_SECRET: usize = 32;
const N_K: usize = 32;
const N_N: usize = 12;
pub const N_PK: usize = 32;

/// Why sealing or opening failed. Deliberately one opaque case each way: an attacker learns
/// nothing from which step refused (RFC 9180 §5.2 lets `open` fail without saying why).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpkeError {
    #[error("the recipient public key is not an X25519 key")]
    BadPublicKey,
    #[error("sealing failed")]
    Seal,
    #[error("the sealed message does not open with this key")]
    Open,
}

/// Seals `plaintext` to `recipient` (raw X25519 public key): `(enc, ciphertext)`.
pub fn seal(recipient: &[u8], info: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), HpkeError> {
    let ephemeral = PrivateKey::generate(&X25519).map_err(|_| HpkeError::Seal)?;
    seal_with(&ephemeral, recipient, info, aad, plaintext)
}

/// [`seal`] with a given ephemeral key (the known-answer test fixes it).
fn seal_with(
    ephemeral: &PrivateKey,
    recipient: &[u8],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), HpkeError> {
    if recipient.len() != N_PK {
        return Err(HpkeError::BadPublicKey);
    }
    let enc = ephemeral.compute_public_key().map_err(|_| HpkeError::Seal)?.as_ref().to_vec();
    let dh = dh(ephemeral, recipient).map_err(|()| HpkeError::BadPublicKey)?;
    let shared = shared_secret(&dh, &enc, recipient).map_err(|()| HpkeError::Seal)?;
    let (key, nonce) = key_schedule(&shared, info).map_err(|()| HpkeError::Seal)?;
    let mut out = plaintext.to_vec();
    key.seal_in_place_append_tag(nonce, Aad::from(aad), &mut out).map_err(|_| HpkeError::Seal)?;
    Ok((enc, out))
}

/// Opens what [`seal`] made for `recipient` (whose public key is `recipient_public`).
pub fn open(
    recipient: &PrivateKey,
    recipient_public: &[u8],
    enc: &[u8],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, HpkeError> {
    let opened = || -> Result<Vec<u8>, ()> {
        let dh = dh(recipient, enc)?;
        let shared = shared_secret(&dh, enc, recipient_public)?;
        let (key, nonce) = key_schedule(&shared, info)?;
        let mut buf = ciphertext.to_vec();
        let plain = key.open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| ())?;
        Ok(plain.to_vec())
    };
    opened().map_err(|()| HpkeError::Open)
}

/// X25519, refusing the all-zero output of a small-order peer key (RFC 9180 §7.1.4, RFC 7748 §6.1).
fn dh(private: &PrivateKey, peer: &[u8]) -> Result<Vec<u8>, ()> {
    if peer.len() != N_PK {
        return Err(());
    }
    let secret = agreement::agree(private, UnparsedPublicKey::new(&X25519, peer), (), |s| Ok(s.to_vec()))?;
    if secret.iter().all(|b| *b == 0) {
        return Err(());
    }
    Ok(secret)
}

/// `ExtractAndExpand(dh, enc || pkR)` of DHKEM (RFC 9180 §4.1).
fn shared_secret(dh: &[u8], enc: &[u8], recipient_public: &[u8]) -> Result<[u8; N_SECRET], ()> {
    let eae_prk = labeled_extract(KEM_SUITE, b"", b"eae_prk", dh);
    let mut out = [0; N_SECRET];
    labeled_expand(KEM_SUITE, &eae_prk, b"shared_secret", &[enc, recipient_public], &mut out)?;
    Ok(out)
}

/// The base-mode key schedule (RFC 9180 §5.1) down to the AEAD key and the nonce of the only
/// message (sequence 0, so the nonce is `base_nonce` itself).
fn key_schedule(shared: &[u8], info: &[u8]) -> Result<(LessSafeKey, Nonce), ()> {
    const MODE_BASE: u8 = 0;
    let psk_id_hash = labeled_extract(HPKE_SUITE, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(HPKE_SUITE, b"", b"info_hash", info);
    let context = [&[MODE_BASE][..], psk_id_hash.as_ref(), info_hash.as_ref()].concat();
    let secret = labeled_extract(HPKE_SUITE, shared, b"secret", b"");
    let mut key = [0; N_K];
    labeled_expand(HPKE_SUITE, &secret, b"key", &[&context], &mut key)?;
    let mut nonce = [0; N_N];
    labeled_expand(HPKE_SUITE, &secret, b"base_nonce", &[&context], &mut nonce)?;
    let key = LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &key).map_err(|_| ())?);
    Ok((key, Nonce::assume_unique_for_key(nonce)))
}

/// `LabeledExtract`: HKDF-Extract is HMAC keyed with the salt (RFC 5869 §2.2). Computed with
/// HMAC directly because the key schedule needs the PRK's bytes, which `hkdf::Prk` hides.
fn labeled_extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, salt));
    for part in [b"HPKE-v1".as_slice(), suite, label, ikm] {
        ctx.update(part);
    }
    ctx.sign()
}

/// `LabeledExpand` into `out` (its length is `L`).
fn labeled_expand(suite: &[u8], prk: &hmac::Tag, label: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<(), ()> {
    let len = u16::try_from(out.len()).map_err(|_| ())?.to_be_bytes();
    let parts: Vec<&[u8]> = [&len[..], b"HPKE-v1", suite, label].into_iter().chain(info.iter().copied()).collect();
    let prk = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, prk.as_ref());
    prk.expand(&parts, Len(out.len())).map_err(|_| ())?.fill(out).map_err(|_| ())
}

struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn recipient() -> (PrivateKey, Vec<u8>) {
        let sk = PrivateKey::generate(&X25519).unwrap();
        let pk = sk.compute_public_key().unwrap().as_ref().to_vec();
        (sk, pk)
    }

    /// RFC 9180 Appendix A.2.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20Poly1305,
    /// base mode, the first encryption (sequence 0).
    #[test]
    fn matches_the_rfc_9180_known_answer() {
        let info = hex("4f6465206f6e2061204772656369616e2055726e");
        let sk_e = hex("f4ec9b33b792c372c1d2c2063507b684ef925b8c75a42dbcbf57d63ccd381600");
        let sk_r = hex("8057991eef8f1f1af18f4a9491d16a1ce333f695d4db8e38da75975c4478e0fb");
        let pk_r = hex("4310ee97d88cc1f088a5576c77ab0cf5c3ac797f3d95139c6c84b5429c59662a");
        let enc = hex("1afa08d3dec047a643885163f1180476fa7ddb54c6a8029ea33f95796bf2ac4a");
        let pt = hex("4265617574792069732074727574682c20747275746820626561757479");
        let aad = hex("436f756e742d30");
        let ct = hex("1c5250d8034ec2b784ba2cfd69dbdb8af406cfe3ff938e131f0def8c8b60b4db21993c62ce81883d2dd1b51a28");

        let ephemeral = PrivateKey::from_private_key(&X25519, &sk_e).unwrap();
        assert_eq!(seal_with(&ephemeral, &pk_r, &info, &aad, &pt).unwrap(), (enc.clone(), ct.clone()));
        let receiver = PrivateKey::from_private_key(&X25519, &sk_r).unwrap();
        assert_eq!(receiver.compute_public_key().unwrap().as_ref(), pk_r.as_slice());
        assert_eq!(open(&receiver, &pk_r, &enc, &info, &aad, &ct).unwrap(), pt);
    }

    #[test]
    fn refuses_bad_public_keys() {
        assert_eq!(seal(&[7; 31], b"", b"", b"x"), Err(HpkeError::BadPublicKey));
        // A small-order point (here 0) gives an all-zero shared secret.
        assert_eq!(seal(&[0; 32], b"", b"", b"x"), Err(HpkeError::BadPublicKey));
        let (sk, pk) = recipient();
        assert_eq!(open(&sk, &pk, &[0; 32], b"", b"", &[0; 40]), Err(HpkeError::Open));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the message, info and AAD: it opens to itself with the right key, context and
        /// bytes, and not at all with a wrong key, another info or AAD, or any flipped byte.
        #[test]
        fn seal_open_round_trip_and_tamper(
            pt in proptest::collection::vec(any::<u8>(), 0..512),
            info in proptest::collection::vec(any::<u8>(), 0..64),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            flip in any::<prop::sample::Index>(),
            bit in 0u8..8,
        ) {
            let (sk, pk) = recipient();
            let (enc, ct) = seal(&pk, &info, &aad, &pt).unwrap();
            prop_assert_eq!(ct.len(), pt.len() + 16);
            prop_assert_eq!(&open(&sk, &pk, &enc, &info, &aad, &ct).unwrap(), &pt);

            let (other, other_pk) = recipient();
            prop_assert_eq!(open(&other, &other_pk, &enc, &info, &aad, &ct), Err(HpkeError::Open));
            let wrong_info = [info.as_slice(), b"!"].concat();
            prop_assert_eq!(open(&sk, &pk, &enc, &wrong_info, &aad, &ct), Err(HpkeError::Open));
            let wrong_aad = [aad.as_slice(), b"!"].concat();
            prop_assert_eq!(open(&sk, &pk, &enc, &info, &wrong_aad, &ct), Err(HpkeError::Open));

            let mut tampered = ct.clone();
            let i = flip.index(tampered.len());
            tampered[i] ^= 1 << bit;
            prop_assert_eq!(open(&sk, &pk, &enc, &info, &aad, &tampered), Err(HpkeError::Open));
            let mut bad_enc = enc.clone();
            let j = flip.index(bad_enc.len());
            bad_enc[j] ^= 1 << bit;
            prop_assert_eq!(open(&sk, &pk, &bad_enc, &info, &aad, &ct), Err(HpkeError::Open));
        }
    }
}
