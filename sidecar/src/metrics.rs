//! The sidecar's Prometheus metrics (names fixed by api.md). Counters on the request path are
//! resolved to concrete children once per config (see `config::live`), not per request.
//!
//! The external authorizer (`authz`) registers the same families with one more label on every
//! series, `enforcer="authz"`, so that one query over sidecars and authorizers tells them apart
//! (`sum by (enforcer) (portcullis_requests_total)`); a sidecar's series keep the label set
//! api.md names, so existing queries, alerts and dashboards see no change.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metric families of one sidecar process.
pub struct Metrics {
    registry: Registry,
    /// `portcullis_requests_total{app,decision,reason,mode}`.
    pub requests: IntCounterVec,
    /// `portcullis_preflights_total{app,result}`.
    pub preflights: IntCounterVec,
    /// `portcullis_added_latency_seconds`: time spent in the sidecar, upstream time excluded.
    pub added_latency: Histogram,
    /// `portcullis_config_reloads_total{result}`.
    pub config_reloads: IntCounterVec,
    /// `portcullis_config_info{version}` = 1 for the running config.
    pub config_info: IntGaugeVec,
    /// `portcullis_config_last_reload_success_timestamp_seconds`.
    pub config_last_success: prometheus::Gauge,
    /// `portcullis_jwks_refreshes_total{issuer,result}`.
    pub jwks_refreshes: IntCounterVec,
    /// `portcullis_jwks_stale{issuer}`: 1 while the last JWKS fetch failed (tokens are verified
    /// with the last good keys, if any), 0 after a fetch succeeded.
    pub jwks_stale: IntGaugeVec,
    /// `portcullis_service_token_last_used_seconds{token}` (Unix time).
    pub token_last_used: GaugeVec,
    /// `portcullis_upstream_errors_total{app,kind}`.
    pub upstream_errors: IntCounterVec,
    /// `portcullis_config_pushes_total{result}`: pushes from the operator, `ok` or the reason.
    pub config_pushes: IntCounterVec,
    /// `portcullis_logins_total{app,result}`: browser sign-ins, `ok` or why one failed.
    pub logins: IntCounterVec,
    /// `portcullis_tls_reloads_total{result}`: certificate reloads of the TLS listener.
    pub tls_reloads: IntCounterVec,
    /// `portcullis_client_timeouts_total{kind}`: client connections or requests cut for being
    /// slow (`body`: the request body outlasted `--body-read-timeout`).
    pub client_timeouts: IntCounterVec,
    /// `portcullis_connections_open`: client connections being served.
    pub connections_open: prometheus::IntGauge,
    /// `portcullis_connection_limit_reached_total`: times `--max-connections` held back accepts.
    pub connection_limit_reached: prometheus::IntCounter,
    /// `portcullis_authz_checks_total{protocol,result}`: `authz` answers by the proxy protocol
    /// that asked (`authz-grpc`, `authz-http`, `forward-auth`, `forward-auth-direct`).
    pub authz_checks: IntCounterVec,
}

/// The `enforcer` label's value on every series of an external authorizer.
pub const AUTHORIZER_ENFORCER: &str = "authz";

impl Metrics {
    /// A sidecar's metrics.
    pub fn new() -> Self {
        Self::with_registry(Registry::new())
    }

    /// An external authorizer's: the same families, each series labelled
    /// `enforcer="authz"`.
    pub fn for_authorizer() -> Self {
        let labels = std::collections::HashMap::from([("enforcer".to_owned(), AUTHORIZER_ENFORCER.to_owned())]);
        // Only fails on an invalid label name, and this one is a constant valid name.
        let registry = Registry::new_custom(None, Some(labels)).expect("static label name is valid");
        Self::with_registry(registry)
    }

