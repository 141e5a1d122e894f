//! `portcullis-sidecar explain` and the admin `POST /explain`: golden files (text and JSON) for
//! each of the seed's cases and each deny reason, exit statuses, and the admin endpoint (off by
//! default, on with `--enable-explain-endpoint`, body capped at 64 KiB).
//!
//! Goldens live in tests/golden/explain/ and are compared exactly; `UPDATE_GOLDEN=1 cargo test
//! -p portcullis-tests --test explain` rewrites them (review the diff before committing). They are
//! also checked against the proxy: each case's request goes to a running sidecar, which must
//! answer what its golden JSON says, so a rewrite cannot bless a wrong explanation.

mod common;

use std::path::PathBuf;
use std::process::Command;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::Algorithm;

/// `--now` of every golden: tokens are minted relative to it, so output never depends on the clock.
const NOW: &str = "2026-11-24T12:00:00Z";
const NOW_SECS: i64 = 1_795_521_600;

/// A token issued at `now` by key `key` (kid `kid`), valid for `exp_in` seconds.
fn token_at(now: i64, key: &str, kid: &str, email: &str, aud: &str, iss: &str, exp_in: i64) -> String {
    let claims = serde_json::json!({
        "iss": iss, "aud": aud, "email": email, "sub": email,
        "iat": now, "exp": now + exp_in, "groups": ["staff"],
    });
    mint(key, Algorithm::RS256, Some(kid), claims)
}

fn user(email: &str) -> String {
    token_at(NOW_SECS, "rsa.pem", "rsa-1", email, AUDIENCE, ISSUER, 600)
}

fn seed() -> String {
    seed_manifests(&inline_jwks(), SEED_CORS, "")
}

/// Browser sign-in through an authentication host (its provider is never called here).
const AUTH_HOST_LOGIN: &str = "  login:\n    oidc: { issuer: \"http://127.0.0.1:9/oidc\", clientId: portcullis }\n    authenticationHost: auth.mysite.com\n";

/// The forward route's upstream in the goldens.
const FORWARD_UPSTREAM: &str = "https://api.internal.test";

fn with_forward_route(upstream: &str, token: &str) -> String {
    seed_manifests(&inline_jwks(), SEED_CORS, &site_with_forward_route(upstream, token))
}

struct Case {
    name: &'static str,
    manifests: String,
    args: Vec<String>,
    /// `decision.outcome`, `decision.status` (0: forwarded), exit status.
    want: (&'static str, u16, i32),
}

fn case(name: &'static str, manifests: String, args: &[&str], want: (&'static str, u16, i32)) -> Case {
    Case { name, manifests, args: args.iter().map(|s| s.to_string()).collect(), want }
}

