//! Config pushes end to end: a sidecar started without manifests is unready and refuses
//! traffic until a push signed by the operator's key arrives on its admin port; bad, stale and
//! misaddressed pushes are refused with a status and a reason, and the running config stays.

mod common;

use common::*;
use portcullis_crds::push::{ConfigPush, PushTarget, SigningKey};
use portcullis_crds::Snapshot;

fn signed(key: &SigningKey, sequence: u64, pod: &str, snapshot: Snapshot) -> String {
    let push = ConfigPush {
        sequence,
        target: PushTarget { namespace: "shop".into(), pod: pod.into() },
        issued_at: now(),
        snapshot,
    };
    serde_json::to_string(&key.sign(&push)).unwrap()
}

async fn put(sc: &Sidecar, body: &str) -> Answer {
    send_body("PUT", &format!("http://{}/config", sc.admin), body).await.unwrap()
}

#[tokio::test]
async fn a_signed_push_configures_the_sidecar_and_bad_ones_are_refused() {
    let up = Upstream::start().await;
    let (key, _) = SigningKey::generate().unwrap();
    let (rogue, _) = SigningKey::generate().unwrap();
    let sc = sidecar_without_manifests(&up.url(), &key.verifying_key().to_base64(), "shop", "api-0").await;

    let r = get(&format!("http://{}/readyz", sc.admin), &[]).await.unwrap();
    assert_eq!(r.status, 503, "unready before the first push");
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 503);

    let snapshot = compile_manifests(&seed_manifests(&inline_jwks(), SEED_CORS, ""));
    let r = put(&sc, &signed(&key, 100, "api-0", snapshot.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["version"], snapshot.version.as_str());
    let r = get(&format!("http://{}/readyz", sc.admin), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 401, "the pushed config is enforced");

    let cases = [
        (signed(&rogue, 101, "api-0", Snapshot::empty()), 401, "unknown_key"),
        (signed(&key, 99, "api-0", Snapshot::empty()), 409, "stale"),
        (signed(&key, 101, "api-1", Snapshot::empty()), 409, "wrong_target"),
        ("{".to_owned(), 400, "malformed"),
    ];
    for (body, status, reason) in cases {
        let r = put(&sc, &body).await;
        assert_eq!((r.status, r.json()["error"].as_str().unwrap().to_owned()), (status, reason.to_owned()));
    }
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 401, "refused pushes leave the running config in force");
    let m = sc.metrics().await;
    assert!(m.contains("portcullis_config_pushes_total{result=\"stale\"} 1"), "{m}");

    // A newer push replaces it: an empty snapshot serves no host.
    let r = put(&sc, &signed(&key, 101, "api-0", Snapshot::empty())).await;
    assert_eq!(r.status, 200);
    let r = get(&sc.url("/"), &[("host", "api.mysite.com")]).await.unwrap();
    assert_eq!(r.status, 404);
}
