//! The TLS listener's certificate: `--tls-cert` (PEM chain) and `--tls-key` (PEM PKCS#8 RSA or
//! ECDSA; PKCS#1 and SEC1 are read too), HTTP/1.1 and h2 offered by ALPN, reloaded when either
//! file changes. A bad edit (a half-written file, a key that does not match the certificate)
//! is logged and counted, and the last good pair keeps serving: a typo must not take the
//! listener down. Must not log key material.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::metrics::Metrics;

/// How often the files are looked at.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Why a certificate pair could not be loaded. Names the file and the problem, never bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {0}: cannot read: {1}")]
    ReadCert(PathBuf, std::io::Error),
    #[error("--tls-key {0}: cannot read: {1}")]
    ReadKey(PathBuf, std::io::Error),
    #[error("--tls-cert {0}: no PEM certificate in it")]
    NoCert(PathBuf),
    #[error("--tls-key {0}: no PEM private key in it (PKCS#8 RSA or ECDSA)")]
    NoKey(PathBuf),
    #[error("--tls-cert/--tls-key: {0} (does the key belong to the certificate?)")]
    Rustls(#[from] rustls::Error),
}

/// The serving configuration, swapped atomically on reload.
pub struct TlsReloader {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<ServerConfig>,
}

impl TlsReloader {
    /// Loads the pair now; a sidecar that cannot serve TLS does not start.
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Arc<Self>, TlsError> {
        let config = load(&cert, &key)?;
        Ok(Arc::new(Self { cert, key, current: ArcSwap::from_pointee(config) }))
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Polls the files' modification times and reloads when they change, until dropped.
    pub async fn watch(self: Arc<Self>, metrics: Arc<Metrics>, interval: Duration) {
        let mut seen = stamps(&self.cert, &self.key);
        loop {
            tokio::time::sleep(interval).await;
            let now = stamps(&self.cert, &self.key);
            if now == seen {
                continue;
            }
            seen = now;
            match load(&self.cert, &self.key) {
                Ok(config) => {
                    self.current.store(Arc::new(config));
                    metrics.tls_reloads.with_label_values(&["ok"]).inc();
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    metrics.tls_reloads.with_label_values(&["error"]).inc();
                    tracing::error!(error = %e, "TLS certificate reload failed; still serving the last good one");
                }
            }
        }
    }
}

/// Modification time and length of both files (a rewrite within the same second usually
/// changes the length; the next write changes the time).
fn stamps(cert: &Path, key: &Path) -> [Option<(SystemTime, u64)>; 2] {
    let stamp = |p: &Path| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [stamp(cert), stamp(key)]
}

/// Reads and checks a pair: the chain, the key, and that they belong together.
pub fn load(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|e| TlsError::ReadCert(cert.to_owned(), e))?;
    let key_pem = std::fs::read(key).map_err(|e| TlsError::ReadKey(key.to_owned(), e))?;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&cert_pem).filter_map(Result::ok).collect();
    if chain.is_empty() {
        return Err(TlsError::NoCert(cert.to_owned()));
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey(key.to_owned()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, private)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
