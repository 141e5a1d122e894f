//! `explain` against the live proxy, as a property: for generated configurations (CORS owned,
//! forwarded to the app or absent; Enforce or Audit; with or without OIDC sign-in and each
//! `unauthenticatedResponse`, with or without an authentication host; a public Bypass path) and
//! generated requests (preflights, service tokens good and bad, JWTs, navigations, reserved and
//! sign-in paths, the authentication host, odd hosts), `explain` predicts what the running
//! sidecar does: the status, every header and the JSON body of an answer it makes itself, or —
//! for a forwarded request — that the app is called, with exactly the identity headers explain
//! names, and that the answer carries the headers explain says the proxy adds; for a sign-in
//! step explain shows without a status (it needs the provider), that the sidecar answers it
//! itself.
//!
//! The sidecar runs in-process on pre-bound `127.0.0.1:0` listeners (`run::serve_on`).

mod common;

use std::sync::OnceLock;

use common::*;
use jsonwebtoken::Algorithm;
use portcullis_sidecar::cli::Args;
use portcullis_sidecar::config::manifests::{compile_sources, read_sources};
use portcullis_sidecar::explain::command::live_from_snapshot;
use portcullis_sidecar::explain::{explain, ExplainRequest, Options};
use portcullis_sidecar::run::{serve_on, Role};
use proptest::prelude::*;
use tokio::net::TcpListener;

/// The spec-level sections of one generated application.
#[derive(Clone, Debug)]
struct Config {
    cors: usize,
    audit: bool,
    login: Option<usize>,
    /// With `login`: `login.authenticationHost: auth.mysite.com`.
    auth_host: bool,
    public: bool,
}

/// The authentication host of the configs with one.
const AUTH_HOST: &str = "auth.mysite.com";

/// Request paths: the app's, reserved and sign-in paths, and the authentication host's
/// endpoints with good and bad parameters.
const PATHS: [&str; 14] = [
    "/data",
    "/public/x",
    "/public/../data",
    "/.portcullis/nope",
    "/data?q=1",
    "//data",
    "/.portcullis/identity",
    "/.portcullis/logout",
    "/.portcullis/logout?rd=http://api.mysite.com/x",
    "/.portcullis/login?rd=/data",
    "/.portcullis/callback?code=c&state=s",
    "/.portcullis/authenticate",
    "/.portcullis/authenticate?state=abc&return=http://evil.test/.portcullis/handoff",
    "/.portcullis/authenticate?state=abc&return=https://api.mysite.com/.portcullis/handoff",
];

const CORS: [&str; 3] = ["", SEED_CORS, "  cors:\n    bypassOptionsToOrigin: true\n"];
const UNAUTHENTICATED: [&str; 3] = ["Auto", "Redirect", "Status401"];

// === impl Config ===

impl Config {
    fn manifests(&self) -> String {
        let mut spec = CORS[self.cors].to_owned();
        if self.audit {
            spec.push_str("  mode: Audit\n");
        }
        if let Some(u) = self.login {
            // Never contacted: the answers compared here are made before any call to the provider.
            spec.push_str("  login:\n    oidc: { issuer: \"http://127.0.0.1:9/oidc\", clientId: portcullis }\n");
            if self.auth_host {
                spec.push_str(&format!("    authenticationHost: {AUTH_HOST}\n"));
            }
            spec.push_str(&format!("  unauthenticatedResponse: {}\n", UNAUTHENTICATED[u]));
        }
        seed_manifests(&inline_jwks(), &spec, if self.public { PUBLIC_BYPASS } else { "" })
    }
}

fn any_config() -> impl Strategy<Value = Config> {
    (0..CORS.len(), any::<bool>(), prop::option::of(0..UNAUTHENTICATED.len()), any::<bool>(), any::<bool>())
        .prop_map(|(cors, audit, login, auth_host, public)| Config { cors, audit, login, auth_host, public })
}

/// One generated request: method, path, host, and a set of optional headers.
#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    path: &'static str,
    host: &'static str,
    headers: Vec<(&'static str, String)>,
}

fn tokens() -> &'static [String; 3] {
    static T: OnceLock<[String; 3]> = OnceLock::new();
    T.get_or_init(|| {
        [
            mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 3600)),
            mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("contractor@mysite.com", 3600)),
            mint("rsa2.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 3600)),
        ]
    })
}

