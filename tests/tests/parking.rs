//! Parked idle connections (`--park-connections-above 0`: every plain HTTP/1.1 connection gives
//! hyper's state back between keep-alive requests): every request gets exactly its own answer
//! (no 400, no lost or repeated bytes) across keep-alive sequences with and without bodies,
//! pipelining, heads split across writes, slow readers, early answers, upgrades and h2c; the
//! header-read timeout and the drain close parked connections. Each test first shows that the
//! connection did park (`portcullis_connections_parked`), so a sidecar that never parks fails;
//! one shows that a `--park-idle-after` which can never be reached is named at start.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use proptest::prelude::*;

/// `plain.mysite.com` reaches the app without credentials (appended to the seed, whose
/// `api.mysite.com` needs a token: a request without one is answered 401 by the sidecar, its
/// body unread).
const PLAIN_APP: &str = r#"---
apiVersion: access.portcullis.dev/v1alpha1
kind: AccessApplication
metadata: { name: plain, namespace: t }
spec:
  domains: [plain.mysite.com]
  policies:
    - name: local
      action: Bypass
      include: [ { ipRange: 127.0.0.0/8 } ]
"#;

/// An app that answers `METHOD PATH BODY-LENGTH BODY-SUM` for every request (so a response
/// names the request it answers), and `/big/N`: N bytes of a known pattern.
async fn echo_app() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let addr = listener.local_addr().expect("addr");
    let task = serve_loop(listener, |req: Request<Incoming>| async move {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let path = parts.uri.path().to_owned();
        if let Some(n) = path.strip_prefix("/big/") {
            let n: usize = n.parse().unwrap_or(0);
            return Response::new(Full::new(Bytes::from(pattern(n))));
        }
        let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
        Response::new(Full::new(Bytes::from(format!("{} {} {} {}", parts.method, path, body.len(), sum))))
    });
    (addr, task)
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 23) as u8).collect()
}

/// What the echo app answers to `req`.
fn expected(req: &Req) -> String {
    let sum: u64 = req.body.iter().map(|&b| u64::from(b)).sum();
    format!("{} {} {} {}", req.method, req.path, req.body.len(), sum)
}

#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    path: String,
    body: Vec<u8>,
    chunked: bool,
}

impl Req {
    fn get(path: &str) -> Self {
        Self { method: "GET", path: path.to_owned(), body: vec![], chunked: false }
    }

    fn post(path: &str, body: &[u8]) -> Self {
        Self { method: "POST", path: path.to_owned(), body: body.to_vec(), chunked: false }
    }

    fn bytes(&self, host: &str) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\nHost: {host}\r\n", self.method, self.path).into_bytes();
        if self.chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            if !self.body.is_empty() {
                out.extend_from_slice(format!("{:x}\r\n", self.body.len()).as_bytes());
                out.extend_from_slice(&self.body);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            if !self.body.is_empty() || self.method == "POST" {
                out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&self.body);
        }
        out
    }
}

async fn parking_sidecar(app: SocketAddr, extra: &[&str]) -> Sidecar {
    sidecar(&seed_manifests(&inline_jwks(), "", PLAIN_APP), &format!("http://{app}"))
        .args(&["--park-connections-above", "0", "--park-idle-after", "0s"])
        .args(extra)
        .start()
        .await
}

async fn parked(sc: &Sidecar, n: usize) {
    let want = format!("portcullis_connections_parked {n}\n");
    eventually(Duration::from_secs(10), &format!("{n} parked"), || async {
        sc.metrics().await.contains(&want).then_some(())
    })
    .await;
}

/// A connection that got one answer (to `GET path`) and is parked, as the gauge shows.
async fn parked_connection(sc: &Sidecar, path: &'static str) -> Http1Reader {
    let addr = sc.addr;
    let r = blocking(move || {
        let mut r = Http1Reader::new(TcpStream::connect(addr).expect("connect"));
        r.s.write_all(&Req::get(path).bytes("plain.mysite.com")).expect("write");
        assert_eq!(r.answer().status, 200);
        r
    })
    .await;
    parked(sc, 1).await;
    r
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("client thread")
}

/// Writes `bytes` on `r`'s connection and reads one answer, off the runtime; `r` comes back
/// for the next exchange.
async fn exchange(mut r: Http1Reader, bytes: Vec<u8>) -> (Http1Reader, Http1Answer) {
    blocking(move || {
        r.s.write_all(&bytes).expect("write");
        let a = r.answer();
        (r, a)
    })
    .await
}

