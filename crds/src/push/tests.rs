//! Sealing, signing and checking pushes: round trips, and every way a push must be refused.

use proptest::prelude::*;

use super::*;

fn me() -> PushTarget {
    PushTarget { namespace: "shop".into(), pod: "api-0".into() }
}

fn push(seq: u64, pod: &str, issued_at: i64) -> ConfigPush {
    ConfigPush {
        sequence: seq,
        target: PushTarget { namespace: "shop".into(), pod: pod.into() },
        issued_at,
        snapshot: Snapshot::empty(),
    }
}

fn header(seq: u64, pod: &str, issued_at: i64, boot_id: &str) -> PushHeader {
    let p = push(seq, pod, issued_at);
    PushHeader { sequence: p.sequence, target: p.target, issued_at: p.issued_at, boot_id: boot_id.into() }
}

fn body(p: &SealedPush) -> Vec<u8> {
    serde_json::to_vec(p).unwrap()
}

/// Verify, check against `boot` and open, as the sidecar does.
fn receive(bytes: &[u8], trusted: &[VerifyingKey], boot: &BootKey) -> Result<Snapshot, PushError> {
    let v = verify(bytes, trusted)?;
    let r = Receiver { target: &me(), boot_id: boot.id(), running: None, now: 100, max_age_secs: 600 };
    check(&v.header, &r)?;
    v.open(boot)
}

#[test]
fn seal_sign_and_open_round_trip_through_pem() {
    let (_, der) = SigningKey::generate().unwrap();
    let key = SigningKey::from_pem(&private_key_pem(&der)).unwrap();
    let boot = BootKey::generate().unwrap();
    let snapshot = Snapshot::new(vec![]);
    let sealed =
        key.seal(&ConfigPush { snapshot: snapshot.clone(), ..push(7, "api-0", 100) }, &boot.info(&me())).unwrap();
    let trusted = VerifyingKey::parse(&key.verifying_key().to_base64()).unwrap();
    let v = verify(&body(&sealed), &[trusted]).unwrap();
    assert_eq!(v.header, header(7, "api-0", 100, boot.id()));
    assert_eq!(v.open(&boot).unwrap(), snapshot);
    assert!(!format!("{key:?}").contains(&B64.encode(&der)));
}

#[test]
fn refuses_forged_tampered_unknown_and_old_pushes() {
    let (key, _) = SigningKey::generate().unwrap();
    let (other, _) = SigningKey::generate().unwrap();
    let boot = BootKey::generate().unwrap();
    let info = boot.info(&me());
    let trusted = vec![key.verifying_key()];
    let sealed = key.seal(&push(1, "api-0", 0), &info).unwrap();
    assert!(receive(&body(&sealed), &trusted, &boot).is_ok());
    let reason = |p: &SealedPush| receive(&body(p), &trusted, &boot).unwrap_err().reason();

    let forged =
        SealedPush { key_id: key.verifying_key().key_id().into(), ..other.seal(&push(1, "api-0", 0), &info).unwrap() };
    assert_eq!(reason(&forged), Refused::BadSignature);
    assert_eq!(reason(&other.seal(&push(1, "api-0", 0), &info).unwrap()), Refused::UnknownKey);

    // Each signed field changed on the way: the signature no longer verifies.
    let another = key.seal(&push(2, "api-0", 0), &info).unwrap();
    for swap in [
        SealedPush { header: another.header.clone(), ..sealed.clone() },
        SealedPush { enc: another.enc.clone(), ..sealed.clone() },
        SealedPush { sealed: another.sealed.clone(), ..sealed.clone() },
        SealedPush { signature: "!!".into(), ..sealed.clone() },
    ] {
        assert_eq!(reason(&swap), Refused::BadSignature, "{swap:?}");
    }

    // The envelope of operators before sealing, and unknown formats.
    let old = serde_json::json!({"payload": B64.encode(b"{}"), "signature": "AAAA", "key_id": "0011"});
    let e = receive(old.to_string().as_bytes(), &trusted, &boot).unwrap_err();
    assert_eq!(e.reason(), Refused::UnsupportedFormat);
    assert!(e.to_string().contains("unsealed"), "{e}");
    let future = serde_json::json!({"format": "portcullis-push-v9"});
    assert_eq!(
        receive(future.to_string().as_bytes(), &trusted, &boot).unwrap_err().reason(),
        Refused::UnsupportedFormat
    );
    for junk in [&b"{not json"[..], b"[]", b"{\"format\": 3}", b"{\"format\": \"portcullis-push-v2\"}"] {
        assert_eq!(receive(junk, &trusted, &boot).unwrap_err().reason(), Refused::Malformed);
    }
}

