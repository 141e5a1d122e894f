//! A recording upstream app on loopback (`Upstream`), and the accept loop other test servers reuse.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

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
