//! The push client: seals each sidecar's desired [`Snapshot`] to that sidecar's current boot,
//! signs it and sends it to the pod's admin port (`PUT /config`), remembering what every sidecar
//! acknowledged so that an unchanged config is not sent again.
//!
//! Owns the boot cache (each pod's `GET /config/boot`, read once per pod incarnation and again
//! when the sidecar answers `stale_boot`), sequencing (Unix milliseconds, never going backwards
//! within the process), bounded concurrency, timeouts and retries, and the push metrics. It must
//! not decide what a pod runs ([`crate::desired`] does) nor write any Kubernetes object. The
//! signing key and the configs never leave it in clear: errors and logs carry the pod, the HTTP
//! status and the sidecar's reason, never the key or a config value.

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
use portcullis_crds::push::{BootInfo, ConfigPush, PushTarget, Refused, SigningKey};

use crate::desired::{PodConfig, SidecarPod};
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
    /// The sidecar answered and refused; `reason` is its own, `None` when this build does not
    /// know it (a newer sidecar).
    #[error("sidecar {pod} refused the config with HTTP {status} ({})", reason.map_or("an unknown reason", Refused::as_str))]
    Refused { pod: String, status: u16, reason: Option<Refused> },
    #[error("sidecar {pod} did not answer within {ATTEMPT_TIMEOUT:?}")]
    Timeout { pod: String },
    #[error("sidecar {pod} is unreachable: {detail}")]
    Unreachable { pod: String, detail: String },
    /// A 2xx answer that is not the JSON acknowledgement: not a Portcullis sidecar, or another
    /// version of one.
    #[error("sidecar {pod} answered HTTP {status} without a usable acknowledgement")]
    BadAnswer { pod: String, status: u16 },
    /// `GET /config/boot` gave nothing to seal to: a sidecar older than sealed pushes, or one
    /// sealing with another suite.
    #[error("sidecar {pod} gave no usable boot info ({detail}); is it a sidecar older than this operator?")]
    NoBoot { pod: String, detail: String },
    /// The sidecar at the pod's address says it is another pod (the IP was reused): nothing is
    /// sealed to it.
    #[error("the sidecar at {pod}'s address is {other}; nothing was sent to it")]
    BootMismatch { pod: String, other: String },
}