#[tokio::test]
async fn keep_alive_requests_with_and_without_bodies_park_in_between_and_get_their_own_answers() {
    let (app, _task) = echo_app().await;
    let sc = parking_sidecar(app, &[]).await;
    let addr = sc.addr;
    let mut r = blocking(move || Http1Reader::new(TcpStream::connect(addr).expect("connect"))).await;
    let sequence = [
        Req::get("/one"),
        Req::post("/two", b"hello"),
        Req::get("/three"),
        Req { chunked: true, ..Req::post("/four", b"chunked body") },
        Req::post("/five", b""),
        Req::get("/six"),
    ];
    let mut parks = 0;
    for req in sequence {
        let (back, answer) = exchange(r, req.bytes("plain.mysite.com")).await;
        r = back;
        assert_eq!(answer.status, 200);
        assert_eq!(String::from_utf8_lossy(&answer.body), expected(&req));
        // A request without a body, or whose chunked body ends the bytes read, parks the
        // connection; one whose last bytes are body bytes does not (the module's rule 3).
        if req.body.is_empty() || req.chunked {
            parks += 1;
            parked(&sc, 1).await;
        }
    }
    assert!(parks >= 4);
    assert!(sc.metrics().await.contains("portcullis_connections_open 1"));
}

#[tokio::test]
async fn pipelined_requests_in_one_write_and_a_head_split_by_a_pause_are_answered_in_order() {
    let (app, _task) = echo_app().await;
    let sc = parking_sidecar(app, &[]).await;
    let addr = sc.addr;
    let reqs = vec![Req::get("/a"), Req::post("/b", b"xyz"), Req::get("/c"), Req::get("/d")];
    let mut r = blocking(move || Http1Reader::new(TcpStream::connect(addr).expect("connect"))).await;
    // One request first, so that the connection is parked when the pipelined ones arrive.
    r = blocking(move || {
        r.s.write_all(&Req::get("/first").bytes("plain.mysite.com")).expect("write");
        assert_eq!(String::from_utf8_lossy(&r.answer().body), expected(&Req::get("/first")));
        r
    })
    .await;
    parked(&sc, 1).await;
    let sent = reqs.clone();
    r = blocking(move || {
        let all: Vec<u8> = sent.iter().flat_map(|q| q.bytes("plain.mysite.com")).collect();
        r.s.write_all(&all).expect("write");
        for q in &sent {
            let a = r.answer();
            assert_eq!(a.status, 200);
            assert_eq!(String::from_utf8_lossy(&a.body), expected(q));
        }
        r
    })
    .await;
    parked(&sc, 1).await;
    // A head split across two writes with a pause (the connection must not park with half a
    // head in hyper's buffer: that would be a 400).
    let r = blocking(move || {
        let mut r = r;
        r.s.write_all(b"GET /split HTTP/1.1\r\nHo").expect("write");
        r
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut r = blocking(move || {
        let mut r = r;
        r.s.write_all(b"st: plain.mysite.com\r\n\r\n").expect("write");
        r
    })
    .await;
    let a = blocking(move || r.answer()).await;
    assert_eq!(a.status, 200);
    assert_eq!(String::from_utf8_lossy(&a.body), expected(&Req::get("/split")));
}

#[tokio::test]
async fn a_large_answer_read_slowly_arrives_whole_and_the_connection_parks_after_it() {
    let (app, _task) = echo_app().await;
    let sc = parking_sidecar(app, &[]).await;
    let addr = sc.addr;
    const SIZE: usize = 4 << 20;
    let mut r = blocking(move || {
        let mut r = Http1Reader::new(TcpStream::connect(addr).expect("connect"));
        r.s.write_all(&Req::get(&format!("/big/{SIZE}")).bytes("plain.mysite.com")).expect("write");
        r
    })
    .await;
    // Let the sidecar fill the socket buffers and wait on them (write backpressure).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (back, a) = blocking(move || {
        let a = r.answer();
        (r, a)
    })
    .await;
    r = back;
    assert_eq!(a.status, 200);
    assert_eq!(a.body.len(), SIZE);
    assert!(a.body == pattern(SIZE), "the body arrived changed");
    parked(&sc, 1).await;
    let (_, a) = exchange(r, Req::get("/after").bytes("plain.mysite.com")).await;
    assert_eq!(String::from_utf8_lossy(&a.body), expected(&Req::get("/after")));
}

