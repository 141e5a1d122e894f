//! Sign-in harness: a test CA and server certificates (rcgen), a real OpenID provider
//! (`tests/browser/idp.mjs`, npm's oidc-provider), a small app that answers CORS itself, and
//! one browser scenario run in Debian's chromium (`tests/browser/scenario.mjs`). Nothing is
//! skipped: without node, its modules or chromium the tests fail saying to run tests/run.sh.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::{repo_root, Recorded, SidecarBuilder};

/// The OIDC client the IdP registers and the sidecar uses.
pub const CLIENT_ID: &str = "portcullis";
pub const CLIENT_SECRET: &str = "browser-test-client-secret";
pub const CHROMIUM: &str = "/usr/bin/chromium";

pub fn browser_dir() -> PathBuf {
    repo_root().join("tests/browser")
}

/// Fails (never skips) when what the sign-in tests run is missing.
pub fn require_tools(need_chromium: bool) {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is not installed: run `bash tests/run.sh`, which installs what the tests need"
    );
    assert!(
        browser_dir().join("node_modules/oidc-provider").exists()
            && browser_dir().join("node_modules/playwright-core").exists(),
        "tests/browser/node_modules is missing: run `bash tests/run.sh` (it runs `npm ci` in tests/browser)"
    );
    if need_chromium {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: run `bash tests/run.sh` (it installs Debian's chromium with apt-get)"
        );
    }
}

/// The sidecar serving `manifests` over TLS on `port`, in front of `upstream`, with a
/// certificate for `hosts` from a new test CA written to `dir` (returned for `SSL_CERT_FILE`).
pub fn tls_sidecar(dir: &Path, hosts: &[&str], port: u16, manifests: &str, upstream: &str) -> (Pki, SidecarBuilder) {
    let pki = Pki::new(dir, hosts);
    let builder = crate::sidecar(manifests, upstream)
        .port(port)
        .arg("--tls-cert")
        .arg(pki.cert.to_str().expect("utf-8 path"))
        .arg("--tls-key")
        .arg(pki.key.to_str().expect("utf-8 path"));
    (pki, builder)
}

// === PKI ===

/// A test CA and a server certificate for `hosts`, as PEM files in `dir`.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    ca_params: rcgen::CertificateParams,
    ca_key: rcgen::KeyPair,
}

impl Pki {
    pub fn new(dir: &Path, hosts: &[&str]) -> Pki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "Portcullis test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let pki =
            Pki { ca: dir.join("ca.pem"), cert: dir.join("cert.pem"), key: dir.join("key.pem"), ca_params, ca_key };
        std::fs::write(&pki.ca, ca_cert.pem()).expect("write CA");
        pki.issue(hosts, "server-1");
        pki
    }

    /// Writes a new server certificate (common name `cn`) and key over the served pair.
    pub fn issue(&self, hosts: &[&str], cn: &str) {
        let (cert, key) = self.server_pem(hosts, cn);
        std::fs::write(&self.key, key).expect("write key");
        std::fs::write(&self.cert, cert).expect("write cert");
    }

    /// A server certificate and its PKCS#8 key, as PEM.
    pub fn server_pem(&self, hosts: &[&str], cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("server key");
        let mut params =
            rcgen::CertificateParams::new(hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()).expect("params");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).expect("sign server cert");
        (cert.pem(), key.serialize_pem())
    }
}

// === Identity provider ===

/// `tests/browser/idp.mjs` on a free loopback port; killed (by its PID) on drop.
pub struct Idp {
    child: Child,
    pub issuer: String,
}

impl Idp {
    pub fn start(redirect_uris: &[String]) -> Idp {
        require_tools(false);
        let port = crate::free_port();
        let mut child = Command::new("node")
            .arg(browser_dir().join("idp.mjs"))
            .arg(port.to_string())
            .arg(redirect_uris.join(","))
            .current_dir(browser_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node idp.mjs");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        // `ready <issuer>` once listening; EOF means it died (its stderr is in the test output).
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).expect("read idp stdout");
        // Keep draining: a closed pipe would kill node at its next write (EPIPE).
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                eprint!("idp: {sink}");
                sink.clear();
            }
        });
        let issuer =
            line.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("idp did not start: {line:?}")).to_owned();
        Idp { child, issuer }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === The app ===

