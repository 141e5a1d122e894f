//! The operator's Prometheus metrics (`portcullis_operator_*`). Labels are bounded sets: the
//! controller name and a result that is `ok` or an `Error::reason()`, never an error message or a
//! value. The one exception is the per-application sync gauge: it is labelled with the
//! application's namespace and name (bounded by the AccessApplications in the cluster, as in
//! kube-state-metrics), since "which application is out of sync" is its whole point.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Reconcile counters and timings.
#[derive(Clone)]
pub struct Metrics {
    /// `portcullis_operator_reconciles_total{controller, result}`.
    reconciles: IntCounterVec,
    /// `portcullis_operator_reconcile_duration_seconds{controller}`.
    duration: HistogramVec,
    /// `portcullis_operator_pushes_total{result}`: `ok`, `unchanged`, or a `push::PushError`
    /// reason; one count per attempt.
    pushes: IntCounterVec,
    /// `portcullis_operator_push_duration_seconds`: one attempt, connect to answer.
    push_duration: Histogram,
    /// `portcullis_operator_sidecars_synced{namespace, application}` and `..._matched`.
    synced: IntGaugeVec,
    matched: IntGaugeVec,
    /// `portcullis_operator_compile_errors{namespace, application}`: errors in the spec as
    /// compiled last (0 when it compiles), for "config rejected" alerts.
    compile_errors: IntGaugeVec,
    /// `portcullis_operator_leader`: 1 while this replica holds the leader Lease.
    leader: IntGauge,
    /// `portcullis_operator_service_token_expiry_timestamp_seconds{namespace, token}`: when the
    /// current credentials expire (Unix seconds); absent for tokens that do not expire. The
    /// "token expiring soon" alert reads it.
    token_expiry: IntGaugeVec,
    /// `portcullis_operator_watch_errors_total{controller}`: errors of the controller's watches,
    /// each retried with backoff; `/healthz` fails when they do not stop (`watch_health`).
    watch_errors: IntCounterVec,
}

// === impl Metrics ===

impl Metrics {
    /// Creates the metrics and registers them with `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let reconciles = IntCounterVec::new(
            Opts::new(
                "portcullis_operator_reconciles_total",
                "Reconciles by controller and result (ok or error reason)",
            ),
            &["controller", "result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("portcullis_operator_reconcile_duration_seconds", "Time spent in one reconcile")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["controller"],
        )?;
        let pushes = IntCounterVec::new(
            Opts::new("portcullis_operator_pushes_total", "Config push attempts by result (ok, unchanged or reason)"),
            &["result"],
        )?;
        let push_duration = Histogram::with_opts(
            HistogramOpts::new("portcullis_operator_push_duration_seconds", "Time of one config push attempt")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )?;
        let synced = IntGaugeVec::new(
            Opts::new("portcullis_operator_sidecars_synced", "Matched sidecars running the current config"),
            &["namespace", "application"],
        )?;
        let matched = IntGaugeVec::new(
            Opts::new("portcullis_operator_sidecars_matched", "Running sidecars an application selects"),
            &["namespace", "application"],
        )?;
        let compile_errors = IntGaugeVec::new(
            Opts::new(
                "portcullis_operator_compile_errors",
                "Errors in an application's spec as last compiled (0: it compiles and is pushed)",
            ),
            &["namespace", "application"],
        )?;
        let leader = IntGauge::new("portcullis_operator_leader", "1 while this replica is the elected leader")?;
        let token_expiry = IntGaugeVec::new(
            Opts::new(
                "portcullis_operator_service_token_expiry_timestamp_seconds",
                "Unix time the current credentials of an AccessServiceToken expire",
            ),
            &["namespace", "token"],
        )?;
        let watch_errors = IntCounterVec::new(
            Opts::new(
                "portcullis_operator_watch_errors_total",
                "Errors of a controller's watches (each retried with backoff)",
            ),
            &["controller"],
        )?;
        registry.register(Box::new(watch_errors.clone()))?;
        registry.register(Box::new(token_expiry.clone()))?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(pushes.clone()))?;
        registry.register(Box::new(push_duration.clone()))?;
        registry.register(Box::new(synced.clone()))?;
        registry.register(Box::new(matched.clone()))?;
        registry.register(Box::new(compile_errors.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            reconciles,
            duration,
            pushes,
            push_duration,
            synced,
            matched,
            compile_errors,
            leader,
            token_expiry,
            watch_errors,
        })
    }

    /// Counts one error of `controller`'s watches.
    pub fn watch_failed(&self, controller: &str) {
        self.watch_errors.with_label_values(&[controller]).inc();
    }

    /// Counts one finished reconcile and its duration.
    pub fn reconciled(&self, controller: &str, result: &str, took: Duration) {
        self.reconciles.with_label_values(&[controller, result]).inc();
        self.duration.with_label_values(&[controller]).observe(took.as_secs_f64());
    }

    /// Counts one push attempt and its duration.
    pub fn pushed(&self, result: &str, took: Duration) {
        self.pushes.with_label_values(&[result]).inc();
        self.push_duration.observe(took.as_secs_f64());
    }

    /// Sets an application's sidecar counts.
    pub fn sidecars(&self, namespace: &str, application: &str, matched: u32, synced: u32) {
        self.matched.with_label_values(&[namespace, application]).set(i64::from(matched));
        self.synced.with_label_values(&[namespace, application]).set(i64::from(synced));
    }

    /// Sets how many errors an application's spec has.
    pub fn compile_errors(&self, namespace: &str, application: &str, errors: usize) {
        self.compile_errors.with_label_values(&[namespace, application]).set(i64::try_from(errors).unwrap_or(i64::MAX));
    }

    /// Records whether this replica leads.
    pub fn leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Sets (or, for credentials that do not expire, removes) a token's expiry.
    pub fn token_expiry(&self, namespace: &str, token: &str, expires_at: Option<i64>) {
        match expires_at {
            Some(at) => self.token_expiry.with_label_values(&[namespace, token]).set(at),
            // An error only means the series did not exist.
            None => drop(self.token_expiry.remove_label_values(&[namespace, token])),
        }
    }

    /// Drops the gauges of a deleted application.
    pub fn forget_application(&self, namespace: &str, application: &str) {
        // An error only means the series did not exist.
        let _ = self.matched.remove_label_values(&[namespace, application]);
        let _ = self.synced.remove_label_values(&[namespace, application]);
        let _ = self.compile_errors.remove_label_values(&[namespace, application]);
    }
}
