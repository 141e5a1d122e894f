//! The chaos scenarios: each starts a real sidecar and the servers it needs, runs the load
//! generator, injects its fault, asserts what must hold (0 wrongly allowed always; the
//! scenario's own guarantees) and returns a [`Row`] of the figures for docs/reliability.md.

// Shared by the chaos tests (tests/tests/chaos/main.rs) and the long-run program
// (tests/examples/reliability.rs); each uses a part of it.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use jsonwebtoken::Algorithm;

use crate::common::*;
use crate::load::{self, Judge, Load, LoadSpec, Outcome, Probe, Reply, Report, AFTER, BEFORE, DURING, LATE};
use crate::servers::{App, Jwks, APP_BODY, MUST_NOT_ARRIVE};

/// The chaos scenarios measure the binary (`PORTCULLIS_SIDECAR_BIN` may name a release build)
/// and signal it: always a process, never the in-process sidecar.
pub fn sidecar(manifests: &str, upstream: &str) -> SidecarBuilder {
    crate::common::sidecar(manifests, upstream).process()
}

/// Sizes of a run: the short ones for `cargo test`, the long ones for the published table.
pub struct Knobs {
    /// Length of the load before and after the fault.
    pub phase: Duration,
    pub connections: usize,
    pub reloads: usize,
    pub pushes: usize,
    pub restarts: usize,
    /// How long the JWKS endpoint stays down.
    pub jwks_down: Duration,
}

impl Knobs {
    pub fn short() -> Self {
        Self {
            phase: Duration::from_millis(1500),
            connections: 8,
            reloads: 5,
            pushes: 20,
            restarts: 3,
            jwks_down: Duration::from_secs(3),
        }
    }

    /// The published sizes (issue 14: 100 reloads, 100 pushes); `CHAOS_PHASE_SECS` and
    /// `CHAOS_CONNECTIONS` change the load's length and width.
    pub fn long() -> Self {
        let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
        Self {
            phase: Duration::from_secs(env("CHAOS_PHASE_SECS", 10)),
            connections: env("CHAOS_CONNECTIONS", 32) as usize,
            reloads: 100,
            pushes: 100,
            restarts: 20,
            jwks_down: Duration::from_secs(20),
        }
    }

    pub fn spec(&self, timeout: Duration) -> LoadSpec {
        LoadSpec {
            connections: self.connections,
            // A bound far beyond any scenario's plan: the scenario stops the load itself.
            max_duration: Duration::from_secs(1800),
            max_requests: 50_000_000,
            rate: None,
            timeout,
        }
    }
}

/// One line of the chaos table.
pub struct Row {
    pub scenario: String,
    pub load: String,
    pub report: Report,
    pub recovery: String,
    pub notes: String,
    /// The failed count when not every unexpected answer is a failure (after SIGTERM, refused
    /// connects are the point).
    pub failed: Option<u64>,
}

/// Prints the row (visible with `--nocapture`) and appends it to `$CHAOS_REPORT` when set.
pub fn emit(row: &Row) {
    let t = row.report.total();
    let before = &row.report.phases[BEFORE as usize];
    let during = &row.report.phases[DURING as usize];
    let line = format!(
        "| {} | {} | {} | {} | {} | {} | {} / {} | {} | {} |",
        row.scenario,
        row.load,
        t.sent(),
        row.failed.unwrap_or(t.failed()),
        t.get(Outcome::WronglyAllowed),
        t.get(Outcome::WronglyDenied),
        load::ms(before.p99()),
        load::ms(during.p99()),
        row.recovery,
        row.notes
    );
    println!("{line}");
    if row.failed.unwrap_or(t.failed()) > 0 {
        for e in &row.report.examples {
            println!("    e.g. {e}");
        }
    }
    if let Ok(path) = std::env::var("CHAOS_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open CHAOS_REPORT");
        writeln!(f, "{line}").expect("write CHAOS_REPORT");
    }
}

pub fn load_label(k: &Knobs, report: &Report) -> String {
    let secs = report.elapsed.as_secs_f64();
    format!("{} conns, {:.0} req/s, {:.0} s", k.connections, report.total().sent() as f64 / secs, secs)
}

// === Judges ===

pub const HOST: &str = "api.mysite.com";
pub const ORIGIN: &str = "https://example.com";

