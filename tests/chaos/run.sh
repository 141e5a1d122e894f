#!/usr/bin/env bash
# The long chaos run and the soak, against a release build of the sidecar; writes the tables
# of docs/reliability.md to target/reliability/.
#
#   bash tests/chaos/run.sh            the chaos scenarios at the published sizes (~5 min)
#   bash tests/chaos/run.sh cluster    scenario 4 on the cluster KUBECONFIG names (the shared
#                                      cluster's API server restart needs PORTCULLIS_K8S_DIR)
#   bash tests/chaos/run.sh soak       the soak: SOAK_SECONDS (default 1800; 86400 for 24 h)
#
# CHAOS_PHASE_SECS (default 10) and CHAOS_CONNECTIONS (default 32) size the chaos load;
# SOAK_RPS fixes the soak's rate instead of half the measured single-core capacity;
# SOAK_TOKENS (default 40000) is the number of distinct tokens it cycles through.
# The short versions of the same scenarios run in `cargo test` (tests/tests/chaos/); the long
# ones are the program tests/examples/reliability.rs.
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${CARGO_TARGET_DIR:-target}
out=$target/reliability
mkdir -p "$out"

echo "==> building the sidecar (release) and the chaos program"
cargo build --release -p portcullis-sidecar --bin portcullis-sidecar
cargo build -p portcullis-tests --example reliability
export PORTCULLIS_SIDECAR_BIN=$PWD/$target/release/portcullis-sidecar
run=$target/debug/examples/reliability

case "${1:-chaos}" in
  chaos)
    report=$out/chaos.md
    {
      echo "| scenario | load | requests | failed | wrongly allowed | wrongly denied | p99 before / during | recovery | notes |"
      echo "|---|---|---|---|---|---|---|---|---|"
    } >"$report"
    CHAOS_REPORT=$PWD/$report "$run" chaos
    echo "==> $report"
    cat "$report"
    ;;
  cluster)
    report=$out/chaos.md
    [ -n "${KUBECONFIG:-}" ] || { echo "tests/chaos/run.sh cluster: set KUBECONFIG" >&2; exit 2; }
    cargo build -p portcullis-operator --bin portcullis-operator
    CHAOS_REPORT=$PWD/$report "$run" cluster
    echo "==> $report"
    cat "$report"
    ;;
  soak)
    report=$out/soak.md
    SOAK_REPORT=$PWD/$report "$run" soak
    echo "==> $report"
    cat "$report"
    ;;
  *)
    echo "usage: bash tests/chaos/run.sh [chaos|cluster|soak]" >&2
    exit 2
    ;;
esac
