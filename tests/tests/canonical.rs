//! What is decided is what is forwarded (issue 17, docs/behaviour.md "What the app receives"):
//! requests built to confuse the authority, the path and the header names go through the real
//! sidecar binary to a recording upstream over real sockets, and whatever reaches the upstream
//! must route — read as the sidecar reads it, and as the servers behind it read paths (merging
//! slashes, stripping `;parameters`, decoding `%2F`, taking `\` for `/`) — to the same public
//! application the sidecar decided for, with no client copy of a protected header.
//!
//! The configuration has one public host path (`www.example.test`, Bypass everyone), a protected
//! prefix on it (`/admin`), a public prefix that keeps escaped slashes (`/files`), and a protected
//! host (`secret.example.test`). The client never presents credentials, so every request that
//! reaches the upstream was let through by a Bypass policy: if any of them can be read as the
//! protected prefix or host, the sidecar let an anonymous client into protected content.

mod common;

use std::net::SocketAddr;

use common::*;
use http::{HeaderMap, Uri, Version};
use portcullis_crds::paths::canonical_path;
use portcullis_sidecar::decide::client_headers::PROTECTED_NAMES;
use portcullis_sidecar::decide::route::{request_target, Router, Target};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn manifests() -> String {
    let issuer = format!(
        "  identity:\n    headerName: X-My-Jwt\n    issuers:\n      - issuer: {ISSUER}\n        audiences: [{AUDIENCE}]\n{}\n",
        inline_jwks()
    );
    let app = |name: &str, domain: &str, policy: &str, extra: &str| {
        format!(
            "---\napiVersion: access.portcullis.dev/v1alpha1\nkind: AccessApplication\nmetadata: {{ name: {name}, namespace: shop }}\nspec:\n  domains: [\"{domain}\"]\n{issuer}  policies:\n{policy}{extra}"
        )
    };
    let public = "    - { name: public, action: Bypass, include: [ { everyone: {} } ] }\n";
    let staff = "    - { name: staff, action: Allow, include: [ { emailDomain: mysite.com } ] }\n";
    [
        app("www", "www.example.test", public, ""),
        app("admin", "www.example.test/admin", staff, ""),
        app("files", "www.example.test/files", public, "  paths: { escapedSlashes: KeepUnchanged }\n"),
        app("secret", "secret.example.test", staff, ""),
    ]
    .concat()
}

/// The applications an anonymous client may reach.
const PUBLIC: [&str; 2] = ["www", "files"];

struct Oracle {
    router: Router,
    names: Vec<String>,
}

impl Oracle {
    fn new() -> Self {
        let snapshot = compile_manifests(&manifests());
        let names = snapshot.applications.iter().map(|a| a.id.name.clone()).collect();
        Self { router: Router::new(&snapshot.applications), names }
    }

    /// The application the sidecar's own code routes a request to (what was decided).
    fn decided(&self, version: Version, uri: &Uri, headers: &HeaderMap) -> Option<&str> {
        self.decide(version, uri, headers).map(|(app, _)| app)
    }

    /// [`Oracle::decided`], with the target it routed (whose forward path the app receives).
    fn decide<'r>(&self, version: Version, uri: &'r Uri, headers: &'r HeaderMap) -> Option<(&str, Target<'r>)> {
        let target = request_target(version, uri, headers).ok()?;
        let app = self.router.route_target(&target).ok()??;
        Some((&self.names[app], target))
    }

    /// Every application the upstream's request can be read as, by the readings servers make.
    fn readings(&self, host: &str, path: &str) -> Vec<Option<&str>> {
        let host = host
            .rsplit_once(':')
            .map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host });
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let decoded = percent_decode(path);
        // An app that decodes twice (a framework behind a server that decoded already).
        let twice = percent_decode(&decoded);
        let variants = [
            path.to_owned(),
            decoded.clone(),
            path.replace('\\', "/"),
            decoded.replace('\\', "/"),
            twice.clone(),
            twice.replace('\\', "/"),
        ];
        // Each also as a server reads it that removes dot segments before it merges slashes
        // (RFC 3986 §5.2.4 keeps empty segments: `/a//../b` is `/a/b`, merged first it is `/b`).
        variants
            .iter()
            .flat_map(|p| [p.clone(), dots_removed_unmerged(p)])
            .filter_map(|p| canonical_path(&p).ok().map(|c| c.matching.into_owned()))
            .map(|p| self.router.route(&host, &p).map(|i| self.names[i].as_str()))
            .collect()
    }
}