pub fn from_app(r: &Reply) -> bool {
    r.body.as_ref() == APP_BODY
}

fn describe(r: &Reply) -> String {
    format!("status {} body {:.120}", r.status, String::from_utf8_lossy(&r.body))
}

/// Must reach the app and answer its 200.
pub fn allow() -> Judge {
    Arc::new(|r| match r.status {
        200 if from_app(r) => (Outcome::Ok, String::new()),
        401 | 403 => (Outcome::WronglyDenied, describe(r)),
        _ => (Outcome::Failed, describe(r)),
    })
}

/// Must be refused with `status` by the sidecar; anything that reached the app, a 2xx/3xx, or
/// an upstream error (the request was forwarded) is wrongly allowed.
pub fn deny(status: u16) -> Judge {
    Arc::new(move |r| {
        if from_app(r) || (200..400).contains(&r.status) || matches!(r.status, 502 | 504) {
            (Outcome::WronglyAllowed, describe(r))
        } else if r.status == status {
            (Outcome::Ok, String::new())
        } else {
            (Outcome::Failed, describe(r))
        }
    })
}

/// A preflight the sidecar answers itself, granting `ORIGIN`.
pub fn preflight_answered() -> Judge {
    Arc::new(|r| {
        let granted = r.header("access-control-allow-origin") == Some(ORIGIN);
        if from_app(r) {
            (Outcome::WronglyAllowed, describe(r))
        } else if matches!(r.status, 200 | 204) && granted {
            (Outcome::Ok, String::new())
        } else {
            (Outcome::Failed, describe(r))
        }
    })
}

/// The user and service tokens every scenario sends, and a token of a key never trusted.
pub struct Tokens {
    pub alice: String,
    pub contractor: String,
    pub untrusted: String,
}

impl Tokens {
    pub fn new() -> Self {
        // A key generated now can never be in any JWKS; it claims the kid of a trusted key, so
        // the sidecar must check the signature, not just find a key.
        let (_, der) = portcullis_crds::push::SigningKey::generate().expect("generate key");
        let mut header = jsonwebtoken::Header::new(Algorithm::EdDSA);
        header.kid = Some("ed-1".into());
        let untrusted = jsonwebtoken::encode(
            &header,
            &claims("alice@mysite.com", 3600),
            &jsonwebtoken::EncodingKey::from_ed_der(&der),
        )
        .expect("sign");
        Self {
            alice: mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("alice@mysite.com", 3600)),
            contractor: mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("contractor@mysite.com", 3600)),
            untrusted,
        }
    }
}

/// Host and Origin of every probe, then `extra`.
fn headers<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    [("host", HOST), ("origin", ORIGIN)].into_iter().chain(extra.iter().copied()).collect()
}

/// The mix every scenario sends, with `user` judged by `user_judge` (scenarios differ in what
/// a valid user may get while the fault lasts).
pub fn base_probes(t: &Tokens, user_judge: Judge, path: &str) -> Vec<Probe> {
    let deny_marker = (MUST_NOT_ARRIVE, "1");
    let cookie = format!("CF_Authorization={}", t.alice);
    vec![
        Probe::new("valid user (cookie)", Method::GET, path, &headers(&[("cookie", &cookie)]), user_judge.clone()),
        Probe::new("no credentials", Method::GET, path, &headers(&[deny_marker]), deny(401)),
        Probe::new(
            "valid service token",
            Method::GET,
            path,
            &headers(&[("cf-access-client-id", TOKEN_ID), ("cf-access-client-secret", TOKEN_SECRET)]),
            user_judge.clone(),
        ),
        Probe::new(
            "never-trusted key, trusted kid",
            Method::GET,
            path,
            &headers(&[("cf-access-jwt-assertion", &t.untrusted), deny_marker]),
            deny(401),
        ),
        Probe::new(
            "valid user (header)",
            Method::GET,
            path,
            &headers(&[("cf-access-jwt-assertion", &t.alice)]),
            user_judge,
        ),
        Probe::new(
            "blocked user",
            Method::GET,
            path,
            &headers(&[("cf-access-jwt-assertion", &t.contractor), deny_marker]),
            deny(403),
        ),
        Probe::new(
            "wrong service-token secret",
            Method::GET,
            path,
            &headers(&[("cf-access-client-id", TOKEN_ID), ("cf-access-client-secret", "wrong-secret"), deny_marker]),
            deny(401),
        ),
        Probe::new(
            "preflight",
            Method::OPTIONS,
            path,
            &headers(&[("access-control-request-method", "GET"), deny_marker]),
            preflight_answered(),
        ),
    ]
}

