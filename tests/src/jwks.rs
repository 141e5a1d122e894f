//! A JWKS server on loopback whose document and status a test swaps at run time.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

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

/// Waits (bounded) until the seed sidecar at `url` (an `api.mysite.com` URL) has stored the
/// first keys its JWKS server served, which must publish `ec-1` (as
/// [`jwks_json_without`](crate::jwks_json_without)`("rsa-1")` does): an `ec-1` token is then
/// answered 200. The server counts its hit before the sidecar stores what it served, and until
/// then a token is refused for having no keys, which starts no refresh: a test of the
/// unknown-kid refresh waits for this, not for the hit, and spends no refresh doing so.
pub async fn wait_for_first_jwks(url: &str) {
    let token =
        crate::mint("ec.pem", jsonwebtoken::Algorithm::ES256, Some("ec-1"), crate::claims("alice@mysite.com", 600));
    crate::eventually(std::time::Duration::from_secs(10), "the sidecar stored its first JWKS", || {
        let (url, token) = (url.to_owned(), token.clone());
        async move {
            let headers = [("host", "api.mysite.com"), ("cf-access-jwt-assertion", token.as_str())];
            (crate::get(&url, &headers).await.ok()?.status == 200).then_some(())
        }
    })
    .await;
}
