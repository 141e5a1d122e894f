//! The `portcullis-operator` binary: flags, logging, and starting the controllers and the admin
//! server. Owns the process (exit status, signals); the library owns everything it runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::runtime::events::Reporter;
use portcullis_operator::admin::Admin;
use portcullis_operator::controller::service_token;
use portcullis_operator::metrics::Metrics;
use portcullis_operator::{Context, SystemClock};
use prometheus::Registry;

#[derive(Parser)]
#[command(name = "portcullis-operator", version, about = "Reconciles Portcullis resources in a Kubernetes cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controllers against the cluster of the in-cluster config or KUBECONFIG.
    Run {
        /// Address of /metrics, /healthz and /readyz.
        #[arg(long, env = "PORTCULLIS_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
        admin_listen: SocketAddr,
        /// Pod name, recorded as reportingInstance in events.
        #[arg(long, env = "POD_NAME")]
        instance: Option<String>,
        /// Log as JSON lines instead of text.
        #[arg(long, env = "PORTCULLIS_LOG_JSON")]
        log_json: bool,
    },
    /// Print the CustomResourceDefinitions (multi-document YAML) and exit.
    Crd,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", portcullis_crds::manifests::crd_yaml().context("rendering the CRDs")?);
            Ok(())
        }
        Command::Run { admin_listen, instance, log_json } => run(admin_listen, instance, log_json).await,
    }
}

async fn run(admin_listen: SocketAddr, instance: Option<String>, log_json: bool) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if log_json {
        logs.json().init();
    } else {
        logs.init();
    }

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let registry = Registry::new();
    let metrics = Arc::new(Metrics::register(&registry).context("registering metrics")?);
    let reporter = Reporter { controller: "portcullis-operator".into(), instance };
    let ctx = Arc::new(Context::new(client, Arc::new(SystemClock), metrics, reporter));

    let ready = Arc::new(AtomicBool::new(false));
    let listener =
        Admin::bind(admin_listen).await.with_context(|| format!("binding the admin address {admin_listen}"))?;
    tracing::info!(%admin_listen, "admin server listening");
    let admin = tokio::spawn(Admin { registry, ready: ready.clone() }.serve(listener));

    service_token::run(ctx, move || ready.store(true, Ordering::Release)).await;
    tracing::info!("controllers stopped");
    admin.abort();
    Ok(())
}