/// Asserts what every scenario must hold and says what went wrong.
pub fn assert_never_wrongly_allowed(report: &Report, app: &App) {
    let t = report.total();
    assert_eq!(
        (t.get(Outcome::WronglyAllowed), app.leaked()),
        (0, 0),
        "wrongly allowed requests (by answer, by the app's count); examples: {:#?}",
        report.examples
    );
}

pub fn assert_no_failures(report: &Report, what: &str) {
    let t = report.total();
    assert_eq!(
        t.failed(),
        0,
        "{what}: {} of {} requests failed; examples: {:#?}",
        t.failed(),
        t.sent(),
        report.examples
    );
}

/// The value of one sample line (`name{labels}` exactly as exposed) in a metrics text.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn metric_of(sc: &Sidecar, series: &str) -> f64 {
    metric(&sc.metrics().await, series).unwrap_or(0.0)
}

/// The fault is over: half a phase more of load, then the report.
async fn after_the_fault(load: Load, k: &Knobs) -> Report {
    load.set_phase(AFTER);
    tokio::time::sleep(k.phase / 2).await;
    load.finish().await
}

// === Scenario 1: config churn ===

/// Two configurations that answer every probe differently in a way one answer shows: A admits
/// `@mysite.com` and exposes `X-Version-A`, caches preflights 600 s and allows GET, POST; B
/// admits `@mysite.org`, exposes `X-Version-B`, caches 601 s and also allows PUT. An answer
/// mixing the two (a 200 for alice that exposes B) was decided by two versions.
pub fn churn_manifests(version: char) -> String {
    churn_manifests_with(version, &inline_jwks())
}

/// [`churn_manifests`] with the keys from `jwks_source` (the soak uses a JWKS endpoint).
pub fn churn_manifests_with(version: char, jwks_source: &str) -> String {
    let (domain, max_age, methods) = match version {
        'A' => ("mysite.com", 600, "[GET, POST]"),
        _ => ("mysite.org", 601, "[GET, POST, PUT]"),
    };
    let cors = format!(
        "  cors:\n    allowedOrigins: [\"{ORIGIN}\"]\n    allowedMethods: {methods}\n    allowedHeaders: [office]\n    allowCredentials: true\n    maxAge: {max_age}\n    exposedHeaders: [X-Version-{version}]\n"
    );
    seed_manifests(jwks_source, &cors, "").replace("emailDomain: mysite.com", &format!("emailDomain: {domain}"))
}

pub fn version_of(r: &Reply) -> Option<char> {
    match r.header("access-control-expose-headers")? {
        "X-Version-A" => Some('A'),
        "X-Version-B" => Some('B'),
        _ => None,
    }
}

/// Status `a` under version A, `b` under B, and the answer names the same version; with `app_may_be_down`, a 502/503/504 carrying CORS headers also passes
/// where the version admits the request (it was forwarded and the app was away).
pub fn versioned_with(a: u16, b: u16, app_may_be_down: bool) -> Judge {
    Arc::new(move |r| {
        let v = version_of(r);
        let want = match v {
            Some('A') => Some(a),
            Some('B') => Some(b),
            _ => None,
        };
        let want_allowed = want.map_or(a == 200 && b == 200, |w| w == 200);
        let unavailable = matches!(r.status, 502..=504) && r.header("access-control-allow-origin") == Some(ORIGIN);
        let ok = want == Some(r.status) || (app_may_be_down && unavailable && want_allowed);
        let forwarded = r.status == 200 || from_app(r) || matches!(r.status, 502 | 504);
        let why = || format!("version {v:?}, {}", describe(r));
        if ok && (r.status != 200 || from_app(r)) {
            (Outcome::Ok, String::new())
        } else if forwarded && !want_allowed {
            (Outcome::WronglyAllowed, why())
        } else if matches!(r.status, 401 | 403) && want_allowed {
            (Outcome::WronglyDenied, why())
        } else {
            (Outcome::Failed, why())
        }
    })
}

