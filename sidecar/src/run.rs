//! Start-up: builds the shared state from the flags, loads the manifests, binds the listeners
//! and serves until shutdown. `main` only parses flags, sets up logging and waits for signals.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::cli::Args;
use crate::config::push::{PushReceiver, PushSettings};
use crate::config::{manifests, ConfigStore};
use crate::http::server::ServerLimits;
use crate::http::tls::{TlsError, TlsReloader, POLL_INTERVAL};
use crate::http::{Proxy, ProxySettings};
use crate::jwks::JwksRegistry;
use crate::metrics::Metrics;
use crate::outbound::{self, OutboundError};
use portcullis_crds::push::{PushTarget, VerifyingKey};

/// Why the sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("outbound TLS: {0}")]
    Outbound(#[from] OutboundError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("--push-public-key {path}: {reason}")]
    PushKey { path: std::path::PathBuf, reason: String },
    #[error("--push-public-key-value (key {index}, counting from 0): {reason}")]
    PushKeyValue { index: usize, reason: String },
    #[error(
        "--push-public-key needs --pod-name and --pod-namespace (or POD_NAME and POD_NAMESPACE from the downward API)"
    )]
    PushTarget,
    #[error("cannot make this boot's push key: {0}")]
    BootKey(String),
    #[error("traces: {0}")]
    Traces(#[from] crate::trace::TraceStartError),
}

/// How often standalone mode looks at the manifests (changes apply within 2 s, api.md).
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// What the process serves on `--listen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The proxy beside one app (the default).
    Sidecar,
    /// `authz`: the external authorizer of another proxy (Envoy ext_authz, forward-auth);
    /// the same configuration, admin port and decisions, nothing forwarded.
    Authorizer,
}

/// Runs the sidecar until `shutdown` resolves, then drains.
pub async fn run(args: Args, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    run_as(Role::Sidecar, args, shutdown).await
}

/// Runs in `role` until `shutdown` resolves, then drains.
pub async fn run_as(role: Role, args: Args, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let listener = bind(args.listen).await?;
    let admin_listener = bind(args.admin_listen).await?;
    serve_on(role, args, listener, admin_listener, shutdown).await
}

/// [`run_as`] on listeners the caller bound (`--listen` and `--admin-listen` are not read): how
/// tests start a sidecar in-process on `127.0.0.1:0` without racing for a free port
/// (mini-redis's `run(listener, shutdown)`).
pub async fn serve_on(
    role: Role,
    args: Args,
    listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let metrics = Arc::new(match role {
        Role::Sidecar => Metrics::new(),
        Role::Authorizer => Metrics::for_authorizer(),
    });
    let client = outbound::client(args.connect_timeout)?;
    let jwks = Arc::new(JwksRegistry::new(client.clone(), &metrics));
    let store = Arc::new(ConfigStore::new(jwks, metrics.clone()));
    let tls = tls_reloader(&args, &metrics)?;
    let receiver = load_config(&args, &store)?;
    let settings = ProxySettings {
        upstream: args.upstream.clone(),
        trusted_proxies: args.trusted_proxies.clone(),
        upstream_timeout: args.upstream_timeout,
        client_scheme: if tls.is_some() { "https" } else { "http" },
        underscore_headers: args.headers_with_underscores.into(),
        body_read_timeout: args.body_read_timeout,
        connect_timeout: args.connect_timeout,
    };
    let tracing = tracing(role, &args, &metrics)?;
    let proxy = Arc::new(Proxy::new(store.clone(), client, settings, metrics).with_tracing(tracing));
    let limits = ServerLimits {
        header_read_timeout: args.header_read_timeout,
        max_header_bytes: args.max_header_bytes,
        max_headers: args.max_headers,
        drain: args.drain_timeout,
        max_connections: args.max_connections as usize,
        park_above: args.park_connections_above as usize,
        park_idle_after: args.park_idle_after,
    };
    log_start(role, &args, [listener.local_addr().ok(), admin_listener.local_addr().ok()], tls.is_some());

    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_settings = crate::admin::AdminSettings {
        explain: args.enable_explain_endpoint.then(|| args.trusted_proxies.clone()),
        push: receiver,
    };
    let admin = tokio::spawn(crate::admin::serve(admin_listener, store, admin_settings, async move {
        let _ = admin_stopped.await;
    }));
    match role {
        Role::Sidecar => crate::http::serve(listener, proxy.clone(), limits, tls, shutdown).await,
        Role::Authorizer => crate::authz::serve(listener, proxy.clone(), limits, tls, shutdown).await,
    }
    let _ = admin_stop.send(());
    let _ = admin.await;
    flush_traces(proxy).await;
    Ok(())
}

