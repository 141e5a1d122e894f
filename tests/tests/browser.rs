//! The seed's browser story in a real browser (issue 6): Debian's chromium driven by
//! playwright-core, a real OpenID provider (oidc-provider), the real sidecar binary serving
//! TLS from a test CA, and an app behind it. One Node script run per scenario prints what the
//! browser saw; the assertions are here.
//!
//! One sidecar serves four applications on one port (the browser maps every host to
//! 127.0.0.1): `api.mysite.com` (CORS for https://example.com, sign-in, SameSite=None),
//! `nocors.mysite.com` (no `cors`), `bypass.mysite.com` (`bypassOptionsToOrigin`, a Bypass
//! policy) and `example.com` (a public site with the forward route `/api/` → the API with a
//! service token — the seed's Worker case). The forward route reaches the API as `localhost`
//! over TLS, trusting the test CA through `SSL_CERT_FILE`.

mod common;

use common::signin::{run_scenario, step, tls_sidecar, App, Idp, CLIENT_ID, CLIENT_SECRET};
use common::tempdir::TempDir;
use common::{free_port, Sidecar};

const HOSTS: [&str; 6] =
    ["api.mysite.com", "nocors.mysite.com", "bypass.mysite.com", "example.com", "www.mysite.com", "localhost"];

struct Setup {
    port: u16,
    app: App,
    sidecar: Sidecar,
    _idp: Idp,
    _dir: TempDir,
    profile: TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let dir = TempDir::new("browser");
        let port = free_port();
        let idp = Idp::start(&[format!("https://api.mysite.com:{port}/.portcullis/callback")]);
        let app = App::start().await;
        let (pki, sidecar) = tls_sidecar(dir.path(), &HOSTS, port, &manifests(port, &idp.issuer), &app.url());
        let sidecar = sidecar.env("SSL_CERT_FILE", pki.ca.to_str().unwrap()).start().await;
        Setup { port, app, sidecar, _idp: idp, _dir: dir, profile: TempDir::new("chromium-profile") }
    }

    fn origin(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }

    fn config(&self) -> serde_json::Value {
        serde_json::json!({
            "api": self.origin("api.mysite.com"),
            "site": self.origin("example.com"),
            "nocors": self.origin("nocors.mysite.com"),
            "bypass": self.origin("bypass.mysite.com"),
            "hosts": &HOSTS[..5],
            "userDataDir": self.profile.path(),
        })
    }

    fn run(&self, scenario: &str) -> serde_json::Value {
        self.run_with(scenario, self.config())
    }

    fn run_with(&self, scenario: &str, config: serde_json::Value) -> serde_json::Value {
        let out = run_scenario(scenario, &config);
        eprintln!("{scenario}: {out:#}\nsidecar log:\n{}", self.sidecar.logs());
        out
    }

    fn app_saw(&self, method: &str, path: &str) -> usize {
        self.app.received().iter().filter(|r| r.method == method && r.uri.starts_with(path)).count()
    }
}

fn manifests(port: u16, issuer: &str) -> String {
    format!(
        r#"apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: api, namespace: shop }}
spec:
  domains: [api.mysite.com, localhost]
  sessionDuration: 1h
  login:
    oidc:
      issuer: {issuer}
      clientId: {CLIENT_ID}
      clientSecretRef: {{ name: oidc-client, key: client-secret }}
    cookie: {{ sameSite: None, secure: true, httpOnly: true }}
  policies:
    - name: ci
      action: ServiceAuth
      include: [ {{ serviceToken: {{ name: ci-token }} }} ]
    - name: staff
      action: Allow
      include: [ {{ emailDomain: mysite.com }} ]
  cors:
    allowedOrigins: ["https://example.com:{port}", "https://www.mysite.com:{port}"]
    allowedMethods: [GET, POST]
    allowedHeaders: [office]
    allowCredentials: true
    maxAge: 600
  unauthenticatedResponse: Auto
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: nocors, namespace: shop }}
spec:
  domains: [nocors.mysite.com]
  policies:
    - name: staff
      action: Allow
      include: [ {{ emailDomain: mysite.com }} ]
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: bypass, namespace: shop }}
spec:
  domains: [bypass.mysite.com]
  cors: {{ bypassOptionsToOrigin: true }}
  policies:
    - name: public
      action: Bypass
      include: [ {{ ipRange: 0.0.0.0/0 }}, {{ ipRange: "::/0" }} ]
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: site, namespace: shop }}
spec:
  domains: [example.com, www.mysite.com]
  policies:
    - name: public
      action: Bypass
      include: [ {{ ipRange: 0.0.0.0/0 }}, {{ ipRange: "::/0" }} ]
  forwardRoutes:
    - pathPrefix: /api/
      upstream: https://localhost:{port}
      stripPrefix: true
      serviceTokenRef: {{ name: ci-token }}
      stripSetCookie: true
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessServiceToken
metadata: {{ name: ci-token, namespace: shop }}
spec: {{ duration: 8760h, secretName: ci-token-credentials }}
---
apiVersion: v1
kind: Secret
metadata: {{ name: ci-token-credentials, namespace: shop }}
stringData: {{ client-id: browser-ci.access, client-secret: browser-ci-secret-0123456789abcdef }}
---
apiVersion: v1
kind: Secret
metadata: {{ name: oidc-client, namespace: shop }}
stringData: {{ client-secret: {CLIENT_SECRET} }}
"#
    )
}