/// A preflight answered whole by one version: max-age 600 without PUT, or 601 with it.
fn versioned_preflight() -> Judge {
    Arc::new(|r| {
        let age = r.header("access-control-max-age");
        let put = r.header("access-control-allow-methods").is_some_and(|m| m.contains("PUT"));
        let one_version = matches!((age, put), (Some("600"), false) | (Some("601"), true));
        if from_app(r) {
            (Outcome::WronglyAllowed, describe(r))
        } else if matches!(r.status, 200 | 204) && one_version {
            (Outcome::Ok, String::new())
        } else {
            (Outcome::Failed, format!("max-age {age:?}, PUT allowed {put}, {}", describe(r)))
        }
    })
}

pub fn churn_probes(t: &Tokens, app_may_be_down: bool) -> Vec<Probe> {
    churn_probes_with_token(t, (TOKEN_ID, TOKEN_SECRET), app_may_be_down)
}

/// [`churn_probes`] with the service token `(client id, client secret)` (on a cluster the
/// operator mints it).
pub fn churn_probes_with_token(t: &Tokens, token: (&str, &str), app_may_be_down: bool) -> Vec<Probe> {
    let versioned = |a, b| versioned_with(a, b, app_may_be_down);
    let bob = mint("rsa.pem", Algorithm::RS256, Some("rsa-1"), claims("bob@mysite.org", 3600));
    let marker = (MUST_NOT_ARRIVE, "1");
    vec![
        Probe::new(
            "alice (A admits)",
            Method::GET,
            "/",
            &headers(&[("cf-access-jwt-assertion", &t.alice)]),
            versioned(200, 403),
        ),
        Probe::new(
            "bob (B admits)",
            Method::GET,
            "/",
            &headers(&[("cf-access-jwt-assertion", &bob)]),
            versioned(403, 200),
        ),
        Probe::new("no credentials", Method::GET, "/", &headers(&[marker]), versioned(401, 401)),
        Probe::new(
            "never-trusted key",
            Method::GET,
            "/",
            &headers(&[("cf-access-jwt-assertion", &t.untrusted), marker]),
            versioned(401, 401),
        ),
        Probe::new(
            "service token",
            Method::GET,
            "/",
            &headers(&[("cf-access-client-id", token.0), ("cf-access-client-secret", token.1)]),
            versioned(200, 200),
        ),
        Probe::new(
            "blocked user",
            Method::GET,
            "/",
            &headers(&[("cf-access-jwt-assertion", &t.contractor), marker]),
            versioned(403, 403),
        ),
        Probe::new(
            "preflight",
            Method::OPTIONS,
            "/",
            &headers(&[("access-control-request-method", "GET"), marker]),
            versioned_preflight(),
        ),
    ]
}

/// How long each change took to be in force, for the recovery column.
fn apply_times(times: &[Duration], what: &str) -> String {
    let max = times.iter().max().copied().unwrap_or_default();
    let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
    format!("{what} in force after {:.0} ms mean, {:.0} ms max", mean.as_secs_f64() * 1e3, max.as_secs_f64() * 1e3)
}

pub async fn config_churn_files(k: &Knobs) -> Row {
    let app = App::start().await;
    let t = Tokens::new();
    let sc = sidecar(&churn_manifests('A'), &app.url()).start().await;
    let ok_series = "portcullis_config_reloads_total{result=\"ok\"}";
    let mut loaded = metric_of(&sc, ok_series).await;
    let load = Load::start(sc.addr, churn_probes(&t, false), k.spec(Duration::from_secs(10)));
    tokio::time::sleep(k.phase).await;
    load.set_phase(DURING);
    let mut times = Vec::new();
    for i in 0..k.reloads {
        let version = if i % 2 == 0 { 'B' } else { 'A' };
        // Written whole and renamed into place, as `kubectl`/ConfigMap updates land: the
        // sidecar never reads a half-written file.
        let tmp = sc.dir.path().join("access.yaml.tmp");
        std::fs::write(&tmp, churn_manifests(version)).expect("write manifests");
        let written = Instant::now();
        std::fs::rename(&tmp, sc.manifests_path()).expect("rename manifests");
        let admin = sc.admin;
        let want = loaded + 1.0;
        eventually(Duration::from_secs(5), "the reload to apply", || async move {
            let m = get(&format!("http://{admin}/metrics"), &[]).await.ok()?.text();
            (metric(&m, ok_series)? >= want).then_some(())
        })
        .await;
        times.push(written.elapsed());
        loaded = want;
    }
    let report = after_the_fault(load, k).await;
    assert_never_wrongly_allowed(&report, &app);
    assert_no_failures(&report, "config churn (file reloads)");
    let errors = metric_of(&sc, "portcullis_config_reloads_total{result=\"error\"}").await;
    assert_eq!(errors, 0.0, "every rewrite of the file loads");
    Row {
        scenario: format!("1a. config churn: {} file reloads", k.reloads),
        load: load_label(k, &report),
        recovery: apply_times(&times, "each reload"),
        notes: "every answer matched one config version entirely".into(),
        report,
        failed: None,
    }
}

