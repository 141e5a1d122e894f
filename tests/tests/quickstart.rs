//! The README's quickstart, checked: the bundled example compiles, and the three curl
//! commands the README shows behave as it says (preflight answered, request refused with a
//! readable 401, service token let through).

mod common;

use common::*;

fn quickstart_manifests() -> String {
    std::fs::read_to_string(repo_root().join("examples/quickstart/access.yaml")).expect("quickstart manifests")
}

#[tokio::test]
async fn the_readme_curl_commands_do_what_the_readme_says() {
    let up = Upstream::start().await;
    let sc = sidecar(&quickstart_manifests(), &up.url()).start().await;
    let host = ("host", "api.mysite.com");
    let origin = ("origin", "https://example.com");

    let r = send(
        "OPTIONS",
        &sc.url("/data"),
        &[host, origin, ("access-control-request-method", "GET"), ("access-control-request-headers", "office")],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"));

    let r = get(&sc.url("/data"), &[host, origin]).await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"));

    let r = get(
        &sc.url("/data"),
        &[
            host,
            ("cf-access-client-id", "quickstart.access"),
            ("cf-access-client-secret", "quickstart-demo-secret-do-not-use-in-production"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 1);
    assert_eq!(up.last().headers["cf-access-client-id"], "quickstart.access");

    let token = mint(
        "rsa.pem",
        jsonwebtoken::Algorithm::RS256,
        Some("rsa-1"),
        serde_json::json!({"iss": "https://issuer.example.test", "aud": "quickstart", "email": "alice@mysite.com", "exp": now() + 600}),
    );
    let cookie = format!("CF_Authorization={token}");
    let r = get(&sc.url("/data"), &[host, ("cookie", &cookie)]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn the_bench_config_compiles() {
    let jwks = jwks_json();
    let text = std::fs::read_to_string(repo_root().join("bench/access.yaml"))
        .unwrap()
        .replace("JWKS_PLACEHOLDER\n", &yaml_block(&jwks, 10));
    let mut res = portcullis_crds::manifests::Resources::default();
    res.add_yaml("bench/access.yaml", &text).unwrap();
    let compiled = res.compile("default").unwrap();
    assert_eq!(compiled.snapshot.applications.len(), 2);
}
