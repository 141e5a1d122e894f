//! The soak: one sidecar for a long time at half of its single-core capacity, with every fault
//! of the chaos scenarios recurring (config reloads, the app restarting, the JWKS endpoint
//! away) and a pool of distinct tokens larger than the verified-token cache, sampling the
//! process from /proc every 10 s: resident memory, open file descriptors, CPU per request.
//! Ends with SIGTERM under load. Writes its table to `$SOAK_REPORT` (when set) and stdout.

// Shared by the chaos tests (tests/tests/chaos/main.rs) and the long-run program
// (tests/examples/reliability.rs); each uses a part of it.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use http::Method;
use jsonwebtoken::Algorithm;

use crate::common::*;
use crate::load::{Load, LoadSpec, Outcome, Probe, Report, DURING};
use crate::scenarios::{self, sidecar, Tokens, HOST, ORIGIN};
use crate::servers::{App, Jwks};

/// One sample of the sidecar process.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    fds: usize,
    /// User + system CPU ticks since the process started.
    cpu_ticks: u64,
    requests: u64,
}

fn sample(pid: u32, at: Duration, requests: u64) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS in /proc status");
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc fd").count();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name (which may contain spaces) start at ")".
    let rest: Vec<&str> = stat.rsplit_once(')').expect("stat format").1.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let cpu_ticks = rest[11].parse::<u64>().expect("utime") + rest[12].parse::<u64>().expect("stime");
    Sample { at, rss_kib, fds, cpu_ticks, requests }
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Requests per second one sidecar worker thread serves at full load with the soak's mix,
/// extrapolated to a whole core from the CPU it used (the load generator shares the machine
/// and may be the limit).
async fn single_core_capacity(app: &App, probes: &[Probe]) -> (f64, String) {
    let sc = sidecar(&scenarios::churn_manifests_with('A', &inline_jwks()), &app.url())
        .arg("--worker-threads")
        .arg("1")
        .arg("--log")
        .arg("warn")
        .start()
        .await;
    let pid = sc.pid().expect("the soak measures a sidecar process");
    let spec = LoadSpec {
        connections: 16,
        max_duration: Duration::from_secs(8),
        max_requests: u64::MAX,
        rate: None,
        timeout: Duration::from_secs(10),
    };
    // Warm-up (caches, connections), then the measured window.
    let warm = Load::start(sc.addr, probes.to_vec(), LoadSpec { max_duration: Duration::from_secs(2), ..spec.clone() });
    let _ = warm.finish_when_done().await;
    let t0 = Instant::now();
    let s0 = sample(pid, Duration::ZERO, 0);
    let report = Load::start(sc.addr, probes.to_vec(), spec).finish_when_done().await;
    let s1 = sample(pid, t0.elapsed(), 0);
    let secs = t0.elapsed().as_secs_f64();
    let rps = report.total().sent() as f64 / secs;
    let core_share = ((s1.cpu_ticks - s0.cpu_ticks) as f64 / clock_ticks_per_second() / secs).max(0.05);
    let capacity = rps / core_share.min(1.0);
    let how = format!("{rps:.0} req/s measured with the sidecar at {:.0} % of one core", core_share * 100.0);
    (capacity, how)
}

pub async fn run(total: Duration) {
    let app = App::start().await;
    let t = Tokens::new();
    let jwks = Jwks::start(jwks_json()).await;
    let source = format!("        jwksUri: {}", jwks.uri());
    let distinct: usize = std::env::var("SOAK_TOKENS").ok().and_then(|v| v.parse().ok()).unwrap_or(40_000);

    // Distinct Ed25519 tokens (small, cheap to mint) cycled through: more than the cache
    // holds (32 MiB of weight, ~25 000 of these), so it fills and must evict, not grow.
    let lifetime = total.as_secs() as i64 + 3600;
    let pool: Vec<String> = (0..distinct)
        .map(|i| mint("ed25519.pem", Algorithm::EdDSA, Some("ed-1"), claims(&format!("user{i}@mysite.com"), lifetime)))
        .collect();
    let base = scenarios::churn_probes(&t, true);
    let mut probes = Vec::with_capacity(distinct * 3 / 2);
    for (i, token) in pool.iter().enumerate() {
        probes.push(Probe::new(
            "distinct user token",
            Method::GET,
            "/",
            &[("host", HOST), ("origin", ORIGIN), ("cf-access-jwt-assertion", token)],
            scenarios::versioned_with(200, 403, true),
        ));
        if i % 2 == 0 {
            probes.push(base[(i / 2) % base.len()].clone());
        }
    }
    drop(pool);

    let (capacity, how) = match std::env::var("SOAK_RPS").ok().and_then(|v| v.parse::<f64>().ok()) {
        Some(rps) => (rps * 2.0, format!("SOAK_RPS={rps}")),
        None => single_core_capacity(&app, &base).await,
    };
    let rate = capacity / 2.0;
    println!("soak: single-core capacity ≈ {capacity:.0} req/s ({how}); running at {rate:.0} req/s for {total:?}");

    // Warnings only: a refused request is an info line, and a soak refuses millions.
    let mut sc = sidecar(&scenarios::churn_manifests_with('A', &source), &app.url())
        .arg("--log")
        .arg("warn")
        .arg("--drain-timeout")
        .arg("5s")
        .arg("--upstream-timeout")
        .arg("2s")
        .start()
        .await;
    let pid = sc.pid().expect("the soak measures a sidecar process");
    let started = Instant::now();
    let load = Load::start(
        sc.addr,
        probes,
        LoadSpec {
            connections: 16,
            max_duration: total + Duration::from_secs(30),
            max_requests: u64::MAX,
            rate: Some(rate),
            timeout: Duration::from_secs(5),
        },
    );
    let mut samples = vec![sample(pid, Duration::ZERO, 0)];
    let mut version = 'A';
    let mut tick = 0u64;
    while started.elapsed() < total {
        tick += 1;
        tokio::time::sleep_until((started + Duration::from_secs(10 * tick)).into()).await;
        let at = started.elapsed();
        samples.push(sample(pid, at, load.sent()));
        // The faults of the chaos scenarios, recurring: a reload every 30 s, the app away for
        // 300 ms every 60 s, the JWKS endpoint away for 60 s of every 300 s.
        if tick % 3 == 0 {
            version = if version == 'A' { 'B' } else { 'A' };
            let tmp = sc.dir.path().join("access.yaml.tmp");
            std::fs::write(&tmp, scenarios::churn_manifests_with(version, &source)).expect("write manifests");
            std::fs::rename(&tmp, sc.manifests_path()).expect("rename manifests");
        }
        if tick % 6 == 0 {
            app.server.stop().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            app.server.restart().await;
        }
        match tick % 30 {
            24 => jwks.server.stop().await,
            0 => jwks.server.restart().await,
            _ => {}
        }
    }
    // The end of a pod's life: SIGTERM under load; the drain must not fail what is in flight.
    load.set_phase(DURING);
    let (status, _) = scenarios::terminate_and_wait(&mut sc, Duration::from_secs(15)).await;
    let report = load.finish().await;
    assert!(status.success(), "exit status {status:?}");
    scenarios::assert_never_wrongly_allowed(&report, &app);
    let text = summarise(&samples, &report, rate, distinct);
    println!("{text}");
    if let Ok(path) = std::env::var("SOAK_REPORT") {
        std::fs::write(path, &text).expect("write SOAK_REPORT");
    }
    let before = &report.phases[0];
    assert_eq!(before.failed(), 0, "soak: unexpected answers; examples: {:#?}", report.examples);
}