pub async fn config_churn_pushes(k: &Knobs) -> Row {
    use portcullis_crds::push::SigningKey;
    let app = App::start().await;
    let t = Tokens::new();
    let (key, _) = SigningKey::generate().expect("key");
    let sc = sidecar_without_manifests(&app.url(), &key.verifying_key().to_base64(), "shop", "chaos-0").await;
    let snapshots = [compile_manifests(&churn_manifests('A')), compile_manifests(&churn_manifests('B'))];
    // Sealed to this sidecar's boot and signed, as the operator sends them.
    let boot = boot_info(&sc).await;
    let push = |sequence: u64, which: usize| sealed_push(&key, &boot, sequence, "chaos-0", snapshots[which].clone());
    let url = format!("http://{}/config", sc.admin);
    let r = send_body("PUT", &url, &push(1, 0)).await.expect("first push");
    assert_eq!(r.status, 200, "{}", r.text());
    let load = Load::start(sc.addr, churn_probes(&t, false), k.spec(Duration::from_secs(10)));
    tokio::time::sleep(k.phase).await;
    load.set_phase(DURING);
    let mut times = Vec::new();
    for i in 0..k.pushes {
        let body = push(i as u64 + 2, (i + 1) % 2);
        let sent = Instant::now();
        let r = send_body("PUT", &url, &body).await.expect("push");
        assert_eq!(r.status, 200, "push {i}: {}", r.text());
        times.push(sent.elapsed());
        // Spread the pushes over the load rather than landing them in one burst.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = after_the_fault(load, k).await;
    assert_never_wrongly_allowed(&report, &app);
    assert_no_failures(&report, "config churn (signed pushes)");
    let accepted = metric_of(&sc, "portcullis_config_pushes_total{result=\"ok\"}").await;
    assert_eq!(accepted, (k.pushes + 1) as f64, "every push applied");
    Row {
        scenario: format!("1b. config churn: {} signed pushes", k.pushes),
        load: load_label(k, &report),
        recovery: apply_times(&times, "each push"),
        notes: "every answer matched one config version entirely".into(),
        report,
        failed: None,
    }
}

// === Scenario 2: JWKS endpoint down, back with a rotated key ===

pub async fn jwks_down_then_rotated(k: &Knobs) -> Row {
    let app = App::start().await;
    let t = Tokens::new();
    let jwks = Jwks::start(jwks_json()).await;
    let source = format!("        jwksUri: {}", jwks.uri());
    let sc = sidecar(&seed_manifests(&source, SEED_CORS, ""), &app.url()).start().await;
    let stale_series = format!("portcullis_jwks_stale{{issuer=\"{ISSUER}\"}}");
    // The new key's token: refused until the rotated JWKS is published, then admitted.
    let new_key = mint("rsa2.pem", Algorithm::RS256, Some("rsa-2"), claims("alice@mysite.com", 3600));
    let published = Arc::new(AtomicBool::new(false));
    let p = published.clone();
    let rotated_judge: Judge = Arc::new(move |r| {
        let admitted = r.status == 200 && from_app(r);
        match (admitted, r.status) {
            (true, _) if p.load(Ordering::SeqCst) => (Outcome::Ok, String::new()),
            (true, _) => {
                (Outcome::WronglyAllowed, format!("new kid admitted before it was published: {}", describe(r)))
            }
            (false, 401) => (Outcome::Ok, String::new()),
            _ => (Outcome::Failed, describe(r)),
        }
    });
    // Cached keys keep verifying: the valid user must get 200 through the outage.
    let url = sc.url("/");
    let alice = t.alice.clone();
    eventually(Duration::from_secs(10), "the first JWKS fetch", || {
        let (url, alice) = (url.clone(), alice.clone());
        async move {
            (get(&url, &[("host", HOST), ("cf-access-jwt-assertion", &alice)]).await.ok()?.status == 200).then_some(())
        }
    })
    .await;
    let load = Load::start(sc.addr, base_probes(&t, allow(), "/"), k.spec(Duration::from_secs(10)));
    tokio::time::sleep(k.phase).await;

    load.set_phase(DURING);
    jwks.server.stop().await;
    let down_at = Instant::now();
    // A token with a kid the sidecar does not know makes it refresh (api.md: at most once per
    // 30 s per issuer); the endpoint is down, so the issuer turns stale.
    let r = get(&url, &[("host", HOST), ("cf-access-jwt-assertion", &new_key)]).await.expect("answer");
    assert_eq!(r.status, 401, "{}", r.text());
    let admin = sc.admin;
    let series = stale_series.clone();
    eventually(Duration::from_secs(10), "the stale metric", || {
        let series = series.clone();
        async move {
            let m = get(&format!("http://{admin}/metrics"), &[]).await.ok()?.text();
            (metric(&m, &series)? == 1.0).then_some(())
        }
    })
    .await;
    assert!(sc.logs().contains("issuer is stale"), "a log line says the issuer is stale:\n{}", sc.logs());
    let stale_after = down_at.elapsed();
    let remaining = k.jwks_down.saturating_sub(down_at.elapsed());
    tokio::time::sleep(remaining).await;

    // Back, rotated: rsa-2 published beside rsa-1 (an overlapping rotation).
    let mut doc: serde_json::Value = serde_json::from_str(&jwks_json()).expect("jwks");
    let rsa2: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("keys/jwks-rsa2.json")).expect("fixture")).expect("jwks");
    doc["keys"].as_array_mut().expect("keys").retain(|k| k["kid"] == "rsa-1");
    doc["keys"].as_array_mut().expect("keys").push(rsa2["keys"][0].clone());
    *jwks.doc.lock().expect("lock") = doc.to_string();
    published.store(true, Ordering::SeqCst);
    jwks.server.restart().await;
    let back_at = Instant::now();
    load.set_phase(AFTER);
    // The unknown-kid refresh is rate-limited to once per 30 s: the new kid must be admitted
    // within that bound of the failed refresh (plus one poll).
    let new_key2 = new_key.clone();
    eventually(Duration::from_secs(40), "the rotated key to be picked up", || {
        let (url, tok) = (url.clone(), new_key2.clone());
        async move {
            let r = get(&url, &[("host", HOST), ("cf-access-jwt-assertion", &tok)]).await.ok()?;
            (r.status == 200).then_some(())
        }
    })
    .await;
    let picked_up = back_at.elapsed();
    let series = stale_series.clone();
    eventually(Duration::from_secs(5), "the stale metric to clear", || {
        let series = series.clone();
        async move {
            let m = get(&format!("http://{admin}/metrics"), &[]).await.ok()?.text();
            (metric(&m, &series)? == 0.0).then_some(())
        }
    })
    .await;
    assert!(sc.logs().contains("no longer stale"), "a log line says the issuer recovered:\n{}", sc.logs());
    // Load with the new key too, now that it is in force.
    let after = Load::start(
        sc.addr,
        vec![Probe::new(
            "rotated key",
            Method::GET,
            "/",
            &[("host", HOST), ("cf-access-jwt-assertion", &new_key)],
            rotated_judge,
        )],
        LoadSpec { connections: 2, ..k.spec(Duration::from_secs(10)) },
    );
    tokio::time::sleep(k.phase / 2).await;
    let rotated = after.finish().await;
    let mut report = load.finish().await;
    report.phases[AFTER as usize].merge(&rotated.total());
    assert_never_wrongly_allowed(&report, &app);
    assert_no_failures(&report, "JWKS endpoint down (cached keys must keep verifying)");
    Row {
        scenario: format!("2. JWKS endpoint down {:.0} s, back with a rotated key", k.jwks_down.as_secs_f64()),
        load: load_label(k, &report),
        recovery: format!(
            "new kid admitted {:.1} s after the endpoint was back (bound: 30 s unknown-kid rate limit)",
            picked_up.as_secs_f64()
        ),
        notes: format!(
            "cached keys verified throughout; `portcullis_jwks_stale` = 1 and a log line {:.1} s after the first failed fetch",
            stale_after.as_secs_f64()
        ),
        report,
        failed: None,
    }
}

