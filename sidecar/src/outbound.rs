//! The outbound HTTP(S) client: JWKS fetches, forward routes, the app upstream.
//!
//! TLS verifies against the system roots plus `SSL_CERT_FILE` when set (api.md); names resolve
//! through the system resolver (`/etc/hosts` included). Connections are pooled and kept alive.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

/// Error type of bodies we send: anything a streamed request body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type every outbound request uses.
pub type OutBody = BoxBody<Bytes, BoxError>;
/// A pooled HTTP/1.1 + HTTP/2 client speaking `http://` and `https://`.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, OutBody>;

/// Why the outbound client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("no trusted CA certificates found (system bundle empty and SSL_CERT_FILE unset or empty)")]
    NoRoots,
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// Bundles Debian, RHEL and Alpine put their system roots in; read in addition to
/// `rustls-native-certs`, which reads only `SSL_CERT_FILE` when that is set.
const SYSTEM_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// Trusted roots: the system's plus `SSL_CERT_FILE`'s.
pub fn root_store() -> Result<rustls::RootCertStore, OutboundError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    for path in SYSTEM_BUNDLES {
        if let Ok(iter) = CertificateDer::pem_file_iter(path) {
            for cert in iter.flatten() {
                let _ = roots.add(cert);
            }
        }
    }
    if roots.is_empty() {
        return Err(OutboundError::NoRoots);
    }
    Ok(roots)
}

/// TLS client settings shared by every outbound connection.
pub fn tls_config() -> Result<rustls::ClientConfig, OutboundError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store()?)
        .with_no_client_auth();
    Ok(config)
}

/// Builds the pooled client. `connect_timeout` bounds TCP connect; callers bound the rest.
pub fn client(connect_timeout: Duration) -> Result<HttpClient, OutboundError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config()?)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .build(https))
}

/// Why one bounded exchange failed. Messages name the failure, never a body.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the body failed: {0}")]
    Body(String),
}

/// Sends `request` and reads the whole answer, bounded in time (`timeout` for all of it) and
/// size (`max_body_bytes`): what control-plane fetches (JWKS, OIDC discovery, token requests)
/// need, never the proxied traffic.
pub async fn exchange(
    client: &HttpClient,
    request: http::Request<OutBody>,
    timeout: Duration,
    max_body_bytes: usize,
) -> Result<(http::StatusCode, Bytes), ExchangeError> {
    use http_body_util::BodyExt;
    let run = async {
        let response = client.request(request).await.map_err(|e| ExchangeError::Request(error_chain(&e)))?;
        let status = response.status();
        let collected =
            http_body_util::Limited::new(response.into_body(), max_body_bytes).collect().await.map_err(|e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                    ExchangeError::TooLarge(max_body_bytes)
                } else {
                    ExchangeError::Body(error_chain(e.as_ref()))
                }
            })?;
        Ok((status, collected.to_bytes()))
    };
    tokio::time::timeout(timeout, run).await.map_err(|_| ExchangeError::Timeout(timeout))?
}

/// `outer: inner: root` — hyper's top-level errors alone ("client error (Connect)") do not say
/// what to fix.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
