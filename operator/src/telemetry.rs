//! The operator's traces (README "Traces"): a span per reconcile, around the controller's
//! wrapper (`controller::instrumented`), and a span per push to a pod, its child, exported over
//! OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (the settings are `portcullis_crds::telemetry`'s,
//! shared with the sidecar).
//!
//! Owns the process's tracer provider (the global one: one operator per process) and the span
//! names and attributes: controller, object (`namespace/name`), pod, config version and outcome
//! reason — never a Secret's content, a token or a config body. Must not change what a
//! reconcile or a push does; with tracing off the spans are the no-op ones.

use std::future::Future;

use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{global, Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracerProvider;
use portcullis_crds::telemetry::OtelVars;

const TRACER: &str = "portcullis-operator";

/// Why traces could not start (the sidecar's error too).
pub use portcullis_crds::telemetry::TraceStartError as TelemetryError;

/// The installed provider; [`Traces::shutdown`] exports what is still queued.
pub struct Traces(SdkTracerProvider);

impl Traces {
    /// Exports what is queued and stops. Blocks: run it off the runtime's threads.
    pub fn shutdown(self) {
        let _ = self.0.shutdown();
    }
}

/// [`install`] from the process's environment. Call it before connecting to the API server: a
/// bad OTEL value is then reported as itself, not hidden behind a cluster that cannot be reached.
pub fn from_env(registry: &prometheus::Registry) -> Result<Option<Traces>, TelemetryError> {
    install(&OtelVars::from_lookup(|name| std::env::var(name).ok()), registry)
}

/// Exports what is still queued, off the runtime's threads (the exporter waits on this runtime,
/// where its gRPC channel lives).
pub async fn flush(traces: Option<Traces>) {
    if let Some(traces) = traces {
        let _ = tokio::task::spawn_blocking(move || traces.shutdown()).await;
    }
}

/// Installs the process's tracer provider from the OTEL variables; `None` when tracing is off.
/// Must run inside the Tokio runtime (the gRPC channel's worker lives there). Failed exports
/// count in `portcullis_operator_trace_export_failures_total`.
pub fn install(vars: &OtelVars, registry: &prometheus::Registry) -> Result<Option<Traces>, TelemetryError> {
    let Some(settings) = vars.settings("portcullis-operator")? else { return Ok(None) };
    let failed = |message: String| TelemetryError::Exporter { endpoint: settings.endpoint.clone(), message };
    let failures = prometheus::IntCounter::new(
        "portcullis_operator_trace_export_failures_total",
        "Batches of spans the OTLP exporter could not deliver (their spans are lost).",
    )
    .map_err(|e| failed(e.to_string()))?;
    registry.register(Box::new(failures.clone())).map_err(|e| failed(e.to_string()))?;
    let provider = portcullis_crds::telemetry::otlp_provider(&settings, move || failures.inc())?;
    global::set_tracer_provider(provider.clone());
    Ok(Some(Traces(provider)))
}

/// Runs `fut` (one reconcile) in a `reconcile` span; spans opened inside (pushes) are its
/// children. `outcome` names the result (`ok` or the error's reason).
pub async fn reconcile<T>(
    controller: &'static str,
    object: &str,
    fut: impl Future<Output = T>,
    outcome: impl Fn(&T) -> &'static str,
) -> T {
    let attributes =
        [KeyValue::new("portcullis.controller", controller), KeyValue::new("portcullis.object", object.to_owned())];
    in_span("reconcile", SpanKind::Internal, attributes, fut, outcome).await
}

/// Runs `fut` (one push to a pod, retries included) in a `push` client span.
pub async fn push<T>(
    pod: &str,
    version: &str,
    fut: impl Future<Output = T>,
    outcome: impl Fn(&T) -> &'static str,
) -> T {
    let attributes = [
        KeyValue::new("portcullis.pod", pod.to_owned()),
        KeyValue::new("portcullis.config_version", version.to_owned()),
    ];
    in_span("push", SpanKind::Client, attributes, fut, outcome).await
}

async fn in_span<T>(
    name: &'static str,
    kind: SpanKind,
    attributes: [KeyValue; 2],
    fut: impl Future<Output = T>,
    outcome: impl Fn(&T) -> &'static str,
) -> T {
    let tracer = global::tracer(TRACER);
    let parent = Context::current();
    let span =
        tracer.span_builder(name).with_kind(kind).with_attributes(attributes).start_with_context(&tracer, &parent);
    let cx = parent.with_span(span);
    let result = fut.with_context(cx.clone()).await;
    let reason = outcome(&result);
    let span = cx.span();
    span.set_attribute(KeyValue::new("portcullis.outcome", reason));
    if !matches!(reason, "ok" | "unchanged" | "synced") {
        span.set_status(Status::error(reason));
    }
    span.end();
    result
}
