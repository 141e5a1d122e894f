//! The admin listener (its own port): `/healthz` (alive), `/readyz` (200 once a config is
//! loaded, else 503), `/metrics` (Prometheus text). Config push lands here with the operator.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::ConfigStore;

/// Answers one admin request.
pub fn respond(store: &ConfigStore, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body): (StatusCode, &'static str, String) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => (StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::GET, "/readyz") => match store.load() {
            Some(live) => (StatusCode::OK, "text/plain", format!("ready: config {}\n", live.version)),
            None => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready: no configuration loaded\n".into()),
        },
        (&Method::GET, "/metrics") => {
            (StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", store.metrics().render())
        }
        (_, "/healthz" | "/readyz" | "/metrics") => {
            (StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n".into())
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(listener: TcpListener, store: Arc<ConfigStore>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
            () = &mut shutdown => return,
        };
        let store = store.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let resp = respond(&store, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
