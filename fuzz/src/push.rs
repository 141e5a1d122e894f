//! Arbitrary config pushes through the sidecar's side of the sealed push format
//! (`portcullis_crds::push`): `verify` (envelope, signature, header), `check` (boot, pod, order,
//! age) and `Verified::open` (HPKE), then the opened snapshot through the sidecar's renderer.
//! The first byte chooses what the rest is, so the fuzzer also gets behind the signature:
//! - 0: an envelope as sent over the wire (`PUT /config` body);
//! - 1: a snapshot's JSON, sealed to this process's boot and signed with the test operator
//!   key, as the operator does;
//! - 2: the JSON of an envelope's fields whose header is re-addressed to this boot and which is
//!   then signed here, so arbitrary `enc`/`sealed` bytes reach `open`.
//!
//! Invariants: no panic; an envelope `verify` accepts carries a signature that checks with
//! aws-lc-rs directly over its fields; a sealed snapshot opens to exactly what was sealed.

use std::sync::OnceLock;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use portcullis_crds::push::{self, BootInfo, BootKey, ConfigPush, PushHeader, PushTarget, Receiver, SealedPush};
use portcullis_crds::push::{SigningKey, VerifyingKey};
use portcullis_crds::Snapshot;

/// The committed Ed25519 test key (tests/fixtures/keys), standing in for the operator's.
pub const KEY_PEM: &str = include_str!("../../tests/fixtures/keys/ed25519.pem");

struct Setup {
    key: SigningKey,
    /// The same key, to sign envelope fields the fuzzer chose (mode 2).
    pair: Ed25519KeyPair,
    trusted: Vec<VerifyingKey>,
    boot: BootKey,
    info: BootInfo,
    target: PushTarget,
}

fn setup() -> &'static Setup {
    static S: OnceLock<Setup> = OnceLock::new();
    S.get_or_init(|| {
        let key = SigningKey::from_pem(KEY_PEM).expect("test key parses");
        let body: String = KEY_PEM.lines().filter(|l| !l.starts_with("-----")).collect();
        let pair = Ed25519KeyPair::from_pkcs8(&B64.decode(body).expect("PEM body")).expect("PKCS#8 Ed25519");
        let target = PushTarget { namespace: "shop".into(), pod: "api-0".into() };
        let boot = BootKey::generate().expect("boot key");
        let info = boot.info(&target);
        Setup { trusted: vec![key.verifying_key()], key, pair, boot, info, target }
    })
}

/// The bytes the envelope's signature covers (the format's `signed_bytes`, rebuilt here so
/// that `verify` is checked against an independent reading).
fn signed_bytes(p: &SealedPush) -> Vec<u8> {
    [p.format.as_str(), &p.key_id, &p.header, &p.enc, &p.sealed].join("\n").into_bytes()
}

pub fn run(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let s = setup();
    let mut sealed_snapshot = None;
    let body = match mode % 3 {
        0 => rest.to_vec(),
        1 => {
            let Ok(snapshot) = serde_json::from_slice::<Snapshot>(rest) else { return };
            let push = ConfigPush { sequence: 9, target: s.target.clone(), issued_at: 1_900_000_000, snapshot };
            let sealed = s.key.seal(&push, &s.info).expect("this build seals to its own boot");
            sealed_snapshot = Some(push.snapshot);
            serde_json::to_vec(&sealed).expect("envelope serialises")
        }
        _ => {
            let Ok(mut p) = serde_json::from_slice::<SealedPush>(rest) else { return };
            if let Some(mut header) =
                B64.decode(&p.header).ok().and_then(|h| serde_json::from_slice::<PushHeader>(&h).ok())
            {
                header.boot_id = s.boot.id().to_owned();
                p.header = B64.encode(serde_json::to_vec(&header).expect("header serialises"));
            }
            p.format = push::FORMAT.to_owned();
            p.key_id = s.trusted[0].key_id().to_owned();
            p.signature = B64.encode(s.pair.sign(&signed_bytes(&p)).as_ref());
            serde_json::to_vec(&p).expect("envelope serialises")
        }
    };
    let verified = match push::verify(&body, &s.trusted) {
        Ok(v) => v,
        Err(e) => {
            assert!(sealed_snapshot.is_none(), "a push sealed and signed here was refused: {e}");
            return;
        }
    };
    let envelope: SealedPush = serde_json::from_slice(&body).expect("a verified envelope parses");
    let signature = B64.decode(&envelope.signature).expect("a verified signature is base64");
    let public = UnparsedPublicKey::new(&ED25519, s.pair.public_key().as_ref());
    assert!(public.verify(&signed_bytes(&envelope), &signature).is_ok(), "verify accepted a bad signature");
    let receiver = Receiver {
        target: &s.target,
        boot_id: s.boot.id(),
        running: Some(5),
        now: 1_900_000_000,
        max_age_secs: 86_400,
    };
    if push::check(&verified.header, &receiver).is_err() {
        assert!(sealed_snapshot.is_none(), "a fresh push for this boot and pod was refused");
        return;
    }
    match verified.open(&s.boot) {
        Ok(snapshot) => {
            if let Some(original) = &sealed_snapshot {
                assert_eq!(&snapshot, original, "the snapshot opens to what was sealed");
            }
            // A pushed snapshot is rendered by the sidecar; a bad one is refused, never a panic.
            let _ = crate::decide::render(snapshot.applications, None);
        }
        Err(e) => assert!(sealed_snapshot.is_none(), "a push sealed here did not open: {e}"),
    }
}
