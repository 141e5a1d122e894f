//! Scenario 4 on the real API server: the operator leader SIGKILLed just after an edit, the API
//! server restarted, a sidecar restarted — while every sidecar serves load. The operator runs as
//! two host processes (leader + standby, as in tests/tests/operator_e2e.rs) and the sidecars as
//! host processes behind Pod objects whose status the test writes, so the load generator stays
//! on loopback (the rule) while the pushes, watches and Lease are the cluster's own.
//!
//! Restarting the API server needs the shared cluster (`../shared/k8s`, `PORTCULLIS_K8S_DIR`):
//! its `up.sh` starts whichever component is not running. On any other cluster that part is
//! reported as not run; when `PORTCULLIS_K8S_DIR` is set (tests/run.sh sets it for the shared
//! cluster) but does not match `KUBECONFIG`, the test fails instead.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::{Api, Client};
use portcullis_crds::v1alpha1::{AccessApplication, AccessServiceToken};
use serde_json::json;

use crate::common::cluster::{self, Operator};
use crate::common::*;
use crate::load::{Load, Probe, Report, AFTER, DURING};
use crate::scenarios::{self, Knobs, Row, Tokens};
use crate::servers::App;

const PODS: usize = 3;
/// A bound for anything the cluster should do within seconds; the lease bound is inside it.
const WAIT: Duration = Duration::from_secs(60);
const SERIES_OK: &str = "portcullis_operator_pushes_total{result=\"ok\"}";
const SERIES_UNCHANGED: &str = "portcullis_operator_pushes_total{result=\"unchanged\"}";

/// The chaos churn application (version `A` or `B`, see `scenarios::churn_manifests`) as an
/// AccessApplication selecting the test's pods.
fn application(ns: &str, version: char) -> serde_json::Value {
    let yaml = scenarios::churn_manifests(version);
    let first = yaml.split("\n---").next().expect("a first document");
    let doc: serde_json::Value = serde_yaml_ng::from_str(first).expect("the churn application");
    let mut spec = doc["spec"].clone();
    spec["selector"] = json!({"matchLabels": {"app": "api"}});
    json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
        "metadata": {"name": "api", "namespace": ns},
        "spec": spec,
    })
}

/// The version (`A`/`B`) a sidecar decides by now, read from one answer to alice.
async fn version_on(sc: &Sidecar, alice: &str) -> Option<char> {
    let url = sc.url("/");
    let headers = [("host", scenarios::HOST), ("origin", scenarios::ORIGIN), ("cf-access-jwt-assertion", alice)];
    let answer = get(&url, &headers).await.ok()?;
    match answer.headers.get("access-control-expose-headers").and_then(|v| v.to_str().ok()) {
        Some("X-Version-A") => Some('A'),
        Some("X-Version-B") => Some('B'),
        _ => None,
    }
}

