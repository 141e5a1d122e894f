//! JWKS fetching and caching: the I/O side of JWT verification.
//!
//! Owns one key store per trusted issuer ([`IssuerKeys`]): inline JWKS as static keys, remote
//! JWKS fetched over HTTP(S) with the shared outbound client, refreshed every 5 minutes and on
//! an unknown `kid` at most once per 30 s (api.md), retried with backoff while failing, and
//! shared across config reloads (keyed by URI) so a reload does not refetch. The last good
//! keys stay in force when a fetch fails (architecture.md: keep serving when a JWKS endpoint is
//! away); the issuer is then *stale* until a fetch succeeds, which the `portcullis_jwks_stale`
//! gauge and one log line at each change say. Must not verify tokens (that is `decide::authn::jwt`, which reads the keys through
//! [`KeySource`]) and must never log a token: only issuers, URIs, kids and errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use portcullis_crds::snapshot::{self, JwksSource};
use prometheus::{IntCounterVec, IntGaugeVec};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::decide::authn::jwt::{JwksError, KeySet, KeySource};
use crate::metrics::Metrics;
use crate::outbound::{exchange, ExchangeError, HttpClient, OutBody};

/// Timings and limits of JWKS fetching. [`Default`] is what api.md decides; tests shorten them.
#[derive(Clone, Debug)]
pub struct JwksSettings {
    /// Periodic refresh (api.md: every 5 minutes).
    pub refresh_interval: Duration,
    /// Least time between two refreshes caused by unknown `kid`s (api.md: 30 s per issuer), so
    /// a stream of forged kids cannot turn the sidecar into a load generator for the issuer.
    pub unknown_kid_min_interval: Duration,
    /// Bound on one whole fetch: connect, headers and body.
    pub fetch_timeout: Duration,
    /// Largest JWKS body read; real ones are a few KiB.
    pub max_body_bytes: usize,
    /// First retry delay after a failed fetch, doubled per failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            refresh_interval: Duration::from_secs(300),
            unknown_kid_min_interval: Duration::from_secs(30),
            fetch_timeout: Duration::from_secs(5),
            max_body_bytes: 1024 * 1024,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Why one JWKS fetch failed. Messages name the URI's problem, never key or token bytes.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("request failed: {0}")]
    Request(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("answered HTTP {0}; a JWKS endpoint must answer 200")]
    Status(u16),
    #[error("body larger than {0} bytes; is this really a JWKS endpoint?")]
    TooLarge(usize),
    #[error("reading the body failed: {0}")]
    Body(String),
    #[error(transparent)]
    Jwks(#[from] JwksError),
    #[error("the keys are inline; there is nothing to fetch")]
    Inline,
    #[error("the JWKS URI is not a valid absolute http(s) URI")]
    InvalidUri,
}

impl FetchError {
    /// Stable label for logs.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Request(_) => "request_failed",
            FetchError::Timeout(_) => "timeout",
            FetchError::Status(_) => "bad_status",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Body(_) => "body_failed",
            FetchError::Jwks(e) => e.reason(),
            FetchError::Inline => "inline",
            FetchError::InvalidUri => "invalid_uri",
        }
    }
}

/// What every store shares: the client, the metrics and the settings.
struct Shared {
    client: HttpClient,
    refreshes: IntCounterVec,
    stale: IntGaugeVec,
    settings: JwksSettings,
}

/// Hands out one [`IssuerKeys`] per JWKS URI while any config uses it.
pub struct JwksRegistry {
    shared: Arc<Shared>,
    /// Weak, so a store lives exactly as long as some config holds it; the next config
    /// built while the previous one is still live finds the same store (no refetch).
    remote: Mutex<HashMap<String, Weak<IssuerKeys>>>,
}

// === impl JwksRegistry ===

impl JwksRegistry {
    pub fn new(client: HttpClient, metrics: &Metrics) -> Self {
        Self::with_settings(client, metrics, JwksSettings::default())
    }

