#!/usr/bin/env bash
# Runs the quickstart: the echo app on 127.0.0.1:3000 and the sidecar in front of it on
# 127.0.0.1:8080 (admin: 127.0.0.1:9901), configured by examples/quickstart/access.yaml.
# Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p portcullis-sidecar --bin portcullis-sidecar --example echo
./target/release/examples/echo 127.0.0.1:3000 &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
./target/release/portcullis-sidecar \
  --manifests examples/quickstart/access.yaml \
  --listen 127.0.0.1:8080 \
  --upstream http://127.0.0.1:3000 \
  --admin-listen 127.0.0.1:9901 \
  "$@"
