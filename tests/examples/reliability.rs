//! The long chaos run and the soak (docs/reliability.md), as a program rather than ignored
//! tests, so that no `cargo test -- --ignored` sweep starts a 30-minute soak by accident. Run by
//! `bash tests/chaos/run.sh [chaos|soak]`; the scenarios are the ones `cargo test` runs short
//! (tests/tests/chaos/), at the published sizes.

#[path = "../tests/chaos/cluster.rs"]
mod cluster;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/chaos/load.rs"]
mod load;
#[path = "../tests/chaos/scenarios.rs"]
mod scenarios;
#[path = "../tests/chaos/servers.rs"]
mod servers;
#[path = "../tests/chaos/soak.rs"]
mod soak;

use std::process::ExitCode;
use std::time::Duration;

use scenarios::Knobs;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("chaos") => {
            let k = Knobs::long();
            scenarios::emit(&scenarios::config_churn_files(&k).await);
            scenarios::emit(&scenarios::config_churn_pushes(&k).await);
            scenarios::emit(&scenarios::jwks_down_then_rotated(&k).await);
            scenarios::emit(&scenarios::app_restart_loop(&k).await);
            scenarios::emit(&scenarios::sigterm_during_load(&k).await);
        }
        Some("cluster") => {
            for row in cluster::operator_and_api_server_faults(&Knobs::long()).await {
                scenarios::emit(&row);
            }
        }
        Some("soak") => {
            // SOAK_SECONDS: 1800 by default, 86400 for the 24 h mode.
            let secs = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1800);
            soak::run(Duration::from_secs(secs)).await;
        }
        _ => {
            eprintln!("usage: reliability chaos|cluster|soak (see tests/chaos/run.sh)");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