/// RFC 3986 §5.2.4 on a decoded path, empty segments kept; a segment is a dot segment by its
/// name before any `;parameter`, as Tomcat reads `..;x`.
fn dots_removed_unmerged(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match seg.split(';').next().unwrap_or("") {
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            "." if last => out.push(""),
            "." => {}
            _ => out.push(seg),
        }
    }
    format!("/{}", out.join("/"))
}

#[test]
fn dot_removal_without_merging_keeps_empty_segments() {
    assert_eq!(dots_removed_unmerged("/a//../b"), "/a/b");
    assert_eq!(dots_removed_unmerged("/files/x/..;/.."), "/");
    assert_eq!(dots_removed_unmerged("/files/x/.."), "/files/");
    assert_eq!(canonical_path("/a//../b").unwrap().matching, "/b");
}

/// Decodes every `%XX` once, as `urllib.parse.unquote` and servlet containers do (invalid
/// escapes are kept).
fn percent_decode(path: &str) -> String {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    while i < b.len() {
        if b[i] == b'%' && i + 3 <= b.len() {
            if let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(hi * 16 + lo);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Header names a client may use to smuggle a protected header: each protected name, spelled
/// with `_` for `-` and in odd case.
fn forged_names() -> Vec<String> {
    let mut out = Vec::new();
    for name in PROTECTED_NAMES.iter().map(|n| n.as_str()).filter(|n| *n != "x-forwarded-for") {
        out.push(name.to_owned());
        out.push(name.replace('-', "_"));
        out.push(name.to_ascii_uppercase().replace('-', "_"));
        if let Some((first, rest)) = name.split_once('-') {
            out.push(format!("{first}_{rest}"));
        }
    }
    out.push("x-my-jwt".into());
    out
}

/// A reading of a header name the way CGI, WSGI, PHP and Rack read it.
fn cgi(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// Path segments built to confuse: case, escapes of letters and dots, dot segments with
/// parameters, escaped slashes and backslashes, double encoding.
const SEGMENTS: &[&str] = &[
    "admin",
    "ADMIN",
    "%61dmin",
    "files",
    "x",
    "public",
    "..",
    ".",
    "",
    "%2e%2e",
    ".%2E",
    "..;",
    "..;x=1",
    "admin;p=1",
    ";x",
    "%2F",
    "%2f",
    "%5C",
    "\\",
    "..%2F",
    "admin%2Fx",
    "%00",
    "%2541dmin",
    "%252e%252e",
    "%252F",
    "%3B",
    "a.txt",
    // Escapes inside a `;parameter`: invisible to matching, decoded by some apps first.
    "a;x%2F..",
    ";%2F..%2F..",
    // A backslash beside dots: a byte to some servers, a slash to others.
    "%5C..",
    "..%5C",
];

fn segment() -> impl Strategy<Value = String> {
    prop::sample::select(SEGMENTS).prop_map(str::to_owned)
}

fn path() -> impl Strategy<Value = String> {
    (prop::bool::ANY, prop::collection::vec(segment(), 0..6), prop::bool::ANY).prop_map(|(double, segs, slash)| {
        let mut p = if double { "//".to_owned() } else { "/".to_owned() };
        p.push_str(&segs.join("/"));
        if slash {
            p.push('/');
        }
        p
    })
}

fn authority() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "www.example.test",
        "WWW.Example.Test.",
        "www.example.test:8080",
        "secret.example.test",
        "Secret.Example.Test:80",
        "unknown.example.test",
    ])
    .prop_map(str::to_owned)
}

#[derive(Clone, Debug)]
struct Case {
    absolute: Option<String>,
    hosts: Vec<String>,
    path: String,
    forged: Vec<String>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::option::of(authority()),
        prop::collection::vec(authority(), 0..3),
        path(),
        prop::sample::subsequence(forged_names(), 0..4),
    )
        .prop_map(|(absolute, hosts, path, forged)| Case { absolute, hosts, path, forged })
}

