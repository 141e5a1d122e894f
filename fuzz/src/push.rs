//! Arbitrary config-push envelopes through the verifier (`portcullis_crds::push::verify`, then
//! `check`), and verified payloads through the sidecar's renderer. The first byte chooses what
//! the rest is: even, an envelope as sent over the wire (JSON of `SignedPush`); odd, the payload
//! JSON of a push, which is signed here with the test operator key so the fuzzer also reaches
//! the payload decoder and the checks behind a valid signature. Invariants: no panic; an
//! envelope `verify` accepts carries a signature that checks independently (aws-lc-rs directly)
//! over exactly its payload with the trusted key.

use std::sync::OnceLock;

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use portcullis_crds::push::{self, PushTarget, Receiver, SignedPush, SigningKey, VerifyingKey};

/// The committed Ed25519 test key (tests/fixtures/keys), standing in for the operator's.
const KEY_PEM: &str = include_str!("../../tests/fixtures/keys/ed25519.pem");

struct Operator {
    pair: Ed25519KeyPair,
    trusted: Vec<VerifyingKey>,
}

fn operator() -> &'static Operator {
    static O: OnceLock<Operator> = OnceLock::new();
    O.get_or_init(|| {
        let key = SigningKey::from_pem(KEY_PEM).expect("test key parses");
        let der = pem_der(KEY_PEM);
        let pair = Ed25519KeyPair::from_pkcs8(&der).expect("test key is PKCS#8 Ed25519");
        Operator { pair, trusted: vec![key.verifying_key()] }
    })
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    B64.decode(body).expect("test key PEM is base64")
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let op = operator();
    let (signed, genuine) = if mode & 1 == 0 {
        let Ok(signed) = serde_json::from_slice::<SignedPush>(rest) else { return };
        (signed, false)
    } else {
        let payload = B64.encode(rest);
        let signature = B64.encode(op.pair.sign(payload.as_bytes()).as_ref());
        (SignedPush { payload, signature, key_id: op.trusted[0].key_id().to_owned() }, true)
    };
    match push::verify(&signed, &op.trusted) {
        Ok(p) => {
            assert!(genuine || signed_by_operator(&signed), "verify accepted a signature that does not check");
            let target = PushTarget { namespace: "shop".into(), pod: "api-0".into() };
            let receiver = Receiver { target: &target, running: Some(5), now: 1_900_000_000, max_age_secs: 86_400 };
            if let Err(e) = push::check(&p, &receiver) {
                assert!(!e.reason().is_empty());
            }
            // A verified snapshot is rendered by the sidecar; a bad one is refused, never a panic.
            let _ = crate::decide::render(p.snapshot.applications, None);
        }
        Err(e) => assert!(!e.reason().is_empty()),
    }
}

/// Whether `signed` carries a valid signature of the test key over its payload bytes, checked
/// without `push::verify`.
fn signed_by_operator(signed: &SignedPush) -> bool {
    use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};
    let op = operator();
    let Ok(sig) = B64.decode(&signed.signature) else { return false };
    let public = aws_lc_rs::signature::KeyPair::public_key(&op.pair);
    UnparsedPublicKey::new(&ED25519, public.as_ref()).verify(signed.payload.as_bytes(), &sig).is_ok()
}
