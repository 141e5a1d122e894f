//! The push client: signs each sidecar's desired [`Snapshot`] and sends it to the pod's admin
//! port (`PUT /config`), remembering what every sidecar acknowledged so that an unchanged config
//! is not sent again.
//!
//! Owns sequencing (Unix milliseconds, never going backwards within the process), bounded
//! concurrency, timeouts and retries, and the push metrics. It must not decide what a pod runs
//! ([`crate::desired`] does) nor write any Kubernetes object. The signing key never leaves it:
//! errors and logs carry the pod, the HTTP status and the sidecar's reason, never the key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jiff::Timestamp;
use portcullis_crds::push::{ConfigPush, PushTarget, SigningKey};

use crate::desired::PodConfig;
use crate::metrics::Metrics;

/// Pushes in flight at once, across all pods: enough to fan out to a large deployment quickly,
/// few enough that a full resync does not open thousands of connections.
pub const MAX_IN_FLIGHT: usize = 16;
/// One attempt's limit, connect to answer. A sidecar renders a config in milliseconds.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per pod and push, for failures that may pass (timeouts, unreachable, 5xx).
pub const ATTEMPTS: u32 = 3;
/// Wait before the second attempt; doubles per attempt.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);

/// Why a push to one sidecar did not land.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The sidecar answered and refused; `reason` is its own (`stale`, `unknown_key`, ...).
    #[error("sidecar {pod} refused the config with HTTP {status} ({reason})")]
    Refused { pod: String, status: u16, reason: String },
    #[error("sidecar {pod} did not answer within {ATTEMPT_TIMEOUT:?}")]
    Timeout { pod: String },
    #[error("sidecar {pod} is unreachable: {detail}")]
    Unreachable { pod: String, detail: String },
    /// A 2xx answer that is not the JSON acknowledgement: not a Portcullis sidecar, or another
    /// version of one.
    #[error("sidecar {pod} answered HTTP {status} without a usable acknowledgement")]
    BadAnswer { pod: String, status: u16 },
}

impl PushError {
    /// Metric label: the sidecar's refusal reasons are a fixed set; anything else is `refused`.
    pub fn reason(&self) -> &'static str {
        match self {
            PushError::Refused { reason, .. } => match reason.as_str() {
                "malformed" => "malformed",
                "unknown_key" => "unknown_key",
                "bad_signature" => "bad_signature",
                "wrong_target" => "wrong_target",
                "stale" => "stale",
                "expired" => "expired",
                "too_large" => "too_large",
                "invalid_snapshot" => "invalid_snapshot",
                _ => "refused",
            },
            PushError::Timeout { .. } => "timeout",
            PushError::Unreachable { .. } => "unreachable",
            PushError::BadAnswer { .. } => "bad_answer",
        }
    }

    /// Whether another attempt may succeed: the sidecar was not reached or failed on its side.
    /// A refusal is an answer about the push itself and is the same on every attempt.
    fn transient(&self) -> bool {
        match self {
            PushError::Refused { status, .. } => *status >= 500,
            PushError::Timeout { .. } | PushError::Unreachable { .. } => true,
            PushError::BadAnswer { .. } => false,
        }
    }
}

/// A push that landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// The sidecar was sent the config and now runs it; `unchanged` when it already did.
    Sent { unchanged: bool },
    /// The sidecar acknowledged this version earlier and has not restarted since.
    AlreadySynced,
}

/// The outcome for one pod (`namespace/name`).
#[derive(Debug)]
pub struct PodOutcome {
    pub pod: String,
    pub version: String,
    pub result: Result<Pushed, PushError>,
}

/// What a sidecar last acknowledged.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Acked {
    incarnation: String,
    version: String,
}

/// How long an idle connection to a sidecar is kept for the next push.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Pusher {
    key: SigningKey,
    http: Client<HttpConnector, Full<Bytes>>,
    metrics: Arc<Metrics>,
    /// Last sequence handed out.
    sequence: AtomicU64,
    /// Per pod (`namespace/name`): what it acknowledged. Lost on restart, so a new operator
    /// process re-pushes once; the sidecar answers `unchanged` cheaply.
    acked: Mutex<HashMap<String, Acked>>,
}

// === impl Pusher ===

