//! The operator end to end, against the cluster `KUBECONFIG` names (ignored unless asked for:
//! `cargo test -p portcullis-tests --test operator_e2e -- --ignored`): CRDs applied, two operator replicas (leader election) with the least RBAC of
//! `operator/rbac.yaml`, three sidecar processes behind Pod objects, an AccessServiceToken and an
//! AccessApplication. Every step is checked with real requests through every sidecar.

mod common;

use std::time::Duration;

use common::cluster::{self, Operator};
use common::*;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, PostParams};
use kube::Api;
use portcullis_crds::v1alpha1::{AccessApplication, AccessServiceToken};
use serde_json::json;

const PODS: usize = 3;
const WAIT: Duration = Duration::from_secs(30);

fn application(namespace: &str, domains: &[&str], extra_spec: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({
        "selector": {"matchLabels": {"app": "api"}},
        "domains": domains,
        "policies": [{"name": "ci", "action": "ServiceAuth", "include": [{"serviceToken": {"name": "ci-token"}}]}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra_spec.as_object()) {
        spec.extend(extra.clone());
    }
    json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
        "metadata": {"name": "api", "namespace": namespace},
        "spec": spec,
    })
}

/// The status every sidecar answers for `host` with `headers`, once all of them answer `want`.
async fn every_sidecar_answers(sidecars: &[Sidecar], host: &str, headers: &[(&str, &str)], want: u16, what: &str) {
    for (i, sc) in sidecars.iter().enumerate() {
        let url = sc.url("/items");
        let mut all: Vec<(&str, &str)> = vec![("host", host)];
        all.extend_from_slice(headers);
        let all = &all;
        eventually(WAIT, &format!("sidecar {i}: {what} ({want})"), || {
            let url = url.clone();
            async move { (get(&url, all).await.ok()?.status == want).then_some(()) }
        })
        .await;
    }
}

async fn status_of(apps: &Api<AccessApplication>) -> serde_json::Value {
    serde_json::to_value(apps.get("api").await.expect("get application").status).unwrap()
}