    fn with_registry(registry: Registry) -> Self {
        let f = Families(&registry);
        let config_reloads = f.counters(CONFIG_RELOADS);
        // Make both results visible from the start, so alerts on `error` have a series.
        config_reloads.with_label_values(&["ok"]);
        config_reloads.with_label_values(&["error"]);
        Self {
            requests: f.counters(REQUESTS),
            preflights: f.counters(PREFLIGHTS),
            added_latency: f.register(Histogram::with_opts(
                HistogramOpts::new(ADDED_LATENCY.name, ADDED_LATENCY.help).buckets(LATENCY_BUCKETS.to_vec()),
            )),
            config_reloads,
            config_info: f.gauges(CONFIG_INFO),
            config_last_success: f.register(prometheus::Gauge::new(CONFIG_LAST_SUCCESS.name, CONFIG_LAST_SUCCESS.help)),
            jwks_refreshes: f.counters(JWKS_REFRESHES),
            jwks_stale: f.gauges(JWKS_STALE),
            token_last_used: f.register(GaugeVec::new(Opts::from(TOKEN_LAST_USED), TOKEN_LAST_USED.labels)),
            upstream_errors: f.counters(UPSTREAM_ERRORS),
            config_pushes: f.counters(CONFIG_PUSHES),
            logins: f.counters(LOGINS),
            tls_reloads: f.counters(TLS_RELOADS),
            client_timeouts: f.counters(CLIENT_TIMEOUTS),
            connections_open: f.register(prometheus::IntGauge::new(CONNECTIONS_OPEN.name, CONNECTIONS_OPEN.help)),
            connection_limit_reached: f
                .register(prometheus::IntCounter::new(CONNECTION_LIMIT_REACHED.name, CONNECTION_LIMIT_REACHED.help)),
            authz_checks: f.counters(AUTHZ_CHECKS),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which we never build.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// A metric family's name, help text and labels (none for a single series).
#[derive(Clone, Copy)]
struct Family {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
}

impl From<Family> for Opts {
    fn from(f: Family) -> Opts {
        Opts::new(f.name, f.help)
    }
}

const fn family(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Family {
    Family { name, help, labels }
}

// The families, as api.md names them.
const REQUESTS: Family = family(
    "portcullis_requests_total",
    "Requests by application, decision and reason.",
    &["app", "decision", "reason", "mode"],
);
const PREFLIGHTS: Family =
    family("portcullis_preflights_total", "CORS preflights by application and result.", &["app", "result"]);
const ADDED_LATENCY: Family =
    family("portcullis_added_latency_seconds", "Time a request spends in the sidecar, upstream time excluded.", &[]);
/// Buckets of `portcullis_added_latency_seconds`: 25 µs to 250 ms.
const LATENCY_BUCKETS: [f64; 13] =
    [0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25];
const CONFIG_RELOADS: Family =
    family("portcullis_config_reloads_total", "Configuration loads by result (ok, error).", &["result"]);
const CONFIG_INFO: Family =
    family("portcullis_config_info", "The running configuration's version (1 for the live one).", &["version"]);
const CONFIG_LAST_SUCCESS: Family = family(
    "portcullis_config_last_reload_success_timestamp_seconds",
    "Unix time of the last configuration load that succeeded.",
    &[],
);
const JWKS_REFRESHES: Family =
    family("portcullis_jwks_refreshes_total", "JWKS fetches by issuer and result.", &["issuer", "result"]);
const JWKS_STALE: Family = family(
    "portcullis_jwks_stale",
    "1 while an issuer's last JWKS fetch failed and its last good keys are in use, else 0.",
    &["issuer"],
);
const TOKEN_LAST_USED: Family =
    family("portcullis_service_token_last_used_seconds", "Unix time a service token was last accepted.", &["token"]);
const UPSTREAM_ERRORS: Family =
    family("portcullis_upstream_errors_total", "Failed upstream calls by application and kind.", &["app", "kind"]);
const CONFIG_PUSHES: Family =
    family("portcullis_config_pushes_total", "Configuration pushes received, by result.", &["result"]);
const LOGINS: Family = family(
    "portcullis_logins_total",
    "Browser sign-ins by application and result (ok, or the reason).",
    &["app", "result"],
);
const TLS_RELOADS: Family =
    family("portcullis_tls_reloads_total", "Reloads of --tls-cert/--tls-key by result (ok, error).", &["result"]);
const CLIENT_TIMEOUTS: Family =
    family("portcullis_client_timeouts_total", "Client requests cut for being too slow, by kind (body).", &["kind"]);
const CONNECTIONS_OPEN: Family = family("portcullis_connections_open", "Client connections open.", &[]);
const CONNECTION_LIMIT_REACHED: Family = family(
    "portcullis_connection_limit_reached_total",
    "Times --max-connections connections were open and new ones waited in the listen backlog.",
    &[],
);
const AUTHZ_CHECKS: Family = family(
    "portcullis_authz_checks_total",
    "External-authorizer answers by the proxy protocol that asked and result.",
    &["protocol", "result"],
);

/// Makes metric families and registers each as it is made. Every definition is a constant of
/// this file (valid names, unique across it), so a failure is a bug caught by the first test
/// that builds [`Metrics`], not a runtime condition.
struct Families<'a>(&'a Registry);

impl Families<'_> {
    /// Registers `made` (a family as its constructor returned it) and returns it.
    fn register<C>(&self, made: prometheus::Result<C>) -> C
    where
        C: prometheus::core::Collector + Clone + 'static,
    {
        let family = made.expect("static metric definition is valid");
        self.0.register(Box::new(family.clone())).expect("metric names are unique");
        family
    }

    fn counters(&self, f: Family) -> IntCounterVec {
        self.register(IntCounterVec::new(f.into(), f.labels))
    }

    fn gauges(&self, f: Family) -> IntGaugeVec {
        self.register(IntGaugeVec::new(f.into(), f.labels))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
