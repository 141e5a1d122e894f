//! JWKS stores against a real HTTP server on 127.0.0.1:0: loading, sharing across reloads,
//! unknown-kid refresh rate limit, last good keys kept, backoff, metrics, task shutdown.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Response;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{EncodingKey, Header};
use portcullis_crds::snapshot::{Algorithm, Identity, Issuer};
use serde_json::{json, Value};

use super::*;
use crate::decide::authn::jwt::{JwtConfig, JwtFailure};

const JWKS: &str = include_str!("../../../tests/fixtures/keys/jwks.json");
const JWKS_RSA2: &str = include_str!("../../../tests/fixtures/keys/jwks-rsa2.json");
const RSA2: &[u8] = include_bytes!("../../../tests/fixtures/keys/rsa2.pem");

/// What the test server answers next.
#[derive(Clone)]
enum Answer {
    Ok(String),
    Status(u16),
    Hang,
}

struct Server {
    uri: String,
    answer: Arc<Mutex<Answer>>,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(answer: Answer) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let answer = Arc::new(Mutex::new(answer));
        let hits = Arc::new(AtomicUsize::new(0));
        let (a, h) = (answer.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (a, h) = (a.clone(), h.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        let (a, h) = (a.clone(), h.clone());
                        async move {
                            h.fetch_add(1, Ordering::SeqCst);
                            let answer = a.lock().expect("test lock").clone();
                            let response = match answer {
                                Answer::Ok(body) => Response::new(Full::new(Bytes::from(body))),
                                Answer::Status(code) => {
                                    let mut r = Response::new(Full::new(Bytes::from_static(b"{\"keys\":[]}")));
                                    *r.status_mut() = StatusCode::from_u16(code).expect("test status");
                                    r
                                }
                                Answer::Hang => {
                                    tokio::time::sleep(Duration::from_secs(30)).await;
                                    Response::new(Full::new(Bytes::new()))
                                }
                            };
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Server { uri: format!("http://{addr}/certs"), answer, hits, task }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().expect("test lock") = answer;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn fast() -> JwksSettings {
    JwksSettings {
        refresh_interval: Duration::from_secs(3600),
        unknown_kid_min_interval: Duration::from_secs(30),
        fetch_timeout: Duration::from_secs(5),
        max_body_bytes: 64 * 1024,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    }
}

fn registry(settings: JwksSettings) -> (JwksRegistry, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let client = crate::outbound::client(Duration::from_secs(2)).expect("outbound client");
    (JwksRegistry::with_settings(client, &metrics, settings), metrics)
}

fn issuer(uri: &str) -> Issuer {
    Issuer {
        issuer: "https://idp.test".into(),
        jwks: JwksSource::Uri(uri.into()),
        audiences: vec!["aud-1".into()],
        algorithms: Algorithm::DEFAULT.to_vec(),
        clock_skew_secs: 30,
    }
}

fn count(metrics: &Metrics, result: &str) -> u64 {
    metrics.jwks_refreshes.with_label_values(&["https://idp.test", result]).get()
}

fn both_keys() -> String {
    let mut a: Value = serde_json::from_str(JWKS).expect("fixture");
    let b: Value = serde_json::from_str(JWKS_RSA2).expect("fixture");
    if let (Some(ka), Some(kb)) = (a["keys"].as_array_mut(), b["keys"].as_array()) {
        ka.extend(kb.iter().cloned());
    }
    a.to_string()
}

/// Polls `f` every 10 ms for at most 5 s.
async fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn loads_and_is_shared_across_reloads() {
    let server = Server::start(Answer::Ok(JWKS.into())).await;
    let (reg, metrics) = registry(fast());
    let keys = reg.issuer_keys(&issuer(&server.uri));
    assert!(keys.wait_ready(Duration::from_secs(5)).await);
    let set = keys.current().expect("loaded");
    assert_eq!(set.kids().collect::<Vec<_>>(), ["rsa-1", "ec-1", "ed-1"]);
    // A reload building a new config while the old one is live gets the same store: no refetch.
    let again = reg.issuer_keys(&issuer(&server.uri));
    assert!(Arc::ptr_eq(&keys, &again));
    assert_eq!(server.hits(), 1);
    assert_eq!(count(&metrics, "ok"), 1);
    assert_eq!(count(&metrics, "error"), 0);
    assert!(metrics.render().contains("portcullis_jwks_refreshes_total{issuer=\"https://idp.test\",result=\"ok\"} 1"));
}

#[tokio::test]
async fn unknown_kid_refresh_is_rate_limited() {
    let server = Server::start(Answer::Ok(JWKS.into())).await;
    let (reg, metrics) = registry(fast());
    let keys = reg.issuer_keys(&issuer(&server.uri));
    assert!(keys.wait_ready(Duration::from_secs(5)).await);

    // The first unknown kid refreshes; the keys are the same, so no retry.
    assert!(!keys.refresh_for_unknown_kid().await);
    assert_eq!(server.hits(), 2);
    // Within 30 s: no fetch, however many forged kids arrive, concurrently or not.
    server.set(Answer::Ok(both_keys()));
    let results = futures_join_all((0..10).map(|_| keys.refresh_for_unknown_kid())).await;
    assert!(results.iter().all(|r| !r));
    assert_eq!(server.hits(), 2);
    assert_eq!(keys.current().map(|k| k.len()), Some(3));
    assert_eq!(count(&metrics, "ok"), 2);
}

#[tokio::test]
async fn unknown_kid_refresh_runs_again_after_the_interval_and_concurrent_callers_share_it() {
    let server = Server::start(Answer::Ok(JWKS.into())).await;
    let (reg, _) = registry(JwksSettings { unknown_kid_min_interval: Duration::from_millis(200), ..fast() });
    let keys = reg.issuer_keys(&issuer(&server.uri));
    assert!(keys.wait_ready(Duration::from_secs(5)).await);
    assert!(!keys.refresh_for_unknown_kid().await, "same keys: nothing to retry");
    assert_eq!(server.hits(), 2);
    // The interval passes on tokio's clock (what the store reads), not the wall's: paused only
    // for the jump, so no socket wait below sees a frozen clock.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(250)).await;
    tokio::time::resume();
    server.set(Answer::Ok(both_keys()));
    // Many requests with the new kid at once: one fetch, and all of them may retry.
    let results = futures_join_all((0..5).map(|_| keys.refresh_for_unknown_kid())).await;
    assert_eq!(server.hits(), 3);
    assert!(results.iter().all(|r| *r), "{results:?}");
    // A request that tried the old keys just before that refresh landed still gets its retry.
    assert!(keys.refresh_for_unknown_kid().await);
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn last_good_keys_are_kept_when_fetches_fail() {
    let server = Server::start(Answer::Ok(JWKS.into())).await;
    let (reg, metrics) =
        registry(JwksSettings { fetch_timeout: Duration::from_millis(300), max_body_bytes: 4096, ..fast() });
    let keys = reg.issuer_keys(&issuer(&server.uri));
    assert!(keys.wait_ready(Duration::from_secs(5)).await);
    let good = keys.current().expect("loaded").generation();

    let big = json!({"keys": [], "pad": "x".repeat(8192)}).to_string();
    let failures: [(Answer, &str); 6] = [
        (Answer::Status(500), "bad_status"),
        (Answer::Status(404), "bad_status"),
        (Answer::Ok("<html>".into()), "jwks_invalid"),
        (Answer::Ok(r#"{"keys":[{"kty":"oct","k":"AA"}]}"#.into()), "jwks_no_usable_keys"),
        (Answer::Ok(big), "too_large"),
        (Answer::Hang, "timeout"),
    ];
    for (i, (answer, reason)) in failures.into_iter().enumerate() {
        server.set(answer);
        let err = keys.refresh().await.expect_err(reason);
        assert_eq!(err.reason(), reason);
        assert_eq!(keys.current().map(|k| k.generation()), Some(good), "{reason}: last good keys kept");
        assert_eq!(count(&metrics, "error"), i as u64 + 1);
    }
    assert_eq!(count(&metrics, "ok"), 1);
}

#[tokio::test]
async fn a_failing_endpoint_marks_the_issuer_stale_until_a_fetch_succeeds() {
    let server = Server::start(Answer::Ok(JWKS.into())).await;
    let (reg, metrics) = registry(fast());
    let keys = reg.issuer_keys(&issuer(&server.uri));
    assert!(keys.wait_ready(Duration::from_secs(5)).await);
    let stale = || metrics.jwks_stale.with_label_values(&["https://idp.test"]).get();
    assert_eq!(stale(), 0);
    server.set(Answer::Status(503));
    for _ in 0..3 {
        keys.refresh().await.expect_err("endpoint down");
        assert_eq!(stale(), 1, "stale while fetches fail");
        assert!(keys.current().is_some(), "last good keys kept");
    }
    assert!(metrics.render().contains("portcullis_jwks_stale{issuer=\"https://idp.test\"} 1"));
    server.set(Answer::Ok(JWKS.into()));
    keys.refresh().await.expect("endpoint back");
    assert_eq!(stale(), 0, "fresh after a fetch succeeds, even with unchanged keys");
    drop(keys);
    drop(reg);
    assert!(!metrics.render().contains("portcullis_jwks_stale{"), "a store no config uses leaves no series");
}

#[tokio::test]
async fn a_failing_first_fetch_is_retried_with_backoff() {
    let server = Server::start(Answer::Status(503)).await;
    let (reg, metrics) = registry(fast());
    let keys = reg.issuer_keys(&issuer(&server.uri));
    assert!(!keys.wait_ready(Duration::from_millis(150)).await);
    assert!(keys.current().is_none());
    assert!(eventually(|| server.hits() >= 2).await, "retried");
    server.set(Answer::Ok(JWKS.into()));
    assert!(keys.wait_ready(Duration::from_secs(5)).await);
    assert!(count(&metrics, "error") >= 2);
    assert_eq!(count(&metrics, "ok"), 1);
}

#[tokio::test]
async fn refreshes_periodically_and_stops_when_dropped() {
    let server = Server::start(Answer::Ok(JWKS.into())).await;
    let (reg, _) = registry(JwksSettings { refresh_interval: Duration::from_millis(50), ..fast() });
    let keys = reg.issuer_keys(&issuer(&server.uri));
    assert!(keys.wait_ready(Duration::from_secs(5)).await);
    server.set(Answer::Ok(both_keys()));
    assert!(
        eventually(|| keys.current().is_some_and(|k| k.len() == 4)).await,
        "periodic refresh picked up the new key"
    );

    let task = keys.task.get().cloned().expect("a remote store runs a refresh task");
    drop(keys);
    let hits = server.hits();
    assert!(eventually(|| task.is_finished()).await, "the refresh task ended with its store");
    // At most the fetch in flight when the store went; none after.
    assert!(server.hits() <= hits + 1, "{} fetches after the store was dropped", server.hits() - hits);
    // The registry forgets the store: a new config starts a fresh one.
    let fresh = reg.issuer_keys(&issuer(&server.uri));
    assert!(fresh.wait_ready(Duration::from_secs(5)).await);
}

#[tokio::test]
async fn inline_keys_are_static() {
    let (reg, metrics) = registry(fast());
    let keys = reg.issuer_keys(&Issuer { jwks: JwksSource::Inline(JWKS.into()), ..issuer("unused") });
    assert!(keys.wait_ready(Duration::from_millis(1)).await);
    assert_eq!(keys.current().map(|k| k.len()), Some(3));
    assert!(!keys.refresh_for_unknown_kid().await);
    assert!(matches!(keys.refresh().await, Err(FetchError::Inline)));
    assert_eq!(count(&metrics, "ok") + count(&metrics, "error"), 0);

    let broken =
        reg.issuer_keys(&Issuer { jwks: JwksSource::Inline(r#"{"keys":[{"kty":"oct"}]}"#.into()), ..issuer("unused") });
    assert!(broken.current().is_none(), "fails closed");
}

#[tokio::test]
async fn unreachable_endpoint_fails_closed() {
    // Bound without `listen`, and held: a connection is refused, and no server another test
    // starts can be given the port meanwhile (as one released after a bind could be).
    let closed = tokio::net::TcpSocket::new_v4().expect("socket");
    closed.bind(([127, 0, 0, 1], 0).into()).expect("bind");
    let port = closed.local_addr().expect("addr").port();
    let (reg, metrics) = registry(fast());
    let keys = reg.issuer_keys(&issuer(&format!("http://127.0.0.1:{port}/certs")));
    let err = keys.refresh().await.expect_err("connection refused");
    assert_eq!(err.reason(), "request_failed");
    assert!(keys.current().is_none());
    assert!(count(&metrics, "error") >= 1);
}

#[tokio::test]
async fn glue_flow_unknown_kid_then_retry() {
    let server = Server::start(Answer::Ok(JWKS.into())).await;
    let (reg, _) = registry(fast());
    let identity = Identity {
        cookie_name: "CF_Authorization".into(),
        header_name: "cf-access-jwt-assertion".into(),
        issuers: vec![issuer(&server.uri)],
    };
    let cfg = JwtConfig::new(&identity).expect("valid");
    let keys = reg.identity_keys(&identity);
    assert!(keys[0].wait_ready(Duration::from_secs(5)).await);

    let now = 1_700_000_000;
    let claims = json!({"iss": "https://idp.test", "aud": "aud-1", "exp": now + 60, "email": "a@b.c"});
    let header = Header { kid: Some("rsa-2".into()), ..Header::new(jsonwebtoken::Algorithm::RS256) };
    let token =
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_pem(RSA2).expect("fixture")).expect("signs");

    let err = cfg.authenticate(&token, &keys, now).expect_err("kid not published yet");
    assert_eq!(err, JwtFailure::UnknownKey { issuer: 0 });
    // The issuer rotates in rsa-2; the glue refreshes once and retries.
    server.set(Answer::Ok(both_keys()));
    let issuer = err.refresh_issuer().expect("refreshable");
    assert!(keys[issuer].refresh_for_unknown_kid().await);
    let user = cfg.authenticate(&token, &keys, now).expect("verified with the new key");
    assert_eq!(user.email.as_deref(), Some("a@b.c"));
}

/// `join_all` without the `futures` crate: drives the futures together on this task.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<bool>
where
    F: std::future::Future<Output = bool>,
{
    // The futures borrow the store, so they cannot be spawned; drive them together instead.
    let futures: Vec<_> = futures.map(Box::pin).collect();
    let mut results: Vec<Option<bool>> = vec![None; futures.len()];
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futures.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(|r| r.unwrap_or(false)).collect()
}