// Behaviour: B-PUSH-2 (docs/behaviour.md).
#[test]
fn a_push_for_another_boot_is_stale_and_one_sealed_to_another_key_does_not_open() {
    let (key, _) = SigningKey::generate().unwrap();
    let trusted = vec![key.verifying_key()];
    let (before, after) = (BootKey::generate().unwrap(), BootKey::generate().unwrap());
    // Captured before a restart, replayed after it.
    let captured = key.seal(&push(1, "api-0", 0), &before.info(&me())).unwrap();
    let e = receive(&body(&captured), &trusted, &after).unwrap_err();
    assert_eq!((e.reason(), e.reason().status()), (Refused::StaleBoot, 409));
    // The right boot id with another boot's public key: signed, addressed, yet unopenable.
    let mixed = BootInfo { boot_id: after.id().into(), ..before.info(&me()) };
    let sealed = key.seal(&push(1, "api-0", 0), &mixed).unwrap();
    assert_eq!(receive(&body(&sealed), &trusted, &after).unwrap_err().reason(), Refused::Unsealable);
}

#[test]
fn checks_boot_target_order_and_age() {
    let target = me();
    let r = |running| Receiver { target: &target, boot_id: "b1", running, now: 1_000, max_age_secs: 600 };
    assert_eq!(check(&header(5, "api-0", 900, "b1"), &r(None)), Ok(()));
    assert_eq!(check(&header(5, "api-0", 900, "b1"), &r(Some(5))), Ok(()), "same sequence: idempotent");
    let reason = |h: PushHeader, running| check(&h, &r(running)).unwrap_err().reason();
    assert_eq!(reason(header(4, "api-0", 900, "b1"), Some(5)), Refused::Stale);
    assert_eq!(reason(header(6, "api-1", 900, "b1"), Some(5)), Refused::WrongTarget);
    assert_eq!(reason(header(6, "api-0", 100, "b1"), Some(5)), Refused::Expired);
    assert_eq!(reason(header(6, "api-0", 900, "b0"), None), Refused::StaleBoot, "the boot is checked first");
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

/// A compiled snapshot with `secret` as an OIDC client secret (it stands for every secret
/// field: they are the same `SecretString` on the wire).
fn snapshot_holding(secret: &str) -> Snapshot {
    let yaml = format!(
        r#"apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: api, namespace: shop }}
spec:
  domains: [api.mysite.com]
  login:
    oidc:
      issuer: https://idp.example.com
      clientId: portcullis
      clientSecretRef: {{ name: oidc-client, key: client-secret }}
  policies:
    - name: staff
      action: Allow
      include: [ {{ emailDomain: mysite.com }} ]
---
apiVersion: v1
kind: Secret
metadata: {{ name: oidc-client, namespace: shop }}
stringData: {{ client-secret: "{secret}" }}
"#
    );
    let mut resources = crate::manifests::Resources::default();
    resources.add_yaml("test", &yaml).unwrap();
    let snapshot = resources.compile("shop").unwrap().snapshot;
    assert!(serde_json::to_string(&snapshot).unwrap().contains(secret), "the secret is in the snapshot");
    snapshot
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any single flipped bit anywhere in the envelope is refused; nothing else is accepted.
    #[test]
    fn any_flipped_bit_is_refused(at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let (key, _) = SigningKey::generate().unwrap();
        let boot = BootKey::generate().unwrap();
        let sealed = body(&key.seal(&push(1, "api-0", 0), &boot.info(&me())).unwrap());
        let mut flipped = sealed.clone();
        let i = at.index(flipped.len());
        flipped[i] ^= 1 << bit;
        prop_assert!(receive(&flipped, &[key.verifying_key()], &boot).is_err());
    }

    /// The clear header names sequence, pod, time and boot; every other byte is sealed, so a
    /// value placed in the snapshot never shows on the wire, in clear or in base64.
    #[test]
    fn snapshot_bytes_are_not_on_the_wire(secret in "[A-Za-z0-9]{16,48}") {
        let (key, _) = SigningKey::generate().unwrap();
        let boot = BootKey::generate().unwrap();
        let p = ConfigPush { snapshot: snapshot_holding(&secret), ..push(1, "api-0", 0) };
        let wire = String::from_utf8(body(&key.seal(&p, &boot.info(&me())).unwrap())).unwrap();
        prop_assert!(!wire.contains(&secret));
        prop_assert!(!wire.contains(&B64.encode(&secret)));
        prop_assert!(!wire.contains(&B64.encode(serde_json::to_vec(&p.snapshot).unwrap())));
    }
}
