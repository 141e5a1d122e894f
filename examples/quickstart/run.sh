#!/usr/bin/env bash
# Runs the quickstart: the echo app on 127.0.0.1:3000 and the sidecar in front of it on
# 127.0.0.1:8080 (admin: 127.0.0.1:9901), configured by examples/quickstart/access.yaml.
# Arguments are passed to the sidecar (e.g. --enable-explain-endpoint). Ctrl-C stops both.
#
# Other ports: QUICKSTART_PORT (sidecar, 8080), QUICKSTART_ADMIN_PORT (admin, 9901) and
# QUICKSTART_APP_PORT (echo app, 3000). QUICKSTART_BIN_DIR=<dir> runs the binaries already
# built there (<dir>/portcullis-sidecar, <dir>/examples/echo, e.g. target/debug) instead of
# building the release ones.
#
# It stops with a message naming the port and the variable to change when a port is taken, and
# stops both processes when either exits: a sidecar in front of a dead app would answer every
# request with 502 and nothing on the screen would say why.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/ports.sh

port=${QUICKSTART_PORT:-8080}
admin_port=${QUICKSTART_ADMIN_PORT:-9901}
app_port=${QUICKSTART_APP_PORT:-3000}

# Before the build (which can take minutes), so that a taken port is reported at once.
require_free_port "$port" "the sidecar" QUICKSTART_PORT
require_free_port "$admin_port" "the sidecar's admin endpoint" QUICKSTART_ADMIN_PORT
require_free_port "$app_port" "the echo app" QUICKSTART_APP_PORT

if [[ -n ${QUICKSTART_BIN_DIR:-} ]]; then
  bin=$QUICKSTART_BIN_DIR
  [[ -x $bin/portcullis-sidecar && -x $bin/examples/echo ]] ||
    fail "QUICKSTART_BIN_DIR=$bin holds no portcullis-sidecar and examples/echo"
else
  bin=${CARGO_TARGET_DIR:-target}/release
  # mint-jwt: the README mints a test token with it.
  cargo build --release -q -p portcullis-sidecar --bin portcullis-sidecar --example echo --example mint-jwt
fi

"$bin/examples/echo" "127.0.0.1:$app_port" &
track "$!" "the echo app" "$app_port" "QUICKSTART_APP_PORT=<port> $0"
wait_listening "$app_port"

"$bin/portcullis-sidecar" \
  --manifests examples/quickstart/access.yaml \
  --listen "127.0.0.1:$port" \
  --upstream "http://127.0.0.1:$app_port" \
  --admin-listen "127.0.0.1:$admin_port" \
  "$@" &
track "$!" "the sidecar" "$port or $admin_port" "QUICKSTART_PORT=<port> or QUICKSTART_ADMIN_PORT=<port> $0"
wait_listening "$port"
wait_listening "$admin_port"
echo "quickstart: the sidecar serves http://127.0.0.1:$port (admin http://127.0.0.1:$admin_port) in front of the echo app on 127.0.0.1:$app_port; Ctrl-C stops both" >&2

wait_any
