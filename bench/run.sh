#!/usr/bin/env bash
# Load benchmark on loopback (bounded: each run is DURATION seconds). The proxy under test is
# pinned to CPU 0 with one worker thread; wrk and the upstream share CPU 1. For each scenario
# it reports requests/s, p50/p99 latency and the proxy process's CPU time per 10,000 requests
# (utime+stime from /proc), for portcullis-sidecar, HAProxy 2.6 doing the same work, nginx
# answering the same preflight and forwarding, and the upstream directly. Usage: bench/run.sh [DURATION_SECONDS] [CONNECTIONS]
# It listens on five loopback ports from BENCH_PORT_BASE (3901), and stops with a message when
# one is taken or a process under test exits before it listens.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ports.sh
base=${BENCH_PORT_BASE:-3901}
UP_PORT=$base SC_PORT=$((base + 1)) SC_ADMIN=$((base + 2)) HA_PORT=$((base + 3)) NG_PORT=$((base + 4))
for port in "$UP_PORT" "$SC_PORT" "$SC_ADMIN" "$HA_PORT" "$NG_PORT"; do
  require_free_port "$port" "one of the bench's ports $UP_PORT-$NG_PORT" BENCH_PORT_BASE
done
DURATION=${1:-5}
CONNS=${2:-64}
ROUNDS=${3:-3}
OUT=bench/results
mkdir -p "$OUT"

for tool in wrk haproxy nginx taskset; do
  command -v "$tool" >/dev/null || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk haproxy nginx-light util-linux >/dev/null
    break
  }
done
cargo build --release -q -p portcullis-sidecar --bin portcullis-sidecar --example hello --example mint-jwt

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

jwks=$(sed 's/^/          /' tests/fixtures/keys/jwks.json)
awk -v j="$jwks" '{ if ($0 == "JWKS_PLACEHOLDER") print j; else print }' bench/access.yaml > "$work/access.yaml"
sed -e "s/@PORT@/$HA_PORT/" -e "s/@UPSTREAM_PORT@/$UP_PORT/" -e "s#@PUBKEY@#$PWD/tests/fixtures/keys/rsa.pub.pem#" \
  bench/haproxy.cfg.in > "$work/haproxy.cfg"