/// How long until every sidecar decides by `version`, or `None` when that takes over `bound`.
async fn try_converge(sidecars: &[&Sidecar], alice: &str, version: char, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    for sc in sidecars {
        while version_on(sc, alice).await != Some(version) {
            if started.elapsed() > bound {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Some(started.elapsed())
}

/// Waits until every sidecar decides by `version`; returns how long that took.
async fn converge(sidecars: &[&Sidecar], alice: &str, version: char, what: &str) -> Duration {
    try_converge(sidecars, alice, version, WAIT)
        .await
        .unwrap_or_else(|| panic!("not every sidecar on version {version} within {WAIT:?} ({what})"))
}

async fn operator_pushes(op: &Operator) -> f64 {
    let m = op.metrics().await;
    scenarios::metric(&m, SERIES_OK).unwrap_or(0.0) + scenarios::metric(&m, SERIES_UNCHANGED).unwrap_or(0.0)
}

/// Load on each of `sidecars` (the connections split between them), judged per request.
struct Loads(Vec<Load>);

impl Loads {
    fn start(sidecars: &[&Sidecar], probes: &[Probe], k: &Knobs) -> Self {
        let each = (k.connections / sidecars.len()).max(1);
        let spec = crate::load::LoadSpec { connections: each, ..k.spec(Duration::from_secs(10)) };
        Self(sidecars.iter().map(|sc| Load::start(sc.addr, probes.to_vec(), spec.clone())).collect())
    }

    fn set_phase(&self, phase: u8) {
        self.0.iter().for_each(|l| l.set_phase(phase));
    }

    async fn finish(self, k: &Knobs) -> Report {
        self.set_phase(AFTER);
        tokio::time::sleep(k.phase / 2).await;
        let mut report = Report::default();
        for load in self.0 {
            report.merge(load.finish().await);
        }
        report
    }
}

/// Where the shared cluster's scripts and state are, when `KUBECONFIG` is that cluster.
fn shared_cluster() -> Option<(PathBuf, PathBuf)> {
    let dir = PathBuf::from(std::env::var("PORTCULLIS_K8S_DIR").ok()?);
    let state = PathBuf::from(std::env::var("PORTCULLIS_K8S_STATE").unwrap_or("/var/tmp/portcullis-k8s".into()));
    let ours = std::fs::canonicalize(std::env::var("KUBECONFIG").ok()?).ok()?
        == std::fs::canonicalize(state.join("admin.kubeconfig")).ok()?;
    (ours && dir.join("up.sh").exists()).then_some((dir, state))
}

/// Whether process `pid` has ended (gone, or a zombie its parent has not reaped yet).
fn ended(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Kills the API server (SIGKILL, by its PID file: a crash; a graceful stop waits up to a
/// minute for watches to drain) and starts it again with the cluster's `up.sh`; returns how
/// long it was away (from the signal to `/readyz` answering again).
async fn restart_api_server(client: &Client, dir: &std::path::Path, state: &std::path::Path) -> Duration {
    let pid = std::fs::read_to_string(state.join("run/kube-apiserver.pid")).expect("the API server's PID file");
    let pid = pid.trim().to_owned();
    let stopped = Instant::now();
    let status = std::process::Command::new("kill").args(["-KILL", &pid]).status().expect("kill");
    assert!(status.success(), "signalling the API server (PID {pid})");
    eventually(WAIT, "the API server to exit", || async { ended(&pid).then_some(()) }).await;
    let up = tokio::process::Command::new("bash")
        .arg(dir.join("up.sh"))
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .expect("run up.sh");
    assert!(up.success(), "up.sh could not start the API server again");
    eventually(WAIT, "the API server ready again", || async {
        let req = http::Request::get("/readyz").body(Vec::new()).ok()?;
        client.request_text(req).await.ok().filter(|t| t.trim() == "ok").map(|_| ())
    })
    .await;
    stopped.elapsed()
}

/// Starts again a replica whose process ended, as the kubelet restarts a container that exited
/// (a leader that cannot renew its Lease for `renew_deadline` exits on purpose); says whether
/// it had to.
async fn restart_if_exited(op: &mut Operator, ns: &str, user: &str) -> bool {
    if matches!(op.child.try_wait(), Ok(None)) {
        return false;
    }
    let name = op.name.clone();
    *op = Operator::start(ns, user, &name).await;
    true
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Runs the three faults and returns one row each.
pub async fn operator_and_api_server_faults(k: &Knobs) -> Vec<Row> {
    let setup = cluster::setup("chaos", "portcullis-chaos").await;
    let cluster::Setup { client, op_ns, ns, user, .. } = &setup;
    let (op_ns, ns, user) = (op_ns.as_str(), ns.as_str(), user.as_str());

    let mut leader = Operator::start(op_ns, user, "operator-a").await;
    let push_key = setup.push_public_key().await;
    let mut standby = Operator::start(op_ns, user, "operator-b").await;
    let first = eventually(WAIT, "a leader", || cluster::lease_holder(client, op_ns)).await;
    assert_eq!(first, "operator-a", "the first replica took the Lease");

    let app = App::start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut sidecars = cluster::running_sidecar_pods(&pods, ns, "api", PODS, &app.url(), &push_key).await;

    let tokens: Api<AccessServiceToken> = Api::namespaced(client.clone(), ns);
    let token_doc = json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessServiceToken",
        "metadata": {"name": "ci-token", "namespace": ns},
        "spec": {"duration": "8760h", "secretName": "ci-token-credentials"},
    });
    cluster::apply(&tokens, token_doc).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let id = cluster::secret_value(&secrets, "ci-token-credentials", "client-id").await;
    let secret = cluster::secret_value(&secrets, "ci-token-credentials", "client-secret").await;

    let apps: Api<AccessApplication> = Api::namespaced(client.clone(), ns);
    cluster::apply(&apps, application(ns, 'A')).await;
    let t = Tokens::new();
    let all: Vec<&Sidecar> = sidecars.iter().collect();
    converge(&all, &t.alice, 'A', "the first config").await;
    let probes = scenarios::churn_probes_with_token(&t, (&id, &secret), false);
    let mut rows = Vec::new();

    // 4a. The leader is killed (SIGKILL: no Lease hand-over) right after an edit, while its
    // pushes are in flight. The standby must take the Lease once it expires and bring every
    // sidecar to the edit; no sidecar may stay on the old version.
    let loads = Loads::start(&all, &probes, k);
    tokio::time::sleep(k.phase).await;
    loads.set_phase(DURING);
    cluster::apply(&apps, application(ns, 'B')).await;
    let edited = Instant::now();
    let _ = leader.child.kill();
    let killed_after = edited.elapsed();
    let _ = leader.child.wait();
    let mut at_kill = Vec::new();
    for sc in &all {
        at_kill.push(version_on(sc, &t.alice).await.unwrap_or('?'));
    }
    eventually(WAIT, "the standby to lead", || async {
        (cluster::lease_holder(client, op_ns).await.as_deref() == Some("operator-b")).then_some(())
    })
    .await;
    let took_over = edited.elapsed();
    converge(&all, &t.alice, 'B', "after the leader was killed").await;
    let converged = edited.elapsed();
    // The new leader also handles the next edit.
    cluster::apply(&apps, application(ns, 'A')).await;
    let next_edit = converge(&all, &t.alice, 'A', "an edit under the new leader").await;
    let report = loads.finish(k).await;
    scenarios::assert_never_wrongly_allowed(&report, &app);
    scenarios::assert_no_failures(&report, "leader killed mid-push");
    let at_kill: String = at_kill.into_iter().collect();
    rows.push(Row {
        scenario: format!("4a. operator leader SIGKILLed {} after an edit ({PODS} sidecars)", ms(killed_after)),
        load: scenarios::load_label(k, &report),
        recovery: format!(
            "standby led after {:.1} s (lease 15 s); all sidecars on the edit after {:.1} s",
            took_over.as_secs_f64(),
            converged.as_secs_f64()
        ),
        notes: format!(
            "versions at the kill: {at_kill}; every sidecar ended on the edit; the next edit in force everywhere {}",
            ms(next_edit)
        ),
        report,
        failed: None,
    });

    // 4b. The API server restarts. Sidecars keep deciding by what they run (no request may
    // fail), the operator's watches resume (an edit afterwards reaches every sidecar), and it
    // does not push again what every sidecar already acknowledged.
    match shared_cluster() {
        Some((dir, state)) => {
            let loads = Loads::start(&all, &probes, k);
            tokio::time::sleep(k.phase).await;
            loads.set_phase(DURING);
            let pushes_before = operator_pushes(&standby).await;
            let away = restart_api_server(client, &dir, &state).await;
            // A leader away from the API server past its renew deadline exits; the kubelet
            // would start it again.
            let restarted = restart_if_exited(&mut standby, op_ns, user).await;
            let pushes_before = if restarted { 0.0 } else { pushes_before };
            // Long enough for the watches to have re-listed: any push they cause shows by then.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let repushed = operator_pushes(&standby).await - pushes_before;
            assert!(repushed <= PODS as f64, "a re-push storm after the API server restart: {repushed} pushes");
            let edited = Instant::now();
            cluster::apply(&apps, application(ns, 'B')).await;
            // The operator's watches must resume and bring the edit. On this cluster they may
            // not within a minute: after the restart the API server can answer every re-list
            // with a resource version its watch cache calls too old (410 Expired, again at each
            // retry; KEP-1904's progress notifications are what ends that, and the shared
            // cluster's etcd runs without them). Then the replica's /healthz must fail (its
            // watches have kept failing past --watch-failure-limit, 30 s here), the replica is
            // restarted as the kubelet's liveness probe would, and the edit must arrive after.
            let resumed = try_converge(&all, &t.alice, 'B', WAIT).await;
            if resumed.is_none() {
                let op = &standby;
                eventually(WAIT, "/healthz to fail while the watches keep failing", || async {
                    (op.healthz().await == 503).then_some(())
                })
                .await;
                standby.stop();
                standby = Operator::start(op_ns, user, "operator-b").await;
                converge(&all, &t.alice, 'B', "an edit after the API server restart and an operator restart").await;
            }
            let in_force = edited.elapsed();
            let report = loads.finish(k).await;
            scenarios::assert_never_wrongly_allowed(&report, &app);
            scenarios::assert_no_failures(&report, "API server restarted");
            rows.push(Row {
                scenario: "4b. API server killed and started again (SIGKILL, then up.sh)".into(),
                load: scenarios::load_label(k, &report),
                recovery: format!(
                    "API server away {:.1} s; the next edit on every sidecar {}{}",
                    away.as_secs_f64(),
                    ms(in_force),
                    if resumed.is_some() {
                        " (watches resumed)"
                    } else {
                        " — watches did not resume within 60 s (410 Expired at every re-list); /healthz failed, in force after the restart"
                    }
                ),
                notes: format!(
                    "pushes sent in the 5 s after it was back: {repushed} (no re-push storm); the leader {}",
                    if restarted { "exited (renew deadline) and was started again" } else { "kept its Lease" }
                ),
                report,
                failed: None,
            });
        }
        None => {
            // tests/run.sh names the shared cluster when KUBECONFIG is it: then this must run.
            let why = "4b. API server restart: not run (KUBECONFIG is not the shared cluster of PORTCULLIS_K8S_DIR)";
            assert!(std::env::var_os("PORTCULLIS_K8S_DIR").is_none(), "{why}");
            println!("{why}");
        }
    }
    let version = version_on(all[0], &t.alice).await.expect("a version");

    // 4c. A sidecar restarts (its config is gone with the process). Load runs on the other
    // two; the restarted one must be pushed again soon after it answers.
    let others: Vec<&Sidecar> = sidecars[1..].iter().collect();
    let loads = Loads::start(&others, &probes, k);
    tokio::time::sleep(k.phase).await;
    loads.set_phase(DURING);
    let (traffic, admin) = (sidecars[0].addr.port(), sidecars[0].admin.port());
    drop(sidecars.remove(0));
    let again = sidecar_without_manifests_on(&app.url(), &push_key, ns, "api-0", traffic, admin).await;
    let answering = Instant::now();
    cluster::set_running(&pods, "api-0", 1).await;
    converge(&[&again], &t.alice, version, "the restarted sidecar").await;
    let pushed_again = answering.elapsed();
    sidecars.insert(0, again);
    let report = loads.finish(k).await;
    scenarios::assert_never_wrongly_allowed(&report, &app);
    scenarios::assert_no_failures(&report, "a sidecar restarted");
    rows.push(Row {
        scenario: "4c. a sidecar restarted (load on the other two)".into(),
        load: scenarios::load_label(k, &report),
        recovery: format!("its config back {} after it answered (Pod restart count written at once)", ms(pushed_again)),
        notes: "the others undisturbed".into(),
        report,
        failed: None,
    });

    drop(standby);
    drop(sidecars);
    setup.teardown().await;
    rows
}
