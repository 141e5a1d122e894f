//! Chaos under load: real `portcullis-sidecar` processes on 127.0.0.1 with a bounded load
//! generator ([`load`]) while a fault is injected — config churn (file reloads and signed
//! pushes), the JWKS endpoint down then back with a rotated key, the app restarting in a loop,
//! SIGTERM during load. Every request carries its expected answer, so a wrongly allowed request
//! fails the test. The short versions run here, in `cargo test` (a few seconds each, one at a
//! time); the long ones and the soak are `tests/examples/reliability.rs`, run by
//! `bash tests/chaos/run.sh`, which writes the tables of docs/reliability.md. The operator and
//! API-server faults (scenario 4, [`cluster`]) need a cluster: ignored unless asked for, as
//! every cluster test (`-- --ignored`, which tests/run.sh passes when it has one).

mod cluster;
#[path = "../common/mod.rs"]
mod common;
mod load;
mod scenarios;
mod servers;

use scenarios::Knobs;

/// The scenarios share two cores with the rest of the test run; one at a time keeps their
/// load from starving each other into timeouts.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// Behaviour: config churn under load (issue 14, scenario 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_churn_by_file_reloads_decides_each_request_by_one_version() {
    let _one = SERIAL.lock().await;
    scenarios::emit(&scenarios::config_churn_files(&Knobs::short()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_churn_by_signed_pushes_decides_each_request_by_one_version() {
    let _one = SERIAL.lock().await;
    scenarios::emit(&scenarios::config_churn_pushes(&Knobs::short()).await);
}

// Behaviour: B-METRIC-5 (docs/behaviour.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_down_keeps_cached_keys_and_a_rotated_key_is_picked_up() {
    let _one = SERIAL.lock().await;
    scenarios::emit(&scenarios::jwks_down_then_rotated(&Knobs::short()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_restarting_in_a_loop_gives_502_with_cors_and_recovers() {
    let _one = SERIAL.lock().await;
    scenarios::emit(&scenarios::app_restart_loop(&Knobs::short()).await);
}

// Behaviour: B-FWD-7 (docs/behaviour.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_fails_no_in_flight_request() {
    let _one = SERIAL.lock().await;
    scenarios::emit(&scenarios::sigterm_during_load(&Knobs::short()).await);
}

// Behaviour: operator leader killed mid-push, API server restarted, sidecar restarted (issue 14,
// scenario 4).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster: set KUBECONFIG"]
async fn operator_and_api_server_faults_leave_every_sidecar_on_one_config() {
    let _one = SERIAL.lock().await;
    for row in cluster::operator_and_api_server_faults(&Knobs::short()).await {
        scenarios::emit(&row);
    }
}
