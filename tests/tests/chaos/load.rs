//! A bounded loopback load generator: `connections` HTTP/1.1 connections, each a task sending
//! requests back to back (or paced to a total rate), until a deadline or a request budget.
//! Every request is a [`Probe`] that carries its own judge of the answer, so "wrongly allowed"
//! is decided per request, not inferred from totals. Results are aggregated as they come
//! (per phase, latencies in log-scale histograms), so a 24 h soak holds a few
//! megabytes, not one record per request. Must not talk to anything but the given loopback
//! address, and never runs unbounded.

// Shared by the chaos tests (tests/tests/chaos/main.rs) and the long-run program
// (tests/examples/reliability.rs); each uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// A fully read answer, what a judge sees.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// How one request ended, as judged against what it should have got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The expected answer.
    Ok,
    /// Should have been refused and was let through (forwarded, or a 2xx).
    WronglyAllowed,
    /// Should have been let through and was refused (401/403).
    WronglyDenied,
    /// Any other unexpected status or body.
    Failed,
    /// No answer: connect refused, reset, or no answer within the request timeout.
    ConnError,
}

const OUTCOMES: usize = 5;

impl Outcome {
    fn index(self) -> usize {
        self as usize
    }
}

/// The judge of one probe: the outcome and, when it is not `Ok`, a short description.
pub type Judge = Arc<dyn Fn(&Reply) -> (Outcome, String) + Send + Sync>;

/// One kind of request in the mix, with what its answer must be.
#[derive(Clone)]
pub struct Probe {
    pub name: String,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub judge: Judge,
}

impl Probe {
    pub fn new(name: &str, method: Method, path: &str, headers: &[(&str, &str)], judge: Judge) -> Self {
        let headers = headers
            .iter()
            .map(|(k, v)| {
                (
                    HeaderName::from_bytes(k.as_bytes()).expect("probe header name"),
                    v.parse().expect("probe header value"),
                )
            })
            .collect();
        Self { name: name.to_owned(), method, path: path.to_owned(), headers, judge }
    }
}

/// Bounds and shape of one load run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub connections: usize,
    /// Stop after this long, whatever else happens.
    pub max_duration: Duration,
    /// Stop after this many requests in all.
    pub max_requests: u64,
    /// Total requests per second across connections; `None` is as fast as answers come.
    pub rate: Option<f64>,
    /// A request without an answer after this long counts as `ConnError`.
    pub timeout: Duration,
}

/// Latency histogram: bucket `i` holds latencies in [1.05^i, 1.05^(i+1)) µs; ~370 buckets
/// reach a minute.
#[derive(Clone, Default)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_us: u64,
}

const RATIO: f64 = 1.05;

impl Histogram {
    pub fn record(&mut self, latency: Duration) {
        let us = latency.as_micros().max(1) as f64;
        let i = (us.ln() / RATIO.ln()) as usize;
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(latency.as_micros() as u64);
    }

    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The `q` quantile (0..=1), the upper edge of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let upper = RATIO.powi(i as i32 + 1).min(self.max_us as f64).max(1.0);
                return Some(Duration::from_micros(upper as u64));
            }
        }
        Some(Duration::from_micros(self.max_us))
    }

    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }
}

/// Totals of a set of requests.
#[derive(Clone, Default)]
pub struct Tally {
    pub outcomes: [u64; OUTCOMES],
    /// Latencies of answered requests.
    pub latency: Histogram,
}

impl Tally {
    fn record(&mut self, outcome: Outcome, latency: Duration) {
        self.outcomes[outcome.index()] += 1;
        if outcome != Outcome::ConnError {
            self.latency.record(latency);
        }
    }

    pub fn merge(&mut self, other: &Tally) {
        for (a, b) in self.outcomes.iter_mut().zip(other.outcomes) {
            *a += b;
        }
        self.latency.merge(&other.latency);
    }

    pub fn sent(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    pub fn get(&self, o: Outcome) -> u64 {
        self.outcomes[o.index()]
    }

    /// Everything that was not the expected answer.
    pub fn failed(&self) -> u64 {
        self.sent() - self.get(Outcome::Ok)
    }

    pub fn p99(&self) -> Option<Duration> {
        self.latency.quantile(0.99)
    }
}

/// Phases a scenario moves through; each request counts in the phase it started in.
pub const PHASES: usize = 4;
pub const BEFORE: u8 = 0;
pub const DURING: u8 = 1;
pub const AFTER: u8 = 2;
/// A last phase for a scenario's own purposes (e.g. after SIGTERM's drain ended).
pub const LATE: u8 = 3;

/// What one worker saw; merged into a [`Report`] at the end.
#[derive(Clone, Default)]
struct WorkerStats {
    phases: [Tally; PHASES],
    /// The first few unexpected answers, for the failure message.
    examples: Vec<String>,
}

/// The merged result of a load run.
#[derive(Default)]
pub struct Report {
    pub phases: [Tally; PHASES],
    pub examples: Vec<String>,
    pub elapsed: Duration,
}

impl Report {
    /// Adds `other` (a load on another target in the same scenario) to this report.
    pub fn merge(&mut self, other: Report) {
        for (a, b) in self.phases.iter_mut().zip(&other.phases) {
            a.merge(b);
        }
        let room = 12usize.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
        self.elapsed = self.elapsed.max(other.elapsed);
    }

