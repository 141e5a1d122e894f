//! Config pushes end to end against the real sidecar binary: a sidecar started without
//! manifests is unready and refuses traffic until a push sealed to its boot and signed by the
//! operator's key arrives on its admin port; bad, stale, misaddressed, tampered, old-format
//! pushes and pushes made for another boot — another sidecar's, or its own before a restart —
//! are refused with a status and a reason, counted, and the running config stays.

mod common;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use portcullis_crds::push::{SealedPush, SigningKey};
use portcullis_crds::Snapshot;

async fn put(sc: &Sidecar, body: &str) -> Answer {
    send_body("PUT", &format!("http://{}/config", sc.admin), body).await.unwrap()
}

fn seed_snapshot() -> Snapshot {
    compile_manifests(&seed_manifests(&inline_jwks(), SEED_CORS, ""))
}

/// `(status, reason)` of a refusal.
fn refusal(r: &Answer) -> (u16, String) {
    (r.status, r.json()["error"].as_str().unwrap_or_else(|| panic!("no reason: {}", r.text())).to_owned())
}

/// One flipped bit in the middle of the sealed config, the envelope otherwise intact.
fn tamper_sealed(body: &str) -> String {
    let mut p: SealedPush = serde_json::from_str(body).unwrap();
    let mut sealed = B64.decode(&p.sealed).unwrap();
    let mid = sealed.len() / 2;
    sealed[mid] ^= 0x01;
    p.sealed = B64.encode(sealed);
    serde_json::to_string(&p).unwrap()
}

// Behaviour: B-PUSH-1, B-PUSH-2, B-PUSH-4 (docs/behaviour.md).
#[tokio::test]
async fn a_sealed_push_configures_the_sidecar_and_bad_ones_are_refused() {
    let up = Upstream::start().await;
    let (key, _) = SigningKey::generate().unwrap();
    let (rogue, _) = SigningKey::generate().unwrap();
    let sc = sidecar_without_manifests(&up.url(), &key.verifying_key().to_base64(), "shop", "api-0").await;
    // Another sidecar (of the same pod name, even): its boot is not this one's.
    let other = sidecar_without_manifests(&up.url(), &key.verifying_key().to_base64(), "shop", "api-0").await;

    let r = get(&format!("http://{}/readyz", sc.admin), &[]).await.unwrap();
    assert_eq!(r.status, 503, "unready before the first push");
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 503);

    let boot = boot_info(&sc).await;
    assert_eq!((boot.target.namespace.as_str(), boot.target.pod.as_str()), ("shop", "api-0"));
    assert_eq!(B64.decode(&boot.boot_id).unwrap().len(), 32, "a 256-bit boot id");
    let other_boot = boot_info(&other).await;
    assert_ne!(boot.boot_id, other_boot.boot_id);
    assert_ne!(boot.public_key, other_boot.public_key);

    let snapshot = seed_snapshot();
    let r = put(&sc, &sealed_push(&key, &boot, 100, "api-0", snapshot.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], snapshot.version.as_str());
    let r = get(&format!("http://{}/readyz", sc.admin), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 401, "the pushed config is enforced");

    // The envelope of operators before sealing: a signed payload with the config in clear.
    let old_format = serde_json::json!({
        "payload": B64.encode(serde_json::to_vec(&serde_json::json!({
            "sequence": 101, "target": {"namespace": "shop", "pod": "api-0"},
            "issued_at": now(), "snapshot": Snapshot::empty(),
        })).unwrap()),
        "signature": B64.encode([0u8; 64]),
        "key_id": key.verifying_key().key_id(),
    })
    .to_string();
    let cases = [
        (sealed_push(&rogue, &boot, 101, "api-0", Snapshot::empty()), 401, "unknown_key"),
        (sealed_push(&key, &boot, 99, "api-0", Snapshot::empty()), 409, "stale"),
        (sealed_push(&key, &boot, 101, "api-1", Snapshot::empty()), 409, "wrong_target"),
        (sealed_push(&key, &other_boot, 101, "api-0", Snapshot::empty()), 409, "stale_boot"),
        (tamper_sealed(&sealed_push(&key, &boot, 101, "api-0", Snapshot::empty())), 401, "bad_signature"),
        (old_format, 400, "unsupported_format"),
        ("{".to_owned(), 400, "malformed"),
    ];
    for (body, status, reason) in &cases {
        let r = put(&sc, body).await;
        assert_eq!(refusal(&r), (*status, (*reason).to_owned()), "{}", r.text());
    }
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 401, "refused pushes leave the running config in force");
    let m = sc.metrics().await;
    for (_, _, reason) in &cases {
        assert!(m.contains(&format!("portcullis_config_pushes_total{{result=\"{reason}\"}} 1")), "{reason} in\n{m}");
    }

    // The other sidecar takes the push made for its own boot.
    let r = put(&other, &sealed_push(&key, &other_boot, 101, "api-0", Snapshot::empty())).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // A newer push replaces it: an empty snapshot serves no host.
    let r = put(&sc, &sealed_push(&key, &boot, 101, "api-0", Snapshot::empty())).await;
    assert_eq!(r.status, 200);
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 404);
}

// Behaviour: B-PUSH-2 (docs/behaviour.md).
#[tokio::test]
async fn a_push_captured_before_a_restart_is_refused_after_it() {
    let up = Upstream::start().await;
    let (key, _) = SigningKey::generate().unwrap();
    let key_b64 = key.verifying_key().to_base64();
    let sc = sidecar_without_manifests(&up.url(), &key_b64, "shop", "api-0").await;
    let (port, admin) = (sc.addr.port(), sc.admin.port());
    let before = boot_info(&sc).await;
    let captured = sealed_push(&key, &before, 100, "api-0", seed_snapshot());
    let r = put(&sc, &captured).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The container restarts: same pod, same ports, its sequence memory gone.
    drop(sc);
    let sc = sidecar_without_manifests_on(&up.url(), &key_b64, "shop", "api-0", port, admin).await;
    let after = boot_info(&sc).await;
    assert_ne!(after.boot_id, before.boot_id, "a restart is a new boot");
    assert_ne!(after.public_key, before.public_key, "with a new key");

    let r = put(&sc, &captured).await;
    assert_eq!(refusal(&r), (409, "stale_boot".to_owned()), "{}", r.text());
    let r = get(&format!("http://{}/readyz", sc.admin), &[]).await.unwrap();
    assert_eq!(r.status, 503, "the replayed config was not installed");
    assert!(sc.metrics().await.contains("portcullis_config_pushes_total{result=\"stale_boot\"} 1"));

    // A push made for the new boot is taken, at any sequence (the old memory is gone).
    let r = put(&sc, &sealed_push(&key, &after, 1, "api-0", seed_snapshot())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 401);
}

// Behaviour: B-PUSH-4 (docs/behaviour.md).
#[tokio::test]
async fn a_sidecar_without_a_push_key_refuses_boot_reads_and_pushes_alike() {
    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url()).start().await;
    let r = get(&format!("http://{}/config/boot", sc.admin), &[]).await.unwrap();
    assert_eq!(refusal(&r), (404, "push_disabled".to_owned()));
    let r = put(&sc, "{}").await;
    assert_eq!(refusal(&r), (404, "push_disabled".to_owned()));
    assert!(sc.metrics().await.contains("portcullis_config_pushes_total{result=\"push_disabled\"} 1"));
}