fn condition<'a>(status: &'a serde_json::Value, type_: &str) -> &'a serde_json::Value {
    status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == type_)).unwrap_or(&json!(null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn the_operator_configures_sidecars_through_a_real_api_server() {
    let setup = cluster::setup("operator_e2e", "portcullis-e2e-shop").await;
    let cluster::Setup { client, op_ns, ns, user, .. } = &setup;
    let (client, op_ns, ns, user) = (client.clone(), op_ns.as_str(), ns.as_str(), user.as_str());

    // Two replicas: one leads, the other stands by.
    let mut first = Operator::start(op_ns, user, "operator-a").await;
    let push_key = setup.push_public_key().await;
    let mut second = Operator::start(op_ns, user, "operator-b").await;
    let leader = eventually(WAIT, "a leader", || cluster::lease_holder(&client, op_ns)).await;
    assert_eq!(leader, "operator-a", "the first replica took the Lease");

    // Three sidecars, each behind a Pod object whose ports point at it.
    let up = Upstream::start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut sidecars = cluster::running_sidecar_pods(&pods, ns, "api", PODS, &up.url(), &push_key).await;

    // The token's Secret appears; the application reaches every sidecar.
    let tokens: Api<AccessServiceToken> = Api::namespaced(client.clone(), ns);
    cluster::apply(
        &tokens,
        json!({
            "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessServiceToken",
            "metadata": {"name": "ci-token", "namespace": ns},
            "spec": {"duration": "8760h", "secretName": "ci-token-credentials"},
        }),
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let id = cluster::secret_value(&secrets, "ci-token-credentials", "client-id").await;
    let secret = cluster::secret_value(&secrets, "ci-token-credentials", "client-secret").await;
    assert!(secret.len() >= 43, "at least 256 bits of secret");
    let token = [("cf-access-client-id", id.as_str()), ("cf-access-client-secret", secret.as_str())];

    let apps: Api<AccessApplication> = Api::namespaced(client.clone(), ns);
    let created = cluster::apply(&apps, application(ns, &["api.mysite.com"], json!({}))).await;
    every_sidecar_answers(&sidecars, "api.mysite.com", &token, 200, "the token is accepted").await;
    every_sidecar_answers(&sidecars, "api.mysite.com", &[], 401, "no credentials").await;
    let bad_secret = [("cf-access-client-id", id.as_str()), ("cf-access-client-secret", "wrong")];
    every_sidecar_answers(&sidecars, "api.mysite.com", &bad_secret, 401, "a wrong secret").await;
    assert!(up.last().headers.get("cf-access-client-secret").is_none(), "the secret never reaches the app");

    let status = eventually(WAIT, "status Synced with 3 sidecars", || async {
        let status = status_of(&apps).await;
        (condition(&status, "Synced")["status"] == "True" && status["sidecars"]["synced"] == PODS).then_some(status)
    })
    .await;
    assert_eq!(status["sidecars"]["matched"], PODS, "{status}");
    assert_eq!(condition(&status, "Ready")["status"], "True", "{status}");
    assert_eq!(status["observedGeneration"], json!(created.metadata.generation), "{status}");
    assert_eq!(status["configVersion"].as_str().map(str::len), Some(64), "{status}");
    let finalizers = apps.get("api").await.unwrap().metadata.finalizers.unwrap_or_default();
    assert!(finalizers.iter().any(|f| f == "access.portcullis.dev/sidecar-cleanup"), "{finalizers:?}");

    // Browser sign-in without a session key of its own: the operator makes one, and every
    // sidecar accepts a session signed with it (so a session works on every replica).
    let portal = json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
        "metadata": {"name": "portal", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "api"}},
            "domains": ["portal.mysite.com"],
            "login": {"oidc": {"issuer": "https://idp.example.test", "clientId": "portal"}},
            "policies": [{"name": "staff", "action": "Allow", "include": [{"emailDomain": "mysite.com"}]}],
        },
    });
    cluster::apply(&apps, portal).await;
    let session_pem = cluster::secret_value(&secrets, "portal-portcullis-session", "session-key.pem").await;
    let issuer = format!("portcullis-session:{ns}/portal");
    let claims = json!({"iss": issuer, "aud": issuer, "email": "ada@mysite.com", "exp": now() + 600});
    let key = jsonwebtoken::EncodingKey::from_ed_pem(session_pem.as_bytes()).expect("an Ed25519 PEM");
    let session =
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA), &claims, &key).unwrap();
    let cookie = format!("CF_Authorization={session}");
    every_sidecar_answers(
        &sidecars,
        "portal.mysite.com",
        &[("cookie", cookie.as_str())],
        200,
        "the operator's session key",
    )
    .await;
    apps.delete("portal", &DeleteParams::default()).await.expect("delete portal");
    every_sidecar_answers(&sidecars, "portal.mysite.com", &[("cookie", cookie.as_str())], 404, "portal deleted").await;

    // An edit reaches every sidecar.
    cluster::apply(&apps, application(ns, &["api.mysite.com", "www.mysite.com"], json!({}))).await;
    every_sidecar_answers(&sidecars, "www.mysite.com", &token, 200, "the added domain").await;

    // A bad edit CEL can express is refused by the API server, naming the fields.
    let refused = apps
        .patch(
            "api",
            &kube::api::PatchParams::apply("portcullis-e2e").force(),
            &kube::api::Patch::Apply(application(
                ns,
                &["api.mysite.com"],
                json!({"cors": {"allowAllOrigins": true, "allowCredentials": true}}),
            )),
        )
        .await
        .expect_err("the API server refuses allowCredentials with allowAllOrigins");
    let message = refused.to_string();
    assert!(message.contains("allowCredentials") && message.contains("allowAllOrigins"), "{message}");

    // One it cannot (a malformed origin) is reported in status; the sidecars keep the old config.
    cluster::apply(&apps, application(ns, &["api.mysite.com"], json!({"cors": {"allowedOrigins": ["https://*.com"]}})))
        .await;
    let status = eventually(WAIT, "Ready=False for the bad origin", || async {
        let status = status_of(&apps).await;
        (condition(&status, "Ready")["status"] == "False").then_some(status)
    })
    .await;
    let ready = condition(&status, "Ready");
    assert!(ready["message"].as_str().unwrap().contains("spec.cors.allowedOrigins[0]"), "{ready}");
    every_sidecar_answers(&sidecars, "www.mysite.com", &token, 200, "the last good config is kept").await;
    let metrics = first.metrics().await;
    let rejected = format!("portcullis_operator_compile_errors{{application=\"api\",namespace=\"{ns}\"}} 1");
    assert!(metrics.contains(&rejected), "{metrics}");

    // The leader stops mid-way: the standby takes the Lease over and converges the next edit.
    first.stop();
    eventually(WAIT, "the standby leads", || async {
        (cluster::lease_holder(&client, op_ns).await.as_deref() == Some("operator-b")).then_some(())
    })
    .await;
    cluster::apply(&apps, application(ns, &["api.mysite.com", "shop.mysite.com"], json!({}))).await;
    every_sidecar_answers(&sidecars, "shop.mysite.com", &token, 200, "an edit after the hand-over").await;
    every_sidecar_answers(&sidecars, "www.mysite.com", &token, 404, "the removed domain").await;

    // A sidecar restarts (it lost its config, the pod's restart count goes up): it is pushed again.
    let restarted_at = sidecars[0].admin.port();
    let traffic = sidecars[0].addr.port();
    drop(sidecars.remove(0));
    let again = sidecar_without_manifests_on(&up.url(), &push_key, ns, "api-0", traffic, restarted_at).await;
    sidecars.insert(0, again);
    cluster::set_running(&pods, "api-0", 1).await;
    every_sidecar_answers(&sidecars[..1], "shop.mysite.com", &token, 200, "the restarted sidecar").await;

    // A pod that is Running before its sidecar answers (a slow start) gets its config once it
    // does: the failed pushes are retried, soon.
    let (traffic, admin) = (free_port(), free_port());
    let late = cluster::sidecar_pod("api-late", json!({"app": "api"}), traffic, admin);
    pods.create(&PostParams::default(), &serde_json::from_value(late).unwrap()).await.expect("create pod");
    cluster::set_running(&pods, "api-late", 0).await;
    // The leader tries the pod before its sidecar answers: wait for that failed push.
    eventually(WAIT, "a push to the not yet answering sidecar to fail", || async {
        let failed = |l: &str| {
            l.starts_with("portcullis_operator_pushes_total{")
                && !l.contains("result=\"ok\"")
                && !l.contains("result=\"unchanged\"")
        };
        second.metrics().await.lines().any(failed).then_some(())
    })
    .await;
    let late = sidecar_without_manifests_on(&up.url(), &push_key, ns, "api-late", traffic, admin).await;
    every_sidecar_answers(std::slice::from_ref(&late), "shop.mysite.com", &token, 200, "the late sidecar").await;
    sidecars.push(late);

    // A replica restarted: the old leader comes back as a standby; nothing changes hands.
    first = Operator::start(op_ns, user, "operator-a").await;
    eventually(WAIT, "the restarted replica to run as a standby", || async {
        first.metrics().await.contains("portcullis_operator_leader 0").then_some(())
    })
    .await;
    assert_eq!(cluster::lease_holder(&client, op_ns).await.as_deref(), Some("operator-b"));

    // Deleting the application stops its enforcement: its domains are unknown (404) everywhere,
    // and the finalizer lets the object go.
    apps.delete("api", &DeleteParams::default()).await.expect("delete application");
    every_sidecar_answers(&sidecars, "shop.mysite.com", &token, 404, "after the deletion").await;
    eventually(WAIT, "the application is gone", || async { apps.get_opt("api").await.ok()?.is_none().then_some(()) })
        .await;

    let metrics = second.metrics().await;
    assert!(metrics.contains("portcullis_operator_leader 1"), "{metrics}");
    assert!(metrics.contains("portcullis_operator_pushes_total{result=\"ok\"}"), "{metrics}");
    assert!(!second.logs().contains(&secret), "the client secret is never logged");
    assert!(!first.logs().contains(&secret), "the client secret is never logged");
    second.stop();
    first.stop();
    setup.teardown().await;
}
