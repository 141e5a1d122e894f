#!/usr/bin/env bash
# The cost of tracing (README "Traces"), in instructions per request: the sidecar under
# `valgrind --tool=callgrind`, pinned to CPU 0 with one worker, CG_REQUESTS (1000) requests one
# after the other on one keep-alive connection after a warm-up (bench/keepalive.py zeroes the
# counters before and dumps them after, so start-up cancels out), for three scenarios:
# a plain forward, a plain forward carrying a client `traceparent`, and a GET with a cached RS256
# cookie JWT. Each with tracing off, on but unsampled (`always_off`: propagation only), and on
# (every request sampled, exported over OTLP/gRPC to the tests' receiver,
# tests/examples/otlp-sink.rs, on CPU 1). Callgrind counts every thread of
# the sidecar, so "on" includes the batch exporter's work (encoding, gRPC) amortised per request;
# it runs on a 5 s timer or every 512 spans, so it moves the figure by a few hundred between runs.
# BASE_SIDECAR=<binary> adds a column for another build of the sidecar (e.g. main's) with no
# tracing flags: "off" must match it, since tracing off is one `Option` check per request.
# Usage: bench/traces.sh. It uses four loopback ports from BENCH_PORT_BASE (3921).
set -euo pipefail
cd "$(dirname "$0")/.."
CG_REQUESTS=${CG_REQUESTS:-1000}
source scripts/ports.sh
base=${BENCH_PORT_BASE:-3921}
UP_PORT=$base SC_PORT=$((base + 1)) SC_ADMIN=$((base + 2)) RX_PORT=$((base + 3))
for port in "$UP_PORT" "$SC_PORT" "$SC_ADMIN" "$RX_PORT"; do
  require_free_port "$port" "one of the bench's ports $UP_PORT-$RX_PORT" BENCH_PORT_BASE
done
source bench/common.sh
bench_tools taskset curl python3 callgrind_control
cargo build -q -p portcullis-tests --example otlp-sink
hint="BENCH_PORT_BASE=<port> $0 (it uses that port and the next three)"

taskset -c 1 ./target/release/examples/hello "127.0.0.1:$UP_PORT" & up_pid=$!; pids+=($up_pid)
track $up_pid "the upstream (hello)" "$UP_PORT" "$hint"
wait_listening "$UP_PORT"
taskset -c 1 ./target/debug/examples/otlp-sink "$RX_PORT" > "$work/sink.txt" & rx_pid=$!; pids+=($rx_pid)
track $rx_pid "the OTLP receiver (otlp-sink)" "$RX_PORT" "$hint"
wait_listening "$RX_PORT"

traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
scenarios=(plain traced jwt)
declare -A title=([plain]="plain forward" [traced]="plain forward with a client traceparent" [jwt]="GET with RS256 cookie JWT (cached)")
declare -A host=([plain]=plain.mysite.com [traced]=plain.mysite.com [jwt]=api.mysite.com)
declare -A header=([plain]="" [traced]="traceparent: $traceparent" [jwt]="Cookie: CF_Authorization=$token")

# measure LABEL BINARY [FLAGS...]: one sidecar under callgrind, every scenario, one line each.
measure() {
  local label=$1 binary=$2; shift 2
  mkdir -p "$work/cg"
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/cg/$label.out" -q "$binary" \
    --manifests "$work/access.yaml" --listen "127.0.0.1:$SC_PORT" --admin-listen "127.0.0.1:$SC_ADMIN" \
    --upstream "http://127.0.0.1:$UP_PORT" --worker-threads 1 --log warn "$@" &
  local pid=$! _ scenario
  pids+=("$pid")
  track "$pid" "the sidecar ($label)" "$SC_PORT" "$hint"
  for _ in $(seq 600); do
    _stop_if_one_exited
    [[ $(curl -s -o /dev/null -w '%{http_code}' -H "Host: plain.mysite.com" "http://127.0.0.1:$SC_PORT/") == 200 ]] && break
    sleep 0.2
  done
  for scenario in "${scenarios[@]}"; do
    python3 bench/keepalive.py --callgrind "$pid" "$SC_PORT" "$CG_REQUESTS" GET "${host[$scenario]}" 200 "${header[$scenario]}"
    local dump
    dump=$(ls -t "$work/cg/$label.out".* | head -1)
    echo "$label|$scenario|$(awk -v n="$CG_REQUESTS" '/^totals:/ { printf "%d", $2 / n }' "$dump")" >> "$work/instructions"
    rm -f "$work/cg/$label.out".*
  done
  for i in "${!_tracked_pids[@]}"; do [[ ${_tracked_pids[$i]} == "$pid" ]] && unset "_tracked_pids[$i]"; done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

: > "$work/instructions"
columns=()
if [[ -n ${BASE_SIDECAR:-} ]]; then
  measure base "$BASE_SIDECAR"
  columns+=(base)
fi
measure off "$sidecar"
# Unsampled: the trace context is read, the sidecar's own `traceparent` made and set, but no
# span records or exports (what a request pays under a sampler that drops it).
measure unsampled "$sidecar" --otlp-endpoint "http://127.0.0.1:$RX_PORT" --traces-sampler always_off
measure on "$sidecar" --otlp-endpoint "http://127.0.0.1:$RX_PORT" --traces-sampler always_on
columns+=(off unsampled on)
kill -TERM "$rx_pid"
wait "$rx_pid" 2>/dev/null || true
spans=$(awk '/received/ {print $2}' "$work/sink.txt")
[[ ${spans:-0} -gt 0 ]] || fail "the OTLP receiver got no span: tracing on measured nothing"

{
  echo "Instructions per request (callgrind, $CG_REQUESTS requests on one keep-alive connection, after a warm-up);"
  echo "tracing on exported $spans spans to the local receiver (the sidecar drained its queue on SIGTERM)."
  echo
  echo "| scenario | ${columns[*]/%/ |} on − off |"
  echo "|---|$(printf -- '---|%.0s' "${columns[@]}")---|"
  for scenario in "${scenarios[@]}"; do
    line="| ${title[$scenario]} |"
    for c in "${columns[@]}"; do
      line+=" $(awk -F'|' -v c="$c" -v s="$scenario" '$1 == c && $2 == s { print $3 }' "$work/instructions") |"
    done
    off=$(awk -F'|' -v s="$scenario" '$1 == "off" && $2 == s { print $3 }' "$work/instructions")
    on=$(awk -F'|' -v s="$scenario" '$1 == "on" && $2 == s { print $3 }' "$work/instructions")
    echo "$line $((on - off)) |"
  done
} | tee "$OUT/traces.md"
