#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need, then
# formatting, lints, unit, property and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus) # `promtool check metrics`
if ((${#need_apt[@]})); then
  echo "==> installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo build (binaries the end-to-end tests run)"
cargo build --workspace --bins
echo "==> cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
PORTCULLIS_REQUIRE_PROMTOOL=1 cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