fn any_req() -> impl Strategy<Value = Req> {
    let method = prop::sample::select(vec!["GET", "POST", "OPTIONS", "PUT"]);
    let path = prop::sample::select(PATHS.to_vec());
    let host = prop::sample::select(vec![
        "api.mysite.com",
        "API.mysite.com:8443",
        "x.apps.mysite.com",
        "other.test",
        AUTH_HOST,
        "Auth.mysite.com:8443",
    ]);
    let optional = prop::collection::vec(0usize..12, 0..5);
    (method, path, host, optional).prop_map(|(method, path, host, picks)| {
        let mut headers: Vec<(&'static str, String)> = Vec::new();
        for p in picks {
            let h = match p {
                0 => ("origin", "https://example.com".to_owned()),
                1 => ("origin", "https://evil.test".to_owned()),
                2 => ("access-control-request-method", "GET".to_owned()),
                3 => ("access-control-request-method", "PUT".to_owned()),
                4 => ("access-control-request-headers", "office".to_owned()),
                5 => ("sec-fetch-mode", "navigate".to_owned()),
                6 => ("accept", "text/html".to_owned()),
                7 => ("authorization", format!("Bearer {}", tokens()[0])),
                8 => ("cookie", format!("CF_Authorization={}", tokens()[1])),
                9 => ("cf-access-jwt-assertion", tokens()[2].clone()),
                10 => ("cf-access-client-id", TOKEN_ID.to_owned()),
                _ => ("cf-access-client-secret", TOKEN_SECRET.to_owned()),
            };
            if !headers.iter().any(|(n, _)| *n == h.0) {
                headers.push(h);
            }
        }
        Req { method, path, host, headers }
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().expect("runtime"))
}

/// Runs `reqs` through explain and the live sidecar of `config`, compares, and returns the
/// explanations.
async fn check(config: &Config, reqs: &[Req]) -> Result<Vec<serde_json::Value>, TestCaseError> {
    let dir = tempdir::TempDir::new("explain-live");
    let path = dir.path().join("access.yaml");
    std::fs::write(&path, config.manifests()).expect("write manifests");
    let up = Upstream::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
    let addr = listener.local_addr().expect("addr");
    let flags = ["--manifests", path.to_str().expect("utf-8 path"), "--upstream", &up.url()];
    let args = Args::from_flags(flags.iter().map(|s| s.to_string())).expect("flags");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_on(Role::Sidecar, args, listener, admin, async move {
        let _ = stopped.await;
    }));

    let compiled = compile_sources(&read_sources(&path).expect("read"), "default").expect("compile");
    let live = live_from_snapshot(compiled.snapshot).await.expect("live");
    let now = jiff::Timestamp::now().as_second();
    let mut explained = Vec::new();
    for r in reqs {
        let what = format!("{config:?} {r:?}");
        let url = format!("http://{}{}", r.host, r.path);
        let headers: Vec<(String, String)> = r.headers.iter().map(|(n, v)| (n.to_string(), v.clone())).collect();
        let req = ExplainRequest { method: r.method.to_owned(), url: url.clone(), headers, peer: None };
        let e = explain(&live, &req, &Options { now, ..Options::default() }).expect("explainable");
        let e = serde_json::to_value(&e).expect("json");

        let before = up.count();
        let mut h: Vec<(&str, &str)> = vec![("host", r.host)];
        h.extend(r.headers.iter().map(|(n, v)| (*n, v.as_str())));
        let got = send(r.method, &format!("http://{addr}{}", r.path), &h).await.map_err(TestCaseError::fail)?;
        prop_assert!(got.header("x-request-id").is_some(), "{what}");
        if let Err(difference) = check_prediction(&e["decision"], &got, &up, before) {
            return Err(TestCaseError::fail(format!("{what}: {difference}\n{e}")));
        }
        explained.push(e);
    }
    let _ = stop.send(());
    let _ = server.await;
    Ok(explained)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn explain_predicts_the_live_proxy(config in any_config(), reqs in prop::collection::vec(any_req(), 12)) {
        runtime().block_on(check(&config, &reqs))?;
    }
}

/// The generator reaches what the property is about: sign-in answers among them.
#[test]
fn sign_in_answers_are_compared() {
    let config = Config { cors: 1, audit: false, login: Some(0), auth_host: false, public: false };
    let navigate = Req {
        method: "GET",
        path: "/data",
        host: "api.mysite.com",
        headers: vec![("sec-fetch-mode", "navigate".to_owned()), ("origin", "https://example.com".to_owned())],
    };
    let api = Req { headers: vec![("origin", "https://example.com".to_owned())], ..navigate.clone() };
    runtime().block_on(check(&config, &[navigate, api])).expect("explain predicts the sign-in redirect and 401");
}

/// The authentication host's answers are the proxy's own, compared: every endpoint answered
/// without the provider, an unknown one, a path outside `/.portcullis/`, and the sign-in step
/// that goes on to the provider (no status; the sidecar answers it).
#[test]
fn authentication_host_answers_are_compared() {
    let config = Config { cors: 1, audit: false, login: Some(1), auth_host: true, public: false };
    let at = |path: &'static str| Req { method: "GET", path, host: AUTH_HOST, headers: vec![] };
    let reqs = [
        at("/.portcullis/identity"),
        at("/.portcullis/logout"),
        at("/.portcullis/logout?rd=http://api.mysite.com/x"),
        at("/.portcullis/authenticate"),
        at("/.portcullis/authenticate?state=abc&return=http://evil.test/.portcullis/handoff"),
        at("/.portcullis/nope"),
        at("/data"),
        at("/.portcullis/authenticate?state=abc&return=https://api.mysite.com/.portcullis/handoff"),
    ];
    let explained = runtime().block_on(check(&config, &reqs)).expect("explain predicts the authentication host");
    let seen: Vec<(String, String, Option<u64>)> = explained
        .iter()
        .map(|e| {
            let route = e["route"]["result"].as_str().unwrap_or_default().to_owned();
            (route, e["decision"]["reason"].as_str().unwrap_or_default().to_owned(), e["decision"]["status"].as_u64())
        })
        .collect();
    let host = |reason: &str, status: Option<u64>| ("authentication_host".to_owned(), reason.to_owned(), status);
    assert_eq!(
        seen,
        [
            host("no_credentials", Some(401)),
            host("logout", Some(200)),
            host("logout", Some(302)),
            host("authenticate", Some(400)),
            host("authenticate", Some(400)),
            host("not_found", Some(404)),
            ("unknown_host".to_owned(), "unknown_host".to_owned(), Some(404)),
            host("authenticate", None),
        ]
    );
}