/// The soak's table (one line a minute) and summary, as markdown.
fn summarise(samples: &[Sample], report: &Report, rate: f64, distinct: usize) -> String {
    let hz = clock_ticks_per_second();
    let total = report.total();
    let mut out = String::new();
    let minutes = samples.last().map_or(0.0, |s| s.at.as_secs_f64() / 60.0);
    let _ = writeln!(
        out,
        "Soak: {minutes:.0} min at {rate:.0} req/s target ({:.0} achieved), {distinct} distinct tokens; {} requests, {} failed, {} wrongly allowed, {} wrongly denied; p99 {}.\n",
        total.sent() as f64 / report.elapsed.as_secs_f64(),
        total.sent(),
        report.phases[0].failed(),
        total.get(Outcome::WronglyAllowed),
        total.get(Outcome::WronglyDenied),
        crate::load::ms(report.phases[0].p99()),
    );
    let _ = writeln!(out, "| time | RSS | open fds | CPU per request | requests in window |\n|---|---|---|---|---|");
    let per_request = |a: &Sample, b: &Sample| -> f64 {
        let reqs = b.requests.saturating_sub(a.requests).max(1) as f64;
        (b.cpu_ticks - a.cpu_ticks) as f64 / hz / reqs * 1e6
    };
    let step = 6; // a line a minute (samples every 10 s)
    for w in samples.windows(step + 1).step_by(step) {
        let (a, b) = (&w[0], &w[step]);
        let _ = writeln!(
            out,
            "| {:.0} min | {:.1} MiB | {} | {:.0} µs | {} |",
            b.at.as_secs_f64() / 60.0,
            b.rss_kib as f64 / 1024.0,
            b.fds,
            per_request(a, b),
            b.requests - a.requests
        );
    }
    // After warm-up: the first fifth of the run (at least one minute) fills caches and pools.
    let warm = samples.len().div_ceil(5).max(7).min(samples.len().saturating_sub(1));
    let steady = &samples[warm..];
    if steady.len() >= 2 {
        let rss: Vec<f64> = steady.iter().map(|s| s.rss_kib as f64 / 1024.0).collect();
        let mean = rss.iter().sum::<f64>() / rss.len() as f64;
        let (lo, hi) = rss.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
        let fds: Vec<usize> = steady.iter().map(|s| s.fds).collect();
        let third = steady.len() / 3;
        let cpu = |s: &[Sample]| if s.len() >= 2 { per_request(&s[0], &s[s.len() - 1]) } else { f64::NAN };
        let _ = writeln!(
            out,
            "\nAfter warm-up ({:.0} s): RSS {lo:.1}–{hi:.1} MiB (mean {mean:.1}, {:+.1} % / {:+.1} % of it); open fds {}–{}; CPU per request {:.0} µs in the first third, {:.0} µs in the last.",
            steady[0].at.as_secs_f64(),
            (lo - mean) / mean * 100.0,
            (hi - mean) / mean * 100.0,
            fds.iter().min().unwrap_or(&0),
            fds.iter().max().unwrap_or(&0),
            cpu(&steady[..=third.max(1).min(steady.len() - 1)]),
            cpu(&steady[steady.len() - 1 - third.max(1).min(steady.len() - 1)..]),
        );
    }
    out
}
