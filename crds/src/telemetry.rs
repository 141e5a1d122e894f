//! The OpenTelemetry trace settings both binaries read, from the standard variables
//! (OpenTelemetry "Environment Variable Specification", "OTLP Exporter Configuration"):
//! `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`,
//! `OTEL_SERVICE_NAME` and `OTEL_SDK_DISABLED`.
//!
//! Owns their parsing and validation into [`TraceSettings`] (tracing is off unless an endpoint is
//! set) and, with the `traces` feature, the tracer provider built on them ([`provider`]: sampler,
//! service name, bounded batch queue, failed exports counted). Must not build an exporter or read
//! the environment itself: the binaries bring the OTLP exporter (the network is theirs), and the
//! values are arguments (the sidecar takes them from its flags, the operator from the process
//! environment), so a bad value is a start-up error naming the variable, never ignored.

/// The raw values, as the variables (or the flags standing for them) give them.
#[derive(Clone, Debug, Default)]
pub struct OtelVars {
    pub endpoint: Option<String>,
    pub traces_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub sampler: Option<String>,
    pub sampler_arg: Option<String>,
    pub service_name: Option<String>,
    pub sdk_disabled: Option<String>,
}

/// Tracing switched on: where to export and what to sample.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceSettings {
    /// The full URL spans are sent to (for HTTP/protobuf with `/v1/traces` already appended
    /// when it came from `OTEL_EXPORTER_OTLP_ENDPOINT`, as the specification requires).
    pub endpoint: String,
    pub protocol: Protocol,
    pub sampler: SamplerChoice,
    /// `OTEL_SERVICE_NAME`, or the binary's own name.
    pub service_name: String,
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc`: OTLP over gRPC (tonic), the default here: the receivers users run (the Collector,
    /// Jaeger, Tempo) all take it on 4317.
    Grpc,
    /// `http/protobuf`: OTLP over HTTP with protobuf bodies, usually on 4318.
    HttpProtobuf,
}

/// `OTEL_TRACES_SAMPLER` with its argument.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SamplerChoice {
    AlwaysOn,
    AlwaysOff,
    /// `traceidratio`: this fraction of traces, by trace id.
    Ratio(f64),
    /// `parentbased_*`: a sampled (unsampled) parent makes a sampled (unsampled) span; a root
    /// span is decided by the inner choice (never itself parent-based).
    ParentBased(Root),
}

/// The root decision of a parent-based sampler.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Root {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
}

/// A variable with a value the SDK would misread or ignore.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TraceConfigError {
    #[error("{var}={value:?} is not an http:// or https:// URL with a host (e.g. http://otel-collector:4317)")]
    Endpoint { var: &'static str, value: String },
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not supported: use grpc or http/protobuf")]
    Protocol(String),
    #[error("OTEL_TRACES_SAMPLER={0:?} is not supported: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio")]
    Sampler(String),
    #[error("OTEL_TRACES_SAMPLER_ARG={0:?} is not a ratio between 0 and 1 (e.g. 0.25)")]
    SamplerArg(String),
    #[error("OTEL_SDK_DISABLED={0:?} is not true or false")]
    Disabled(String),
    #[error("OTEL_SERVICE_NAME is empty")]
    ServiceName,
}

// === impl TraceConfigError ===

impl TraceConfigError {
    /// Stable label of the problem.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Endpoint { .. } => "otlp_endpoint",
            Self::Protocol(_) => "otlp_protocol",
            Self::Sampler(_) => "traces_sampler",
            Self::SamplerArg(_) => "traces_sampler_arg",
            Self::Disabled(_) => "sdk_disabled",
            Self::ServiceName => "service_name",
        }
    }
}

// === impl OtelVars ===

impl OtelVars {
    /// The variables as `lookup` finds them (the operator passes `std::env::var`); an empty
    /// value counts as unset, as the specification says.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        Self {
            endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            traces_endpoint: get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            protocol: get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL")),
            sampler: get("OTEL_TRACES_SAMPLER"),
            sampler_arg: get("OTEL_TRACES_SAMPLER_ARG"),
            service_name: get("OTEL_SERVICE_NAME"),
            sdk_disabled: get("OTEL_SDK_DISABLED"),
        }
    }

    /// The settings, `None` when tracing is off: no endpoint, or `OTEL_SDK_DISABLED=true`.
    /// Every value given is checked even when tracing is off, so a typo does not wait for the
    /// day someone sets the endpoint.
    pub fn settings(&self, default_service: &str) -> Result<Option<TraceSettings>, TraceConfigError> {
        let disabled = match set(&self.sdk_disabled).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(TraceConfigError::Disabled(self.sdk_disabled.clone().unwrap_or_default())),
        };
        let protocol = match set(&self.protocol) {
            None | Some("grpc") => Protocol::Grpc,
            Some("http/protobuf") => Protocol::HttpProtobuf,
            Some(other) => return Err(TraceConfigError::Protocol(other.to_owned())),
        };
        let sampler = sampler(set(&self.sampler), set(&self.sampler_arg))?;
        let service_name = match &self.service_name {
            Some(s) if s.trim().is_empty() => return Err(TraceConfigError::ServiceName),
            Some(s) => s.trim().to_owned(),
            None => default_service.to_owned(),
        };
        let endpoint = match (set(&self.traces_endpoint), set(&self.endpoint)) {
            // The signal-specific variable is the URL itself.
            (Some(e), _) => checked_url("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", e)?,
            // The general one is a base: HTTP appends the signal's path, gRPC takes it as is.
            (None, Some(e)) => {
                let base = checked_url("OTEL_EXPORTER_OTLP_ENDPOINT", e)?;
                match protocol {
                    Protocol::Grpc => base,
                    Protocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
                }
            }
            (None, None) => return Ok(None),
        };
        if disabled {
            return Ok(None);
        }
        Ok(Some(TraceSettings { endpoint, protocol, sampler, service_name }))
    }
}

/// A value given and not blank, trimmed.
fn set(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn checked_url(var: &'static str, value: &str) -> Result<String, TraceConfigError> {
    let bad = || TraceConfigError::Endpoint { var, value: value.to_owned() };
    let uri: http::Uri = value.parse().map_err(|_| bad())?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(h)) if !h.is_empty() => Ok(value.to_owned()),
        _ => Err(bad()),
    }
}

/// `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`) and its ratio (default 1.0).
fn sampler(name: Option<&str>, arg: Option<&str>) -> Result<SamplerChoice, TraceConfigError> {
    let ratio = || match arg {
        None => Ok(1.0),
        Some(a) => match a.parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
            _ => Err(TraceConfigError::SamplerArg(a.to_owned())),
        },
    };
    Ok(match name.map(str::to_ascii_lowercase).as_deref() {
        None | Some("parentbased_always_on") => SamplerChoice::ParentBased(Root::AlwaysOn),
        Some("parentbased_always_off") => SamplerChoice::ParentBased(Root::AlwaysOff),
        Some("parentbased_traceidratio") => SamplerChoice::ParentBased(Root::Ratio(ratio()?)),
        Some("always_on") => SamplerChoice::AlwaysOn,
        Some("always_off") => SamplerChoice::AlwaysOff,
        Some("traceidratio") => SamplerChoice::Ratio(ratio()?),
        Some(_) => return Err(TraceConfigError::Sampler(name.unwrap_or_default().to_owned())),
    })
}

#[cfg(feature = "otlp")]
pub use provider::{otlp_provider, TraceStartError};
#[cfg(feature = "traces")]
pub use provider::{provider, CountFailures};

#[cfg(feature = "traces")]
mod provider {
    use std::time::Duration;

    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData};
    use opentelemetry_sdk::Resource;

    use super::{Root, SamplerChoice, TraceSettings};

    /// The provider for `settings`, exporting in batches through `exporter`. Each failed export
    /// calls `failed` once (a metric), instead of a log line per span.
    pub fn provider<E>(
        settings: &TraceSettings,
        exporter: E,
        failed: impl Fn() + Send + Sync + 'static,
    ) -> SdkTracerProvider
    where
        E: opentelemetry_sdk::trace::SpanExporter + 'static,
    {
        // The queue is bounded (2,048 spans unless OTEL_BSP_MAX_QUEUE_SIZE says otherwise, as
        // the other OTEL_BSP_* variables tune the batches): when it is full a span is dropped,
        // never waited for, so a request does not block on a slow collector (the SDK's
        // `try_send`).
        let batch = BatchConfigBuilder::default().build();
        let exporter = CountFailures { inner: exporter, failed: Box::new(failed) };
        SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batch).build())
            .with_sampler(sampler(settings.sampler))
            .with_resource(Resource::builder_empty().with_service_name(settings.service_name.clone()).build())
            .build()
    }

    /// How long one export may take before it counts as failed.
    #[cfg(feature = "otlp")]
    const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Why tracing could not start.
    #[cfg(feature = "otlp")]
    #[derive(Debug, thiserror::Error)]
    pub enum TraceStartError {
        #[error(transparent)]
        Config(#[from] super::TraceConfigError),
        #[error("OTLP exporter for {endpoint}: {message}")]
        Exporter { endpoint: String, message: String },
        #[error("OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf is not built into this binary: use grpc")]
        Protocol,
    }

    #[cfg(feature = "otlp")]
    impl TraceStartError {
        pub fn reason(&self) -> &'static str {
            match self {
                Self::Config(e) => e.reason(),
                Self::Exporter { .. } => "otlp_exporter",
                Self::Protocol => "otlp_protocol",
            }
        }
    }

    /// [`provider`] exporting over OTLP/gRPC to `settings.endpoint`, the one exporter both
    /// binaries build. Must run inside the Tokio runtime that serves: the gRPC channel's worker
    /// lives there (it connects lazily, so nothing is sent here).
    #[cfg(feature = "otlp")]
    pub fn otlp_provider(
        settings: &TraceSettings,
        failed: impl Fn() + Send + Sync + 'static,
    ) -> Result<SdkTracerProvider, TraceStartError> {
        use opentelemetry_otlp::WithExportConfig as _;
        if settings.protocol != super::Protocol::Grpc {
            return Err(TraceStartError::Protocol);
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TraceStartError::Exporter { endpoint: settings.endpoint.clone(), message: e.to_string() })?;
        Ok(provider(settings, exporter, failed))
    }

    fn sampler(choice: SamplerChoice) -> Sampler {
        let root = |r: Root| match r {
            Root::AlwaysOn => Sampler::AlwaysOn,
            Root::AlwaysOff => Sampler::AlwaysOff,
            Root::Ratio(f) => Sampler::TraceIdRatioBased(f),
        };
        match choice {
            SamplerChoice::AlwaysOn => Sampler::AlwaysOn,
            SamplerChoice::AlwaysOff => Sampler::AlwaysOff,
            SamplerChoice::Ratio(f) => Sampler::TraceIdRatioBased(f),
            SamplerChoice::ParentBased(r) => Sampler::ParentBased(Box::new(root(r))),
        }
    }

    /// An exporter that reports its failed exports.
    pub struct CountFailures<E> {
        inner: E,
        failed: Box<dyn Fn() + Send + Sync>,
    }

    // === impl CountFailures ===

    impl<E: std::fmt::Debug> std::fmt::Debug for CountFailures<E> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("CountFailures").field("inner", &self.inner).finish_non_exhaustive()
        }
    }

    impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter for CountFailures<E> {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            let result = self.inner.export(batch).await;
            if result.is_err() {
                (self.failed)();
            }
            result
        }

        fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
            self.inner.shutdown_with_timeout(timeout)
        }

        fn force_flush(&mut self) -> OTelSdkResult {
            self.inner.force_flush()
        }

        fn set_resource(&mut self, resource: &Resource) {
            self.inner.set_resource(resource)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> OtelVars {
        OtelVars::from_lookup(|name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert_eq!(vars(&[]).settings("x").unwrap(), None);
        assert_eq!(vars(&[("OTEL_TRACES_SAMPLER", "always_on")]).settings("x").unwrap(), None);
        let v = vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), ("OTEL_SDK_DISABLED", "TRUE")]);
        assert_eq!(v.settings("x").unwrap(), None);
        // Empty counts as unset.
        assert_eq!(vars(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")]).settings("x").unwrap(), None);
    }

    #[test]
    fn endpoints_follow_the_specification() {
        struct Case {
            desc: &'static str,
            input: &'static [(&'static str, &'static str)],
            want: (&'static str, Protocol),
        }
        let cases = [
            Case {
                desc: "grpc takes the base as is",
                input: &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")],
                want: ("http://c:4317", Protocol::Grpc),
            },
            Case {
                desc: "http appends the signal path",
                input: &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ],
                want: ("http://c:4318/v1/traces", Protocol::HttpProtobuf),
            },
            Case {
                desc: "the traces variable wins and is used as is",
                input: &[
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://t:9/custom"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ],
                want: ("https://t:9/custom", Protocol::HttpProtobuf),
            },
        ];
        for c in cases {
            let s = vars(c.input).settings("svc").unwrap().unwrap();
            assert_eq!((s.endpoint.as_str(), s.protocol), c.want, "{}", c.desc);
            assert_eq!(s.service_name, "svc");
            assert_eq!(s.sampler, SamplerChoice::ParentBased(Root::AlwaysOn), "{}", c.desc);
        }
    }

    #[test]
    fn samplers_parse_with_their_ratio() {
        let s = |name: &str, arg: Option<&str>| sampler(Some(name), arg);
        assert_eq!(s("always_off", None).unwrap(), SamplerChoice::AlwaysOff);
        assert_eq!(s("traceidratio", Some("0.25")).unwrap(), SamplerChoice::Ratio(0.25));
        assert_eq!(s("parentbased_traceidratio", None).unwrap(), SamplerChoice::ParentBased(Root::Ratio(1.0)));
        assert_eq!(s("parentbased_always_off", None).unwrap(), SamplerChoice::ParentBased(Root::AlwaysOff));
        assert_eq!(s("traceidratio", Some("2")).unwrap_err().reason(), "traces_sampler_arg");
        assert_eq!(s("jaeger_remote", None).unwrap_err().reason(), "traces_sampler");
    }

    #[test]
    fn bad_values_are_errors_even_when_off() {
        for (pairs, reason) in [
            (&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")][..], "otlp_endpoint"),
            (&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://c")][..], "otlp_endpoint"),
            (&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")][..], "otlp_protocol"),
            (&[("OTEL_TRACES_SAMPLER", "sometimes")][..], "traces_sampler"),
            (&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "half")][..], "traces_sampler_arg"),
            (&[("OTEL_SDK_DISABLED", "yes")][..], "sdk_disabled"),
        ] {
            let e = vars(pairs).settings("x").unwrap_err();
            assert_eq!(e.reason(), reason, "{pairs:?}: {e}");
        }
        let e = OtelVars { service_name: Some(" ".into()), ..Default::default() }.settings("x").unwrap_err();
        assert_eq!(e.reason(), "service_name");
    }
}
