//! One sign-in across applications and hosts (issue 15), in a real browser: Debian's chromium
//! driven by playwright-core with third-party cookies blocked, npm's oidc-provider with the one
//! redirect URI `https://login.test:<port>/.portcullis/callback`, and the real sidecar binary
//! serving TLS for every host on one port (the browser maps each host to 127.0.0.1).
//!
//! Five applications on five sites: `app-one.test`, `app-two.test`, `app-three.test` (allow
//! `@mysite.com`) and `app-staff.test` (allows only `admin@mysite.com`) name the authentication
//! host `login.test`; `app-alone.test` does not. They share the session key of
//! `tests/fixtures/keys/ed25519.pem`, so the scenario can also make its own codes to present.

mod common;

use common::signin::{run_script, step, tls_sidecar, App, Idp, CLIENT_ID, CLIENT_SECRET};
use common::tempdir::TempDir;
use common::{free_port, repo_root, sign_in_secrets, Sidecar};

const HOSTS: [&str; 6] =
    ["app-one.test", "app-two.test", "app-three.test", "app-staff.test", "app-alone.test", "login.test"];

struct Setup {
    port: u16,
    sidecar: Sidecar,
    idp: Idp,
    _app: App,
    _dir: TempDir,
    profile: TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let dir = TempDir::new("sso");
        let port = free_port();
        // The one redirect URI registered with the provider.
        let idp = Idp::start(&[format!("https://login.test:{port}/.portcullis/callback")]);
        let app = App::start().await;
        let sidecar =
            tls_sidecar(dir.path(), &HOSTS, port, &manifests(port, &idp.issuer), &app.url()).1.process().start().await;
        Setup { port, sidecar, idp, _app: app, _dir: dir, profile: TempDir::new("chromium-profile") }
    }

    fn origin(&self, host: &str) -> String {
        format!("https://{host}:{}", self.port)
    }

    fn run(&self, scenario: &str) -> serde_json::Value {
        let apps: serde_json::Map<String, serde_json::Value> = ["one", "two", "three", "staff", "alone"]
            .iter()
            .map(|a| ((*a).to_owned(), self.origin(&format!("app-{a}.test")).into()))
            .collect();
        let config = serde_json::json!({
            "apps": apps,
            "auth": self.origin("login.test"),
            "authIssuer": format!("portcullis-auth:login.test:{}", self.port),
            "idp": self.idp.issuer,
            "hosts": HOSTS,
            "userDataDir": self.profile.path(),
            "keyPem": repo_root().join("tests/fixtures/keys/ed25519.pem"),
        });
        let out = run_script("sso.mjs", scenario, &config);
        eprintln!("{scenario}: {out:#}\nsidecar log:\n{}", self.sidecar.logs());
        out
    }
}

fn manifests(port: u16, issuer: &str) -> String {
    let member = |name: &str, allow: &str| {
        format!(
            r#"apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: {name}, namespace: shop }}
spec:
  domains: [app-{name}.test]
  sessionDuration: 1h
  login:
    authenticationHost: login.test:{port}
    applicationSessionDuration: 4s
    oidc:
      issuer: {issuer}
      clientId: {CLIENT_ID}
      clientSecretRef: {{ name: oidc-client, key: client-secret }}
    sessionKeyRef: {{ name: session-key, key: key.pem }}
  policies:
    - name: allowed
      action: Allow
      include: [ {allow} ]
  unauthenticatedResponse: Auto
---
"#
        )
    };
    let mut yaml = String::new();
    for name in ["one", "two", "three"] {
        yaml.push_str(&member(name, "{ emailDomain: mysite.com }"));
    }
    yaml.push_str(&member("staff", "{ email: admin@mysite.com }"));
    yaml.push_str(&format!(
        r#"apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: alone, namespace: shop }}
spec:
  domains: [app-alone.test]
  policies:
    - name: public
      action: Bypass
      include: [ {{ everyone: {{}} }} ]
{}"#,
        sign_in_secrets(CLIENT_SECRET)
    ));
    yaml
}

fn body_email(v: &serde_json::Value) -> Option<String> {
    v["json"]["email"].as_str().map(str::to_owned)
}

