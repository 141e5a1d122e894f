//! Servers the chaos scenarios break on purpose: a loopback HTTP server that can be stopped
//! (listener closed and every open connection dropped, as a crashed process leaves them) and
//! started again on the same port, used as the app behind the sidecar and as the JWKS
//! endpoint. Unlike `common::Upstream` it records nothing per request, so a soak does not grow
//! the test process. Must not bind anything but 127.0.0.1.

// Shared by the chaos tests (tests/tests/chaos/main.rs) and the long-run program
// (tests/examples/reliability.rs); each uses a part of it.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

type Answer = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;
type Handler = Arc<dyn Fn(Request<Incoming>) -> Answer + Send + Sync>;

/// A server that can be killed and restarted on the same address.
pub struct Restartable {
    pub addr: SocketAddr,
    handler: Handler,
    /// The accept loop and every connection; aborting the set is the "crash".
    running: Mutex<Option<JoinSet<()>>>,
}

impl Restartable {
    pub async fn start(handler: Handler) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let s = Arc::new(Self { addr, handler, running: Mutex::new(None) });
        s.serve(listener);
        s
    }

    fn serve(&self, listener: TcpListener) {
        let mut set = JoinSet::new();
        let handler = self.handler.clone();
        set.spawn(async move {
            // The connection set lives in this task: aborting the task drops it, and dropping
            // a JoinSet aborts every connection in it.
            let mut conns = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let handler = handler.clone();
                // Reap finished connections so a long run does not accumulate them.
                while conns.try_join_next().is_some() {}
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        *self.running.lock().expect("lock") = Some(set);
    }

    /// Stops answering: the listener is closed (connects are refused) and open connections
    /// are dropped.
    pub async fn stop(&self) {
        let set = self.running.lock().expect("lock").take();
        if let Some(mut set) = set {
            set.abort_all();
            while set.join_next().await.is_some() {}
        }
    }

    /// Listens again on the same address (bounded retries while the port is still held).
    pub async fn restart(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => return self.serve(l),
                Err(e) => {
                    assert!(Instant::now() < deadline, "could not rebind {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
}

/// The header a probe that must be refused carries, so the app can count any that reach it.
pub const MUST_NOT_ARRIVE: &str = "x-chaos-must-not-arrive";

/// The app behind the sidecar: answers `200 app` at once, or after `/delay/<ms>`; counts
/// requests that carry [`MUST_NOT_ARRIVE`] (each one a wrongly allowed request).
pub struct App {
    pub server: Arc<Restartable>,
    pub leaked: Arc<AtomicU64>,
}

pub const APP_BODY: &[u8] = b"chaos-app";

impl App {
    pub async fn start() -> Self {
        let leaked = Arc::new(AtomicU64::new(0));
        let l = leaked.clone();
        let handler: Handler = Arc::new(move |req: Request<Incoming>| {
            if req.headers().contains_key(MUST_NOT_ARRIVE) {
                l.fetch_add(1, Ordering::Relaxed);
            }
            let delay = req.uri().path().strip_prefix("/delay/").and_then(|ms| ms.parse::<u64>().ok());
            Box::pin(async move {
                if let Some(ms) = delay {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Response::new(Full::new(Bytes::from_static(APP_BODY)))
            })
        });
        Self { server: Restartable::start(handler).await, leaked }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn leaked(&self) -> u64 {
        self.leaked.load(Ordering::Relaxed)
    }
}

/// A JWKS endpoint whose document can be swapped, and which can go down.
pub struct Jwks {
    pub server: Arc<Restartable>,
    pub doc: Arc<Mutex<String>>,
}

impl Jwks {
    pub async fn start(doc: String) -> Self {
        let doc = Arc::new(Mutex::new(doc));
        let d = doc.clone();
        let handler: Handler = Arc::new(move |_req| {
            let body = d.lock().expect("lock").clone();
            Box::pin(async move {
                let mut r = Response::new(Full::new(Bytes::from(body)));
                *r.status_mut() = StatusCode::OK;
                r
            })
        });
        Self { server: Restartable::start(handler).await, doc }
    }

    pub fn uri(&self) -> String {
        format!("http://{}/jwks", self.server.addr)
    }
}
