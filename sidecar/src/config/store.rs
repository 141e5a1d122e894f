//! Where the live configuration sits: an `ArcSwapOption`, so each request loads it once with
//! no lock and a reload never blocks or drops a request (in-flight requests keep the `Arc`
//! they loaded).

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use portcullis_crds::Snapshot;

use super::live::{Live, LiveError};
use crate::identity::session::GeneratedKey;
use crate::jwks::JwksRegistry;
use crate::metrics::Metrics;

/// The current config (if any) and what is needed to render a new one.
pub struct ConfigStore {
    live: ArcSwapOption<Live>,
    jwks: Arc<JwksRegistry>,
    metrics: Arc<Metrics>,
    /// Signs sessions of applications without `sessionKeyRef` (api.md: generated at start).
    session_key: GeneratedKey,
}

impl ConfigStore {
    pub fn new(jwks: Arc<JwksRegistry>, metrics: Arc<Metrics>) -> Self {
        Self { live: ArcSwapOption::empty(), jwks, metrics, session_key: GeneratedKey::new() }
    }

    /// The running config; `None` until one is installed (every request is then refused).
    pub fn load(&self) -> Option<Arc<Live>> {
        self.live.load_full()
    }

    /// Whether a config is loaded (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.live.load().is_some()
    }

    /// Renders and installs a snapshot, replacing the running one atomically. Must run inside
    /// the tokio runtime (JWKS fetches for new issuers start here). On error nothing changes.
    pub fn install(&self, snapshot: Snapshot) -> Result<Arc<Live>, LiveError> {
        let previous = self.live.load_full();
        let live = Arc::new(Live::build(snapshot, &self.jwks, &self.metrics, self.session_key.get())?);
        if let Some(prev) = &previous {
            if prev.version != live.version {
                let _ = self.metrics.config_info.remove_label_values(&[&prev.version]);
            }
        }
        self.metrics.config_info.with_label_values(&[&live.version]).set(1);
        self.live.store(Some(live.clone()));
        Ok(live)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }
}
