# shellcheck shell=bash
# Sourced by bench/run.sh and bench/authz.sh from the repository root: installs the Debian tools
# they drive, builds the release binaries, makes the work directory (removed, with every process
# in `pids`, on exit), writes the benchmark configuration and mints the tokens. It measures
# nothing itself and starts no process.

# bench_tools TOOL...: installs the Debian packages providing the missing ones.
bench_tools() {
  local tool missing=()
  for tool in "$@"; do
    command -v "$tool" >/dev/null && continue
    case $tool in
      taskset) missing+=(util-linux) ;;
      nginx) missing+=(nginx-light) ;;
      callgrind_annotate | callgrind_control) missing+=(valgrind) ;;
      *) missing+=("$tool") ;;
    esac
  done
  ((${#missing[@]} == 0)) && return
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

cargo build --release -q -p portcullis-sidecar --bin portcullis-sidecar --example hello --example mint-jwt
sidecar=./target/release/portcullis-sidecar
OUT=bench/results
mkdir -p "$OUT"

work=$(mktemp -d)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

jwks=$(sed 's/^/          /' tests/fixtures/keys/jwks.json)
awk -v j="$jwks" '{ if ($0 == "JWKS_PLACEHOLDER") print j; else print }' bench/access.yaml > "$work/access.yaml"

# mint KEY KID AUDIENCE TTL: an RS256 token for alice@mysite.com from https://issuer.test.
mint() { ./target/release/examples/mint-jwt "tests/fixtures/keys/$1" RS256 "$2" https://issuer.test "$3" alice@mysite.com "$4"; }
token=$(mint rsa.pem rsa-1 aud-tag-1 86400)

# envoy_config PROXY_PORT APP_PORT: Envoy doing the sidecar's work natively (bench/envoy.yaml.in).
envoy_config() {
  sed -e "s/@PROXY_PORT@/$1/" -e "s/@APP_PORT@/$2/" bench/envoy.yaml.in |
    awk -v j="$(tr -d '\n' < tests/fixtures/keys/jwks.json)" '{ gsub("@JWKS@", j); print }'
}

# CPU ticks (utime + stime) of processes and their children (nginx's worker).
ticks() {
  local total=0 p
  for p in "$@" $(for q in "$@"; do pgrep -P "$q" || true; done); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
hz=$(getconf CLK_TCK)

median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# table_rows FILE COLUMN...: one Markdown row per first field of FILE's `|`-separated lines (in
# order of appearance): the name, the distinct values of field 2 (the statuses), then the median
# of each COLUMN over that name's lines.
table_rows() {
  local file=$1 name rows line col
  shift
  cut -d'|' -f1 "$file" | awk '!seen[$0]++' | while read -r name; do
    rows=$(grep -F "$name|" "$file")
    line="| $name | $(echo "$rows" | cut -d'|' -f2 | sort -u | paste -sd/) |"
    for col in "$@"; do line+=" $(echo "$rows" | cut -d'|' -f"$col" | median) |"; done
    echo "$line"
  done
}
