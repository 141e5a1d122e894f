//! Propagation benchmark (not a test): against the cluster `KUBECONFIG` names, 100 sidecar
//! processes behind Pod objects and one operator; measures the time from an AccessApplication
//! update (the API server's answer to the apply) to each sidecar enforcing it, observed from
//! outside by requests. Then 1,000 applications, and the operator's resident memory.
//!
//! Run with release binaries (the numbers are for them):
//!   cargo build --release --workspace --bins
//!   KUBECONFIG=… cargo bench -p portcullis-tests --bench propagation [-- SIDECARS ROUNDS APPS PER_NAMESPACE]
//!
//! With `--real-pods`, the sidecars are real pods instead (the container the injection webhook
//! adds, image `localhost/portcullis-sidecar:dev` or PORTCULLIS_SIDECAR_IMAGE, e.g. from
//! tests/cluster/images.sh), reached at their pod IPs: the cluster needs nodes, and this machine
//! must reach its pod network (the shared test cluster's is).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::cluster::{self, Operator};
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use portcullis_crds::v1alpha1::AccessApplication;
use serde_json::json;

/// How often each sidecar is asked whether it enforces the new version yet.
const POLL: Duration = Duration::from_millis(10);

fn application(namespace: &str, name: &str, domain: &str, selector: &str) -> serde_json::Value {
    json!({
        "apiVersion": "access.portcullis.dev/v1alpha1", "kind": "AccessApplication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": {"matchLabels": {"app": selector}},
            "domains": [domain],
            "policies": [{"name": "staff", "action": "Allow", "include": [{"emailDomain": "mysite.com"}]}],
        },
    })
}

/// A sidecar (its traffic address `base`) enforcing an application with `host` answers 401
/// (known host, no credentials); one that does not answers 404.
async fn enforces(base: &str, host: &str) -> bool {
    matches!(get(&format!("{base}/"), &[("host", host)]).await, Ok(a) if a.status == 401)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let real_pods = std::env::args().any(|a| a == "--real-pods");
    let sidecar_count = args.first().copied().unwrap_or(100);
    let rounds = args.get(1).copied().unwrap_or(20);
    let app_count = args.get(2).copied().unwrap_or(1000);
    let setup = cluster::setup("propagation bench", "portcullis-bench").await;
    let cluster::Setup { client, op_ns, ns, user, .. } = &setup;
    let mut operator = Operator::start(op_ns, user, "operator-bench").await;
    let key = setup.push_public_key().await;
    let rss_idle = operator.rss_kib();

    let up = Upstream::start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    // The processes (process mode) live until the end; the addresses are what is measured.
    let (_processes, sidecars) = if real_pods {
        let image =
            std::env::var("PORTCULLIS_SIDECAR_IMAGE").unwrap_or_else(|_| "localhost/portcullis-sidecar:dev".into());
        let started = Instant::now();
        let addresses = cluster::injected_pods(&pods, ns, "web", sidecar_count, &image, &key).await;
        eprintln!("{sidecar_count} real sidecar pods running after {:.1} s", started.elapsed().as_secs_f64());
        (Vec::new(), addresses)
    } else {
        let processes = cluster::running_sidecar_pods(&pods, ns, "web", sidecar_count, &up.url(), &key).await;
        eprintln!("{sidecar_count} sidecars running behind Pod objects");
        let addresses = processes.iter().map(|sc| sc.url("")).collect::<Vec<_>>();
        (processes, addresses)
    };

    let apps: Api<AccessApplication> = Api::namespaced(client.clone(), ns);
    cluster::apply(&apps, application(ns, "web", "v0.mysite.com", "web")).await;
    for sc in &sidecars {
        eventually(Duration::from_secs(60), "first config", || async {
            enforces(sc, "v0.mysite.com").await.then_some(())
        })
        .await;
    }

    let mut each = Vec::new();
    let mut all = Vec::new();
    for round in 1..=rounds {
        let host = format!("v{round}.mysite.com");
        let started = Instant::now();
        cluster::apply(&apps, application(ns, "web", &host, "web")).await;
        let waits = sidecars.iter().map(|sc| {
            let host = host.clone();
            async move {
                while !enforces(sc, &host).await {
                    assert!(started.elapsed() < Duration::from_secs(30), "no propagation within 30 s");
                    tokio::time::sleep(POLL).await;
                }
                started.elapsed()
            }
        });
        let times = futures::future::join_all(waits).await;
        let slowest = times.iter().copied().max().unwrap_or_default();
        eprintln!("round {round}: all {sidecar_count} sidecars enforce the update after {}", ms(slowest));
        each.extend(times);
        all.push(slowest);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    each.sort();
    all.sort();
    let rss_with_sidecars = operator.rss_kib();

    // Many applications: spread over namespaces of 50 (a reconcile compiles its namespace).
    let started = Instant::now();
    let per_namespace = args.get(3).copied().unwrap_or(50).max(1);
    let mut namespaces = Vec::new();
    for n in 0..app_count.div_ceil(per_namespace) {
        let name = format!("{ns}-{n}");
        setup.namespace(&name).await;
        let api: Api<AccessApplication> = Api::namespaced(client.clone(), &name);
        for i in 0..per_namespace.min(app_count - n * per_namespace) {
            let app = application(&name, &format!("app-{i}"), &format!("app-{i}.ns-{n}.mysite.com"), "none");
            cluster::apply(&api, app).await;
        }
        namespaces.push(name);
    }
    let created = started.elapsed();
    let mut peak = 0;
    let everything: Api<AccessApplication> = Api::all(client.clone());
    let ready = eventually(Duration::from_secs(600), "every application reconciled", || {
        let everything = everything.clone();
        let namespaces = namespaces.clone();
        peak = peak.max(operator.rss_kib());
        async move {
            let list = everything.list(&ListParams::default()).await.ok()?;
            let ours: Vec<_> = list
                .items
                .iter()
                .filter(|a| namespaces.iter().any(|n| a.metadata.namespace.as_deref() == Some(n.as_str())))
                .collect();
            let done = ours
                .iter()
                .filter(|a| a.status.as_ref().and_then(|s| s.observed_generation) == a.metadata.generation)
                .count();
            (done == app_count).then_some(started.elapsed())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let rss_apps = operator.rss_kib();

    let kind = if real_pods { "real pods" } else { "processes behind Pod objects" };
    println!("## Propagation ({sidecar_count} sidecars as {kind}, {rounds} updates, poll every {POLL:?})");
    if each.is_empty() {
        println!("(no sidecars or no updates: propagation not measured)");
    } else {
        report_propagation(&each, &all);
    }
    println!("## Operator memory (VmRSS)");
    println!("idle: {} MiB · with {sidecar_count} sidecars: {} MiB", rss_idle / 1024, rss_with_sidecars / 1024);
    println!(
        "{app_count} applications in {} namespaces: created in {:.1} s, all reconciled after {:.1} s; RSS {} MiB (peak seen {} MiB)",
        namespaces.len(),
        created.as_secs_f64(),
        ready.as_secs_f64(),
        rss_apps / 1024,
        peak.max(rss_apps) / 1024
    );
    operator.stop();
    setup.teardown().await;
}

fn report_propagation(each: &[Duration], all: &[Duration]) {
    println!(
        "per sidecar: p50 {} · p99 {} · max {}",
        ms(percentile(each, 0.5)),
        ms(percentile(each, 0.99)),
        ms(each[each.len() - 1])
    );
    println!(
        "all sidecars of an update: p50 {} · p99 {} · max {}",
        ms(percentile(all, 0.5)),
        ms(percentile(all, 0.99)),
        ms(all[all.len() - 1])
    );
}