#[tokio::test]
async fn an_answer_sent_before_its_request_body_was_read_is_never_followed_by_a_400() {
    let (app, _task) = echo_app().await;
    let sc = parking_sidecar(app, &[]).await;
    let addr = sc.addr;
    let r = parked_connection(&sc, "/warm").await;
    // The sidecar answers 401 without reading the body; the body follows after the answer.
    let head = b"POST /x HTTP/1.1\r\nHost: api.mysite.com\r\nContent-Length: 10\r\n\r\n";
    let (mut r, a) = exchange(r, head.to_vec()).await;
    assert_eq!(a.status, 401);
    let after = blocking(move || {
        // hyper either read and dropped the body (the connection stays open) or closed the
        // connection; in neither case may the body be taken for a request.
        let _ = r.s.write_all(b"0123456789");
        let _ = r.s.write_all(&Req::get("/next").bytes("plain.mysite.com"));
        let mut rest = vec![];
        let _ = r.s.read_to_end(&mut rest);
        r.buf.extend_from_slice(&rest);
        String::from_utf8_lossy(&r.buf).into_owned()
    });
    // Each read gives up after 20 s, so this ends; a hang past 30 s is a failure, not a pass.
    let after = tokio::time::timeout(Duration::from_secs(30), after).await.expect("the connection answered or closed");
    assert!(!after.contains(" 400 "), "{after}");
    assert!(after.is_empty() || after.contains(&expected(&Req::get("/next"))), "{after}");
    // The body and the head sent together: read and dropped, then the next request is served.
    let mut r = blocking(move || Http1Reader::new(TcpStream::connect(addr).expect("connect"))).await;
    let (a, b) = blocking(move || {
        r.s.write_all(b"POST /x HTTP/1.1\r\nHost: api.mysite.com\r\nContent-Length: 4\r\n\r\nbody").expect("write");
        let a = r.answer();
        r.s.write_all(&Req::get("/next").bytes("plain.mysite.com")).expect("write");
        (a, r.answer())
    })
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(String::from_utf8_lossy(&b.body), expected(&Req::get("/next")));
}

