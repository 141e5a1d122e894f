//! The operator's admin HTTP server: `/metrics` (Prometheus text), `/healthz` (the process
//! answers and its watches are not stuck failing, see [`WatchHealth`]) and `/readyz` (the
//! controllers' caches have synced). Must not expose anything else:
//! no object data, no secrets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;

use crate::watch_health::WatchHealth;

/// What the admin server reports.
#[derive(Clone)]
pub struct Admin {
    pub registry: Registry,
    /// Set once the controllers can act (their watches have listed everything once).
    pub ready: Arc<AtomicBool>,
    /// The controllers' watch errors; `/healthz` fails while they have not stopped for too long.
    pub watches: Arc<WatchHealth>,
}

// === impl Admin ===

impl Admin {
    /// Answers one request.
    pub fn respond(&self, path: &str) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: String| {
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from(body)))
                .unwrap_or_default()
        };
        match path {
            "/healthz" => match self.watches.check(Instant::now()) {
                Ok(()) => text(StatusCode::OK, "ok\n".into()),
                Err(unhealthy) => {
                    tracing::warn!(reason = unhealthy.reason(), "{unhealthy}");
                    text(StatusCode::SERVICE_UNAVAILABLE, format!("{unhealthy}\n"))
                }
            },
            "/readyz" if self.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n".into()),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet\n".into()),
            "/metrics" => {
                let mut buf = Vec::new();
                match TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
                    Ok(()) => text(StatusCode::OK, String::from_utf8_lossy(&buf).into_owned()),
                    Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }

    /// Serves on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            let admin = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let response = admin.respond(req.uri().path());
                    async move { Ok::<_, Infallible>(response) }
                });
                if let Err(e) =
                    auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await
                {
                    tracing::debug!(%peer, error = %e, "admin connection");
                }
            });
        }
    }

    /// Binds `addr`, for callers that only have an address.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
        TcpListener::bind(addr).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;
    use crate::metrics::Metrics;

    async fn body(r: Response<Full<Bytes>>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn health_readiness_and_metrics() {
        let registry = Registry::new();
        let metrics = Metrics::register(&registry).unwrap();
        metrics.reconciled("accessservicetoken", "ok", std::time::Duration::from_millis(3));
        metrics.watch_failed("accessapplication");
        let admin =
            Admin { registry, ready: Arc::default(), watches: Arc::new(WatchHealth::new(Duration::from_secs(5))) };

        assert_eq!(admin.respond("/healthz").status(), StatusCode::OK);
        assert_eq!(admin.respond("/readyz").status(), StatusCode::SERVICE_UNAVAILABLE);
        admin.ready.store(true, Ordering::Release);
        assert_eq!(admin.respond("/readyz").status(), StatusCode::OK);
        assert_eq!(admin.respond("/other").status(), StatusCode::NOT_FOUND);

        // Watch errors that keep coming past the limit fail /healthz, saying why.
        let now = Instant::now();
        admin.watches.error(now - Duration::from_secs(6), &"410 Expired");
        admin.watches.error(now, &"410 Expired");
        let unhealthy = admin.respond("/healthz");
        assert_eq!(unhealthy.status(), StatusCode::SERVICE_UNAVAILABLE);
        let text = body(unhealthy).await;
        assert!(text.contains("watches have failed") && text.contains("410 Expired"), "{text}");
        assert_eq!(admin.respond("/readyz").status(), StatusCode::OK);

        let text = body(admin.respond("/metrics")).await;
        assert!(
            text.contains(r#"portcullis_operator_reconciles_total{controller="accessservicetoken",result="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains("portcullis_operator_reconcile_duration_seconds_bucket"), "{text}");
        assert!(text.contains(r#"portcullis_operator_watch_errors_total{controller="accessapplication"} 1"#), "{text}");
    }
}