/// One provider sign-in for three applications on three sites; a fourth whose policy refuses
/// the user answers 403 without a provider sign-in; the application session is short and
/// renewed silently from the identity session; sign-out at one application ends all of them.
/// B-SSO-1, B-SSO-2, B-SSO-4, B-SSO-5, B-SSO-7, B-SSO-8, B-SSO-10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_provider_sign_in_for_three_hosts_and_one_sign_out_for_all() {
    let s = Setup::start().await;
    let out = s.run("one_sign_in");
    let back = step(&out, "one_back");
    assert_eq!(back["url"], format!("{}/data", s.origin("app-one.test")), "{out:#}");
    let body: serde_json::Value = serde_json::from_str(back["body"].as_str().unwrap()).expect("the app's JSON");
    assert_eq!(body["email"], "alice@mysite.com", "{out:#}");
    let signed_in_idp = back["idp"].as_u64().unwrap();
    assert!(signed_in_idp >= 1, "the first application went to the provider: {out:#}");

    for app in ["two", "three"] {
        let seen = step(&out, app);
        assert_eq!(seen["url"], format!("{}/data", s.origin(&format!("app-{app}.test"))), "{out:#}");
        assert_eq!((seen["status"].as_u64(), body_email(seen)), (Some(200), Some("alice@mysite.com".into())));
        assert_eq!(seen["idp"].as_u64(), Some(signed_in_idp), "{app}: no second provider sign-in: {out:#}");
    }
    // Policies stay per application: refused after the hand-off, without the provider.
    let staff = step(&out, "staff");
    assert_eq!(
        (staff["status"].as_u64(), staff["json"]["error"].as_str()),
        (Some(403), Some("no_policy_matched")),
        "{out:#}"
    );
    assert_eq!(staff["idp"].as_u64(), Some(signed_in_idp), "{out:#}");

    // Each host holds only its own cookies; nothing crosses sites.
    let cookies = step(&out, "cookies");
    for app in ["one", "two", "three"] {
        let names = cookies[app].as_array().unwrap();
        assert!(names.iter().any(|n| n == "CF_Authorization"), "{app}: {cookies}");
        assert!(names.iter().all(|n| n != "portcullis_identity" && n != "portcullis_handoff"), "{app}: {cookies}");
    }
    assert!(cookies["staff"].as_array().unwrap().iter().all(|n| n != "CF_Authorization"), "{cookies}");
    assert_eq!(cookies["auth"], serde_json::json!(["portcullis_identity"]), "{cookies}");
    let auth = step(&out, "auth_identity");
    assert_eq!((auth["status"].as_u64(), body_email(auth)), (Some(200), Some("alice@mysite.com".into())));
    assert_eq!(auth["json"]["iss"], format!("portcullis-auth:login.test:{}", s.port));

    // The short application session ends; the next navigation is handed a new one silently.
    assert_eq!(step(&out, "two_expired")["status"], 401, "{out:#}");
    let again = step(&out, "two_again");
    assert_eq!((again["status"].as_u64(), body_email(again)), (Some(200), Some("alice@mysite.com".into())));
    assert_eq!(again["idp"].as_u64(), Some(signed_in_idp), "renewed without the provider: {out:#}");

    // Sign-out at one: the identity session ends, and every application's within the bound.
    let logout = step(&out, "logout");
    assert_eq!(logout["url"], format!("{}/.portcullis/logout", s.origin("login.test")), "{out:#}");
    assert_eq!((logout["status"].as_u64(), logout["json"]["status"].as_str()), (Some(200), Some("signed_out")));
    assert_eq!(step(&out, "auth_identity_after")["status"], 401, "{out:#}");
    assert_eq!(step(&out, "one_identity_after")["status"], 401, "{out:#}");
    assert_eq!(step(&out, "two_identity_after")["status"], 401, "{out:#}");
    assert_eq!(step(&out, "three_identity_after")["status"], 401, "{out:#}");
    let after = step(&out, "three_after_logout");
    assert!(after["idp"].as_u64() > after["idpBefore"].as_u64(), "the provider is needed again: {out:#}");

    let metrics = s.sidecar.metrics().await;
    for line in [
        r#"portcullis_logins_total{app="shop/one",result="handoff"}"#,
        r#"portcullis_logins_total{app="shop/two",result="ok"}"#,
        r#"portcullis_logins_total{app="shop/staff",result="forbidden"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

/// Hand-off codes the application must refuse, each answered with its reason and no session:
/// expired, for another application, tampered, signed by another key, of another type, for
/// another browser's hand-off, from another authentication host, without the state cookie,
/// and replayed; a well-formed one is accepted once. The authentication host hands codes only
/// to the hand-off URL of applications that use it. B-SSO-3, B-SSO-6, B-SSO-9, B-LOGIN-3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hand_off_codes_and_return_urls_are_refused() {
    let s = Setup::start().await;
    let out = s.run("codes");
    let refused = [
        ("expired", 401, "handoff_code_expired"),
        ("wrong_audience", 401, "handoff_code_wrong_audience"),
        ("tampered", 401, "handoff_code_invalid"),
        ("other_key", 401, "handoff_code_invalid"),
        ("other_type", 401, "handoff_code_invalid"),
        ("other_browser", 400, "handoff_state_mismatch"),
        ("other_auth_host", 401, "handoff_code_invalid"),
        ("no_state_cookie", 400, "handoff_state_missing"),
        ("replayed", 401, "handoff_code_replayed"),
    ];
    for (what, status, reason) in refused {
        if what != "no_state_cookie" && what != "replayed" {
            let start = step(&out, &format!("{what}_start"));
            assert_eq!(start["st"], true, "the state cookie holds a state: {out:#}");
            let location = start["location"].as_str().unwrap();
            assert!(location.starts_with(&format!("{}/.portcullis/authenticate?", s.origin("login.test"))), "{out:#}");
        }
        let got = step(&out, what);
        assert_eq!(
            (got["status"].as_u64(), got["json"]["error"].as_str()),
            (Some(status), Some(reason)),
            "{what}: {out:#}"
        );
        if what != "replayed" {
            assert_eq!(got["session"], false, "{what}: no session: {out:#}");
        }
    }
    let valid = step(&out, "valid");
    assert_eq!(valid["url"], format!("{}/data", s.origin("app-two.test")), "{out:#}");
    assert_eq!((valid["status"].as_u64(), body_email(valid)), (Some(200), Some("mallory@mysite.com".into())));
    assert_eq!(valid["session"], true, "{out:#}");

    for (what, reason) in [
        ("return_not_member", "handoff_return_off_domain"),
        ("return_evil", "handoff_return_off_domain"),
        ("return_other_path", "handoff_return_invalid"),
        ("return_bad_state", "handoff_state_invalid"),
        ("rd_evil", "rd_off_domain"),
    ] {
        let got = step(&out, what);
        assert_eq!(
            (got["status"].as_u64(), got["json"]["error"].as_str()),
            (Some(400), Some(reason)),
            "{what}: {out:#}"
        );
    }
    // A member's hand-off URL with no identity session: to the provider, with the one redirect URI.
    let first = step(&out, "return_member")["first"].as_str().expect("went to the provider").to_owned();
    assert!(first.starts_with(&s.idp.issuer), "{out:#}");
    let redirect_uri = format!("https://login.test:{}/.portcullis/callback", s.port);
    assert_eq!(url_param(&first, "redirect_uri").as_deref(), Some(redirect_uri.as_str()), "{first}");
    assert_eq!(step(&out, "auth_other_path")["status"], 404, "{out:#}");
}

