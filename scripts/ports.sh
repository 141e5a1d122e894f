# shellcheck shell=bash
# Sourced by the scripts the README tells users to run (examples/quickstart/run.sh,
# bench/run.sh): checks that the loopback ports they need are free, starts nothing itself, and
# watches the processes a script starts so that one exiting stops the script with a message
# saying which process it was and which variable picks another port. Without this, a sidecar
# in front of an app that could not bind its port answers every request with 502 and nothing on
# the screen says why.

_tracked_pids=() _tracked_names=() _tracked_ports=() _tracked_vars=()

# fail MESSAGE: the script's name, the message, exit status 1.
fail() {
  echo "$0: $*" >&2
  exit 1
}

# port_in_use PORT: something accepts connections on 127.0.0.1:PORT (bash's /dev/tcp).
port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# require_free_port PORT WHAT VARIABLE: stops the script when PORT is not a port number or is taken.
require_free_port() {
  local port=$1 what=$2 var=$3
  if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    fail "$var must be a port number (1-65535), not '$port'"
  fi
  if port_in_use "$port"; then
    fail "port $port on 127.0.0.1 ($what) is already in use. Stop what listens there (\`ss -ltnp 'sport = :$port'\` names it) or choose another port: $var=<port> $0"
  fi
}

# track PID WHAT PORTS HINT: a started process that must keep running; HINT says how to pick
# other ports (`QUICKSTART_APP_PORT=<port> ./examples/quickstart/run.sh`).
track() {
  _tracked_pids+=("$1") _tracked_names+=("$2") _tracked_ports+=("$3") _tracked_vars+=("$4")
}

# Stops the script when a tracked process has exited, naming it and the variables to change.
_stop_if_one_exited() {
  local i status
  for i in "${!_tracked_pids[@]}"; do
    if ! kill -0 "${_tracked_pids[$i]}" 2>/dev/null; then
      status=0
      wait "${_tracked_pids[$i]}" || status=$?
      fail "${_tracked_names[$i]} exited (status $status); its own message is above. If it could not bind its port (${_tracked_ports[$i]} already in use), choose another: ${_tracked_vars[$i]}"
    fi
  done
}

# wait_listening PORT: waits (at most 10 s) until 127.0.0.1:PORT accepts connections, and stops
# the script if a tracked process exits meanwhile.
wait_listening() {
  local _
  for _ in $(seq 100); do
    _stop_if_one_exited
    port_in_use "$1" && return 0
    sleep 0.1
  done
  fail "nothing listens on 127.0.0.1:$1 after 10 s"
}

# wait_any: blocks until a tracked process exits, then stops the script with its message.
wait_any() {
  wait -n "${_tracked_pids[@]}" || true
  _stop_if_one_exited
}

_stop_tracked() {
  local pid
  for pid in "${_tracked_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap _stop_tracked EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