// === Scenario 3: the app restarting in a loop ===

/// 200 from the app, or the sidecar's 502/503/504 carrying CORS headers for the caller.
fn allow_or_unavailable() -> Judge {
    Arc::new(|r| match r.status {
        200 if from_app(r) => (Outcome::Ok, String::new()),
        502..=504 if r.header("access-control-allow-origin") == Some(ORIGIN) => (Outcome::Ok, String::new()),
        502..=504 => (Outcome::Failed, format!("no CORS headers on the error: {}", describe(r))),
        401 | 403 => (Outcome::WronglyDenied, describe(r)),
        _ => (Outcome::Failed, describe(r)),
    })
}

pub async fn app_restart_loop(k: &Knobs) -> Row {
    let app = App::start().await;
    let t = Tokens::new();
    let upstream_timeout = Duration::from_secs(2);
    let sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &app.url())
        .arg("--upstream-timeout")
        .arg("2s")
        .arg("--connect-timeout")
        .arg("1s")
        .start()
        .await;
    // No answer within the upstream timeout (plus slack for a loaded machine) is a hang.
    let load = Load::start(sc.addr, base_probes(&t, allow_or_unavailable(), "/"), k.spec(upstream_timeout * 2));
    tokio::time::sleep(k.phase).await;
    load.set_phase(DURING);
    let (down, up) = (Duration::from_millis(300), Duration::from_millis(700));
    let url = sc.url("/");
    let mut recoveries = Vec::new();
    for _ in 0..k.restarts {
        app.server.stop().await;
        tokio::time::sleep(down).await;
        app.server.restart().await;
        let back = Instant::now();
        let alice = t.alice.clone();
        eventually(Duration::from_secs(5), "the app's answers to come through again", || {
            let (url, alice) = (url.clone(), alice.clone());
            async move {
                let r = get(&url, &[("host", HOST), ("cf-access-jwt-assertion", &alice)]).await.ok()?;
                (r.status == 200).then_some(())
            }
        })
        .await;
        recoveries.push(back.elapsed());
        tokio::time::sleep(up.saturating_sub(back.elapsed())).await;
    }
    let report = after_the_fault(load, k).await;
    assert_never_wrongly_allowed(&report, &app);
    assert_no_failures(&report, "app restarting (every answer a 200, or a 502/503/504 with CORS headers)");
    let during = &report.phases[DURING as usize];
    let errors = metric_of(&sc, "portcullis_upstream_errors_total{app=\"shop/api\",kind=\"connect\"}").await;
    let max = recoveries.iter().max().copied().unwrap_or_default();
    Row {
        scenario: format!("3. app restarting: {} × (down 300 ms, up 700 ms)", k.restarts),
        load: load_label(k, &report),
        recovery: format!("first 200 ≤ {:.0} ms after the app listened again", max.as_secs_f64() * 1e3),
        notes: format!(
            "502/503 with CORS while down ({errors:.0} connect errors counted); slowest answer {:.0} ms (upstream timeout {} s)",
            during.latency.max().as_secs_f64() * 1e3,
            upstream_timeout.as_secs()
        ),
        report,
        failed: None,
    }
}

