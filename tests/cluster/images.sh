#!/usr/bin/env bash
# Builds the images users get from operator/Dockerfile and sidecar/Dockerfile, without docker or
# a registry: `localhost/portcullis-operator:dev` and `localhost/portcullis-sidecar:dev`, from the
# workspace's release binaries, imported into the shared test cluster's containerd with its
# image.sh (../shared/k8s, or PORTCULLIS_K8S_DIR).
#
# The Dockerfiles are the one list of what goes into an image: this script reads each one's
# final stage and reproduces it, and refuses an instruction it cannot reproduce, so the two
# cannot drift apart silently. What it knows:
#   FROM gcr.io/distroless/cc-debian12:nonroot  glibc and libgcc (the libraries `ldd` lists for
#                                               the binary), the CA bundle, /etc/passwd with
#                                               `nonroot` (65532), /tmp; nothing else: no shell
#   COPY --from=build /out/<bin> <path>         target/release/<bin> at <path>
#   USER <uid>:<gid>, ENTRYPOINT [json]         the same in the image's config
# Usage: tests/cluster/images.sh [--no-build | --check] [component...]   (operator sidecar)
#   --check: only read the Dockerfiles (PORTCULLIS_DOCKERFILE_DIR, default: the repository) and
#   fail on what this script cannot reproduce; builds and imports nothing.
set -euo pipefail
cd "$(dirname "$0")/../.."
k8s=${PORTCULLIS_K8S_DIR:-../shared/k8s}
prefix=${PORTCULLIS_IMAGE_PREFIX:-localhost}
tag=${PORTCULLIS_IMAGE_TAG:-dev}
target=${CARGO_TARGET_DIR:-target}
build=1 check=0
case ${1:-} in
  --no-build) build=0; shift ;;
  --check) build=0 check=1; shift ;;
esac
dockerfiles=${PORTCULLIS_DOCKERFILE_DIR:-.}
components=("$@")
((${#components[@]})) || components=(operator sidecar)
ca_bundle=/etc/ssl/certs/ca-certificates.crt

die() { echo "images.sh: $*" >&2; exit 1; }
((check)) || [ -f "$k8s/image.sh" ] || die "$k8s/image.sh not found (set PORTCULLIS_K8S_DIR)"
[ -s "$ca_bundle" ] || die "$ca_bundle missing: apt-get install ca-certificates"

if ((build)); then
  packages=()
  for c in "${components[@]}"; do packages+=(-p "portcullis-$c"); done
  # Without the release profile's fat LTO (Cargo.toml): the same code, built in a fraction of the
  # link time on CI's two cores; the shipped Dockerfiles keep the LTO build.
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo build --release --locked "${packages[@]}" --bins
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for c in "${components[@]}"; do
  dockerfile=$dockerfiles/$c/Dockerfile
  [ -f "$dockerfile" ] || die "$dockerfile not found"
  root=$work/$c
  mkdir -p "$root"
  user="" entrypoint=""
  # The final stage: the lines after the last FROM, without comments and blank lines.
  stage=$(awk '/^FROM /{ s = "" } { s = s $0 "\n" } END { printf "%s", s }' "$dockerfile" | grep -v '^\s*\(#\|$\)')
  while read -r instruction rest; do
    case $instruction in
      FROM)
        [[ $rest == gcr.io/distroless/cc-debian12:nonroot ]] || die "$dockerfile: base $rest: only gcr.io/distroless/cc-debian12:nonroot is reproduced"
        mkdir -p "$root/etc/ssl/certs" "$root/tmp"
        chmod 1777 "$root/tmp"
        cp -L "$ca_bundle" "$root$ca_bundle"
        printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
        printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
        ;;
      COPY)
        read -r from src dest extra <<<"$rest"
        [[ $from == --from=build && $src == /out/* && -n $dest && -z ${extra:-} ]] || die "$dockerfile: COPY $rest: only COPY --from=build /out/<bin> <path> is reproduced"
        ((check)) && continue
        bin=$target/release/${src#/out/}
        [ -x "$bin" ] || die "$bin not built: cargo build --release -p portcullis-$c"
        install -D -m 0755 "$bin" "$root$dest"
        # The shared libraries the binary loads (glibc, libgcc: what the distroless cc base has).
        for lib in $(ldd "$bin" | grep -o '/[^ )]*'); do
          [ -e "$root$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
        done
        ;;
      USER) user=$rest ;;
      ENTRYPOINT) entrypoint=$rest ;;
      *) die "$dockerfile: '$instruction $rest' in the final stage is not reproduced by this script: teach it, or change the Dockerfile" ;;
    esac
  done <<<"$stage"
  [ -n "$user" ] && [ -n "$entrypoint" ] || die "$dockerfile: the final stage needs USER and ENTRYPOINT"
  ((check)) && continue
  bash "$k8s/image.sh" --user "$user" --entrypoint "$entrypoint" "$prefix/portcullis-$c:$tag" "$root"
done
