//! The `explain` command around the pure report: load manifests (or take a compiled snapshot
//! from the kubectl plugin), render it as the request path would (JWKS stores included), wait
//! briefly for remote keys, and print. Must not decide anything: that is `explain()`.

use std::time::Duration;

use portcullis_crds::Snapshot;

use super::{explain, render_text, ExplainError, ExplainRequest, Explanation, Options};
use crate::cli::{ExplainArgs, Output, RequestArgs};
use crate::config::live::{Live, LiveError};
use crate::config::manifests::{compile_sources, read_sources, LoadError};
use crate::jwks::JwksRegistry;
use crate::metrics::Metrics;
use crate::outbound::{self, OutboundError};

/// How long `explain` waits for an issuer's `jwksUri` before reporting "keys not loaded".
const JWKS_WAIT: Duration = Duration::from_secs(5);

/// Why `explain` could not run (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot load the manifests: {0}")]
    Load(#[from] LoadError),
    #[error("the compiled configuration cannot be used: {0}")]
    Live(#[from] LiveError),
    #[error("outbound TLS (for jwksUri): {0}")]
    Outbound(#[from] OutboundError),
    #[error("{0}")]
    Request(#[from] ExplainError),
}

/// The request the flags describe.
pub fn request_from_args(a: &RequestArgs) -> ExplainRequest {
    let mut headers = a.headers.clone();
    if let Some(cookie) = &a.cookie {
        headers.push(("cookie".to_owned(), cookie.clone()));
    }
    ExplainRequest { method: a.method.clone(), url: a.url.clone(), headers, peer: Some(a.peer) }
}

/// Evaluation settings from the flags; `--now` or the clock.
pub fn options_from_args(a: &RequestArgs) -> Options {
    Options {
        trusted_proxies: a.trusted_proxies.clone(),
        now: a.now.unwrap_or_else(|| jiff::Timestamp::now().as_second()),
        secrets_unavailable: false,
    }
}

/// Renders a snapshot as the sidecar does and waits (bounded) for remote JWKS. Call it inside
/// a tokio runtime: the JWKS stores fetch in the background.
pub async fn live_from_snapshot(snapshot: Snapshot) -> Result<Live, CommandError> {
    let metrics = Metrics::new();
    let client = outbound::client(Duration::from_secs(5))?;
    let jwks = std::sync::Arc::new(JwksRegistry::new(client, &metrics));
    let live = Live::build(snapshot, &jwks, &metrics, crate::identity::session::GeneratedKey::new().get())?;
    for app in &live.apps {
        for keys in &app.keys {
            keys.wait_ready(JWKS_WAIT).await;
        }
    }
    Ok(live)
}

/// `portcullis-sidecar explain`: the explanation of the flags' request against the manifests.
pub async fn run(args: &ExplainArgs) -> Result<Explanation, CommandError> {
    let sources = read_sources(&args.manifests)?;
    let compiled = compile_sources(&sources, &args.namespace)?;
    let live = live_from_snapshot(compiled.snapshot).await?;
    Ok(explain(&live, &request_from_args(&args.request), &options_from_args(&args.request))?)
}

/// The explanation in the requested format, newline-terminated.
pub fn render(e: &Explanation, output: Output) -> String {
    match output {
        Output::Text => render_text(e),
        // Serialising plain structs of strings, numbers and lists cannot fail.
        Output::Json => serde_json::to_string_pretty(e).map(|s| s + "\n").unwrap_or_default(),
    }
}