/// Tracing from the OTLP variables (`--otlp-endpoint` …), `None` when off.
fn tracing(role: Role, args: &Args, metrics: &Metrics) -> Result<Option<crate::trace::Tracing>, StartError> {
    let service = match role {
        Role::Sidecar => "portcullis-sidecar",
        Role::Authorizer => "portcullis-authorizer",
    };
    let settings = args.traces.vars().settings(service).map_err(crate::trace::TraceStartError::from)?;
    let Some(settings) = settings else { return Ok(None) };
    let tracing = crate::trace::Tracing::start(&settings, args.traces.options(), metrics)?;
    tracing::info!(endpoint = %settings.endpoint, service = %settings.service_name, "exporting traces over OTLP");
    Ok(Some(tracing))
}

/// Exports the spans still queued. The exporter waits on this runtime (its gRPC channel lives
/// here), so the blocking shutdown runs on a thread of its own.
async fn flush_traces(proxy: Arc<Proxy>) {
    if proxy.tracing.is_some() {
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(t) = &proxy.tracing {
                t.shutdown();
            }
        })
        .await;
    }
}

/// The TLS listener's certificate reloader, with `--tls-cert` and `--tls-key`.
fn tls_reloader(args: &Args, metrics: &Arc<Metrics>) -> Result<Option<Arc<TlsReloader>>, StartError> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let reloader = TlsReloader::new(cert.clone(), key.clone())?;
    tokio::spawn(reloader.clone().watch(metrics.clone(), POLL_INTERVAL));
    Ok(Some(reloader))
}

/// Standalone (`--manifests`): loads and watches the files, and takes no pushes. Cluster mode:
/// the push receiver, and no configuration until the operator pushes one.
fn load_config(args: &Args, store: &Arc<ConfigStore>) -> Result<Option<Arc<PushReceiver>>, StartError> {
    let Some(path) = args.manifests.clone() else {
        tracing::warn!(
            "no --manifests given: waiting for a configuration push; all traffic is refused (503) until then"
        );
        return push_receiver(args);
    };
    let digest = match manifests::load_into(store, &path, &args.namespace) {
        Ok(d) => Some(d),
        Err(e) => {
            let what = "cannot load the manifests; refusing all traffic (503) until they load";
            manifests::log_rejection(&e, what, false);
            None
        }
    };
    tokio::spawn(manifests::watch(store.clone(), path, args.namespace.clone(), digest, WATCH_INTERVAL));
    Ok(None) // standalone: the files are the configuration; pushes are refused (404)
}

/// The addresses bound (`[listen, admin]`, which differ from the flags for a port `0`).
fn log_start(role: Role, args: &Args, bound: [Option<SocketAddr>; 2], tls: bool) {
    let listen = bound[0].unwrap_or(args.listen);
    let admin = bound[1].unwrap_or(args.admin_listen);
    match role {
        Role::Sidecar => {
            tracing::info!(%listen, tls, %admin, upstream = %args.upstream.authority, "portcullis-sidecar serving");
        }
        Role::Authorizer => {
            tracing::info!(%listen, tls, %admin, "portcullis-sidecar authz serving (ext_authz gRPC and HTTP, forward-auth)");
        }
    }
}

/// The push receiver of a sidecar in cluster mode, from the flags.
fn push_receiver(args: &Args) -> Result<Option<Arc<PushReceiver>>, StartError> {
    if args.push_public_key.is_empty() && args.push_public_key_value.is_empty() {
        tracing::warn!("no --push-public-key: configuration pushes are refused");
        return Ok(None);
    }
    let mut trusted = Vec::new();
    for path in &args.push_public_key {
        let err = |reason: String| StartError::PushKey { path: path.clone(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        trusted.push(VerifyingKey::parse(&text).map_err(|e| err(e.to_string()))?);
    }
    for (i, text) in args.push_public_key_value.iter().enumerate() {
        trusted
            .push(VerifyingKey::parse(text).map_err(|e| StartError::PushKeyValue { index: i, reason: e.to_string() })?);
    }
    let (Some(pod), Some(namespace)) = (args.pod_name.clone(), args.pod_namespace.clone()) else {
        return Err(StartError::PushTarget);
    };
    let receiver = PushReceiver::new(PushSettings {
        trusted,
        target: PushTarget { namespace, pod },
        max_age_secs: args.push_max_age.as_secs() as i64,
    })
    .map_err(|e| StartError::BootKey(e.to_string()))?;
    Ok(Some(Arc::new(receiver)))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, source })
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use portcullis_crds::push::SigningKey;

    use super::*;

    fn args(extra: &[&str]) -> Args {
        let base = ["portcullis-sidecar", "--pod-name", "web", "--pod-namespace", "shop"];
        Args::try_parse_from(base.iter().chain(extra)).unwrap()
    }

    #[test]
    fn push_keys_can_be_given_inline_as_the_injection_webhook_does() {
        let (key, _) = SigningKey::generate().unwrap();
        let b64 = key.verifying_key().to_base64();
        assert!(push_receiver(&args(&["--push-public-key-value", &b64])).unwrap().is_some());
        assert!(push_receiver(&args(&[])).unwrap().is_none(), "no key: pushes refused");
        let e = push_receiver(&args(&["--push-public-key-value", "not-a-key"])).err().unwrap();
        assert!(e.to_string().starts_with("--push-public-key-value (key 0"), "{e}");
    }
}
