//! The webhooks' flags and their start: binds the HTTPS listener, starts keeping the
//! certificate, and serves. `main.rs` flattens [`WebhookArgs`] into `run` and calls [`start`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::Client;
use portcullis_crds::telemetry::{OtelVars, TraceConfigError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::certs::{self, CertSource, Managed};
use super::server::{self, CertSlot};
use super::{Injection, Webhooks};

/// Flags of the admission webhooks (`portcullis-operator run`).
#[derive(clap::Args, Debug, Clone)]
pub struct WebhookArgs {
    /// Do not serve the admission webhooks (e.g. when running outside the cluster).
    #[arg(long, env = "PORTCULLIS_DISABLE_WEBHOOK")]
    pub disable_webhook: bool,
    /// HTTPS address of the webhooks (/validate, /inject/namespace, /inject/pod).
    #[arg(long, env = "PORTCULLIS_WEBHOOK_LISTEN", default_value = "0.0.0.0:9443")]
    pub webhook_listen: SocketAddr,
    /// Directory with tls.crt and tls.key (cert-manager), reloaded when they change. Without
    /// it the operator makes its own CA and certificate in --webhook-secret.
    #[arg(long, env = "PORTCULLIS_WEBHOOK_CERT_DIR")]
    pub webhook_cert_dir: Option<PathBuf>,
    /// Secret (in the operator's namespace) holding the operator-made certificate.
    #[arg(long, default_value = "portcullis-webhook-tls")]
    pub webhook_secret: String,
    /// The webhook Service: the certificate is made for <service>.<namespace>.svc.
    #[arg(long, default_value = "portcullis-webhook")]
    pub webhook_service: String,
    /// More names (DNS or IP) for the operator-made certificate, for an API server that calls
    /// the webhooks by URL (e.g. https://127.0.0.1:9443 when the operator runs outside the
    /// cluster in tests); repeat or separate with commas.
    #[arg(long, value_delimiter = ',')]
    pub webhook_extra_san: Vec<String>,
    /// MutatingWebhookConfiguration whose caBundle the operator keeps (operator-made certificate).
    #[arg(long)]
    pub mutating_webhook_configuration: Option<String>,
    /// ValidatingWebhookConfiguration whose caBundle the operator keeps (operator-made certificate).
    #[arg(long)]
    pub validating_webhook_configuration: Option<String>,
    /// Image of the injected sidecar.
    #[arg(long, env = "PORTCULLIS_SIDECAR_IMAGE", default_value = "ghcr.io/portcullis/portcullis-sidecar:0.1.0")]
    pub sidecar_image: String,
    /// imagePullPolicy of the injected sidecar.
    #[arg(long, default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub sidecar_image_pull_policy: String,
    /// Resources of the injected sidecar, as JSON (a Kubernetes ResourceRequirements).
    #[arg(long, default_value = r#"{"requests":{"cpu":"50m","memory":"32Mi"},"limits":{"memory":"128Mi"}}"#, value_parser = resources)]
    pub sidecar_resources: ResourceRequirements,
    /// Container port of the sidecar's traffic listener (named `portcullis`).
    #[arg(long, default_value_t = 14080)]
    pub sidecar_port: u16,
    /// Container port of the sidecar's admin listener (named `portcullis-adm`).
    #[arg(long, default_value_t = 14090)]
    pub sidecar_admin_port: u16,

    /// OTLP endpoint the injected sidecars export traces to (their OTEL_EXPORTER_OTLP_ENDPOINT).
    /// Without it their tracing is off (README "Traces").
    #[arg(long)]
    pub sidecar_otlp_endpoint: Option<String>,

    /// The injected sidecars' OTEL_EXPORTER_OTLP_PROTOCOL.
    #[arg(long)]
    pub sidecar_otlp_protocol: Option<String>,

    /// The injected sidecars' OTEL_TRACES_SAMPLER.
    #[arg(long)]
    pub sidecar_traces_sampler: Option<String>,

    /// The injected sidecars' OTEL_TRACES_SAMPLER_ARG.
    #[arg(long)]
    pub sidecar_traces_sampler_arg: Option<String>,
}

impl WebhookArgs {
    /// The OTEL variables the injected sidecars get, checked as the sidecar will check them (a
    /// bad value stops the operator, not every injected pod).
    pub fn sidecar_trace_env(&self) -> Result<Vec<(String, String)>, TraceConfigError> {
        let vars = OtelVars {
            endpoint: self.sidecar_otlp_endpoint.clone(),
            protocol: self.sidecar_otlp_protocol.clone(),
            sampler: self.sidecar_traces_sampler.clone(),
            sampler_arg: self.sidecar_traces_sampler_arg.clone(),
            ..Default::default()
        };
        vars.settings("portcullis-sidecar")?;
        let named = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &vars.endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", &vars.protocol),
            ("OTEL_TRACES_SAMPLER", &vars.sampler),
            ("OTEL_TRACES_SAMPLER_ARG", &vars.sampler_arg),
        ];
        Ok(named.into_iter().filter_map(|(n, v)| v.clone().map(|v| (n.to_owned(), v))).collect())
    }
}

fn resources(raw: &str) -> Result<ResourceRequirements, String> {
    serde_json::from_str(raw)
        .map_err(|e| format!("not a ResourceRequirements in JSON ({e}), e.g. {{\"requests\":{{\"cpu\":\"50m\"}}}}"))
}

/// Binds the listener and starts the webhooks; `None` when they are disabled. The tasks run
/// until dropped; a certificate problem is logged and retried, never fatal.
pub async fn start(
    args: WebhookArgs,
    client: Client,
    namespace: &str,
    push_public_key: String,
) -> std::io::Result<Option<Vec<JoinHandle<()>>>> {
    if args.disable_webhook {
        tracing::warn!("admission webhooks disabled: no validation at apply time, no sidecar injection");
        return Ok(None);
    }
    let trace_env = args.sidecar_trace_env().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("--sidecar-otlp-* ({}): {e}", e.reason()))
    })?;
    let listener = TcpListener::bind(args.webhook_listen).await?;
    tracing::info!(listen = %args.webhook_listen, "admission webhooks listening");
    let source = match args.webhook_cert_dir {
        Some(dir) => CertSource::Files(dir),
        None => CertSource::Managed(Box::new(Managed {
            client,
            namespace: namespace.to_owned(),
            secret: args.webhook_secret,
            service: args.webhook_service,
            extra_names: args.webhook_extra_san,
            mutating: args.mutating_webhook_configuration,
            validating: args.validating_webhook_configuration,
        })),
    };
    let webhooks = Arc::new(Webhooks {
        injection: Injection {
            image: args.sidecar_image,
            image_pull_policy: args.sidecar_image_pull_policy,
            resources: args.sidecar_resources,
            push_public_key,
            operator_namespace: namespace.to_owned(),
            traffic_port: args.sidecar_port,
            admin_port: args.sidecar_admin_port,
            trace_env,
        },
    });
    let slot = Arc::new(CertSlot::default());
    let keeper = tokio::spawn(certs::keep(source, slot.clone()));
    let server = tokio::spawn(async move {
        if let Err(e) = server::serve(listener, slot, webhooks).await {
            tracing::error!(error = %e, "admission webhook server stopped");
        }
    });
    Ok(Some(vec![keeper, server]))
}