sed -e "s#@WORK@#$work#g" -e "s/@PORT@/$NG_PORT/" -e "s/@UPSTREAM_PORT@/$UP_PORT/" bench/nginx.conf.in > "$work/nginx.conf"
token=$(./target/release/examples/mint-jwt tests/fixtures/keys/rsa.pem RS256 rsa-1 https://issuer.test aud-tag-1 alice@mysite.com 86400)

hint="BENCH_PORT_BASE=<port> $0 (it uses that port and the next four)"
taskset -c 1 ./target/release/examples/hello "127.0.0.1:$UP_PORT" & pids+=($!); track $! "the upstream (hello)" "$UP_PORT" "$hint"
taskset -c 0 ./target/release/portcullis-sidecar --manifests "$work/access.yaml" --listen "127.0.0.1:$SC_PORT" \
  --admin-listen "127.0.0.1:$SC_ADMIN" --upstream "http://127.0.0.1:$UP_PORT" --worker-threads 1 --log warn & sc_pid=$!; pids+=($sc_pid)
track "$sc_pid" "portcullis-sidecar" "$SC_PORT or $SC_ADMIN" "$hint"
taskset -c 0 haproxy -f "$work/haproxy.cfg" -db & ha_pid=$!; pids+=($ha_pid); track "$ha_pid" haproxy "$HA_PORT" "$hint"
taskset -c 0 nginx -c "$work/nginx.conf" & ng_pid=$!; pids+=($ng_pid); track "$ng_pid" nginx "$NG_PORT" "$hint"
up_pid=${pids[0]}
for port in "$UP_PORT" "$SC_PORT" "$SC_ADMIN" "$HA_PORT" "$NG_PORT"; do wait_listening "$port"; done
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$SC_ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

cat > "$work/options.lua" <<'LUA'
wrk.method = "OPTIONS"
LUA

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run NAME PID PORT HOST [wrk args...]
run() {
  local name=$1 pid=$2 port=$3 host=$4; shift 4
  # Check the scenario answers what it should before measuring it.
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' "$@" -H "Host: $host" "http://127.0.0.1:$port/" 2>/dev/null || true)
  local before after
  before=$(cpu_ticks "$pid")
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $host" "${wrk_args[@]}" "http://127.0.0.1:$port/" > "$work/wrk.txt"
  after=$(cpu_ticks "$pid")
  local reqs rps p50 p99
  reqs=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(awk '$1=="50%" {print $2}' "$work/wrk.txt")
  p99=$(awk '$1=="99%" {print $2}' "$work/wrk.txt")
  local us_per_req
  us_per_req=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.1f", (t / hz) / n * 1e6 }')
  p50=$(to_ms "$p50"); p99=$(to_ms "$p99")
  echo "$name|$code|$rps|$p50|$p99|$us_per_req" >> "$work/results"
}

# wrk prints 719.00us / 1.48ms / 1.02s: normalise to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

preflight=(-H "Origin: https://example.com" -H "Access-Control-Request-Method: GET" -H "Access-Control-Request-Headers: office")
: > "$work/results"
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  wrk_args=("${preflight[@]}" -s "$work/options.lua"); run "sidecar: preflight answered" $sc_pid $SC_PORT api.mysite.com -X OPTIONS "${preflight[@]}"
  wrk_args=(-H "Cookie: CF_Authorization=$token"); run "sidecar: GET with RS256 cookie JWT" $sc_pid $SC_PORT api.mysite.com -H "Cookie: CF_Authorization=$token"
  wrk_args=(); run "sidecar: plain forward" $sc_pid $SC_PORT plain.mysite.com
  wrk_args=("${preflight[@]}" -s "$work/options.lua"); run "haproxy: preflight answered" $ha_pid $HA_PORT api.mysite.com -X OPTIONS "${preflight[@]}"
  wrk_args=(-H "Cookie: CF_Authorization=$token"); run "haproxy: GET with RS256 cookie JWT" $ha_pid $HA_PORT api.mysite.com -H "Cookie: CF_Authorization=$token"
  wrk_args=(); run "haproxy: plain forward" $ha_pid $HA_PORT plain.mysite.com
  wrk_args=("${preflight[@]}" -s "$work/options.lua"); run "nginx: preflight answered" $ng_pid $NG_PORT api.mysite.com -X OPTIONS "${preflight[@]}"
  wrk_args=(); run "nginx: plain forward" $ng_pid $NG_PORT plain.mysite.com
  wrk_args=(); run "direct to upstream (upstream CPU)" $up_pid $UP_PORT plain.mysite.com
done
sc_rss=$(awk '/VmRSS/ {print $2, $3}' /proc/$sc_pid/status)
ha_rss=$(awk '/VmRSS/ {print $2, $3}' /proc/$ha_pid/status)
{
  echo "wrk -t1 -c$CONNS, ${DURATION}s per run, median of $ROUNDS interleaved rounds; proxy pinned to CPU 0"
  echo "(one thread), wrk and the upstream on CPU 1. CPU = the proxy process's utime+stime per request."
  echo
  echo "| scenario | status | req/s | p50 ms | p99 ms | CPU µs/req | CPU s per 10k req |"
  echo "|---|---|---|---|---|---|---|"
  cut -d'|' -f1 "$work/results" | awk '!seen[$0]++' | while read -r name; do
    rows=$(grep -F "$name|" "$work/results")
    code=$(echo "$rows" | cut -d'|' -f2 | sort | uniq | paste -sd/)
    rps=$(echo "$rows" | cut -d'|' -f3 | median)
    p50=$(echo "$rows" | cut -d'|' -f4 | median)
    p99=$(echo "$rows" | cut -d'|' -f5 | median)
    us=$(echo "$rows" | cut -d'|' -f6 | median)
    per10k=$(awk -v u="$us" 'BEGIN { printf "%.3f", u * 10000 / 1e6 }')
    echo "| $name | $code | $rps | $p50 | $p99 | $us | $per10k |"
  done
  echo
  echo "All rounds (µs/req): $(cut -d'|' -f1,6 "$work/results" | tr '\n' ';')"
  echo
  echo "sidecar RSS after the runs at $CONNS connections: $sc_rss; haproxy RSS: $ha_rss"
} | tee "$OUT/latest.md"
