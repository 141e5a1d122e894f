//! The outbound HTTP(S) client: JWKS fetches, forward routes, the app upstream.
//!
//! TLS verifies against the system roots plus `SSL_CERT_FILE` when set (api.md); names resolve
//! through the system resolver (`/etc/hosts` included). Connections are pooled and kept alive.
//! Finding no trusted CA certificate is not fatal: plain-HTTP upstreams and inline JWKS need
//! none, so the client is built anyway (with a warning) and only an HTTPS exchange fails, naming
//! the missing bundle.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Error type of bodies we send: anything a streamed request body can fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type every outbound request uses.
pub type OutBody = BoxBody<Bytes, BoxError>;
/// A pooled HTTP/1.1 + HTTP/2 client speaking `http://` and `https://`.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, OutBody>;

/// Why the outbound client could not be built, or (`NoRoots`) why an HTTPS connection failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("no trusted CA certificates found (system bundle empty and SSL_CERT_FILE unset or empty)")]
    NoRoots,
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

impl OutboundError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoRoots => "no_trusted_roots",
            Self::Tls(_) => "tls_setup",
        }
    }
}

/// Bundles Debian, RHEL and Alpine put their system roots in; read in addition to
/// `rustls-native-certs`, which reads only `SSL_CERT_FILE` when that is set.
const SYSTEM_BUNDLES: &[&str] =
    &["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem"];

/// Trusted roots: the system's plus `SSL_CERT_FILE`'s; empty when there are none.
pub fn root_store() -> rustls::RootCertStore {
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
    roots
}

/// TLS client settings shared by every outbound connection, trusting the system's roots.
pub fn tls_config() -> Result<rustls::ClientConfig, OutboundError> {
    tls_config_with(root_store())
}

/// TLS client settings trusting `roots`. Without any, every certificate is refused with
/// [`OutboundError::NoRoots`] (and a warning now), so that only an HTTPS fetch fails.
fn tls_config_with(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, OutboundError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    if roots.is_empty() {
        tracing::warn!(
            reason = OutboundError::NoRoots.reason(),
            "{}: outbound HTTPS (a jwksUri, sign-in, an https upstream or forward route) fails until the \
             image has a CA bundle or SSL_CERT_FILE names one; plain HTTP and inline JWKS work",
            OutboundError::NoRoots
        );
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(WithoutRoots::refusing(provider)))
            .with_no_client_auth());
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// A verifier that checks no server certificate against roots, only the handshake signatures:
/// it refuses every certificate, saying why (no trusted roots), or accepts any (`doctor
/// --insecure`, for test deployments with self-signed certificates).
#[derive(Debug)]
pub(crate) struct WithoutRoots {
    provider: Arc<rustls::crypto::CryptoProvider>,
    accept_any: bool,
}

impl WithoutRoots {
    /// Accepts any server certificate.
    pub(crate) fn accepting(provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        Self { provider, accept_any: true }
    }

    /// Refuses every server certificate with [`OutboundError::NoRoots`].
    fn refusing(provider: Arc<rustls::crypto::CryptoProvider>) -> Self {
        Self { provider, accept_any: false }
    }
}

impl ServerCertVerifier for WithoutRoots {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.accept_any {
            return Ok(ServerCertVerified::assertion());
        }
        // Error::Other displays the message (CertificateError::Other would print its Debug form).
        Err(rustls::Error::Other(rustls::OtherError(Arc::new(OutboundError::NoRoots))))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Builds the pooled client. `connect_timeout` bounds TCP connect; callers bound the rest.
pub fn client(connect_timeout: Duration) -> Result<HttpClient, OutboundError> {
    Ok(client_with(tls_config()?, connect_timeout))
}

fn client_with(tls: rustls::ClientConfig, connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .build(https)
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";

    /// Answers one plain-HTTP request on loopback with `200 ok`.
    async fn http_server() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(ANSWER).await;
        });
        addr
    }

    type Handshake = tokio::sync::oneshot::Receiver<std::io::Result<()>>;

    /// Answers one HTTPS request on loopback with `200 ok`, with a self-signed certificate for
    /// `localhost` (returned, to trust it); the handshake's outcome is sent on the channel.
    async fn https_server() -> (std::net::SocketAddr, CertificateDer<'static>, Handshake) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let der = cert.cert.der().clone();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            match acceptor.accept(socket).await {
                Ok(mut tls) => {
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls.write_all(ANSWER).await;
                    let _ = tx.send(Ok(()));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
        (addr, der, rx)
    }

    fn get(url: &str) -> http::Request<OutBody> {
        let body = Empty::<Bytes>::new().map_err(|never| match never {}).boxed();
        http::Request::get(url).header("host", "localhost").body(body).unwrap()
    }

    #[tokio::test]
    async fn without_trusted_roots_only_https_fails_and_says_why() {
        let client = client_with(tls_config_with(rustls::RootCertStore::empty()).unwrap(), Duration::from_secs(2));

        let plain = http_server().await;
        let (status, body) =
            exchange(&client, get(&format!("http://{plain}/")), Duration::from_secs(5), 1024).await.unwrap();
        assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]), "plain HTTP needs no CA bundle");

        let (tls, _, handshake) = https_server().await;
        let url = format!("https://localhost:{}/", tls.port());
        let err = exchange(&client, get(&url), Duration::from_secs(5), 1024).await.unwrap_err().to_string();
        assert!(err.contains("no trusted CA certificates found"), "{err}");
        assert!(handshake.await.unwrap().is_err(), "the client refused the server's certificate");
    }

    #[tokio::test]
    async fn with_a_trusted_root_https_works() {
        // The control: the same server, its certificate trusted, is reached (so the failure
        // above is the missing roots, not the test server).
        let (tls, cert, handshake) = https_server().await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client = client_with(tls_config_with(roots).unwrap(), Duration::from_secs(2));
        let url = format!("https://localhost:{}/", tls.port());
        let (status, body) = exchange(&client, get(&url), Duration::from_secs(5), 1024).await.unwrap();
        assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));
        assert!(handshake.await.unwrap().is_ok());
    }
}
