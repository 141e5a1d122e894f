//! Fetching against a mocked API server (tower-test, as kube-rs's controller-rs does): the
//! requests the plugin makes and what it does with each answer.

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::json;

use super::*;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn mock() -> (Client, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

fn application() -> serde_json::Value {
    json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {
            "domains": ["api.mysite.com"],
            "policies": [{"name": "ci", "action": "ServiceAuth", "include": [{"serviceToken": {"name": "ci-token"}}]}],
        },
    })
}

fn tokens() -> serde_json::Value {
    json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessServiceTokenList", "metadata": {},
        "items": [{
            "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessServiceToken",
            "metadata": {"name": "ci-token", "namespace": "shop"},
            "spec": {"duration": "8760h", "secretName": "ci-token-credentials"},
        }],
    })
}

fn secret() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "ci-token-credentials", "namespace": "shop"},
        "stringData": {"client-id": "ci.access", "client-secret": "s3cret-s3cret-s3cret-s3cret-s3cret"},
        "data": {
            "client-id": "Y2kuYWNjZXNz",
            "client-secret": "czNjcmV0LXMzY3JldC1zM2NyZXQtczNjcmV0LXMzY3JldA==",
        },
    })
}

fn status(code: u16, reason: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

/// Answers the expected requests in order: (path, status, body).
async fn serve(mut handle: Handle, script: Vec<(&'static str, u16, serde_json::Value)>) {
    for (path, code, body) in script {
        let (req, send) = handle.next_request().await.expect("the plugin made the request");
        assert_eq!(req.method(), http::Method::GET);
        assert_eq!(req.uri().path(), path);
        let resp = Response::builder()
            .status(StatusCode::from_u16(code).expect("status"))
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response");
        send.send_response(resp);
    }
}

const APP: &str = "/apis/access.portcullis.dev/v1alpha1/namespaces/shop/accessapplications/api";
const TOKENS: &str = "/apis/access.portcullis.dev/v1alpha1/namespaces/shop/accessservicetokens";
const SECRET: &str = "/api/v1/namespaces/shop/secrets/ci-token-credentials";

#[tokio::test]
async fn fetches_the_application_its_tokens_and_their_secrets_and_compiles_them() {
    let (client, handle) = mock();
    let server =
        tokio::spawn(serve(handle, vec![(APP, 200, application()), (TOKENS, 200, tokens()), (SECRET, 200, secret())]));
    let mut fetched = fetch(client, "shop", "api").await.expect("fetch");
    server.await.expect("script ran");
    assert_eq!(fetched.service_tokens.len(), 1);
    assert_eq!(fetched.secrets.len(), 1);
    assert!(!fetched.secrets_unavailable);
    let snapshot = fetched.compile("shop").expect("compiles");
    assert_eq!(snapshot.applications[0].service_tokens.len(), 1, "the token is usable: {:?}", fetched.warnings);
}

#[tokio::test]
async fn forbidden_secrets_are_a_warning_and_make_token_checks_unknown() {
    let (client, handle) = mock();
    let server = tokio::spawn(serve(
        handle,
        vec![(APP, 200, application()), (TOKENS, 200, tokens()), (SECRET, 403, status(403, "Forbidden"))],
    ));
    let mut fetched = fetch(client, "shop", "api").await.expect("a missing permission is not an error");
    server.await.expect("script ran");
    assert!(fetched.secrets_unavailable);
    assert!(
        fetched.warnings.iter().any(|w| w.contains("no permission to read Secret shop/ci-token-credentials")),
        "{:?}",
        fetched.warnings
    );
    assert!(fetched.compile("shop").is_ok());
}

#[tokio::test]
async fn a_missing_application_is_a_clear_error() {
    let (client, handle) = mock();
    let server = tokio::spawn(serve(handle, vec![(APP, 404, status(404, "NotFound"))]));
    let err = fetch(client, "shop", "api").await.expect_err("not found");
    server.await.expect("script ran");
    assert!(err.to_string().contains("AccessApplication shop/api not found"), "{err}");
}

/// Against a real cluster (`cargo test -- --ignored`, which tests/run.sh runs when it has one):
/// the plugin reaches the API server and reports a missing application by name.
#[tokio::test]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn cluster_smoke_test() {
    assert!(std::env::var_os("KUBECONFIG").is_some(), "the cluster tests need KUBECONFIG");
    let client = Client::try_default().await.expect("kubeconfig loads");
    let err = fetch(client, "default", "portcullis-smoke-test-nonexistent")
        .await
        .expect_err("no such AccessApplication exists");
    assert!(err.to_string().contains("portcullis-smoke-test-nonexistent"), "names the application: {err}");
}