fn request_bytes(c: &Case, id: usize) -> Vec<u8> {
    let target = match &c.absolute {
        Some(a) => format!("http://{a}{}", c.path),
        None => c.path.clone(),
    };
    let mut s = format!("GET {target}?case={id} HTTP/1.1\r\n");
    for h in &c.hosts {
        s.push_str(&format!("Host: {h}\r\n"));
    }
    for f in &c.forged {
        s.push_str(&format!("{f}: forged\r\n"));
    }
    s.push_str("X-Forwarded-For: 6.6.6.6\r\nConnection: close\r\n\r\n");
    s.into_bytes()
}

/// The request as `request_target` sees it: what hyper parses from the same bytes.
fn parsed(c: &Case, id: usize) -> Option<(Uri, HeaderMap)> {
    let target = match &c.absolute {
        Some(a) => format!("http://{a}{}?case={id}", c.path),
        None => format!("{}?case={id}", c.path),
    };
    let uri: Uri = target.parse().ok()?;
    let mut headers = HeaderMap::new();
    for h in &c.hosts {
        headers.append(http::header::HOST, h.parse().ok()?);
    }
    Some((uri, headers))
}

/// Checks one request the upstream received against what was decided for it.
fn check_received(oracle: &Oracle, decided: Option<&str>, rec: &Recorded, case: &Case) -> Result<(), String> {
    let hosts: Vec<_> = rec.headers.get_all("host").iter().map(|v| v.to_str().unwrap_or("?").to_owned()).collect();
    let [host] = hosts.as_slice() else { return Err(format!("the app got Host {hosts:?}")) };
    if rec.headers.get("x-forwarded-host").and_then(|v| v.to_str().ok()) != Some(host.as_str()) {
        return Err(format!("X-Forwarded-Host {:?} is not Host {host}", rec.headers.get("x-forwarded-host")));
    }
    let uri: Uri = rec.uri.parse().map_err(|e| format!("{e}"))?;
    let Some(decided) = decided else { return Err("forwarded although nothing routes it".into()) };
    if !PUBLIC.contains(&decided) {
        return Err(format!("an anonymous request was forwarded for the protected application {decided}"));
    }
    for reading in oracle.readings(host, uri.path()) {
        match reading {
            Some(app) if app == decided => {}
            other => {
                return Err(format!(
                    "the app's request {host} {} reads as {other:?}, but {decided} was decided",
                    uri.path()
                ))
            }
        }
    }
    for (name, value) in &rec.headers {
        let reads_as = cgi(name.as_str());
        let protected = PROTECTED_NAMES.iter().any(|p| p.as_str() == reads_as) || reads_as == "x-my-jwt";
        if protected && value.as_bytes() == b"forged" {
            return Err(format!("the client's {name}: forged reached the app"));
        }
    }
    let xff = rec.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !xff.ends_with("127.0.0.1") {
        return Err(format!("X-Forwarded-For {xff:?} does not end with the real peer"));
    }
    let _ = case;
    Ok(())
}

fn start(rt: &tokio::runtime::Runtime) -> (Upstream, Sidecar) {
    rt.block_on(async {
        let up = Upstream::start().await;
        let sc = sidecar(&manifests(), &up.url()).start().await;
        (up, sc)
    })
}

// Behaviour: B-ROUTE-1, B-ROUTE-6, B-ROUTE-7, B-ROUTE-8, B-FWD-1, B-FWD-2 (docs/behaviour.md).
/// The differential property: thousands of generated requests per run.
#[test]
fn what_reaches_the_app_routes_where_the_sidecar_decided() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (up, sc) = start(&rt);
    let oracle = Oracle::new();
    let mut runner = TestRunner::new(Config { cases: 2000, failure_persistence: None, ..Config::default() });
    let next = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&case(), |c| {
        let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let before = up.count();
        let answer = raw(sc.addr, &request_bytes(&c, id));
        let reached = up.count() > before;
        let decided = parsed(&c, id).and_then(|(uri, headers)| oracle.decided(Version::HTTP_11, &uri, &headers));
        if reached {
            let rec = up.last();
            prop_assert!(rec.uri.contains(&format!("case={id}")), "out of order: {}", rec.uri);
            if let Err(e) = check_received(&oracle, decided, &rec, &c) {
                return Err(TestCaseError::fail(format!(
                    "{e}\nrequest: {:?}\nanswer: {answer}",
                    String::from_utf8_lossy(&request_bytes(&c, id))
                )));
            }
        } else {
            // Not forwarded: then the answer is the sidecar's own refusal, never a silent drop.
            let status = answer.split(' ').nth(1).unwrap_or("");
            prop_assert!(
                matches!(status, "400" | "401" | "404"),
                "unexpected answer {status} for {:?}: {answer}",
                String::from_utf8_lossy(&request_bytes(&c, id))
            );
            if decided.is_some_and(|d| PUBLIC.contains(&d)) {
                // A public request is only refused for its form, never by policy.
                prop_assert_eq!(status, "400", "{:?}: {}", String::from_utf8_lossy(&request_bytes(&c, id)), answer);
            }
        }
        Ok(())
    });
    drop(sc);
    if let Err(e) = result {
        panic!("{e}");
    }
}