#[tokio::test]
async fn an_upgrade_after_a_park_is_spliced_and_h2c_still_works() {
    let up = Upstream::start().await;
    let sc = parking_sidecar(up.addr, &[]).await;
    let addr = sc.addr;
    let r = parked_connection(&sc, "/warm").await;
    let echo = blocking(move || {
        let mut r = r;
        r.s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: plain.mysite.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .expect("write");
        let a = r.answer();
        assert_eq!(a.status, 101);
        r.s.write_all(b"ping").expect("write");
        r.take(4)
    })
    .await;
    assert_eq!(echo, b"ping");
    parked(&sc, 0).await;

    // A refused upgrade (401: no token) leaves hyper expecting one on that connection; it must
    // not park (hyper would end the round handing the socket to an upgrade nobody awaits) and
    // keeps serving requests.
    let r = parked_connection(&sc, "/warm").await;
    let mut r = blocking(move || {
        let mut r = r;
        r.s.write_all(b"GET /ws HTTP/1.1\r\nHost: api.mysite.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
            .expect("write");
        assert_eq!(r.answer().status, 401);
        r
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await; // time to park, were it allowed
    let a = blocking(move || {
        r.s.write_all(&Req::get("/after").bytes("plain.mysite.com")).expect("write");
        r.answer()
    })
    .await;
    assert_eq!(a.status, 200);

    // h2c: the preface is recognised, the connection is served by HTTP/2 and never parks.
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2c handshake");
    tokio::spawn(conn);
    for _ in 0..3 {
        let req =
            Request::get("http://plain.mysite.com/h2").body(http_body_util::Empty::<Bytes>::new()).expect("request");
        let resp = send.send_request(req).await.expect("h2c request");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), http::Version::HTTP_2);
        assert_eq!(up.last().uri, "/h2");
    }
    assert!(sc.metrics().await.contains("portcullis_connections_parked 0\n"));
}

// A busy connection keeps hyper's state: it parks only once a wait for its next request has
// lasted `--park-idle-after`, and then still serves.
#[tokio::test]
async fn a_connection_parks_only_after_waiting_park_idle_after() {
    let (app, _task) = echo_app().await;
    let sc = sidecar(&seed_manifests(&inline_jwks(), "", PLAIN_APP), &format!("http://{app}"))
        .arg("--park-connections-above")
        .arg("0")
        .arg("--park-idle-after")
        .arg("5s")
        .start()
        .await;
    let addr = sc.addr;
    // The reading must fall inside the 5 s wait to say anything: one that comes later (a stalled
    // machine) is neither a pass nor a failure, and the whole sequence is tried again.
    let mut attempts = 0;
    let r = loop {
        attempts += 1;
        let (r, last_answer) = blocking(move || {
            let mut r = Http1Reader::new(TcpStream::connect(addr).expect("connect"));
            for i in 0..5 {
                r.s.write_all(&Req::get(&format!("/busy{i}")).bytes("plain.mysite.com")).expect("write");
                assert_eq!(r.answer().status, 200);
            }
            (r, std::time::Instant::now())
        })
        .await;
        let metrics = sc.metrics().await;
        if last_answer.elapsed() < Duration::from_secs(4) {
            assert!(metrics.contains("portcullis_connections_parked 0\n"), "parked before its wait lasted 5 s");
            break r;
        }
        assert!(attempts < 5, "the metrics came too late to tell in {attempts} attempts: is the machine stalled?");
        drop(r);
        parked(&sc, 0).await; // that connection, closed, is gone before the next reading
    };
    parked(&sc, 1).await;
    let r = blocking(move || {
        let mut r = r;
        r.s.write_all(&Req::get("/after").bytes("plain.mysite.com")).expect("write");
        assert_eq!(r.answer().status, 200);
        r
    })
    .await;
    drop(r);
}

// A --park-idle-after the header-read deadline always ends first would park nothing, silently:
// the sidecar says so at start, naming both flags, and serves as it does below the threshold.
// (No wait for a park that does not come: `Parking::wanted` is unit-tested in http/park.rs.)
#[tokio::test]
async fn a_park_idle_after_not_below_the_header_read_timeout_is_named_at_start() {
    const WARNING: &str = "no connection will park";
    let (app, _task) = echo_app().await;
    let start = |idle_after: &'static str| {
        sidecar(&seed_manifests(&inline_jwks(), "", PLAIN_APP), &format!("http://{app}"))
            .process()
            .args(&["--park-connections-above", "0", "--header-read-timeout", "5s", "--park-idle-after", idle_after])
            .start()
    };
    let sc = start("5s").await;
    let logs = eventually(Duration::from_secs(10), "the start-up warning", || async {
        let logs = sc.logs();
        logs.contains(WARNING).then_some(logs)
    })
    .await;
    let line = logs.lines().find(|l| l.contains(WARNING)).expect("the line");
    assert!(
        line.contains("--park-idle-after") && line.contains("--header-read-timeout") && line.contains("5s"),
        "{line}"
    );
    let r = get(&sc.url("/x"), &[("host", "plain.mysite.com")]).await.unwrap();
    assert_eq!((r.status, r.text()), (200, expected(&Req::get("/x"))));

    let below = start("4s").await;
    assert_eq!(get(&below.url("/x"), &[("host", "plain.mysite.com")]).await.unwrap().status, 200);
    assert!(below.logs().contains("portcullis-sidecar serving"), "{}", below.logs());
    assert!(!below.logs().contains(WARNING), "{}", below.logs());
}

// A connection that parks is served by hyper builders of its own (http/server.rs): the header
// limits of every connection hold on it, in its first round and after a park.
#[tokio::test]
async fn the_header_limits_hold_on_connections_that_park() {
    let (app, _task) = echo_app().await;
    let sc = parking_sidecar(app, &["--max-header-bytes", "16384", "--max-headers", "20"]).await;
    let addr = sc.addr;
    let head = |extra: &str| format!("GET /limits HTTP/1.1\r\nHost: plain.mysite.com\r\n{extra}\r\n").into_bytes();
    let many: String = (0..30).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));
    // Within both limits: answered (a custom --max-headers is set on the builder, not ignored).
    let few: String = (0..15).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = parked_connection(&sc, "/one").await;
    let (r, within) = exchange(r, head(&few)).await;
    assert_eq!(within.status, 200);
    parked(&sc, 1).await;
    let (_, too_many) = exchange(r, head(&many)).await;
    assert_eq!(too_many.status, 431, "too many headers after a park");
    let fresh = blocking(move || Http1Reader::new(TcpStream::connect(addr).expect("connect"))).await;
    let (_, too_big) = exchange(fresh, head(&big)).await;
    assert_eq!(too_big.status, 431, "too large a head in a parking connection's first round");
}