/// The protected app: answers JSON naming what it received (method, path, the identity header,
/// whether a session cookie reached it); answers CORS itself for any origin on `bypass.*` (for
/// `bypassOptionsToOrigin`); `/set-cookie` sets a cookie; `/page.html` is the calling page.
pub struct App {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    pub async fn start() -> App {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind app");
        let addr = listener.local_addr().expect("addr");
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let rec = requests.clone();
        let task = crate::serve_loop(listener, move |req| {
            let answer = app_answer(req, &rec);
            async move { answer }
        });
        App { addr, requests, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const PAGE: &str = "<!doctype html><title>example.com</title><p>calling page</p>";

fn app_answer(req: Request<Incoming>, rec: &Mutex<Vec<Recorded>>) -> Response<Full<Bytes>> {
    rec.lock().expect("lock").push(Recorded {
        method: req.method().clone(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    let h = req.headers();
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let cookie = text("cookie").unwrap_or_default();
    let body = serde_json::json!({
        "app": "protected",
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "email": text("cf-access-authenticated-user-email"),
        "assertion": h.contains_key("cf-access-jwt-assertion"),
        "session_cookie_reached_app": cookie.contains("CF_Authorization"),
    });
    if req.uri().path() == "/page.html" {
        // The calling page of https://example.com (served through the sidecar, so the browser
        // sees both origins in the same address space and Local Network Access stays quiet).
        let mut page = Response::new(Full::new(Bytes::from_static(PAGE.as_bytes())));
        page.headers_mut().insert("content-type", "text/html".parse().unwrap());
        return page;
    }
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    let out = resp.headers_mut();
    out.insert("content-type", "application/json".parse().unwrap());
    let bypass_host = text("host").is_some_and(|h| h.starts_with("bypass."));
    if let Some(origin) = h.get("origin").cloned().filter(|_| bypass_host) {
        // The app's own CORS, only on the host whose CORS the sidecar leaves to the app (so
        // elsewhere every CORS header the browser sees, Vary included, is the sidecar's).
        out.insert("access-control-allow-origin", origin);
        out.insert("access-control-allow-credentials", "true".parse().unwrap());
        out.insert("vary", "Origin".parse().unwrap());
        if req.method() == Method::OPTIONS {
            out.insert("access-control-allow-methods", "GET, POST".parse().unwrap());
            out.insert("access-control-allow-headers", "office".parse().unwrap());
            *resp.status_mut() = StatusCode::NO_CONTENT;
        }
    }
    if req.uri().path() == "/set-cookie" {
        resp.headers_mut().insert("set-cookie", "upstream_session=abc; Path=/; Secure; SameSite=None".parse().unwrap());
    }
    resp
}

// === Browser ===

/// Runs `scenario.mjs <name>` and returns the JSON it printed (panics with its output if none).
pub fn run_scenario(name: &str, config: &serde_json::Value) -> serde_json::Value {
    run_script("scenario.mjs", name, config)
}

/// Runs `tests/browser/<script> <name> <config>` and returns the JSON it printed.
pub fn run_script(script: &str, name: &str, config: &serde_json::Value) -> serde_json::Value {
    require_tools(true);
    let out = Command::new("node")
        .arg(browser_dir().join(script))
        .arg(name)
        .arg(config.to_string())
        .current_dir(browser_dir())
        .output()
        .expect("run node scenario.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| {
        panic!(
            "scenario {name} printed no JSON; status {}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let v: serde_json::Value = serde_json::from_str(line).expect("scenario JSON");
    assert!(v.get("error").is_none(), "scenario {name} failed in the browser: {v:#}");
    v
}

/// The step `what` of a scenario's output.
pub fn step<'a>(out: &'a serde_json::Value, what: &str) -> &'a serde_json::Value {
    out["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["what"] == what))
        .unwrap_or_else(|| panic!("no step {what} in {out:#}"))
}

/// Bounded wait for `f`.
pub async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    crate::eventually(Duration::from_secs(10), what, || {
        let ok = f();
        async move { ok.then_some(()) }
    })
    .await
}