    pub fn with_settings(client: HttpClient, metrics: &Metrics, settings: JwksSettings) -> Self {
        let shared = Arc::new(Shared {
            client,
            refreshes: metrics.jwks_refreshes.clone(),
            stale: metrics.jwks_stale.clone(),
            settings,
        });
        Self { shared, remote: Mutex::new(HashMap::new()) }
    }

    /// The key store of `issuer`. For a `jwksUri`, the store already in use for that URI, or a
    /// new one whose background refresh starts now; call it inside a tokio runtime (outside
    /// one, no refresh runs and the issuer's tokens are refused with `jwt_no_keys`).
    pub fn issuer_keys(&self, issuer: &snapshot::Issuer) -> Arc<IssuerKeys> {
        let uri = match &issuer.jwks {
            JwksSource::Inline(json) => return Arc::new(IssuerKeys::inline(&issuer.issuer, json, self.shared.clone())),
            JwksSource::Uri(uri) => uri,
        };
        // Poisoning means a panic while the map was held; the map itself is still consistent
        // (every operation on it is a single insert/remove/get).
        let mut remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        remote.retain(|_, w| w.strong_count() > 0);
        if let Some(existing) = remote.get(uri).and_then(Weak::upgrade) {
            return existing;
        }
        let keys = Arc::new(IssuerKeys::remote(&issuer.issuer, uri, self.shared.clone()));
        keys.start();
        remote.insert(uri.clone(), Arc::downgrade(&keys));
        keys
    }

    /// The outbound client the stores fetch with (shared with sign-in's provider requests).
    pub fn client(&self) -> &HttpClient {
        &self.shared.client
    }

    /// The stores of every issuer of `identity`, in issuer order: the [`KeySource`] for
    /// [`JwtConfig::authenticate`](crate::decide::authn::jwt::JwtConfig::authenticate).
    pub fn identity_keys(&self, identity: &snapshot::Identity) -> Vec<Arc<IssuerKeys>> {
        identity.issuers.iter().map(|i| self.issuer_keys(i)).collect()
    }
}

/// The keys of one issuer, readable without a lock on the request path.
pub struct IssuerKeys {
    /// The `iss` value, the metric label.
    issuer: String,
    /// Inline keys: nothing to fetch, ever.
    inline: bool,
    /// `None` for inline keys or an unusable URI.
    uri: Option<Uri>,
    /// Display form of the key source for logs.
    source: String,
    current: ArcSwapOption<KeySet>,
    /// Bumped whenever `current` changes; what [`IssuerKeys::wait_ready`] waits on.
    updates: watch::Sender<u64>,
    /// Serialises fetches so an older answer never overwrites a newer one.
    fetch_lock: tokio::sync::Mutex<()>,
    /// When the last unknown-kid refresh started; held across that refresh so concurrent
    /// requests with the same new kid wait for its result instead of being refused.
    unknown_kid: tokio::sync::Mutex<Option<Instant>>,
    /// When `current` last changed, so a request that saw the old keys just before another
    /// request's refresh landed still gets its one retry.
    changed_at: Mutex<Option<Instant>>,
    /// Since when fetches have been failing; `None` while the last fetch succeeded.
    stale_since: Mutex<Option<Instant>>,
    shared: Arc<Shared>,
    task: OnceLock<AbortHandle>,
}

impl std::fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.issuer)
            .field("source", &self.source)
            .field("keys", &self.current.load())
            .finish_non_exhaustive()
    }
}

// === impl IssuerKeys ===

