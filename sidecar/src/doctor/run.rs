//! `doctor cors`, the thin I/O half: sends the preflight (when the plan needs one) and the actual
//! request over HTTP or HTTPS (TLS from `crate::outbound`), never following redirects, and hands
//! the answers to `cors::analyze`. Must not judge anything itself.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

use super::cors::{analyze, Finding, Observed, Plan, PlanError};
use crate::cli::CorsArgs;
use crate::outbound::{self, error_chain, OutboundError};

/// How long each request may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// Bodies are read for error reasons only; more is never needed.
const MAX_BODY: usize = 64 * 1024;

/// Why the doctor could not examine the deployment (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("--resolve {0:?} is not host:port:address (e.g. api.mysite.com:443:127.0.0.1)")]
    Resolve(String),
    #[error("outbound TLS: {0}")]
    Outbound(#[from] OutboundError),
    #[error("{step} request to {url} failed: {message}")]
    Send { step: &'static str, url: String, message: String },
}

/// What the doctor did and found.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub preflight_needed: bool,
    /// The preflight's status, when one was sent.
    pub preflight_status: Option<u16>,
    /// The actual request's status; `None` when a failed preflight stopped the browser.
    pub actual_status: Option<u16>,
    pub findings: Vec<Finding>,
}

// === impl Report ===

impl Report {
    /// Whether the setup works for the browser (exit status 0).
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn render_text(&self) -> String {
        let mut s = String::new();
        match self.preflight_status {
            Some(st) => s.push_str(&format!("preflight: sent (the request is not simple) → {st}\n")),
            None if self.preflight_needed => s.push_str("preflight: needed but not answered\n"),
            None => s.push_str("preflight: not needed (simple request)\n"),
        }
        match self.actual_status {
            Some(st) => s.push_str(&format!("actual request: → {st}\n")),
            None => s.push_str("actual request: not sent (the browser stops at a failed preflight)\n"),
        }
        if self.findings.is_empty() {
            s.push_str("ok: a browser can make this request and read the answer\n");
        }
        for f in &self.findings {
            s.push_str(&format!("problem [{}] {}: {}\n  fix: {}\n", f.code, f.step, f.problem, f.fix));
        }
        s
    }
}

/// Runs the doctor for `args`.
pub async fn run(args: &CorsArgs) -> Result<Report, DoctorError> {
    let plan =
        Plan::new(&args.origin, &args.url, &args.method, &args.headers, args.credentials, args.cookie.as_deref())?;
    let client = client(&args.resolve, args.insecure)?;
    let preflight_needed = plan.needs_preflight();
    let mut preflight = None;
    if preflight_needed {
        preflight = Some(send(&client, "preflight", Method::OPTIONS, &plan, plan.preflight()).await?);
    }
    let preflight_failed = preflight.as_ref().is_some_and(|p| !analyze(&plan, Some(p), None).is_empty());
    let actual = if preflight_failed {
        None
    } else {
        Some(send(&client, "actual", plan.method.clone(), &plan, plan.actual()).await?)
    };
    Ok(Report {
        preflight_needed,
        preflight_status: preflight.as_ref().map(|p| p.status),
        actual_status: actual.as_ref().map(|a| a.status),
        findings: analyze(&plan, preflight.as_ref(), actual.as_ref()),
    })
}

type DoctorClient = Client<hyper_rustls::HttpsConnector<HttpConnector<Resolver>>, Empty<Bytes>>;

async fn send(
    client: &DoctorClient,
    step: &'static str,
    method: Method,
    plan: &Plan,
    headers: HeaderMap,
) -> Result<Observed, DoctorError> {
    let err = |message: String| DoctorError::Send { step, url: plan.url.to_string(), message };
    let mut req =
        Request::builder().method(method).uri(plan.url.clone()).body(Empty::new()).map_err(|e| err(e.to_string()))?;
    *req.headers_mut() = headers;
    let resp = tokio::time::timeout(TIMEOUT, client.request(req))
        .await
        .map_err(|_| err(format!("no answer within {TIMEOUT:?}")))?
        .map_err(|e| err(error_chain(&e)))?;
    let (parts, body) = resp.into_parts();
    // A body too large or cut short still leaves status and headers to judge.
    let body = Limited::new(body, MAX_BODY).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    Ok(Observed { status: parts.status.as_u16(), headers: parts.headers, body })
}

fn client(resolve: &[String], insecure: bool) -> Result<DoctorClient, DoctorError> {
    let mut overrides = HashMap::new();
    for r in resolve {
        let bad = || DoctorError::Resolve(r.clone());
        let (host, rest) = r.split_once(':').ok_or_else(bad)?;
        let (port, addr) = rest.split_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let ip: std::net::IpAddr = addr.trim_matches(['[', ']']).parse().map_err(|_| bad())?;
        overrides.insert(host.to_ascii_lowercase(), SocketAddr::new(ip, port));
    }
    let mut http =
        HttpConnector::new_with_resolver(Resolver { overrides: Arc::new(overrides), system: GaiResolver::new() });
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let mut tls = outbound::tls_config()?;
    if insecure {
        let provider = tls.crypto_provider().clone();
        tls.dangerous().set_certificate_verifier(Arc::new(outbound::WithoutRoots::accepting(provider)));
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// `--resolve`: fixed addresses for some host names, the system resolver for the rest. The
/// port of an override replaces the URL's (hyper-util only uses the port of a resolved address
/// when the URL has none), so overrides are matched by host and the URL should name the port.
#[derive(Clone)]
struct Resolver {
    overrides: Arc<HashMap<String, SocketAddr>>,
    system: GaiResolver,
}

type Addrs = Box<dyn Iterator<Item = SocketAddr> + Send>;

impl tower_service::Service<Name> for Resolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.system.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        if let Some(addr) = self.overrides.get(&name.as_str().to_ascii_lowercase()).copied() {
            return Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as Addrs) });
        }
        let fut = self.system.call(name);
        Box::pin(async move { fut.await.map(|addrs| Box::new(addrs) as Addrs) })
    }
}