#[tokio::test]
async fn the_header_read_timeout_closes_a_parked_connection() {
    let (app, _task) = echo_app().await;
    let sc = parking_sidecar(app, &["--header-read-timeout", "1s"]).await;
    let r = parked_connection(&sc, "/one").await;
    let closed = blocking(move || {
        let mut r = r;
        r.closed()
    })
    .await;
    assert!(closed, "the idle connection was closed without a byte");
    parked(&sc, 0).await;
    eventually(Duration::from_secs(10), "the connection is counted closed", || async {
        sc.metrics().await.contains("portcullis_connections_open 0\n").then_some(())
    })
    .await;
}

#[tokio::test]
async fn the_drain_closes_parked_connections_at_once() {
    let (app, _task) = echo_app().await;
    let mut sc = parking_sidecar(app, &["--drain-timeout", "120s"]).await;
    let addr = sc.addr;
    let readers = blocking(move || {
        (0..3)
            .map(|_| {
                let mut r = Http1Reader::new(TcpStream::connect(addr).expect("connect"));
                r.s.write_all(&Req::get("/one").bytes("plain.mysite.com")).expect("write");
                assert_eq!(r.answer().status, 200);
                r
            })
            .collect::<Vec<_>>()
    })
    .await;
    parked(&sc, 3).await;
    sc.terminate();
    // Well before the 120 s drain timeout (each read gives up after 20 s).
    let closed = blocking(move || readers.into_iter().map(|mut r| r.closed()).collect::<Vec<_>>()).await;
    assert_eq!(closed, [true, true, true]);
}

/// The sidecar and app the generated test shares (started once, on a runtime of their own).
fn shared() -> SocketAddr {
    static SHARED: OnceLock<(tokio::runtime::Runtime, Sidecar)> = OnceLock::new();
    let (_, sc) = SHARED.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let sc = rt.block_on(async {
            let (app, task) = echo_app().await;
            std::mem::forget(task); // the app lives as long as the runtime
            parking_sidecar(app, &[]).await
        });
        (rt, sc)
    });
    sc.addr
}

fn arb_req() -> impl Strategy<Value = Req> {
    (0..3u8, "[a-z]{1,8}", proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()).prop_map(
        |(kind, path, body, chunked)| match kind {
            0 => Req::get(&format!("/{path}")),
            1 => Req::post(&format!("/{path}"), &body),
            _ => Req { chunked, ..Req::post(&format!("/{path}"), &body) },
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A sequence of requests written as one byte stream cut at arbitrary places, with pauses
    /// (during which the connection may park) between the pieces: every request gets its own
    /// answer, in order, and nothing else arrives.
    #[test]
    fn requests_cut_at_arbitrary_bytes_get_exactly_their_answers(
        reqs in proptest::collection::vec(arb_req(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        pauses in proptest::collection::vec(0..40u64, 6),
    ) {
        let addr = shared();
        let stream: Vec<u8> = reqs.iter().flat_map(|q| q.bytes("plain.mysite.com")).collect();
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len())).collect();
        at.push(0);
        at.push(stream.len());
        at.sort_unstable();
        at.dedup();
        let mut r = Http1Reader::new(TcpStream::connect(addr).expect("connect"));
        for (i, w) in at.windows(2).enumerate() {
            r.s.write_all(&stream[w[0]..w[1]]).expect("write");
            std::thread::sleep(Duration::from_millis(pauses[i % pauses.len()]));
        }
        for q in &reqs {
            let a = r.answer();
            prop_assert_eq!(a.status, 200);
            prop_assert_eq!(String::from_utf8_lossy(&a.body).into_owned(), expected(q));
        }
        r.s.shutdown(std::net::Shutdown::Write).expect("half-close");
        let mut rest = vec![];
        let _ = r.s.read_to_end(&mut rest);
        prop_assert!(rest.is_empty() && r.buf.is_empty(), "unexpected bytes: {:?}", String::from_utf8_lossy(&rest));
    }
}
