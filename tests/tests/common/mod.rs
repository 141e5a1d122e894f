//! Test harness: a recording upstream app, a JWKS server, and the real `portcullis-sidecar`
//! binary started on free loopback ports with manifests written to a temp dir. Every wait is a
//! bounded poll; nothing sleeps and hopes.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// Repository root (the workspace).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

pub fn fixture(rel: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(rel)
}

/// The sidecar binary next to this test executable (cargo builds it for `cargo test --workspace`),
/// or `$PORTCULLIS_SIDECAR_BIN` (the chaos run measures a release build from debug tests).
pub fn sidecar_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("PORTCULLIS_SIDECAR_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>/deps");
    let bin = dir.join("portcullis-sidecar");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p portcullis-sidecar` (the README's test command does)",
        bin.display()
    );
    bin
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// Polls `f` every 20 ms until it returns Some, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub mod cluster;

// === Upstream ===

/// What the upstream app received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
}

/// A real HTTP app on 127.0.0.1 that records requests. Paths with special behaviour:
/// `/slow` waits 3 s; `/set-cookie` sets a cookie; `/app-cors` sets its own CORS headers;
/// `/dup-cors` sets `Access-Control-Allow-Origin` twice (as an app behind a CORS-adding proxy
/// does); `/cors-no-vary` allows `https://example.com` with credentials but sends no `Vary`;
/// `/redirect` answers 302 to any method; `/ws` accepts an upgrade and echoes bytes;
/// `/read-body` answers once the request body has been read.
pub struct Upstream {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let requests: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let rec = requests.clone();
        let task = serve_loop(listener, move |req| upstream_answer(req, rec.clone()));
        Self { addr, requests, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        self.requests.lock().expect("lock").len()
    }

    pub fn last(&self) -> Recorded {
        self.requests.lock().expect("lock").last().cloned().expect("the upstream received a request")
    }
}

/// Accepts connections on `listener` and answers every request with `answer` (HTTP/1.1 and
/// h2c, upgrades allowed), until the returned task is aborted.
pub fn serve_loop<F, Fut>(listener: TcpListener, answer: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let fut = answer(req);
                    async move { Ok::<_, std::convert::Infallible>(fut.await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upstream_answer(mut req: Request<Incoming>, rec: Arc<Mutex<Vec<Recorded>>>) -> Response<Full<Bytes>> {
    rec.lock().expect("lock").push(Recorded {
        method: req.method().clone(),
        uri: req.uri().to_string(),
        headers: req.headers().clone(),
    });
    let path = req.uri().path().to_owned();
    let mut resp = Response::new(Full::new(Bytes::from_static(b"{\"app\":\"upstream\"}")));
    resp.headers_mut().insert("content-type", "application/json".parse().unwrap());
    match path.as_str() {
        "/slow" => tokio::time::sleep(Duration::from_secs(3)).await,
        "/read-body" => {
            // Answers only once the whole request body arrived (or failed).
            let _ = req.body_mut().collect().await;
        }
        "/set-cookie" | "/api/set-cookie" | "/set-cookie-direct" => {
            resp.headers_mut().insert("set-cookie", "upstream_session=abc; Path=/".parse().unwrap());
        }
        "/app-cors" => {
            let h = resp.headers_mut();
            h.insert("access-control-allow-origin", "https://evil.test".parse().unwrap());
            h.insert("access-control-allow-credentials", "false".parse().unwrap());
            h.insert("vary", "Accept-Encoding".parse().unwrap());
        }
        "/dup-cors" => {
            let h = resp.headers_mut();
            h.append("access-control-allow-origin", "https://example.com".parse().unwrap());
            h.append("access-control-allow-origin", "https://example.com".parse().unwrap());
            h.insert("vary", "Origin".parse().unwrap());
        }
        "/cors-no-vary" => {
            let h = resp.headers_mut();
            h.insert("access-control-allow-origin", "https://example.com".parse().unwrap());
            h.insert("access-control-allow-credentials", "true".parse().unwrap());
        }
        "/redirect" => {
            *resp.status_mut() = StatusCode::FOUND;
            resp.headers_mut().insert("location", "/elsewhere".parse().unwrap());
        }
        "/ws" => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on_upgrade.await {
                    let mut io = TokioIo::new(up);
                    let mut buf = [0u8; 64];
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    if let Ok(n) = io.read(&mut buf).await {
                        let _ = io.write_all(&buf[..n]).await;
                    }
                }
            });
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("connection", "upgrade".parse().unwrap());
            r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
            return r;
        }
        _ => {}
    }
    resp
}

// === JWKS server ===