impl Pusher {
    pub fn new(key: SigningKey, metrics: Arc<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(ATTEMPT_TIMEOUT));
        // Pushes come in bursts minutes apart: an idle connection to each of thousands of
        // sidecars would hold its buffers for nothing, so idle ones close after 30 s.
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(1)
            .build(connector);
        Self { key, http, metrics, sequence: AtomicU64::new(0), acked: Mutex::default() }
    }

    /// The sequence for a compile at `now`: its Unix milliseconds, or one more than the last
    /// sequence when the clock has not moved on (or went back), so a sidecar never sees a
    /// newer config with a smaller number.
    pub fn next_sequence(&self, now: Timestamp) -> u64 {
        let millis = u64::try_from(now.as_millisecond()).unwrap_or(0);
        let mut last = self.sequence.load(Ordering::Acquire);
        loop {
            let next = millis.max(last.saturating_add(1));
            match self.sequence.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return next,
                Err(current) => last = current,
            }
        }
    }

    /// Whether `pod` runs `version` as far as this process knows.
    pub fn in_sync(&self, pod: &PodConfig) -> bool {
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        acked
            .get(&pod_key(pod))
            .is_some_and(|a| a.incarnation == pod.pod.incarnation && a.version == pod.snapshot.version)
    }

    /// Pushes each pod's config (at most [`MAX_IN_FLIGHT`] at once), skipping pods that already
    /// acknowledged it. All pushes of one call share one sequence: they come from one compile.
    pub async fn push_all(&self, pods: &[PodConfig], now: Timestamp) -> Vec<PodOutcome> {
        let sequence = self.next_sequence(now);
        // Owned items: futures borrowing from the slice trip the compiler's higher-ranked
        // lifetime inference once the caller is spawned (kube's Controller).
        stream::iter(pods.to_vec())
            .map(|pod| async move {
                let result =
                    if self.in_sync(&pod) { Ok(Pushed::AlreadySynced) } else { self.push(&pod, sequence, now).await };
                PodOutcome { pod: pod_key(&pod), version: pod.snapshot.version, result }
            })
            .buffer_unordered(MAX_IN_FLIGHT)
            .collect()
            .await
    }

    /// Sends one pod its config, retrying transient failures with backoff, and records the
    /// acknowledgement and the metrics.
    pub async fn push(&self, pod: &PodConfig, sequence: u64, now: Timestamp) -> Result<Pushed, PushError> {
        let push = ConfigPush {
            sequence,
            target: PushTarget { namespace: pod.pod.namespace.clone(), pod: pod.pod.name.clone() },
            issued_at: now.as_second(),
            snapshot: pod.snapshot.clone(),
        };
        // Serialising plain data structs cannot fail; see `SigningKey::sign`.
        let body = Bytes::from(serde_json::to_vec(&self.key.sign(&push)).unwrap_or_default());
        let mut wait = FIRST_RETRY;
        let mut attempt = 1;
        let result = loop {
            let started = Instant::now();
            let result = self.attempt(pod, body.clone()).await;
            self.metrics.pushed(
                match &result {
                    Ok(true) => "unchanged",
                    Ok(false) => "ok",
                    Err(e) => e.reason(),
                },
                started.elapsed(),
            );
            match result {
                Err(e) if e.transient() && attempt < ATTEMPTS => {
                    tracing::debug!(pod = %pod_key(pod), attempt, error = %e, "push failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                    attempt += 1;
                }
                other => break other,
            }
        };
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(unchanged) => {
                let ack = Acked { incarnation: pod.pod.incarnation.clone(), version: pod.snapshot.version.clone() };
                acked.insert(pod_key(pod), ack);
                Ok(Pushed::Sent { unchanged })
            }
            Err(e) => {
                // Whatever it ran before, this process no longer knows it runs the desired one.
                acked.remove(&pod_key(pod));
                Err(e)
            }
        }
    }

    /// Forgets the acknowledgements of `namespace`'s pods that are not in `live` (deleted, or no
    /// longer running a sidecar), so the map does not grow with every pod ever pushed.
    pub fn forget_gone(&self, namespace: &str, live: &[PodConfig]) {
        let prefix = format!("{namespace}/");
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        acked.retain(|pod, _| !pod.starts_with(&prefix) || live.iter().any(|l| &pod_key(l) == pod));
    }

    /// One `PUT /config`; `Ok(unchanged)` on an acknowledgement.
    async fn attempt(&self, pod: &PodConfig, body: Bytes) -> Result<bool, PushError> {
        let name = pod_key(pod);
        let uri = format!("http://{}/config", socket(&pod.pod.ip, pod.pod.admin_port));
        let request = Request::builder()
            .method(Method::PUT)
            .uri(&uri)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| PushError::Unreachable { pod: name.clone(), detail: e.to_string() })?;
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| PushError::Unreachable {
                pod: name.clone(),
                // `{:#}` prints the causes: hyper's own message is only "client error (Connect)".
                detail: format!("{:#}", anyhow::Error::new(e)),
            })?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| PushError::Unreachable { pod: name.clone(), detail: e.to_string() })?
                .to_bytes();
            Ok::<_, PushError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(ATTEMPT_TIMEOUT, exchange)
            .await
            .map_err(|_| PushError::Timeout { pod: name.clone() })??;
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        if status == StatusCode::OK {
            return answer["unchanged"].as_bool().ok_or(PushError::BadAnswer { pod: name, status: status.as_u16() });
        }
        let reason = answer["error"].as_str().unwrap_or("none").to_owned();
        Err(PushError::Refused { pod: name, status: status.as_u16(), reason })
    }
}

fn pod_key(pod: &PodConfig) -> String {
    format!("{}/{}", pod.pod.namespace, pod.pod.name)
}

/// `ip:port`, bracketing IPv6 addresses.
fn socket(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pusher() -> Pusher {
        let registry = prometheus::Registry::new();
        let (key, _) = SigningKey::generate().unwrap();
        Pusher::new(key, Arc::new(Metrics::register(&registry).unwrap()))
    }

    #[test]
    fn sequences_follow_the_clock_and_never_go_back() {
        let p = pusher();
        let t = |ms: i64| Timestamp::from_millisecond(ms).unwrap();
        assert_eq!(p.next_sequence(t(1_000)), 1_000);
        assert_eq!(p.next_sequence(t(1_000)), 1_001, "same millisecond: one more");
        assert_eq!(p.next_sequence(t(500)), 1_002, "clock went back: still one more");
        assert_eq!(p.next_sequence(t(5_000)), 5_000);
    }

    #[test]
    fn ipv6_addresses_are_bracketed() {
        assert_eq!(socket("10.0.0.1", 9901), "10.0.0.1:9901");
        assert_eq!(socket("fd00::1", 9901), "[fd00::1]:9901");
    }

    #[test]
    fn unknown_refusal_reasons_do_not_become_labels() {
        let refused = |reason: &str| PushError::Refused { pod: "a/b".into(), status: 409, reason: reason.into() };
        assert_eq!(refused("stale").reason(), "stale");
        assert_eq!(refused("something new from a later sidecar").reason(), "refused");
        assert!(!refused("stale").transient());
        assert!(PushError::Refused { pod: "a/b".into(), status: 503, reason: "none".into() }.transient());
    }
}