// === Scenario 5: SIGTERM during load ===

/// Sends SIGTERM and waits (at most `bound`) for the process to exit: its status and how long
/// the drain took.
pub async fn terminate_and_wait(sc: &mut Sidecar, bound: Duration) -> (std::process::ExitStatus, Duration) {
    sc.terminate();
    let signalled = Instant::now();
    loop {
        if let Some(status) = sc.exit_status() {
            return (status, signalled.elapsed());
        }
        assert!(signalled.elapsed() < bound, "the sidecar did not exit within {bound:?} of SIGTERM");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn sigterm_during_load(k: &Knobs) -> Row {
    let app = App::start().await;
    let t = Tokens::new();
    let drain = Duration::from_secs(5);
    let mut sc = sidecar(&seed_manifests(&inline_jwks(), SEED_CORS, ""), &app.url())
        .arg("--drain-timeout")
        .arg("5s")
        .start()
        .await;
    // Half the requests wait 200 ms in the app, so SIGTERM always finds some in flight.
    let mut probes = base_probes(&t, allow(), "/");
    probes.extend(base_probes(&t, allow(), "/delay/200"));
    let load = Load::start(sc.addr, probes, k.spec(drain * 2));
    tokio::time::sleep(k.phase).await;
    // Every request started before this line is in flight or done when the signal lands.
    load.set_phase(DURING);
    let (status, exited_after) = terminate_and_wait(&mut sc, drain + Duration::from_secs(5)).await;
    load.set_phase(LATE);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let report = load.finish().await;
    assert!(status.success(), "the sidecar exits 0 after a drain: {status:?}\n{}", sc.logs());
    assert_never_wrongly_allowed(&report, &app);
    let before = &report.phases[BEFORE as usize];
    assert_eq!(
        before.failed(),
        0,
        "requests started before SIGTERM must all be answered; examples: {:#?}",
        report.examples
    );
    // After the signal, new connections are refused; any answer that did come must be right.
    let after = &report.phases[DURING as usize];
    let wrong_answers = after.get(Outcome::Failed) + after.get(Outcome::WronglyDenied);
    assert_eq!(wrong_answers, 0, "answers during the drain are correct; examples: {:#?}", report.examples);
    let refused = after.get(Outcome::ConnError) + report.phases[LATE as usize].get(Outcome::ConnError);
    let in_flight_failed = before.failed() + wrong_answers;
    let notes = format!(
        "0 of {} requests started before SIGTERM failed; {} answered correctly during the drain; {refused} refused after the listener closed (not failures)",
        before.sent(),
        after.sent() - after.get(Outcome::ConnError)
    );
    Row {
        scenario: "5. SIGTERM during load (--drain-timeout 5s)".into(),
        load: load_label(k, &report),
        recovery: format!("exited 0 after {:.0} ms (drain bound 5 s)", exited_after.as_secs_f64() * 1e3),
        notes,
        report,
        failed: Some(in_flight_failed),
    }
}

#[cfg(test)]
mod judges {
    use super::*;

    fn reply(status: u16, body: &[u8], headers: &[(&str, &str)]) -> Reply {
        let mut map = http::HeaderMap::new();
        for (k, v) in headers {
            map.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        Reply { status, headers: map, body: bytes::Bytes::copy_from_slice(body) }
    }

    #[test]
    fn a_refusal_that_reached_the_app_is_wrongly_allowed() {
        let j = deny(401);
        assert_eq!(j(&reply(401, b"{}", &[])).0, Outcome::Ok);
        assert_eq!(j(&reply(200, APP_BODY, &[])).0, Outcome::WronglyAllowed);
        assert_eq!(j(&reply(502, b"{}", &[])).0, Outcome::WronglyAllowed, "a 502 means it was forwarded");
        assert_eq!(j(&reply(403, b"{}", &[])).0, Outcome::Failed);
        assert_eq!(allow()(&reply(401, b"{}", &[])).0, Outcome::WronglyDenied);
    }

    #[test]
    fn an_answer_mixing_two_config_versions_is_caught() {
        let alice = versioned_with(200, 403, false);
        let a = [("access-control-expose-headers", "X-Version-A")];
        let b = [("access-control-expose-headers", "X-Version-B")];
        assert_eq!(alice(&reply(200, APP_BODY, &a)).0, Outcome::Ok);
        assert_eq!(alice(&reply(403, b"{}", &b)).0, Outcome::Ok);
        assert_eq!(alice(&reply(200, APP_BODY, &b)).0, Outcome::WronglyAllowed, "B's CORS with A's decision");
        assert_eq!(alice(&reply(403, b"{}", &a)).0, Outcome::WronglyDenied, "A's CORS with B's decision");
        assert_eq!(alice(&reply(200, APP_BODY, &[])).0, Outcome::WronglyAllowed, "no version at all");
        let preflight = versioned_preflight();
        let mixed = [("access-control-max-age", "600"), ("access-control-allow-methods", "GET,POST,PUT")];
        assert_eq!(preflight(&reply(204, b"", &mixed)).0, Outcome::Failed);
    }
}