impl IssuerKeys {
    fn new(issuer: &str, inline: bool, uri: Option<Uri>, source: String, shared: Arc<Shared>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            inline,
            uri,
            source,
            current: ArcSwapOption::empty(),
            updates: watch::Sender::new(0),
            fetch_lock: tokio::sync::Mutex::new(()),
            unknown_kid: tokio::sync::Mutex::new(None),
            changed_at: Mutex::new(None),
            stale_since: Mutex::new(None),
            shared,
            task: OnceLock::new(),
        }
    }

    fn inline(issuer: &str, json: &str, shared: Arc<Shared>) -> Self {
        let keys = Self::new(issuer, true, None, "inline jwks".into(), shared);
        match KeySet::from_jwks_json(json.as_bytes()) {
            Ok(set) => keys.store(Arc::new(set)),
            // compile() checks the shape; key material it cannot judge. Fail closed: the
            // issuer's tokens get `jwt_no_keys`.
            Err(e) => {
                tracing::error!(issuer, error = %e, "inline JWKS has no usable key; this issuer's tokens are refused")
            }
        }
        keys
    }

    fn remote(issuer: &str, uri: &str, shared: Arc<Shared>) -> Self {
        let parsed = uri
            .parse::<Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some());
        if parsed.is_none() {
            tracing::error!(issuer, uri, "JWKS URI is not a valid http(s) URI; this issuer's tokens are refused");
        }
        Self::new(issuer, false, parsed, uri.to_owned(), shared)
    }

    /// Starts the background refresh: first fetch now, retries with backoff while failing,
    /// then every `refresh_interval`. The task holds only a `Weak` between fetches and is
    /// aborted when the store is dropped.
    fn start(self: &Arc<Self>) {
        if self.uri.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(issuer = %self.issuer, "no tokio runtime: JWKS refresh not started; tokens are refused");
            return;
        };
        let weak = Arc::downgrade(self);
        let settings = self.shared.settings.clone();
        let handle = runtime.spawn(async move {
            let mut backoff = settings.initial_backoff;
            loop {
                let delay = {
                    let Some(keys) = weak.upgrade() else { return };
                    match keys.refresh().await {
                        Ok(_) => {
                            backoff = settings.initial_backoff;
                            settings.refresh_interval
                        }
                        Err(_) => {
                            let d = backoff;
                            backoff = (backoff * 2).min(settings.max_backoff);
                            d
                        }
                    }
                };
                tokio::time::sleep(delay).await;
            }
        });
        let _ = self.task.set(handle.abort_handle());
    }

    /// The `iss` this store serves.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The current keys; `None` until the first successful load.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.current.load_full()
    }

    fn generation(&self) -> Option<u64> {
        self.current.load().as_ref().map(|k| k.generation())
    }

    fn store(&self, set: Arc<KeySet>) {
        self.current.store(Some(set));
        *self.changed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        self.updates.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until keys are loaded, at most `timeout`; whether they are.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.updates.subscribe();
        let ready = tokio::time::timeout(timeout, rx.wait_for(|_| self.current.load().is_some())).await;
        matches!(ready, Ok(Ok(_))) || self.current.load().is_some()
    }

    /// Fetches the JWKS now and stores it when it has usable keys; on failure the last good
    /// keys stay. `Ok(true)` when the keys changed. Counts `portcullis_jwks_refreshes_total`.
    pub async fn refresh(&self) -> Result<bool, FetchError> {
        let Some(uri) = &self.uri else {
            return Err(if self.inline { FetchError::Inline } else { FetchError::InvalidUri });
        };
        let _serial = self.fetch_lock.lock().await;
        // In a request's trace when a request is waiting on it (an unknown `kid`).
        let result = crate::trace::outbound("jwks fetch", uri, fetch(&self.shared, uri), FetchError::reason).await;
        let label = if result.is_ok() { "ok" } else { "error" };
        self.shared.refreshes.with_label_values(&[self.issuer.as_str(), label]).inc();
        self.mark_stale(result.as_ref().err());
        match result {
            Ok(set) => {
                if self.generation() == Some(set.generation()) {
                    tracing::debug!(issuer = %self.issuer, uri = %self.source, "JWKS unchanged");
                    return Ok(false);
                }
                let kids: Vec<&str> = set.kids().collect();
                tracing::info!(
                    issuer = %self.issuer, uri = %self.source, kids = ?kids, skipped = set.skipped(),
                    "JWKS loaded"
                );
                self.store(Arc::new(set));
                Ok(true)
            }
            Err(e) => {
                let keeping = if self.current.load().is_some() { "keeping the last good keys" } else { "no keys yet" };
                tracing::warn!(
                    issuer = %self.issuer, uri = %self.source, reason = e.reason(), error = %e,
                    "JWKS fetch failed; {keeping}"
                );
                Err(e)
            }
        }
    }

    /// Records whether the issuer is stale after a fetch (`failed` is its error, if any): the
    /// gauge on every fetch, a log line only when the state changes, so an endpoint down for an
    /// hour logs "stale" once and "no longer stale" once, beside the per-fetch warnings.
    fn mark_stale(&self, failed: Option<&FetchError>) {
        self.shared.stale.with_label_values(&[self.issuer.as_str()]).set(i64::from(failed.is_some()));
        let mut since = self.stale_since.lock().unwrap_or_else(|p| p.into_inner());
        match (failed, *since) {
            (Some(e), None) => {
                *since = Some(Instant::now());
                let keys = if self.current.load().is_some() {
                    "verifying with the last good keys"
                } else {
                    "no keys yet: its tokens are refused"
                };
                tracing::warn!(
                    issuer = %self.issuer, uri = %self.source, reason = e.reason(),
                    "JWKS endpoint failing: issuer is stale, {keys}"
                );
            }
            (None, Some(started)) => {
                *since = None;
                tracing::info!(
                    issuer = %self.issuer, uri = %self.source, stale_secs = started.elapsed().as_secs(),
                    "JWKS fetched again: issuer no longer stale"
                );
            }
            _ => {}
        }
    }

    /// For a token whose `kid` is unknown: refreshes unless a refresh for that reason ran in
    /// the last `unknown_kid_min_interval`. `true` when the keys changed (by this refresh, by
    /// one that finished while waiting, or by the rate-limited last one), so one retry is worth it.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        if self.uri.is_none() {
            return false;
        }
        let seen = self.generation();
        let mut last = self.unknown_kid.lock().await;
        if self.generation() != seen {
            return true;
        }
        let min = self.shared.settings.unknown_kid_min_interval;
        if let Some(started) = *last {
            if started.elapsed() < min {
                // Rate-limited. The caller may have tried the keys just before the last
                // refresh replaced them; a retry costs one key lookup, so allow it then.
                let changed_at = *self.changed_at.lock().unwrap_or_else(|p| p.into_inner());
                return changed_at.is_some_and(|c| c >= started);
            }
        }
        *last = Some(Instant::now());
        matches!(self.refresh().await, Ok(true))
    }
}

