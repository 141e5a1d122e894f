//! The operator's Prometheus metrics (`portcullis_operator_*`). Labels are bounded sets: the
//! controller name and a result that is `ok` or an `Error::reason()`, never an object name, an
//! error message or a value.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Reconcile counters and timings.
#[derive(Clone)]
pub struct Metrics {
    /// `portcullis_operator_reconciles_total{controller, result}`.
    reconciles: IntCounterVec,
    /// `portcullis_operator_reconcile_duration_seconds{controller}`.
    duration: HistogramVec,
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
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { reconciles, duration })
    }

    /// Counts one finished reconcile and its duration.
    pub fn reconciled(&self, controller: &str, result: &str, took: Duration) {
        self.reconciles.with_label_values(&[controller, result]).inc();
        self.duration.with_label_values(&[controller]).observe(took.as_secs_f64());
    }
}
