#!/usr/bin/env bash
# CPU per request of each proxy + `portcullis-sidecar authz` pair (docs/authz/ configurations:
# Envoy gRPC and HTTP ext_authz, Traefik ForwardAuth, Caddy forward_auth, nginx auth_request),
# against Envoy doing the same work natively (jwt_authn + cors) and the sidecar alone. The proxy
# and the authorizer are pinned to CPU 0 (one worker each), wrk and the upstream to CPU 1; CPU =
# utime+stime of the proxy's processes plus the authorizer's, per request (from /proc).
# Separate from bench/run.sh. Needs the proxies tests/run.sh installs.
# Usage: bench/authz.sh [DURATION_SECONDS] [CONNECTIONS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-5}
CONNS=${2:-32}
ROUNDS=${3:-3}
bin=${PORTCULLIS_PROXIES_BIN:-${CARGO_TARGET_DIR:-target}/proxies-venv/bin}
for p in envoy traefik caddy; do
  [[ -x "$bin/$p" ]] || { echo "bench/authz.sh: $bin/$p missing: run tests/run.sh (it installs the proxies)" >&2; exit 1; }
done
source bench/common.sh
bench_tools wrk nginx taskset curl

# Six loopback ports from BENCH_AUTHZ_PORT_BASE (3911); a taken one stops the script, naming it.
source scripts/ports.sh
trap cleanup EXIT
base=${BENCH_AUTHZ_PORT_BASE:-3911}
UP_PORT=$base AUTHZ_PORT=$((base + 1)) AUTHZ_ADMIN=$((base + 2)) PROXY_PORT=$((base + 3)) SC_PORT=$((base + 4)) SC_ADMIN=$((base + 5))
for port in $UP_PORT $AUTHZ_PORT $AUTHZ_ADMIN $PROXY_PORT $SC_PORT $SC_ADMIN; do
  require_free_port "$port" "one of the bench's ports $UP_PORT-$SC_ADMIN" BENCH_AUTHZ_PORT_BASE
done

taskset -c 1 ./target/release/examples/hello "127.0.0.1:$UP_PORT" & pids+=($!)
taskset -c 0 "$sidecar" authz --manifests "$work/access.yaml" --listen "127.0.0.1:$AUTHZ_PORT" \
  --admin-listen "127.0.0.1:$AUTHZ_ADMIN" --worker-threads 1 --log warn & authz_pid=$!; pids+=($authz_pid)
taskset -c 0 "$sidecar" --manifests "$work/access.yaml" --listen "127.0.0.1:$SC_PORT" --admin-listen "127.0.0.1:$SC_ADMIN" \
  --upstream "http://127.0.0.1:$UP_PORT" --worker-threads 1 --log warn & sc_pid=$!; pids+=($sc_pid)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$AUTHZ_ADMIN/readyz" >/dev/null 2>&1 && curl -fs "http://127.0.0.1:$SC_ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

fill() { sed -e "s/\${PROXY_PORT}/$PROXY_PORT/g" -e "s/\${APP_PORT}/$UP_PORT/g" -e "s/\${AUTHZ_PORT}/$AUTHZ_PORT/g" "$1"; }
fill docs/authz/envoy-grpc.yaml > "$work/envoy-grpc.yaml"
fill docs/authz/envoy-http.yaml > "$work/envoy-http.yaml"
fill docs/authz/traefik.yaml > "$work/traefik.yaml"
fill docs/authz/Caddyfile > "$work/Caddyfile"
mkdir -p "$work/nginx/tmp" && fill docs/authz/nginx.conf > "$work/nginx/nginx.conf"
envoy_config "$PROXY_PORT" "$UP_PORT" > "$work/envoy-native.yaml"

# start NAME: the proxy on CPU 0; sets proxy_pid.
start() {
  case $1 in
    envoy-grpc | envoy-http | envoy-native)
      taskset -c 0 "$bin/envoy" -c "$work/$1.yaml" --concurrency 1 --log-level error --base-id 7 & ;;
    traefik)
      GOMAXPROCS=1 taskset -c 0 "$bin/traefik" --entryPoints.web.address="127.0.0.1:$PROXY_PORT" \
        --providers.file.filename="$work/traefik.yaml" --log.level=ERROR & ;;
    caddy)
      GOMAXPROCS=1 HOME="$work" XDG_DATA_HOME="$work" XDG_CONFIG_HOME="$work" taskset -c 0 "$bin/caddy" run \
        --config "$work/Caddyfile" --adapter caddyfile >/dev/null 2>&1 & ;;
    nginx)
      taskset -c 0 nginx -p "$work/nginx" -c nginx.conf -e stderr & ;;
  esac
  proxy_pid=$!
  for _ in $(seq 200); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: api.mysite.com" -H "Cookie: CF_Authorization=$token" "http://127.0.0.1:$PROXY_PORT/") == 200 ]] && return
    sleep 0.1
  done
  echo "bench/authz.sh: $1 did not come up" >&2
  exit 1
}
stop() { kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; }

# measure NAME PORT PIDS...: the JWT-cookie GET with Origin through PORT.
measure() {
  local name=$1 port=$2; shift 2
  local code before after authz_before authz_after reqs rps
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: api.mysite.com" -H "Origin: https://example.com" \
    -H "Cookie: CF_Authorization=$token" "http://127.0.0.1:$port/")
  before=$(ticks "$@")
  authz_before=$(ticks "$authz_pid")
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" -H "Host: api.mysite.com" -H "Origin: https://example.com" \
    -H "Cookie: CF_Authorization=$token" "http://127.0.0.1:$port/" > "$work/wrk.txt"
  after=$(ticks "$@")
  authz_after=$(ticks "$authz_pid")
  reqs=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
  per_req() { awk -v t="$1" -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.1f", (t / hz) / n * 1e6 }'; }
  local authz_us="–" # the rows without the authorizer
  [[ $name == *authz* ]] && authz_us=$(per_req $((authz_after - authz_before)))
  echo "$name|$code|$rps|$(per_req $((after - before)))|$authz_us" >> "$work/results"
}

: > "$work/results"
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  measure "portcullis-sidecar alone (reference)" $SC_PORT $sc_pid
  for pair in envoy-native envoy-grpc envoy-http traefik caddy nginx; do
    start $pair
    if [[ $pair == envoy-native ]]; then
      measure "envoy native (jwt_authn + cors)" $PROXY_PORT $proxy_pid
    else
      measure "$pair + authz: pair CPU" $PROXY_PORT $proxy_pid $authz_pid
    fi
    stop
  done
done
{
  echo "GET / with an RS256 cookie JWT and Origin (allowed, CORS headers on the answer); wrk -t1 -c$CONNS,"
  echo "${DURATION}s per run, median of $ROUNDS rounds; proxy and authorizer pinned to CPU 0 (one worker"
  echo "each), wrk and the upstream on CPU 1. CPU = utime+stime of the proxy (and the authorizer) per request."
  echo
  echo "| setup | status | req/s | CPU µs/req | of which the authorizer |"
  echo "|---|---|---|---|---|"
  table_rows "$work/results" 3 4 5
  echo
  echo "All rounds (µs/req): $(cut -d'|' -f1,4 "$work/results" | tr '\n' ';')"
} | tee "$OUT/authz-latest.md"