impl Drop for IssuerKeys {
    fn drop(&mut self) {
        if let Some(task) = self.task.get() {
            task.abort();
        }
        // No config uses this store any more: its issuer's staleness is no longer news.
        if self.uri.is_some() {
            let _ = self.shared.stale.remove_label_values(&[self.issuer.as_str()]);
        }
    }
}

impl KeySource for [Arc<IssuerKeys>] {
    fn keys(&self, issuer_index: usize) -> Option<Arc<KeySet>> {
        self.get(issuer_index)?.current()
    }
}

impl KeySource for Vec<Arc<IssuerKeys>> {
    fn keys(&self, issuer_index: usize) -> Option<Arc<KeySet>> {
        self.as_slice().keys(issuer_index)
    }
}

/// One GET of the JWKS, bounded in time and size, parsed.
async fn fetch(shared: &Shared, uri: &Uri) -> Result<KeySet, FetchError> {
    let settings = &shared.settings;
    let body: OutBody = Empty::<Bytes>::new().map_err(|never| match never {}).boxed();
    let request = Request::get(uri.clone())
        .header(ACCEPT, "application/jwk-set+json, application/json")
        .header(USER_AGENT, concat!("portcullis-sidecar/", env!("CARGO_PKG_VERSION")))
        .body(body)
        .map_err(|_| FetchError::InvalidUri)?;
    let (status, body) = exchange(&shared.client, request, settings.fetch_timeout, settings.max_body_bytes)
        .await
        .map_err(|e| match e {
            ExchangeError::Request(m) => FetchError::Request(m),
            ExchangeError::Timeout(t) => FetchError::Timeout(t),
            ExchangeError::TooLarge(n) => FetchError::TooLarge(n),
            ExchangeError::Body(m) => FetchError::Body(m),
        })?;
    if status != StatusCode::OK {
        return Err(FetchError::Status(status.as_u16()));
    }
    Ok(KeySet::from_jwks_json(&body)?)
}

#[cfg(test)]
mod tests;
