//! The webhooks' HTTPS server: TLS with whatever certificate [`CertSlot`] holds at handshake
//! time (so a renewed certificate is served without a restart), bodies capped at
//! [`MAX_BODY_BYTES`], every answer from [`Webhooks::handle`]. Moves bytes only.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use super::{Webhooks, MAX_BODY_BYTES};

/// A TLS handshake slower than this is dropped (the API server completes one in milliseconds).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate served now; empty until the first one is loaded (handshakes fail until then).
#[derive(Default)]
pub struct CertSlot(ArcSwapOption<CertifiedKey>);

// === impl CertSlot ===

impl CertSlot {
    pub fn store(&self, key: Arc<CertifiedKey>) {
        self.0.store(Some(key));
    }

    pub fn is_loaded(&self) -> bool {
        self.0.load().is_some()
    }
}

impl std::fmt::Debug for CertSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertSlot").field("loaded", &self.is_loaded()).finish()
    }
}

impl ResolvesServerCert for CertSlot {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.load_full()
    }
}

/// Serves the webhooks on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, certs: Arc<CertSlot>, webhooks: Arc<Webhooks>) -> std::io::Result<()> {
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    loop {
        let (stream, peer) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let webhooks = webhooks.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "webhook TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "webhook TLS handshake timed out"),
            };
            let service = service_fn(move |req: Request<Incoming>| {
                let webhooks = webhooks.clone();
                async move { Ok::<_, Infallible>(answer(&webhooks, req).await) }
            });
            if let Err(e) = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await
            {
                tracing::debug!(%peer, error = %e, "webhook connection");
            }
        });
    }
}

/// Reads the body (capped) and answers.
async fn answer(webhooks: &Webhooks, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"webhooks take POST\n".to_vec());
    }
    let path = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            let status = if e.is::<http_body_util::LengthLimitError>() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return reply(status, "text/plain", format!("reading the request body: {e}\n").into_bytes());
        }
    };
    let (status, body) = webhooks.handle(&path, &body);
    let content_type = if status == StatusCode::OK { "application/json" } else { "text/plain" };
    if status != StatusCode::OK {
        tracing::warn!(%path, %status, "webhook request refused");
    }
    reply(status, content_type, body)
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}