fn url_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// Applications sharing an authentication host with different provider clients cannot share
/// one redirect URI: the configuration is refused, naming both, and the sidecar stays unready
/// rather than guess which client to use. B-SSO-1.
#[tokio::test]
async fn applications_sharing_a_host_with_different_clients_are_refused() {
    let port = free_port();
    let yaml = manifests(port, "https://idp.test");
    let two = yaml.find("name: two").expect("app two");
    let mismatched =
        format!("{}{}", &yaml[..two], yaml[two..].replacen(&format!("clientId: {CLIENT_ID}"), "clientId: other", 1));
    assert_ne!(mismatched, yaml);
    let sc = common::sidecar(&mismatched, "http://127.0.0.1:9").port(port).no_wait().process().start().await;
    let r = common::get(&format!("http://{}/readyz", sc.admin), &[]).await.unwrap();
    assert_eq!(r.status, 503, "{}", sc.logs());
    let logs = sc.logs();
    assert!(logs.contains("login.authenticationHost login.test:"), "{logs}");
    assert!(logs.contains("shop/one and shop/two name it with different oidc settings"), "{logs}");
}

/// The README's example compiles: three applications naming one authentication host.
#[test]
fn the_sso_example_compiles() {
    let yaml = std::fs::read_to_string(repo_root().join("examples/sso/access.yaml")).expect("the example");
    let snapshot = common::compile_manifests(&yaml);
    assert_eq!(snapshot.applications.len(), 3);
    for app in &snapshot.applications {
        let login = app.login.as_ref().expect("login compiled");
        assert_eq!(
            (login.authentication_host.as_deref(), login.application_session_secs),
            (Some("login.mysite.com"), Some(300)),
            "{}",
            app.id
        );
    }
}
