#!/usr/bin/env bash
# Connection scale on loopback: the sidecar (release, one worker, pinned to CPU 0) in front of a
# slow app (`hello` answering after DELAY_MS, default 1000). (1) IDLE (10,000) keep-alive client
# connections, each after one answered request, held open: the sidecar's RSS before and with them,
# and its CPU while they idle for 10 s. (2) INFLIGHT (1,000) requests at once, each on its own
# connection, all waiting on the slow app: RSS after and CPU per request. Both stay within
# `--max-connections` (MAX, default 12,000). The idle wait between keep-alive requests counts
# against `--header-read-timeout` (10 s by default), raised here so that they stay open while
# measured. The sidecar runs with its defaults otherwise, `--park-connections-above` (100) included:
# above that many open connections, idle ones park (sidecar/src/http/park.rs); the environment
# can change it (PORTCULLIS_PARK_CONNECTIONS_ABOVE=0 parks every one, a large value none), and
# when an idle one parks (PORTCULLIS_PARK_IDLE_AFTER, 1s by default; 0s at once).
# Raises `ulimit -n`. Writes bench/results/connections.md.
# Usage: bench/connections.sh [IDLE] [INFLIGHT]
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${1:-10000}
INFLIGHT=${2:-1000}
MAX=${MAX:-12000}
DELAY_MS=${DELAY_MS:-1000}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" # 10,000 connections: one descriptor each side
source scripts/ports.sh
base=${BENCH_CONN_PORT_BASE:-3931}
UP_PORT=$base SC_PORT=$((base + 1)) SC_ADMIN=$((base + 2))
for port in "$UP_PORT" "$SC_PORT" "$SC_ADMIN"; do
  require_free_port "$port" "one of the bench's ports $UP_PORT-$SC_ADMIN" BENCH_CONN_PORT_BASE
done
source bench/common.sh
bench_tools taskset curl python3

taskset -c 1 ./target/release/examples/hello "127.0.0.1:$UP_PORT" "$DELAY_MS" & pids+=($!)
taskset -c 0 "$sidecar" --manifests "$work/access.yaml" --listen "127.0.0.1:$SC_PORT" --admin-listen "127.0.0.1:$SC_ADMIN" \
  --upstream "http://127.0.0.1:$UP_PORT" --worker-threads 1 --max-connections "$MAX" \
  --header-read-timeout 300s --log warn & sc_pid=$!; pids+=($sc_pid)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$SC_ADMIN/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$sc_pid/status"; }
curl -fs -o /dev/null -H "Host: plain.mysite.com" "http://127.0.0.1:$SC_PORT/"
rss_start=$(rss)

# (1) idle keep-alive connections, held open by the driver until its stdin closes.
exec 3> >(taskset -c 1 python3 bench/connections.py idle "$SC_PORT" "$IDLE" plain.mysite.com > "$work/idle.txt")
for _ in $(seq 600); do [[ -s $work/idle.txt ]] && break; sleep 0.5; done
cat "$work/idle.txt" >&2
grep -q "^$IDLE of $IDLE" "$work/idle.txt" || fail "not every idle connection was answered"
rss_opened=$(rss)
# Idle for 10 s: connections park once they have waited --park-idle-after (1 s by default).
before=$(ticks "$sc_pid"); sleep 10; after=$(ticks "$sc_pid")
idle_cpu_ms=$(((after - before) * 1000 / hz))
metrics=$(curl -fs "http://127.0.0.1:$SC_ADMIN/metrics")
open_metric=$(awk '/^portcullis_connections_open / {print $2}' <<<"$metrics")
parked_metric=$(awk '/^portcullis_connections_parked / {print $2}' <<<"$metrics")
rss_idle=$(rss)
exec 3>&-
sleep 2

# (2) requests in flight at once to the slow app.
before=$(ticks "$sc_pid")
taskset -c 1 python3 bench/connections.py inflight "$SC_PORT" "$INFLIGHT" plain.mysite.com > "$work/inflight.txt"
after=$(ticks "$sc_pid")
cat "$work/inflight.txt" >&2
grep -q "^$INFLIGHT of $INFLIGHT" "$work/inflight.txt" || fail "not every in-flight request was answered"
rss_inflight=$(rss)
us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$INFLIGHT" 'BEGIN { printf "%.0f", (t / hz) / n * 1e6 }')
{
  echo "| measure | result |"
  echo "|---|---|"
  echo "| sidecar RSS at start (one request served) | $rss_start MiB |"
  echo "| $IDLE keep-alive connections just opened (each answered once) | RSS $rss_opened MiB |"
  echo "| the same after 10 s idle (portcullis_connections_open $open_metric, portcullis_connections_parked $parked_metric) | RSS $rss_idle MiB |"
  echo "| CPU while they idle 10 s | $idle_cpu_ms ms |"
  echo "| $INFLIGHT requests in flight at once to an app answering after $DELAY_MS ms | all answered; CPU $us µs/request (connection setup included); RSS after $rss_inflight MiB |"
} | tee "$OUT/connections.md"
