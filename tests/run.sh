#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what the tests need, then
# formatting, lints, unit, property and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v promtool >/dev/null || need_apt+=(prometheus) # `promtool check metrics`
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)       # the browser tests (tests/tests/browser.rs)
command -v node >/dev/null || need_apt+=(nodejs)          # the identity provider and playwright-core
command -v npm >/dev/null || need_apt+=(npm)
if ((${#need_apt[@]})); then
  echo "==> installing ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
  echo "tests/run.sh: node $(node --version) is too old: playwright-core needs Node 20 or later (Debian 12's nodejs is 18; install Node 20, e.g. from NodeSource)" >&2
  exit 1
fi
if [[ ! -d tests/browser/node_modules ]]; then
  echo "==> npm ci (tests/browser: oidc-provider, playwright-core)"
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
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