/// The goldens' cases, their tokens issued at `now` and their forward route going to
/// `forward_upstream` (the goldens: [`NOW_SECS`] and [`FORWARD_UPSTREAM`]).
fn cases_at(now: i64, forward_upstream: &str) -> Vec<Case> {
    let user = |email: &str| token_at(now, "rsa.pem", "rsa-1", email, AUDIENCE, ISSUER, 600);
    let token_at = |key: &str, kid: &str, email: &str, aud: &str, iss: &str, exp_in: i64| {
        token_at(now, key, kid, email, aud, iss, exp_in)
    };
    let with_forward_route = |token: &str| with_forward_route(forward_upstream, token);
    let url = "--url=https://api.mysite.com/data";
    let origin = "--header=Origin: https://example.com";
    let acrm = "--header=Access-Control-Request-Method: GET";
    let opt = "--method=OPTIONS";
    let id = format!("--header=CF-Access-Client-Id: {TOKEN_ID}");
    let secret = format!("--header=CF-Access-Client-Secret: {TOKEN_SECRET}");
    let cookie = |t: String| format!("--cookie=CF_Authorization={t}");
    let bearer = |t: String| format!("--header=Authorization: Bearer {t}");
    let bypass_cors = "  cors:\n    bypassOptionsToOrigin: true\n";
    vec![
        // The seed's cases.
        case("simple_request_without_token", seed(), &[url, origin], ("deny", 401, 1)),
        case(
            "preflight_without_cors",
            seed_manifests(&inline_jwks(), "", ""),
            &[opt, url, origin, acrm],
            ("preflight_refused", 403, 1),
        ),
        case(
            "preflight_bypass_to_origin",
            seed_manifests(&inline_jwks(), bypass_cors, ""),
            &[opt, url, origin, acrm],
            ("preflight_forwarded", 0, 0),
        ),
        case(
            "preflight_answered",
            seed(),
            &[opt, url, origin, acrm, "--header=Access-Control-Request-Headers: office"],
            ("preflight_answered", 200, 0),
        ),
        case("service_token", seed(), &[url, &id, &secret], ("allow", 0, 0)),
        case(
            "forward_route",
            with_forward_route("ci-token"),
            &["--url=https://example.com/api/items", &cookie(user("alice@mysite.com"))],
            ("allow", 0, 0),
        ),
        case("jwt_allowed", seed(), &[url, origin, &bearer(user("alice@mysite.com"))], ("allow", 0, 0)),
        case(
            "audit_would_deny",
            seed_manifests(&inline_jwks(), &format!("{SEED_CORS}  mode: Audit\n"), ""),
            &[url],
            ("audit_deny", 0, 0),
        ),
        // Every deny reason.
        case("unknown_host", seed(), &["--url=https://www.mysite.com/"], ("deny", 404, 1)),
        case("invalid_host", seed(), &[url, "--header=Host: user@api.mysite.com"], ("deny", 400, 1)),
        case("reserved_path", seed(), &["--url=https://api.mysite.com/.portcullis/nope", origin], ("deny", 404, 1)),
        case(
            "preflight_origin_not_allowed",
            seed(),
            &[opt, url, "--header=Origin: https://evil.test", acrm],
            ("preflight_refused", 403, 1),
        ),
        case(
            "preflight_method_not_allowed",
            seed(),
            &[opt, url, origin, "--header=Access-Control-Request-Method: DELETE"],
            ("preflight_refused", 403, 1),
        ),
        case(
            "preflight_header_not_allowed",
            seed(),
            &[opt, url, origin, acrm, "--header=Access-Control-Request-Headers: office, x-evil"],
            ("preflight_refused", 403, 1),
        ),
        case(
            "jwt_expired",
            seed(),
            &[url, &cookie(token_at("rsa.pem", "rsa-1", "alice@mysite.com", AUDIENCE, ISSUER, -120))],
            ("deny", 401, 1),
        ),
        case(
            "jwt_bad_signature",
            seed(),
            &[url, &cookie(token_at("rsa2.pem", "rsa-1", "alice@mysite.com", AUDIENCE, ISSUER, 600))],
            ("deny", 401, 1),
        ),
        case(
            "jwt_wrong_audience",
            seed(),
            &[url, &cookie(token_at("rsa.pem", "rsa-1", "alice@mysite.com", "other-aud", ISSUER, 600))],
            ("deny", 401, 1),
        ),
        case(
            "jwt_unknown_issuer",
            seed(),
            &[url, &cookie(token_at("rsa.pem", "rsa-1", "alice@mysite.com", AUDIENCE, "https://other.test", 600))],
            ("deny", 401, 1),
        ),
        case(
            "jwt_unknown_key",
            seed(),
            &[url, &cookie(token_at("rsa.pem", "nope", "alice@mysite.com", AUDIENCE, ISSUER, 600))],
            ("deny", 401, 1),
        ),
        case("jwt_malformed", seed(), &[url, "--cookie=CF_Authorization=not-a-jwt"], ("deny", 401, 1)),
        case(
            "service_token_wrong_secret",
            seed(),
            &[url, &id, "--header=CF-Access-Client-Secret: wrong"],
            ("deny", 401, 1),
        ),
        case(
            "service_token_unknown",
            seed(),
            &[url, "--header=CF-Access-Client-Id: nobody.access", &secret],
            ("deny", 401, 1),
        ),
        case("service_token_incomplete", seed(), &[url, &id], ("deny", 401, 1)),
        case("blocked_by_policy", seed(), &[url, &cookie(user("contractor@mysite.com"))], ("deny", 403, 1)),
        case("no_policy_matched", seed(), &[url, origin, &cookie(user("bob@elsewhere.test"))], ("deny", 403, 1)),
        // The authentication host: the proxy's own answer, read from the hand-off's steps.
        case(
            "authentication_host_identity",
            seed_manifests(&inline_jwks(), &format!("{SEED_CORS}{AUTH_HOST_LOGIN}"), ""),
            &["--url=https://auth.mysite.com/.portcullis/identity"],
            ("sign_in", 401, 0),
        ),
        case(
            "forward_route_token_missing",
            with_forward_route("no-such-token"),
            &["--url=https://example.com/api/items", &cookie(user("alice@mysite.com"))],
            ("deny", 503, 1),
        ),
    ]
}