/// 1. Sign-in: the navigation goes to the IdP, the user signs in, comes back to the page they
/// asked for with the session cookie, sees the app; identity and logout work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_the_identity_provider() {
    let s = Setup::start().await;
    let out = s.run("signin");
    assert_eq!(step(&out, "idp_login_page")["url"].as_str().map(|u| u.starts_with("http://127.0.0.1")), Some(true));
    let back = step(&out, "back");
    assert_eq!(back["url"], format!("{}/data", s.origin("api.mysite.com")), "{out:#}");
    let body: serde_json::Value = serde_json::from_str(back["body"].as_str().unwrap()).expect("the app's JSON");
    assert_eq!(body["email"], "alice@mysite.com");
    assert_eq!(body["assertion"], true);
    let cookies = step(&out, "cookies")["cookies"].as_array().unwrap().clone();
    let session = cookies.iter().find(|c| c["name"] == "CF_Authorization").expect("session cookie set");
    assert_eq!(
        (session["sameSite"].as_str(), session["secure"].as_bool(), session["httpOnly"].as_bool()),
        (Some("None"), Some(true), Some(true))
    );
    assert!(cookies.iter().all(|c| c["name"] != "portcullis_login"), "the state cookie is cleared: {cookies:?}");
    let identity = step(&out, "identity");
    assert_eq!(identity["status"], 200);
    assert_eq!(identity["json"]["email"], "alice@mysite.com");
    assert_eq!(identity["json"]["iss"], "portcullis-session:shop/api");
    assert_eq!(step(&out, "logout")["status"], 200);
    assert!(step(&out, "logout")["cookies"].as_array().unwrap().iter().all(|c| c["name"] != "CF_Authorization"));
    assert_eq!(step(&out, "identity_after_logout")["status"], 401);
    let metrics = s.sidecar.metrics().await;
    assert!(metrics.contains(r#"portcullis_logins_total{app="shop/api",result="ok"} 1"#), "{metrics}");
}

/// 2. The seed's preflighted, credentialed request from https://example.com, in a browser that
/// allows third-party cookies (the seed's assumption; a user setting in Chromium 156).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflighted_credentialed_fetch_reads_the_json() {
    let s = Setup::start().await;
    let mut cfg = s.config();
    cfg["allowThirdPartyCookies"] = true.into();
    let out = s.run_with("preflighted", cfg);
    assert_preflighted_fetch_read_the_json(&s, &out).await;
}

/// 2b. The same from a same-site page (https://www.mysite.com): works with Chromium's default
/// settings, which block third-party cookies (what the README recommends).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preflighted_credentialed_fetch_from_a_same_site_page_works_by_default() {
    let s = Setup::start().await;
    let mut cfg = s.config();
    cfg["pageOrigin"] = s.origin("www.mysite.com").into();
    let out = s.run_with("preflighted", cfg);
    assert_preflighted_fetch_read_the_json(&s, &out).await;
}

/// 2c. What headless Chromium 156 does by default from another site: it blocks the
/// third-party session cookie, so the (readable) answer is the 401 naming the sign-in URL —
/// the behaviour the README documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_chromium_blocks_the_cross_site_session_cookie() {
    let s = Setup::start().await;
    let out = s.run("preflighted");
    let fetch = step(&out, "fetch");
    assert_eq!((fetch["ok"].as_bool(), fetch["status"].as_u64()), (Some(true), Some(401)), "{out:#}");
    assert_eq!(fetch["json"]["error"], "no_credentials");
    assert!(fetch["json"]["login"].is_string());
}

