//! The `portcullis-operator` binary: flags, logging, and starting the controllers and the admin
//! server. Owns the process (exit status, signals); the library owns everything it runs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kube::runtime::events::Reporter;
use portcullis_operator::admin::Admin;
use portcullis_operator::controller::{application, service_token};
use portcullis_operator::leader::{self, Elector, Timing};
use portcullis_operator::metrics::Metrics;
use portcullis_operator::push::Pusher;
use portcullis_operator::push_key;
use portcullis_operator::watch_health::WatchHealth;
use portcullis_operator::webhook::{self, WebhookArgs};
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
        /// The operator's own namespace, where it keeps the push signing key.
        #[arg(long, env = "POD_NAMESPACE")]
        namespace: String,
        /// Secret (in --namespace) holding the push signing key; created on first start.
        #[arg(long, default_value = push_key::SECRET_NAME)]
        push_key_secret: String,
        /// Elect one leader among the replicas through a Lease in --namespace; only the leader
        /// reconciles. `false` only for a single replica (two unelected replicas fight).
        #[arg(long, env = "PORTCULLIS_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
        leader_election: bool,
        /// Name of the leader election Lease (in --namespace).
        #[arg(long, default_value = leader::LEASE_NAME)]
        leader_election_lease: String,
        /// How long the controllers' watches may keep failing (errors no more than a minute
        /// apart) before /healthz fails, so that the liveness probe restarts the replica. A
        /// fresh process lists everything anew, which ends failures retrying does not.
        #[arg(long, env = "PORTCULLIS_WATCH_FAILURE_LIMIT", default_value = "2m", value_parser = duration)]
        watch_failure_limit: Duration,
        /// Boxed: the webhook flags make this variant much larger than `Crd`.
        #[command(flatten)]
        webhook: Box<WebhookArgs>,
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
        Command::Run {
            admin_listen,
            instance,
            log_json,
            namespace,
            push_key_secret,
            leader_election,
            leader_election_lease,
            watch_failure_limit,
            webhook,
        } => {
            let lease = leader_election.then_some(leader_election_lease);
            let settings = Settings {
                admin_listen,
                instance,
                log_json,
                namespace,
                push_key_secret,
                lease,
                watch_failure_limit,
                webhook,
            };
            run(settings).await
        }
    }
}

struct Settings {
    admin_listen: SocketAddr,
    instance: Option<String>,
    log_json: bool,
    namespace: String,
    push_key_secret: String,
    /// The leader election Lease's name; `None`: no election.
    lease: Option<String>,
    watch_failure_limit: Duration,
    webhook: Box<WebhookArgs>,
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let Settings { admin_listen, instance, log_json, namespace, push_key_secret, lease, watch_failure_limit, webhook } =
        settings;
    init_logs(log_json);

    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let registry = Registry::new();
    let metrics = Arc::new(Metrics::register(&registry).context("registering metrics")?);
    // Unique per replica: the Lease holder and the events' reportingInstance.
    let identity = instance.unwrap_or_else(fallback_identity);
    let reporter = Reporter { controller: "portcullis-operator".into(), instance: Some(identity.clone()) };
    let key = push_key::ensure(client.clone(), &namespace, &push_key_secret)
        .await
        .with_context(|| format!("loading the push signing key from Secret {namespace}/{push_key_secret}"))?;
    tracing::info!(key_id = key.verifying_key().key_id(), "push signing key loaded");
    let webhooks = webhook::start(*webhook, client.clone(), &namespace, key.verifying_key().to_base64())
        .await
        .context("binding the admission webhook address")?;
    let pusher = Pusher::new(key, metrics.clone());
    let ctx = Arc::new(Context::new(client.clone(), Arc::new(SystemClock), metrics.clone(), reporter));
    let applications = Arc::new(application::AppContext::new(ctx.clone(), pusher, &namespace));

    let ready = Arc::new(AtomicBool::new(false));
    let listener =
        Admin::bind(admin_listen).await.with_context(|| format!("binding the admin address {admin_listen}"))?;
    tracing::info!(%admin_listen, "admin server listening");
    let watches = Arc::new(WatchHealth::new(watch_failure_limit));
    let admin = tokio::spawn(Admin { registry, ready: ready.clone(), watches: watches.clone() }.serve(listener));

    let controllers = {
        let ready = ready.clone();
        async move {
            tokio::join!(
                service_token::run(ctx, move || ready.store(true, Ordering::Release), watches.clone()),
                application::run(applications, watches),
            );
        }
    };
    let result = match lease {
        None => {
            controllers.await;
            Ok(())
        }
        Some(lease) => {
            let elector = Elector::new(client, &namespace, &lease, &identity, Timing::default());
            // A standby is ready: it serves metrics and health, and waits to lead.
            ready.store(true, Ordering::Release);
            tokio::select! {
                () = elector.acquire() => {}
                () = shutdown_signal() => {
                    tracing::info!("stopping before becoming the leader");
                    admin.abort();
                    return Ok(());
                }
            }
            metrics.leader(true);
            // The controllers stop on SIGTERM/SIGINT by themselves (shutdown_on_signal); the
            // Lease is then handed over. Losing it first ends the process: a restart makes this
            // replica a standby, and no reconcile of a deposed leader can still be running.
            let outcome = tokio::select! {
                () = controllers => {
                    elector.release().await;
                    Ok(())
                }
                lost = elector.hold() => Err(anyhow::Error::new(lost).context("lost leadership; exiting so that only the new leader reconciles")),
            };
            metrics.leader(false);
            outcome
        }
    };
    tracing::info!("controllers stopped");
    admin.abort();
    webhooks.into_iter().flatten().for_each(|task| task.abort());
    result
}

/// Logs to stdout, as JSON with `--log-json`; `RUST_LOG` filters (default `info`).
fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colour codes only for a person at a terminal, never in `kubectl logs`.
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

fn duration(s: &str) -> Result<Duration, String> {
    portcullis_crds::compile::parse_duration_secs(s).map(Duration::from_secs)
}

/// A replica identity when no pod name is given: the host name (a pod's, outside the downward
/// API) or, failing that, the process id.
fn fallback_identity() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("portcullis-operator-{}", std::process::id()))
}

/// Resolves on SIGTERM (what the kubelet sends) or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