    pub fn total(&self) -> Tally {
        let mut t = Tally::default();
        for p in &self.phases {
            t.merge(p);
        }
        t
    }
}

/// A running load; [`Load::finish`] stops it and returns the [`Report`].
pub struct Load {
    pub started: Instant,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<WorkerStats>>,
}

impl Load {
    pub fn start(addr: SocketAddr, probes: Vec<Probe>, spec: LoadSpec) -> Load {
        assert!(addr.ip().is_loopback(), "the load generator only targets loopback addresses");
        assert!(!probes.is_empty() && spec.connections > 0);
        let probes = Arc::new(probes);
        let started = Instant::now();
        let phase = Arc::new(AtomicU8::new(BEFORE));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let workers = (0..spec.connections)
            .map(|id| {
                let w = Worker {
                    id,
                    addr,
                    probes: probes.clone(),
                    spec: spec.clone(),
                    started,
                    phase: phase.clone(),
                    stop: stop.clone(),
                    sent: sent.clone(),
                };
                tokio::spawn(w.run())
            })
            .collect();
        Load { started, phase, stop, sent, workers }
    }

    /// Requests started from now on count in `phase`.
    pub fn set_phase(&self, phase: u8) {
        assert!((phase as usize) < PHASES);
        self.phase.store(phase, Ordering::SeqCst);
    }

    /// Requests started so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether the load stopped by itself (deadline or budget reached).
    pub fn done(&self) -> bool {
        self.workers.iter().all(|w| w.is_finished())
    }

    /// Waits for a load bounded by its own duration or budget to end, then collects it.
    pub async fn finish_when_done(self) -> Report {
        while !self.done() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.finish().await
    }

    pub async fn finish(self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        let mut report = Report::default();
        for w in self.workers {
            let stats = w.await.expect("load worker panicked");
            for (a, b) in report.phases.iter_mut().zip(&stats.phases) {
                a.merge(b);
            }
            for e in stats.examples {
                if report.examples.len() < 12 {
                    report.examples.push(e);
                }
            }
        }
        report.elapsed = self.started.elapsed();
        report
    }
}

struct Worker {
    id: usize,
    addr: SocketAddr,
    probes: Arc<Vec<Probe>>,
    spec: LoadSpec,
    started: Instant,
    phase: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
}

impl Worker {
    async fn run(self) -> WorkerStats {
        let mut stats = WorkerStats::default();
        let mut conn: Option<SendRequest<Full<Bytes>>> = None;
        let deadline = self.started + self.spec.max_duration;
        // Each worker walks the probe list from its own offset, so the mix is even overall.
        let mut next_probe = self.id;
        let interval = self.spec.rate.map(|r| Duration::from_secs_f64(self.spec.connections as f64 / r));
        let mut next_at = tokio::time::Instant::now();
        loop {
            if self.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                break;
            }
            if self.sent.fetch_add(1, Ordering::Relaxed) >= self.spec.max_requests {
                break;
            }
            if let Some(interval) = interval {
                next_at += interval;
                tokio::time::sleep_until(next_at).await;
            }
            let probe = &self.probes[next_probe % self.probes.len()];
            next_probe += 1;
            let phase = self.phase.load(Ordering::SeqCst) as usize;
            let t0 = Instant::now();
            let result = tokio::time::timeout(self.spec.timeout, self.exchange(&mut conn, probe)).await;
            let latency = t0.elapsed();
            let (outcome, why) = match result {
                Ok(Ok(reply)) => (probe.judge)(&reply),
                Ok(Err(e)) => (Outcome::ConnError, e),
                Err(_) => {
                    conn = None;
                    (Outcome::ConnError, format!("no answer within {:?}", self.spec.timeout))
                }
            };
            if outcome != Outcome::Ok && stats.examples.len() < 4 {
                stats.examples.push(format!(
                    "{:?} {} at {:.3}s (phase {phase}): {why}",
                    outcome,
                    probe.name,
                    (t0 - self.started).as_secs_f64()
                ));
            }
            stats.phases[phase].record(outcome, latency);
            if outcome == Outcome::ConnError {
                // A refused connect is retried at once by the next request; keep a refused
                // listener from turning the loop into a busy spin.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        stats
    }

    /// One request on this worker's connection, (re)connecting first when it is closed.
    async fn exchange(&self, conn: &mut Option<SendRequest<Full<Bytes>>>, probe: &Probe) -> Result<Reply, String> {
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            *conn = None;
            let stream = tokio::net::TcpStream::connect(self.addr).await.map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (sender, driver) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
            tokio::spawn(driver);
            *conn = Some(sender);
        }
        let sender = conn.as_mut().expect("connected just above");
        sender.ready().await.map_err(|e| format!("connection not ready: {e}"))?;
        let mut req = Request::builder().method(probe.method.clone()).uri(&probe.path);
        for (k, v) in &probe.headers {
            req = req.header(k, v);
        }
        let req = req.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
        let result = async {
            let resp = sender.send_request(req).await.map_err(|e| format!("send: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
            Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body })
        }
        .await;
        if result.is_err() {
            *conn = None;
        }
        result
    }
}

/// Formats a latency for the report table.
pub fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        None => "–".to_owned(),
    }
}
