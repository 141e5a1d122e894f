//! `portcullis-sidecar doctor cors` against real sidecars misconfigured on purpose and against a
//! plain upstream that sets CORS headers badly: each finding appears where its cause is and not
//! where it is absent, and the exit status says whether the setup works (0) or not (1).

mod common;

use std::process::Command;

use common::*;
use jsonwebtoken::Algorithm;

/// Runs the doctor against `addr` as if `api.mysite.com` resolved there; (stdout, exit status).
/// It blocks: the tests run on a multi-thread runtime so the in-process upstream keeps serving.
fn doctor(port: u16, path: &str, args: &[&str]) -> (String, i32) {
    let out = Command::new(sidecar_bin())
        .args(["doctor", "cors", "--url"])
        .arg(format!("http://api.mysite.com:{port}{path}"))
        .arg(format!("--resolve=api.mysite.com:{port}:127.0.0.1"))
        .args(args)
        .output()
        .expect("run doctor");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text, out.status.code().unwrap_or(-1))
}

const ORIGIN: &str = "--origin=https://example.com";

fn codes(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("problem ["))
        .filter_map(|l| l.split(']').next())
        .map(str::to_owned)
        .collect()
}

fn staff_cookie() -> String {
    let t = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600));
    format!("--cookie=CF_Authorization={t}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_seed_setup_passes_and_each_cors_mistake_is_named_with_its_field() {
    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &up.url()).start().await;
    let port = sc.addr.port();
    let cookie = staff_cookie();

    // Preflighted (custom header), credentials, allowed: no finding, exit 0.
    let (text, code) = doctor(port, "/data", &[ORIGIN, "--credentials", &cookie, "--header=office: 1"]);
    assert_eq!((codes(&text), code), (vec![], 0), "{text}");
    assert!(text.contains("preflight: sent"), "{text}");
    // A simple request without credentials: the 401 carries CORS headers, so the page can read it.
    let (text, code) = doctor(port, "/data", &[ORIGIN]);
    assert_eq!((codes(&text), code), (vec![], 0), "{text}");
    assert!(text.contains("not needed"), "{text}");

    // The origin, a method, a header: each refused preflight names the field to change.
    for (args, field) in [
        (vec!["--origin=https://other.test", "--method=PUT"], "spec.cors.allowedOrigins"),
        (vec![ORIGIN, "--method=PUT"], "spec.cors.allowedMethods"),
        (vec![ORIGIN, "--header=x-evil: 1"], "spec.cors.allowedHeaders"),
    ] {
        let (text, code) = doctor(port, "/data", &args);
        assert_eq!((codes(&text), code), (vec!["preflight_refused".to_owned()], 1), "{args:?}: {text}");
        assert!(text.contains(field), "{args:?} should name {field}: {text}");
        assert!(text.contains("not sent"), "the browser stops at a failed preflight: {text}");
    }

    // A session cookie that the app sets without SameSite=None; Secure is not sent cross-site.
    let (text, code) = doctor(port, "/set-cookie", &[ORIGIN, "--credentials", &cookie]);
    assert_eq!((codes(&text), code), (vec!["cookie_not_sent_cross_site".to_owned()], 1), "{text}");
    assert!(!text.contains("abc"), "a cookie value is never printed: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_cors_section_refuses_preflights() {
    let up = Upstream::start().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), "", ""), &up.url()).start().await;
    let (text, code) = doctor(sc.addr.port(), "/data", &[ORIGIN, "--header=office: 1"]);
    assert_eq!((codes(&text), code), (vec!["preflight_refused".to_owned()], 1), "{text}");
    assert!(text.contains("cors_not_configured") && text.contains("add spec.cors"), "{text}");
    // And a simple request gets a 401 nobody can read.
    let (text, code) = doctor(sc.addr.port(), "/data", &[ORIGIN]);
    assert_eq!(codes(&text), ["error_without_cors", "response_unreadable"], "{text}");
    assert_eq!(code, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_to_origin_leaves_the_sidecars_401_without_cors_headers() {
    let up = Upstream::start().await;
    let cors = "  cors:\n    bypassOptionsToOrigin: true\n";
    let sc = sidecar(&seed_manifests(&inline_jwks(), cors, ""), &up.url()).start().await;
    let (text, code) = doctor(sc.addr.port(), "/data", &[ORIGIN, "--credentials"]);
    assert_eq!(codes(&text), ["error_without_cors", "response_unreadable"], "{text}");
    assert_eq!(code, 1);
}

/// Settings that only fail for a page sending credentials: each finding appears with
/// `--credentials` and not without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_only_mistakes_appear_with_credentials_only() {
    let cases = [
        (
            "  cors:\n    allowAllOrigins: true\n    allowedMethods: [GET]\n",
            "wildcard_with_credentials",
            "spec.cors.allowAllOrigins",
        ),
        (
            "  cors:\n    allowedOrigins: [\"https://example.com\"]\n",
            "missing_allow_credentials",
            "spec.cors.allowCredentials",
        ),
    ];
    for (cors, finding, field) in cases {
        let up = Upstream::start().await;
        let sc = sidecar(&seed_manifests(&inline_jwks(), cors, ""), &up.url()).start().await;
        let (text, code) = doctor(sc.addr.port(), "/data", &[ORIGIN, "--credentials"]);
        assert_eq!(codes(&text), [finding, "response_unreadable"], "{text}");
        assert!(text.contains(field), "{text}");
        assert_eq!(code, 1);
        let (text, code) = doctor(sc.addr.port(), "/data", &[ORIGIN]);
        assert_eq!((codes(&text), code), (vec![], 0), "{finding} without credentials: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_upstream_with_bad_cors_headers() {
    let up = Upstream::start().await;
    let port = up.addr.port();
    let (text, code) = doctor(port, "/dup-cors", &[ORIGIN]);
    assert_eq!(codes(&text), ["duplicate_allow_origin", "response_unreadable"], "{text}");
    assert_eq!(code, 1);
    let (text, _) = doctor(port, "/app-cors", &[ORIGIN]);
    assert_eq!(codes(&text), ["allow_origin_mismatch", "response_unreadable"], "{text}");
    let (text, code) = doctor(port, "/cors-no-vary", &[ORIGIN, "--credentials"]);
    assert_eq!(codes(&text), ["missing_vary_origin"], "{text}");
    assert_eq!(code, 1);
    let (text, _) = doctor(port, "/", &[ORIGIN]);
    assert_eq!(codes(&text), ["missing_allow_origin", "response_unreadable"], "{text}");
    let (text, code) = doctor(port, "/redirect", &[ORIGIN, "--method=PUT"]);
    assert_eq!(codes(&text), ["preflight_redirected"], "{text}");
    assert_eq!(code, 1);
}

#[test]
fn usage_errors_exit_2() {
    let (text, code) = doctor(9, "/", &["--origin=example.com"]);
    assert_eq!(code, 2, "{text}");
    // Nothing listens on port 9 of loopback: a connection error is not a finding.
    let (text, code) = doctor(9, "/", &[ORIGIN]);
    assert_eq!(code, 2, "{text}");
}
