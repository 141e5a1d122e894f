//! The admin listener (its own port): `/healthz` (alive), `/readyz` (200 once a config is
//! loaded, else 503), `/metrics` (Prometheus text), and `PUT /config` (signed pushes from the
//! operator, when this sidecar runs in cluster mode).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::push::{PushReceiver, MAX_PUSH_BYTES};
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

/// `PUT /config`: reads the body (capped), hands it to the receiver, answers JSON.
async fn push(store: &ConfigStore, receiver: Option<&PushReceiver>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let Some(receiver) = receiver else {
        return json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "push_disabled",
            "message": "this sidecar takes no pushes (standalone --manifests, or no --push-public-key)"}),
        );
    };
    let body = match Limited::new(req.into_body(), MAX_PUSH_BYTES).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return json(StatusCode::PAYLOAD_TOO_LARGE, serde_json::json!({"error": "too_large"}));
        }
    };
    let now = jiff::Timestamp::now().as_second();
    match receiver.receive(store, &body, now) {
        Ok(a) => {
            tracing::info!(sequence = a.sequence, version = %a.version, unchanged = a.unchanged, "configuration pushed");
            json(
                StatusCode::OK,
                serde_json::json!({"sequence": a.sequence, "version": a.version, "unchanged": a.unchanged}),
            )
        }
        Err(e) => {
            tracing::warn!(reason = e.reason(), error = %e, "configuration push refused; the running configuration stays");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            json(status, serde_json::json!({"error": e.reason(), "message": e.to_string()}))
        }
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Arc<ConfigStore>,
    receiver: Option<Arc<PushReceiver>>,
    shutdown: impl Future<Output = ()>,
) {
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
        let receiver = receiver.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let store = store.clone();
                let receiver = receiver.clone();
                async move {
                    let resp = if req.uri().path() == "/config" && req.method() == Method::PUT {
                        push(&store, receiver.as_deref(), req).await
                    } else {
                        respond(&store, &req)
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