async fn assert_preflighted_fetch_read_the_json(s: &Setup, out: &serde_json::Value) {
    let fetch = step(out, "fetch");
    assert_eq!(fetch["ok"], true, "the fetch failed in the browser: {out:#}");
    assert_eq!(fetch["status"], 200, "{out:#}");
    assert_eq!(fetch["json"]["email"], "alice@mysite.com", "the session cookie went with the request: {out:#}");
    let headers = &step(out, "response_headers")["headers"][0];
    assert!(headers["vary"].as_str().is_some_and(|v| v.to_ascii_lowercase().contains("origin")), "{out:#}");
    assert_eq!(headers["access-control-allow-credentials"], "true", "{out:#}");
    // The sidecar answered the preflight itself; the app saw only the real request.
    assert_eq!(s.app_saw("OPTIONS", "/data"), 0);
    let metrics = s.sidecar.metrics().await;
    assert!(metrics.contains(r#"portcullis_preflights_total{app="shop/api",result="answered"}"#), "{metrics}");
}

/// 3. Without a session the page reads the 401 (not an opaque CORS error) with the sign-in URL;
/// after signing in there and coming back, the same fetch works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_fetch_reads_401_then_login_and_refresh() {
    let s = Setup::start().await;
    let mut cfg = s.config();
    cfg["allowThirdPartyCookies"] = true.into();
    let out = s.run_with("unauthenticated", cfg);
    let before = step(&out, "fetch_before");
    assert_eq!((before["ok"].as_bool(), before["status"].as_u64()), (Some(true), Some(401)), "{out:#}");
    let login = before["json"]["login"].as_str().expect("the 401 names the sign-in URL");
    assert!(login.starts_with(&format!("{}/.portcullis/login?rd=", s.origin("api.mysite.com"))), "{login}");
    assert_eq!(step(&out, "back")["url"], format!("{}/data", s.origin("api.mysite.com")));
    let after = step(&out, "fetch_after");
    assert_eq!(
        (after["status"].as_u64(), after["json"]["email"].as_str()),
        (Some(200), Some("bob@mysite.com")),
        "{out:#}"
    );
}

/// 4. No `cors`: the preflight is refused (403) and the fetch fails; with
/// `bypassOptionsToOrigin` the app's own CORS answer is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_cors_the_preflight_fails_and_bypass_uses_the_apps_answer() {
    let s = Setup::start().await;
    let out = s.run("nocors");
    let nocors = step(&out, "fetch_nocors");
    assert_eq!(nocors["ok"], false, "{out:#}");
    assert!(nocors["error"].as_str().unwrap().contains("Failed to fetch"), "{out:#}");
    let metrics = s.sidecar.metrics().await;
    assert!(
        metrics.contains(r#"portcullis_preflights_total{app="shop/nocors",result="cors_not_configured"} 1"#),
        "the browser's preflight was refused by the sidecar: {metrics}"
    );
    let nocors_host =
        |r: &common::Recorded| r.headers.get("host").is_some_and(|h| h.as_bytes().starts_with(b"nocors."));
    assert!(!s.app.received().iter().any(nocors_host), "nothing reached the app for nocors");
    let bypass = step(&out, "fetch_bypass");
    assert_eq!((bypass["ok"].as_bool(), bypass["status"].as_u64()), (Some(true), Some(200)), "{out:#}");
    assert_eq!(bypass["json"]["app"], "protected");
    assert_eq!(s.app_saw("OPTIONS", "/data"), 1, "the preflight went to the app");
}

/// 5. The Worker case: same-origin call to example.com/api/…, forwarded to the API with a
/// service token; the page gets the data and no Set-Cookie from the API reaches the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_route_reaches_the_api_and_strips_set_cookie() {
    let s = Setup::start().await;
    let out = s.run("worker");
    let fetch = step(&out, "fetch");
    assert_eq!((fetch["ok"].as_bool(), fetch["status"].as_u64()), (Some(true), Some(200)), "{out:#}");
    assert_eq!(fetch["json"]["path"], "/set-cookie");
    assert_eq!(fetch["setCookie"], serde_json::Value::Null);
    let cookies = step(&out, "cookies");
    for side in ["site", "api"] {
        assert!(cookies[side].as_array().unwrap().iter().all(|c| c["name"] != "upstream_session"), "{out:#}");
    }
    let forwarded = s.app.received().into_iter().find(|r| r.uri.starts_with("/set-cookie")).expect("forwarded");
    assert_eq!(forwarded.headers["cf-access-client-id"], "browser-ci.access");
    assert!(!forwarded.headers.contains_key("cf-access-client-secret"));
}
