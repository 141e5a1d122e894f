//! What every reconcile shares: the API client, the clock, metrics, the event recorder and the
//! per-object retry state. Owns no policy: the controllers decide, this only carries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::events::{Recorder, Reporter};
use kube::Client;

use crate::metrics::Metrics;

/// The time source. Injected so that expiry and rotation decisions are testable with a fixed now.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

// === impl SystemClock ===

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// Shared state of the controllers.
pub struct Context {
    pub client: Client,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Consecutive failures per object (`namespace/name`), for exponential backoff in
    /// `error_policy`; cleared by a successful reconcile.
    failures: Mutex<HashMap<String, u32>>,
}

/// Backoff after the first failure; doubles per consecutive failure up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// Longest wait between retries of a failing object.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

// === impl Context ===

impl Context {
    /// `reporter` names this operator in the events it records (`reportingController`).
    pub fn new(client: Client, clock: Arc<dyn Clock>, metrics: Arc<Metrics>, reporter: Reporter) -> Self {
        let recorder = Recorder::new(client.clone(), reporter);
        Self { client, clock, metrics, recorder, failures: Mutex::default() }
    }

    /// Records one more failure of `key` and returns how long to wait before retrying it.
    pub fn next_backoff(&self, key: &str) -> Duration {
        // A poisoned lock only means another reconcile panicked mid-update; the counts are
        // still usable, so recover them rather than stop retrying.
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let n = failures.entry(key.to_owned()).or_insert(0);
        let wait = FIRST_BACKOFF.saturating_mul(2u32.saturating_pow(*n)).min(MAX_BACKOFF);
        *n = n.saturating_add(1);
        wait
    }

    /// Forgets the failures of `key` after it reconciled.
    pub fn reset_backoff(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}