fn golden_path(name: &str, ext: &str) -> PathBuf {
    repo_root().join("tests/golden/explain").join(format!("{name}.{ext}"))
}

/// Compares with the golden file, or rewrites it under `UPDATE_GOLDEN=1`.
fn check_golden(name: &str, ext: &str, got: &str) {
    let path = golden_path(name, ext);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("golden dir")).expect("create golden dir");
        std::fs::write(&path, got).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1 to create it", path.display()));
    assert!(want == got, "{} differs (UPDATE_GOLDEN=1 rewrites it):\n--- want\n{want}\n--- got\n{got}", path.display());
}

/// Runs `portcullis-sidecar explain --now NOW` and returns (stdout, stderr, exit status).
fn explain(manifests: &str, args: &[String]) -> (String, String, i32) {
    let mut args = args.to_vec();
    args.push(format!("--now={NOW}"));
    explain_at_clock(manifests, &args)
}

/// Runs `portcullis-sidecar explain` (tokens checked against the clock unless `--now` is given).
fn explain_at_clock(manifests: &str, args: &[String]) -> (String, String, i32) {
    let dir = tempdir::TempDir::new("explain");
    let path = dir.path().join("access.yaml");
    std::fs::write(&path, manifests).expect("write manifests");
    let out = Command::new(sidecar_bin())
        .arg("explain")
        .arg("--manifests")
        .arg(&path)
        .args(args)
        .output()
        .expect("run explain");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

fn cases() -> Vec<Case> {
    cases_at(NOW_SECS, FORWARD_UPSTREAM)
}

#[test]
fn explain_matches_the_goldens_for_every_case_and_deny_reason() {
    for c in cases() {
        let (text, err, code) = explain(&c.manifests, &c.args);
        assert_eq!(code, c.want.2, "{}: exit status; stderr: {err}\n{text}", c.name);
        check_golden(c.name, "txt", &text);

        let mut args = c.args.clone();
        args.push("--output=json".to_owned());
        let (json, _, code) = explain(&c.manifests, &args);
        assert_eq!(code, c.want.2, "{}: exit status (json)", c.name);
        check_golden(c.name, "json", &json);

        let v: serde_json::Value = serde_json::from_str(&json).expect("explain --output json is JSON");
        assert_eq!(v["version"], 1, "{}", c.name);
        assert_eq!(v["decision"]["outcome"], c.want.0, "{}: {json}", c.name);
        let status = v["decision"]["status"].as_u64().unwrap_or(0);
        assert_eq!(status, u64::from(c.want.1), "{}: {json}", c.name);
        // Never a credential in the output.
        for secret in [TOKEN_SECRET, "not-a-jwt", &user("alice@mysite.com")] {
            assert!(!json.contains(secret) && !text.contains(secret), "{}: a credential leaked", c.name);
        }
    }
}

#[test]
fn explain_reports_the_step_that_failed() {
    let by_name = |name: &str| cases().into_iter().find(|c| c.name == name).expect("case");
    let json = |name: &str| {
        let c = by_name(name);
        let mut args = c.args.clone();
        args.push("--output=json".to_owned());
        serde_json::from_str::<serde_json::Value>(&explain(&c.manifests, &args).0).expect("json")
    };
    let v = json("preflight_header_not_allowed");
    assert_eq!(v["cors"]["outcome"], "refused");
    assert!(v["cors"]["detail"].as_str().unwrap().contains("x-evil"), "{v}");
    assert!(v["decision"]["response_headers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| !h[0].as_str().unwrap().starts_with("access-control-allow-")));

    let v = json("jwt_expired");
    let checks = v["credential"]["checks"].as_array().unwrap();
    let failed: Vec<_> = checks.iter().filter(|c| c["result"] == "failed").map(|c| c["check"].clone()).collect();
    assert_eq!(failed, ["expiry"]);
    assert_eq!(v["credential"]["issuer"], ISSUER);

    let v = json("blocked_by_policy");
    assert_eq!(v["decision"]["policy"], "contractors-out");
    let decided: Vec<_> =
        v["policies"].as_array().unwrap().iter().filter(|p| p["decided"] == true).map(|p| p["name"].clone()).collect();
    assert_eq!(decided, ["contractors-out"]);

    let v = json("unknown_host");
    assert!(v["route"]["nearest_miss"].as_str().unwrap().contains("api.mysite.com"), "{v}");

    let v = json("service_token");
    assert_eq!(v["credential"]["client_id"], TOKEN_ID);
    assert_eq!(v["decision"]["identity_headers"], serde_json::json!(["cf-access-client-id"]));
}

#[test]
fn usage_and_config_errors_exit_2() {
    let (_, err, code) = explain("not: [valid", &["--url=https://api.mysite.com/".to_owned()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot load the manifests"), "{err}");
    let (_, err, code) = explain(&seed(), &["--url=/relative".to_owned()]);
    assert_eq!(code, 2, "{err}");
    let (_, _, code) = explain(&seed(), &["--url=https://api.mysite.com/".to_owned(), "--now=yesterday".to_owned()]);
    assert_eq!(code, 2);
}

async fn post(url: &str, body: Vec<u8>) -> (u16, String) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let req = http::Request::post(url).body(Full::new(Bytes::from(body))).expect("request");
    let resp = client.request(req).await.expect("post");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn admin_explain_is_off_by_default_and_answers_the_cli_json_when_enabled() {
    let up = Upstream::start().await;
    let body = serde_json::json!({
        "method": "GET",
        "url": "https://api.mysite.com/data",
        "headers": [["Origin", "https://example.com"]],
        "peer": "127.0.0.1",
    })
    .to_string()
    .into_bytes();

    let off = sidecar(&seed(), &up.url()).start().await;
    let (status, _) = post(&format!("http://{}/explain", off.admin), body.clone()).await;
    assert_eq!(status, 404, "POST /explain must be off unless enabled");

    let on = sidecar(&seed(), &up.url()).arg("--enable-explain-endpoint").start().await;
    let (status, got) = post(&format!("http://{}/explain", on.admin), body.clone()).await;
    assert_eq!(status, 200, "{got}");
    let (cli, _, _) = explain(
        &seed(),
        &[
            "--url=https://api.mysite.com/data".to_owned(),
            "--header=Origin: https://example.com".to_owned(),
            "--output=json".to_owned(),
        ],
    );
    assert_eq!(got.trim_end(), cli.trim_end(), "the admin answer is `explain --output json`");

    let (status, _) = post(&format!("http://{}/explain", on.admin), vec![b' '; 64 * 1024 + 1]).await;
    assert_eq!(status, 413);
    let (status, got) = post(&format!("http://{}/explain", on.admin), b"{\"url\": 1}".to_vec()).await;
    assert_eq!(status, 400, "{got}");
    assert_eq!(up.count(), 0, "explain never sends the request");
}

/// A golden case's request as a client sends it: method, path and headers (`Host` from the
/// URL unless a header gives it).
fn request_of(args: &[String]) -> (String, String, Vec<(String, String)>) {
    let (mut method, mut url, mut headers) = ("GET".to_owned(), String::new(), Vec::new());
    for a in args {
        if let Some(m) = a.strip_prefix("--method=") {
            method = m.to_owned();
        } else if let Some(u) = a.strip_prefix("--url=") {
            url = u.to_owned();
        } else if let Some((n, v)) = a.strip_prefix("--header=").and_then(|h| h.split_once(':')) {
            headers.push((n.trim().to_lowercase(), v.trim().to_owned()));
        } else if let Some(c) = a.strip_prefix("--cookie=") {
            headers.push(("cookie".to_owned(), c.to_owned()));
        }
    }
    let url: http::Uri = url.parse().expect("a case's --url");
    if !headers.iter().any(|(n, _)| n == "host") {
        headers.push(("host".to_owned(), url.authority().expect("an absolute --url").to_string()));
    }
    (method, url.path_and_query().map_or("/", |p| p.as_str()).to_owned(), headers)
}

/// The goldens say what the proxy does, not only what `explain` printed once: each case's
/// request (its tokens issued now, its forward route going to the recording upstream) sent to
/// the running sidecar gets the status, headers and body its golden JSON holds, or — where the
/// golden says forwarded — reaches the app with exactly the identity headers the golden names
/// and comes back with the headers it says the proxy adds.
#[tokio::test]
async fn the_goldens_are_what_the_running_sidecar_answers() {
    let up = Upstream::start().await;
    let now = jiff::Timestamp::now().as_second();
    for c in cases_at(now, &up.url()) {
        let golden = std::fs::read_to_string(golden_path(c.name, "json")).expect("the golden JSON");
        let golden: serde_json::Value = serde_json::from_str(&golden).expect("golden JSON");
        let sc = sidecar(&c.manifests, &up.url()).start().await;
        let (method, path, headers) = request_of(&c.args);
        let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let before = up.count();
        let got = send(&method, &sc.url(&path), &h).await.unwrap_or_else(|e| panic!("{}: {e}", c.name));
        if let Err(difference) = check_prediction(&golden["decision"], &got, &up, before) {
            panic!("{}: the golden is not what the sidecar answers: {difference}", c.name);
        }
    }
}

/// The same requests through `explain` and through the running sidecar: the status explain
/// predicts is the status the proxy answers (forwarded requests reach the app), and the
/// `Access-Control-Allow-Origin` it predicts is the one the client gets.
#[tokio::test]
async fn explain_predicts_what_the_running_sidecar_answers() {
    let up = Upstream::start().await;
    let sc = sidecar(&seed(), &up.url()).start().await;
    let staff = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    let contractor = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("contractor@mysite.com", 600));
    let forged = mint("rsa2.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    let origin = ("Origin", "https://example.com");
    let (bearer, cookie) = (format!("Bearer {staff}"), format!("CF_Authorization={contractor}"));
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, &str, Headers)> = vec![
        ("GET", "/data", vec![origin]),
        ("GET", "/data", vec![("Origin", "https://evil.test")]),
        ("OPTIONS", "/data", vec![origin, ("Access-Control-Request-Method", "GET")]),
        ("OPTIONS", "/data", vec![origin, ("Access-Control-Request-Method", "PUT")]),
        ("OPTIONS", "/data", vec![origin]),
        ("GET", "/data", vec![origin, ("Authorization", &bearer)]),
        ("GET", "/data", vec![("Cookie", &cookie)]),
        ("GET", "/data", vec![("Cf-Access-Jwt-Assertion", &forged)]),
        ("GET", "/data", vec![("CF-Access-Client-Id", TOKEN_ID), ("CF-Access-Client-Secret", TOKEN_SECRET)]),
        ("GET", "/data", vec![("CF-Access-Client-Id", TOKEN_ID)]),
        ("GET", "/.portcullis/x", vec![origin]),
        ("GET", "/public/../data", vec![]),
    ];
    for (method, path, headers) in cases {
        let mut args = vec![
            format!("--method={method}"),
            format!("--url=https://api.mysite.com{path}"),
            "--output=json".to_owned(),
        ];
        args.extend(headers.iter().map(|(n, v)| format!("--header={n}: {v}")));
        let (json, err, _) = explain_at_clock(&seed(), &args);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {err}"));
        let before = up.count();
        let mut h = vec![("host", "api.mysite.com")];
        h.extend(headers.iter().copied());
        let r = send(method, &sc.url(path), &h).await.unwrap();
        let what = format!("{method} {path} {headers:?}");
        match v["decision"]["status"].as_u64() {
            Some(status) => {
                assert_eq!(u64::from(r.status), status, "{what}: {json}");
                assert_eq!(up.count(), before, "{what}: explain says answered by the sidecar");
            }
            None => assert_eq!(up.count(), before + 1, "{what}: explain says forwarded: {json}"),
        }
        let predicted = v["decision"]["response_headers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == "access-control-allow-origin")
            .map(|p| p[1].as_str().unwrap().to_owned());
        assert_eq!(r.header("access-control-allow-origin").map(str::to_owned), predicted, "{what}");
    }
}