impl PushError {
    /// Metric label and event reason: the sidecar's refusals come from the one shared table;
    /// a reason this build does not know is `refused`.
    pub fn reason(&self) -> &'static str {
        match self {
            PushError::Refused { reason, .. } => reason.map_or("refused", Refused::as_str),
            PushError::Timeout { .. } => "timeout",
            PushError::Unreachable { .. } => "unreachable",
            PushError::BadAnswer { .. } => "bad_answer",
            PushError::NoBoot { .. } => "no_boot_info",
            PushError::BootMismatch { .. } => "boot_mismatch",
        }
    }

    /// The sidecar's refusal, if it refused for a reason this build knows.
    pub fn refused(&self) -> Option<Refused> {
        match self {
            PushError::Refused { reason, .. } => *reason,
            _ => None,
        }
    }

    /// Whether another attempt may succeed: the sidecar was not reached or failed on its side.
    /// A refusal is an answer about the push itself and is the same on every attempt.
    fn transient(&self) -> bool {
        match self {
            PushError::Refused { status, .. } => *status >= 500,
            PushError::Timeout { .. } | PushError::Unreachable { .. } => true,
            PushError::BadAnswer { .. } | PushError::NoBoot { .. } | PushError::BootMismatch { .. } => false,
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

/// A pod's boot info, valid for the pod incarnation (uid and sidecar restarts) and address it
/// was read from: a restart the API server has seen is re-read before the push, one it has not
/// seen yet is answered `stale_boot` and re-read then.
#[derive(Clone, Debug)]
struct CachedBoot {
    incarnation: String,
    ip: String,
    info: BootInfo,
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
    /// Per pod (`namespace/name`): the boot its pushes are sealed to, so that a steady state
    /// costs one request per push, not two.
    boots: Mutex<HashMap<String, CachedBoot>>,
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
        Self { key, http, metrics, sequence: AtomicU64::new(0), acked: Mutex::default(), boots: Mutex::default() }
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

    /// Sends one pod its config, retrying transient failures with backoff and a `stale_boot`
    /// at once with the boot read again, and records the acknowledgement and the metrics.
    pub async fn push(&self, pod: &PodConfig, sequence: u64, now: Timestamp) -> Result<Pushed, PushError> {
        let outcome = |r: &Result<Pushed, PushError>| match r {
            Ok(Pushed::Sent { unchanged: true }) => "unchanged",
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        let pushed = self.push_untraced(pod, sequence, now);
        crate::telemetry::push(&pod_key(pod), &pod.snapshot.version, pushed, outcome).await
    }

    async fn push_untraced(&self, pod: &PodConfig, sequence: u64, now: Timestamp) -> Result<Pushed, PushError> {
        let push = ConfigPush {
            sequence,
            target: PushTarget { namespace: pod.pod.namespace.clone(), pod: pod.pod.name.clone() },
            issued_at: now.as_second(),
            snapshot: pod.snapshot.clone(),
        };
        let mut wait = FIRST_RETRY;
        let mut attempt = 1;
        let mut boot_reread = false;
        let result = loop {
            let started = Instant::now();
            let result = self.attempt(pod, &push).await;
            self.metrics.pushed(
                match &result {
                    Ok(true) => "unchanged",
                    Ok(false) => "ok",
                    Err(e) => e.reason(),
                },
                started.elapsed(),
            );
            match result {
                // The sidecar restarted since its boot was read (a restart the Pod's status does
                // not show yet): read the new boot and push again now, once.
                Err(e) if e.refused() == Some(Refused::StaleBoot) && !boot_reread => {
                    tracing::debug!(pod = %pod_key(pod), "sidecar runs a new boot; reading it again");
                    self.forget_boot(pod);
                    boot_reread = true;
                }
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
                if !e.transient() {
                    // A refusal may come from a boot read long ago; the next push reads it again.
                    self.forget_boot(pod);
                }
                Err(e)
            }
        }
    }

    /// Forgets the acknowledgements and boots of `namespace`'s pods that are not in `live`
    /// (deleted, or no longer running a sidecar), so the maps do not grow with every pod ever
    /// pushed.
    pub fn forget_gone<'a>(&self, namespace: &str, live: impl IntoIterator<Item = &'a SidecarPod>) {
        let prefix = format!("{namespace}/");
        let live: std::collections::HashSet<String> =
            live.into_iter().map(|p| format!("{}/{}", p.namespace, p.name)).collect();
        let gone = |pod: &String| pod.starts_with(&prefix) && !live.contains(pod);
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).retain(|pod, _| !gone(pod));
        self.boots.lock().unwrap_or_else(|e| e.into_inner()).retain(|pod, _| !gone(pod));
    }

    /// Forgets the acknowledgements and boots of these pods (`namespace/name`).
    pub fn forget(&self, pods: &[String]) {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).retain(|pod, _| !pods.contains(pod));
        self.boots.lock().unwrap_or_else(|e| e.into_inner()).retain(|pod, _| !pods.contains(pod));
    }

    /// How many pods' boots are cached (for tests of the cache's bounds).
    pub fn cached_boots(&self) -> usize {
        self.boots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn forget_boot(&self, pod: &PodConfig) {
        self.boots.lock().unwrap_or_else(|e| e.into_inner()).remove(&pod_key(pod));
    }

    /// One push: the pod's boot (cached, or read), the config sealed to it, one `PUT /config`;
    /// `Ok(unchanged)` on an acknowledgement.
    async fn attempt(&self, pod: &PodConfig, push: &ConfigPush) -> Result<bool, PushError> {
        let name = pod_key(pod);
        let boot = self.boot(pod).await?;
        let sealed =
            self.key.seal(push, &boot).map_err(|e| PushError::NoBoot { pod: name.clone(), detail: e.to_string() })?;
        // Serialising plain data structs cannot fail; see `SigningKey::seal`.
        let body = Bytes::from(serde_json::to_vec(&sealed).unwrap_or_default());
        let (status, answer) = self.exchange(pod, Method::PUT, "/config", body).await?;
        if status == StatusCode::OK {
            return answer["unchanged"].as_bool().ok_or(PushError::BadAnswer { pod: name, status: status.as_u16() });
        }
        Err(refusal(name, status, &answer))
    }

    /// The pod's boot info: cached for its incarnation and address, else read and cached.
    async fn boot(&self, pod: &PodConfig) -> Result<BootInfo, PushError> {
        let name = pod_key(pod);
        let cached = self.boots.lock().unwrap_or_else(|e| e.into_inner()).get(&name).cloned();
        if let Some(c) = cached.filter(|c| c.incarnation == pod.pod.incarnation && c.ip == pod.pod.ip) {
            return Ok(c.info);
        }
        let (status, answer) = self.exchange(pod, Method::GET, "/config/boot", Bytes::new()).await?;
        if status != StatusCode::OK {
            return Err(match Refused::parse(answer["error"].as_str().unwrap_or_default()) {
                Some(_) => refusal(name, status, &answer),
                None => PushError::NoBoot { pod: name, detail: format!("GET /config/boot answered HTTP {status}") },
            });
        }
        let info: BootInfo = serde_json::from_value(answer)
            .map_err(|e| PushError::NoBoot { pod: name.clone(), detail: format!("GET /config/boot: {e}") })?;
        if info.target.namespace != pod.pod.namespace || info.target.pod != pod.pod.name {
            let other = format!("{}/{}", info.target.namespace, info.target.pod);
            return Err(PushError::BootMismatch { pod: name, other });
        }
        let entry = CachedBoot { incarnation: pod.pod.incarnation.clone(), ip: pod.pod.ip.clone(), info: info.clone() };
        self.boots.lock().unwrap_or_else(|e| e.into_inner()).insert(name, entry);
        Ok(info)
    }

    /// One request to the pod's admin port, within [`ATTEMPT_TIMEOUT`]: the status and the
    /// answer's JSON (`Null` when it is not JSON).
    async fn exchange(
        &self,
        pod: &PodConfig,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, serde_json::Value), PushError> {
        let name = pod_key(pod);
        let uri = format!("http://{}{path}", socket(&pod.pod.ip, pod.pod.admin_port));
        let request = Request::builder()
            .method(method)
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
        Ok((status, serde_json::from_slice(&bytes).unwrap_or_default()))
    }
}

/// A sidecar's refusal: `{"error": "<reason>"}` read through the shared table.
fn refusal(pod: String, status: StatusCode, answer: &serde_json::Value) -> PushError {
    let reason = answer["error"].as_str().and_then(Refused::parse);
    PushError::Refused { pod, status: status.as_u16(), reason }
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
    fn refusals_are_read_through_the_shared_table_and_unknown_ones_do_not_become_labels() {
        let refused = |status: u16, reason: &str| {
            refusal("a/b".into(), StatusCode::from_u16(status).unwrap(), &serde_json::json!({ "error": reason }))
        };
        for r in Refused::ALL {
            let e = refused(r.status(), r.as_str());
            assert_eq!((e.reason(), e.refused()), (r.as_str(), Some(r)));
            assert!(!e.transient(), "{r}: the same push is refused again");
        }
        let unknown = refused(409, "something new from a later sidecar");
        assert_eq!((unknown.reason(), unknown.refused()), ("refused", None));
        assert!(unknown.to_string().contains("an unknown reason"), "{unknown}");
        assert!(refused(503, "none").transient());
    }
}
