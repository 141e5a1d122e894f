#!/usr/bin/env bash
# Fuzzes one target with libFuzzer on the STABLE toolchain, then merges the inputs that found
# new coverage into the committed corpus (fuzz/corpus/<target>/), which `cargo test` replays.
#
#   bash fuzz/run.sh <decide|manifests|push|jwt|headers> [seconds]   (default 3600: an hour)
#   bash fuzz/run.sh all [seconds]                                   (each target in turn)
#
# No nightly and no cargo-fuzz: libfuzzer-sys builds libFuzzer with the system C++ compiler,
# and rustc's stable `-Cpasses=sancov-module` inserts the coverage counters libFuzzer reads
# (the same instrumentation cargo-fuzz asks for, minus AddressSanitizer, which needs nightly's
# -Zsanitizer; safe Rust needs it little). A crash stops the run and leaves the input in
# target/fuzz/artifacts/<target>/; once fixed, copy it into fuzz/corpus/<target>/ as a
# regression case.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(decide manifests push jwt headers)
target=${1:?usage: bash fuzz/run.sh <${targets[*]// /|}|all> [seconds]}
seconds=${2:-3600}
if [[ $target == all ]]; then
  for t in "${targets[@]}"; do bash "$0" "$t" "$seconds"; done
  exit 0
fi
[[ " ${targets[*]} " == *" $target "* ]] || { echo "fuzz/run.sh: unknown target $target (${targets[*]})" >&2; exit 2; }

triple=$(rustc -vV | sed -n 's/^host: //p')
out=${CARGO_TARGET_DIR:-target}/fuzz
# Every target at once (they share all but their last link); --target keeps the
# instrumentation flags off build scripts and proc macros.
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
CARGO_INCREMENTAL=0 \
  cargo build --release -p portcullis-fuzz --features libfuzzer --bins \
  --target "$triple" --target-dir "$out/build"

work=$out/work/$target
artifacts=$out/artifacts/$target
mkdir -p "$work" "$artifacts" "fuzz/corpus/$target"
bin=$out/build/$triple/release/$target
echo "==> fuzzing $target for ${seconds}s (working corpus $work, seeds fuzz/corpus/$target)"
status=0
nice -n 19 "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
  -print_final_stats=1 -artifact_prefix="$artifacts/" "$work" "fuzz/corpus/$target" \
  2>&1 | tee "$out/$target.log" | grep -E '^(#[0-9]+ +(INITED|DONE|pulse)|stat::|==[0-9]+==|.*panicked)' || status=$?
if grep -q -E 'Test unit written|panicked|deadly signal' "$out/$target.log"; then
  echo "fuzz/run.sh: $target CRASHED; input in $artifacts/ (log $out/$target.log)" >&2
  exit 1
fi
# Keep the inputs that reach new edges (hit counts ignored, so the set stays small), so CI
# replays what the run explored.
before=$(find "fuzz/corpus/$target" -type f | wc -l)
nice -n 19 "$bin" -set_cover_merge=1 -use_counters=0 -timeout=10 -rss_limit_mb=2048 \
  "fuzz/corpus/$target" "$work" >"$out/$target.merge.log" 2>&1
after=$(find "fuzz/corpus/$target" -type f | wc -l)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$target.log")
echo "==> $target: ${seconds}s, ${execs:-?} executions, 0 crashes, corpus $before -> $after inputs"