/// Serves a JWKS document at `/jwks`, swappable at run time, counting fetches.
pub struct JwksServer {
    pub addr: SocketAddr,
    pub body: Arc<Mutex<(StatusCode, String)>>,
    pub hits: Arc<Mutex<usize>>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(jwks: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind jwks");
        let addr = listener.local_addr().expect("addr");
        let body = Arc::new(Mutex::new((StatusCode::OK, jwks)));
        let hits = Arc::new(Mutex::new(0usize));
        let (b, h) = (body.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (b, h) = (b.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |_req: Request<Incoming>| {
                        *h.lock().expect("lock") += 1;
                        let (status, text) = b.lock().expect("lock").clone();
                        async move {
                            let mut r = Response::new(Full::new(Bytes::from(text)));
                            *r.status_mut() = status;
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Self { addr, body, hits, task }
    }

    pub fn uri(&self) -> String {
        format!("http://{}/jwks", self.addr)
    }

    pub fn hits(&self) -> usize {
        *self.hits.lock().expect("lock")
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub mod signin;

// === Sidecar process ===

/// A running `portcullis-sidecar` process; killed (by its own PID) on drop.
pub struct Sidecar {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempdir::TempDir,
    pub log: PathBuf,
}

pub mod tempdir {
    use std::path::{Path, PathBuf};

    /// A directory under the system temp dir, removed on drop.
    pub struct TempDir(PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> Self {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "portcullis-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).expect("create temp dir");
            Self(p)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Builder for a sidecar process.
pub struct SidecarBuilder {
    manifests: String,
    upstream: String,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    port: Option<u16>,
    wait_ready: bool,
    /// `authz`: serve as the external authorizer instead of the proxy.
    authz: bool,
}

pub fn sidecar(manifests: &str, upstream: &str) -> SidecarBuilder {
    SidecarBuilder {
        manifests: manifests.to_owned(),
        upstream: upstream.to_owned(),
        extra: vec![],
        env: vec![],
        port: None,
        wait_ready: true,
        authz: false,
    }
}

/// `portcullis-sidecar authz` on free ports with these manifests.
pub fn authorizer(manifests: &str) -> SidecarBuilder {
    SidecarBuilder { authz: true, ..sidecar(manifests, "http://127.0.0.1:9") }
}

impl SidecarBuilder {
    /// An environment variable of the process (e.g. `SSL_CERT_FILE`).
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Listen on this port (when the manifests must name it) instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.to_owned());
        self
    }

    /// Do not wait for /readyz (for sidecars that must stay unready).
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    pub async fn start(self) -> Sidecar {
        let mut dir = tempdir::TempDir::new("sidecar");
        let manifests = dir.path().join("access.yaml");
        std::fs::write(&manifests, &self.manifests).expect("write manifests");
        // free_port() releases the port it found, so another test can take it before the
        // sidecar binds it: a start that fails on a taken port is retried on new ports.
        for attempt in 1..=5 {
            let log = dir.path().join("sidecar.log");
            let (port, admin_port) = (self.port.unwrap_or_else(free_port), free_port());
            let child = Command::new(sidecar_bin())
                .args(self.authz.then_some("authz"))
                .arg("--manifests")
                .arg(&manifests)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
                .args(["--upstream", &self.upstream])
                // Two worker threads and debug logs, unless the test gives its own.
                .args(
                    [["--worker-threads", "2"], ["--log", "debug"]]
                        .into_iter()
                        .filter(|[flag, _]| !self.extra.iter().any(|a| a == flag))
                        .flatten(),
                )
                .args(&self.extra)
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log file"))
                .spawn()
                .expect("start sidecar");
            let mut s = Sidecar {
                child,
                addr: ([127, 0, 0, 1], port).into(),
                admin: ([127, 0, 0, 1], admin_port).into(),
                dir,
                log,
            };
            match s.wait_up(self.wait_ready).await {
                Ok(()) => return s,
                Err(log) if attempt < 5 && log.contains("Address already in use") => {
                    // Take the directory back for the next attempt; the dead child is reaped.
                    let _ = s.child.wait();
                    dir = std::mem::replace(&mut s.dir, tempdir::TempDir::new("sidecar-unused"));
                }
                Err(log) => panic!("sidecar did not come up; log:\n{log}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

impl Sidecar {
    /// Waits for `/readyz` to answer 200 (`ready`) or for the admin port to answer at all.
    /// `Err` with the log when the process exited or did not come up within 10 s.
    async fn wait_up(&mut self, ready: bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let path = if ready { "readyz" } else { "healthz" };
        loop {
            if let Ok(r) = get(&format!("http://{}/{path}", self.admin), &[]).await {
                if !ready || r.status == 200 {
                    return Ok(());
                }
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                return Err(self.logs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Sidecar {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn manifests_path(&self) -> PathBuf {
        self.dir.path().join("access.yaml")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        get(&format!("http://{}/metrics", self.admin), &[]).await.expect("metrics").text()
    }

    /// Sends SIGTERM (graceful drain).
    pub fn terminate(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === Client ===

/// A response, fully read.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("ascii header"))
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("?").to_owned()).collect()
    }

    /// Whether any `Access-Control-Allow-*` header is present.
    pub fn has_allow_headers(&self) -> bool {
        self.headers.keys().any(|k| k.as_str().starts_with("access-control-allow-"))
    }
}

pub async fn send(method: &str, url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    let mut req = Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    exchange(req.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?).await
}

/// Sends a request over a fresh client and reads the whole answer (15 s at most).
async fn exchange(req: Request<Full<Bytes>>) -> Result<Answer, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(Duration::from_secs(15), client.request(req))
        .await
        .map_err(|_| "timeout".to_owned())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(Answer { status: parts.status.as_u16(), headers: parts.headers, body })
}

pub async fn get(url: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    send("GET", url, headers).await
}

/// Writes raw bytes to `addr` and returns everything read until the server closes or 2 s pass.
pub fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    s.write_all(request).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && !out.starts_with(b"HTTP/1.1 101") {
                    // Enough for a status line and headers of our small error answers.
                    if String::from_utf8_lossy(&out).contains("content-length: ") {
                        let text = String::from_utf8_lossy(&out).into_owned();
                        if body_complete(&text) {
                            break;
                        }
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn body_complete(text: &str) -> bool {
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let len = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>().ok()))
        .flatten();
    len.is_some_and(|n| body.len() >= n)
}

// === Tokens ===

/// Mints a JWT signed with a fixture key (`rsa.pem`, `rsa2.pem`, `ec.pem`, `ed25519.pem`).
pub fn mint(key_file: &str, alg: jsonwebtoken::Algorithm, kid: Option<&str>, claims: serde_json::Value) -> String {
    let pem = std::fs::read(fixture(&format!("keys/{key_file}"))).expect("fixture key");
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 | jsonwebtoken::Algorithm::ES384 => jsonwebtoken::EncodingKey::from_ec_pem(&pem),
        jsonwebtoken::Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(&pem),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
    }
    .expect("fixture key parses");
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

/// Standard claims for the test issuer and audience.
pub fn claims(email: &str, exp_in: i64) -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": AUDIENCE, "email": email, "sub": email,
        "iat": now(), "exp": now() + exp_in, "groups": ["staff"],
    })
}

pub const ISSUER: &str = "https://issuer.test";
pub const AUDIENCE: &str = "aud-tag-1";
pub const TOKEN_ID: &str = "ci.access";
pub const TOKEN_SECRET: &str = "ci-secret-0123456789abcdef0123456789abcdef";

/// The fixture JWKS, for inline `jwks:` or a JWKS server.
pub fn jwks_json() -> String {
    std::fs::read_to_string(fixture("keys/jwks.json")).expect("fixture jwks")
}

/// Indents a JSON document for a YAML block scalar.
pub fn yaml_block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// Manifests of the seed's setup: `api.mysite.com` with the seed's CORS, a service token and
/// a staff policy; `extra` is appended verbatim (more documents or spec overrides).
pub fn seed_manifests(jwks_source: &str, cors: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: api, namespace: shop }}
spec:
  domains: [api.mysite.com, "*.apps.mysite.com"]
  identity:
    issuers:
      - issuer: {ISSUER}
        audiences: [{AUDIENCE}]
{jwks_source}
  policies:
    - name: ci
      action: ServiceAuth
      include: [ {{ serviceToken: {{ name: ci-token }} }} ]
    - name: contractors-out
      action: Block
      include: [ {{ email: contractor@mysite.com }} ]
    - name: staff
      action: Allow
      include: [ {{ emailDomain: mysite.com }} ]
{cors}
---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessServiceToken
metadata: {{ name: ci-token, namespace: shop }}
spec: {{ duration: 8760h, secretName: ci-token-credentials }}
---
apiVersion: v1
kind: Secret
metadata: {{ name: ci-token-credentials, namespace: shop }}
stringData: {{ client-id: {TOKEN_ID}, client-secret: {TOKEN_SECRET} }}
{extra}"#
    )
}

/// A second application `shop/site` on `example.com` (staff allowed) with a forward route
/// `/api/` to `upstream` carrying service token `token`: a document to append to
/// `seed_manifests`.
pub fn site_with_forward_route(upstream: &str, token: &str) -> String {
    format!(
        r#"---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: {{ name: site, namespace: shop }}
spec:
  domains: [example.com]
  identity:
    issuers:
      - issuer: {ISSUER}
        audiences: [{AUDIENCE}]
{jwks}
  policies:
    - name: staff
      action: Allow
      include: [ {{ emailDomain: mysite.com }} ]
  forwardRoutes:
    - pathPrefix: /api/
      upstream: {upstream}
      stripPrefix: true
      serviceTokenRef: {{ name: {token} }}
      stripSetCookie: true
"#,
        jwks = inline_jwks()
    )
}

/// The seed's CORS section.
pub const SEED_CORS: &str = r#"  cors:
    allowedOrigins: ["https://example.com", "https://*.example.org"]
    allowedMethods: [GET, POST]
    allowedHeaders: [office]
    allowCredentials: true
    maxAge: 600
"#;

/// A document to append to `seed_manifests`: `api.mysite.com/public` is public (Bypass).
pub const PUBLIC_BYPASS: &str = r#"---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: { name: public, namespace: shop }
spec:
  domains: [api.mysite.com/public]
  policies:
    - name: open
      action: Bypass
      include: [ { everyone: {} } ]
"#;

/// Inline JWKS lines for `seed_manifests`.
pub fn inline_jwks() -> String {
    format!("        jwks: |\n{}", yaml_block(&jwks_json(), 10))
}

pub fn header_map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Sends a request with a JSON body.
pub async fn send_body(method: &str, url: &str, body: &str) -> Result<Answer, String> {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    exchange(req).await
}

/// A sidecar in cluster mode: no manifests, configured only by signed pushes.
pub async fn sidecar_without_manifests(upstream: &str, push_key_b64: &str, namespace: &str, pod: &str) -> Sidecar {
    // Retried on new ports when one found free was taken before the sidecar bound it.
    for _ in 1..5 {
        match try_sidecar_without_manifests_on(upstream, push_key_b64, namespace, pod, free_port(), free_port()).await {
            Ok(s) => return s,
            Err(log) if log.contains("Address already in use") => continue,
            Err(log) => panic!("sidecar did not come up; log:\n{log}"),
        }
    }
    sidecar_without_manifests_on(upstream, push_key_b64, namespace, pod, free_port(), free_port()).await
}

/// [`sidecar_without_manifests`] on given ports (a restarted container keeps its ports).
pub async fn sidecar_without_manifests_on(
    upstream: &str,
    push_key_b64: &str,
    namespace: &str,
    pod: &str,
    port: u16,
    admin_port: u16,
) -> Sidecar {
    try_sidecar_without_manifests_on(upstream, push_key_b64, namespace, pod, port, admin_port)
        .await
        .unwrap_or_else(|log| panic!("sidecar did not come up; log:\n{log}"))
}

async fn try_sidecar_without_manifests_on(
    upstream: &str,
    push_key_b64: &str,
    namespace: &str,
    pod: &str,
    port: u16,
    admin_port: u16,
) -> Result<Sidecar, String> {
    let dir = tempdir::TempDir::new("sidecar-push");
    let key_file = dir.path().join("push.pub");
    std::fs::write(&key_file, push_key_b64).expect("write key");
    let log = dir.path().join("sidecar.log");
    let child = Command::new(sidecar_bin())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
        .args(["--upstream", upstream])
        .arg("--push-public-key")
        .arg(&key_file)
        .args(["--pod-namespace", namespace, "--pod-name", pod])
        .args(["--worker-threads", "2", "--log", "debug"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("start sidecar");
    let mut s =
        Sidecar { child, addr: ([127, 0, 0, 1], port).into(), admin: ([127, 0, 0, 1], admin_port).into(), dir, log };
    s.wait_up(false).await.map(|()| s)
}

/// The sidecar's current boot (`GET /config/boot`), which pushes are sealed to.
pub async fn boot_info(sc: &Sidecar) -> portcullis_crds::push::BootInfo {
    let r = get(&format!("http://{}/config/boot", sc.admin), &[]).await.expect("boot info");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("boot info JSON")
}

/// A push of `snapshot` to `shop/<pod>`, issued now, sealed to `boot` and signed by `key`:
/// the body the operator sends.
pub fn sealed_push(
    key: &portcullis_crds::push::SigningKey,
    boot: &portcullis_crds::push::BootInfo,
    sequence: u64,
    pod: &str,
    snapshot: portcullis_crds::Snapshot,
) -> String {
    let push = portcullis_crds::push::ConfigPush {
        sequence,
        target: portcullis_crds::push::PushTarget { namespace: "shop".into(), pod: pod.into() },
        issued_at: now(),
        snapshot,
    };
    serde_json::to_string(&key.seal(&push, boot).expect("seal")).expect("JSON")
}

/// Compiles manifests as the operator and the standalone sidecar do.
pub fn compile_manifests(yaml: &str) -> portcullis_crds::Snapshot {
    let mut res = portcullis_crds::manifests::Resources::default();
    res.add_yaml("test manifests", yaml).expect("test manifests parse");
    res.compile("default").expect("test manifests compile").snapshot
}