// Behaviour: B-ROUTE-6, B-ROUTE-8, B-FWD-1 (docs/behaviour.md).
/// The routing half of the property without sockets, exhaustively: every path of up to three
/// [`SEGMENTS`], with `/` or `//` before and with or without `/` after, as the sidecar's router
/// decides it, against every reading of the path it forwards (the target's forward path,
/// B-FWD-1). The generated test above samples this space; this one leaves no corner of it.
#[test]
fn every_short_path_reads_where_it_was_decided() {
    let oracle = Oracle::new();
    let mut headers = HeaderMap::new();
    headers.insert(http::header::HOST, "www.example.test".parse().unwrap());
    let (mut routed, mut failures) = (0, Vec::new());
    let n = SEGMENTS.len();
    for len in 0..=3u32 {
        for mut index in 0..n.pow(len) {
            let mut segs = Vec::new();
            for _ in 0..len {
                segs.push(SEGMENTS[index % n]);
                index /= n;
            }
            for (lead, trail) in [("/", ""), ("//", ""), ("/", "/"), ("//", "/")] {
                let path = format!("{lead}{}{trail}", segs.join("/"));
                // What hyper would not parse never reaches the router (the socket test covers it).
                let Ok(uri) = path.parse::<Uri>() else { continue };
                let Some((decided, target)) = oracle.decide(Version::HTTP_11, &uri, &headers) else { continue };
                routed += 1;
                let readings = oracle.readings("www.example.test", &target.path.forward);
                if readings.iter().any(|r| *r != Some(decided)) {
                    failures
                        .push(format!("{path} → {decided}, forwarded {} reads as {readings:?}", target.path.forward));
                }
            }
        }
    }
    // The space holds tens of thousands of routed paths; far fewer means the generator broke.
    assert!(routed > 15_000, "only {routed} paths routed");
    assert!(
        failures.is_empty(),
        "{} of {routed} paths read elsewhere, e.g.:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
}

/// Rows of published proxy-bypass research, each through the real sidecar: the protected
/// `/admin` and host must stay unreachable anonymously, whatever the spelling.
#[test]
fn published_bypasses_stay_closed() {
    // (source, request bytes before the final CRLF, what the client must get)
    let rows: [(&str, &str, &str); 19] = [
        (
            "Orange Tsai, Breaking Parser Logic (2018): path parameters",
            "GET /admin;/x HTTP/1.1\r\nHost: www.example.test",
            "401",
        ),
        (
            "Orange Tsai, Breaking Parser Logic: ..; traversal (Tomcat)",
            "GET /files/..;/admin/x HTTP/1.1\r\nHost: www.example.test",
            "401",
        ),
        (
            "Spring/Tomcat ;jsessionid path parameter",
            "GET /admin;jsessionid=1/x HTTP/1.1\r\nHost: www.example.test",
            "401",
        ),
        (
            "CVE-2019-9901 Envoy: path not normalised before routing",
            "GET /files/../admin/x HTTP/1.1\r\nHost: www.example.test",
            "401",
        ),
        (
            "CVE-2019-9901 Envoy: encoded dot segments",
            "GET /files/%2e%2e/admin/x HTTP/1.1\r\nHost: www.example.test",
            "401",
        ),
        ("CVE-2021-29492 Envoy: escaped slash", "GET /admin%2Fx HTTP/1.1\r\nHost: www.example.test", "400"),
        (
            "CVE-2021-29492 Envoy: escaped slash after traversal",
            "GET /files/..%2Fadmin/x HTTP/1.1\r\nHost: www.example.test",
            "400",
        ),
        (
            "Istio pathNormalization: lower-case escaped slash",
            "GET /%2fadmin/x HTTP/1.1\r\nHost: www.example.test",
            "400",
        ),
        ("IIS / Windows backslash", "GET /files\\..\\admin\\x HTTP/1.1\r\nHost: www.example.test", "400"),
        (
            "nginx merge_slashes off / Python http.server leading //",
            "GET //admin/x HTTP/1.1\r\nHost: www.example.test",
            "401",
        ),
        (
            "double encoding (Spring StrictHttpFirewall refuses %25): an app decoding twice reads ..",
            "GET /files/%252e%252e/admin/x HTTP/1.1\r\nHost: www.example.test",
            "400",
        ),
        ("encoded NUL truncation", "GET /admin%00/x HTTP/1.1\r\nHost: www.example.test", "400"),
        ("percent-encoded unreserved letters", "GET /%61dmin/x HTTP/1.1\r\nHost: www.example.test", "401"),
        (
            "RFC 9112 §3.2.2 absolute form against a conflicting Host",
            "GET http://www.example.test/x HTTP/1.1\r\nHost: secret.example.test",
            "200",
        ),
        ("Host header with trailing dot and port", "GET /x HTTP/1.1\r\nHost: Secret.Example.Test.:80", "401"),
        (
            "duplicate Host (request smuggling, RFC 9112 §3.2)",
            "GET /x HTTP/1.1\r\nHost: www.example.test\r\nHost: secret.example.test",
            "400",
        ),
        ("Host with userinfo", "GET /x HTTP/1.1\r\nHost: www.example.test@secret.example.test", "400"),
        (
            "CVE-2018-14773 Symfony X-Original-URL override",
            "GET /x HTTP/1.1\r\nHost: www.example.test\r\nX-Original-URL: /admin/x",
            "200",
        ),
        (
            "Pomerium/oauth2-proxy: underscore identity header (CGI reads it as the real one)",
            "GET /x HTTP/1.1\r\nHost: www.example.test\r\nCf_Access_Authenticated_User_Email: admin@mysite.com",
            "200",
        ),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (up, sc) = start(&rt);
    let oracle = Oracle::new();
    let mut failures = Vec::new();
    for (source, head, want) in rows {
        let before = up.count();
        let answer = raw(sc.addr, format!("{head}\r\nConnection: close\r\n\r\n").as_bytes());
        let status = answer.split(' ').nth(1).unwrap_or("").to_owned();
        if status != want {
            failures.push(format!("{source}: want {want}, got {status}: {answer}"));
        }
        if up.count() > before {
            let rec = up.last();
            let host = rec.headers.get("host").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            let path = rec.uri.parse::<Uri>().map(|u| u.path().to_owned()).unwrap_or_default();
            if oracle.readings(&host, &path).iter().any(|r| r.is_none_or(|a| !PUBLIC.contains(&a))) {
                failures.push(format!("{source}: the app got {host} {path}, which reads as protected"));
            }
            for name in ["x-original-url", "cf_access_authenticated_user_email", "cf-access-authenticated-user-email"] {
                if rec.headers.contains_key(name) {
                    failures.push(format!("{source}: the app got the client's {name}"));
                }
            }
        }
    }
    drop(sc);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// Behaviour: B-STATUS-8, B-FWD-1 (docs/behaviour.md).
/// HTTP/2 (h2c): `:authority` routes; a `host` header naming another authority is a 400, and
/// the app receives the authority that was routed, never the `host` header.
#[test]
fn http2_authority_is_the_one_forwarded() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (up, sc) = start(&rt);
    let addr: SocketAddr = sc.addr;
    rt.block_on(async move {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let request = |host: Option<&str>| {
            // :authority comes from the URI; the connection goes to the sidecar regardless.
            let mut b = http::Request::get("http://www.example.test/x");
            if let Some(h) = host {
                b = b.header("host", h);
            }
            b.body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap()
        };
        let r = send.send_request(request(Some("secret.example.test"))).await.unwrap();
        assert_eq!(r.status(), 400, "a host that disagrees with :authority");
        assert_eq!(up.count(), 0);
        let r = send.send_request(request(Some("WWW.example.test"))).await.unwrap();
        assert_eq!(r.status(), 200, "the same authority, spelt differently");
        let r = send.send_request(request(None)).await.unwrap();
        assert_eq!(r.status(), 200);
        let rec = up.last();
        assert_eq!(rec.headers.get("host").unwrap(), "www.example.test");
        assert_eq!(rec.headers.get("x-forwarded-host").unwrap(), "www.example.test");
    });
    drop(sc);
}
