#!/usr/bin/env bash
# Builds the fuzz targets (clang + libFuzzer + ASan/UBSan) and runs one of them, or all, for a bounded time.
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET]
# Exits non-zero when a target crashes, leaks or trips a sanitizer; the reproducer is kept in BUILD_DIR/artifacts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1; seconds=$2; only=${3:-}
mkdir -p "$build"
(
  flock 9  # several CTest jobs may ask for the build at once: build once
  if [[ ! -f $build/build.ninja ]]; then
    CXX=clang++ cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$build/configure.log" 2>&1 \
      || { cat "$build/configure.log"; exit 1; }
  fi
  ninja -C "$build" > "$build/build.log" 2>&1 || { tail -50 "$build/build.log"; exit 1; }
) 9> "$build/.lock"
rc=0
for target in "$build"/fuzz_*; do
  [[ -x $target && -f $target ]] || continue
  name=$(basename "$target")
  [[ -z $only || $name == "$only" ]] || continue
  seeds=$here/seeds/${name#fuzz_}
  corpus=$build/corpus/$name; mkdir -p "$corpus" "$build/artifacts"
  echo "== $name for ${seconds}s (seeds: ${seeds#$here/})"
  log=$build/$name.log
  set +e
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "$target" -max_total_time="$seconds" -max_len=8192 \
    -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$build/artifacts/$name-" \
    "$corpus" "$seeds" > "$log" 2>&1
  status=$?
  set -e
  grep -E 'stat::number_of_executed_units|Done [0-9]+ runs' "$log" || true
  if [[ $status -ne 0 ]]; then
    echo "$name FAILED (exit $status); log: $log"
    grep -A40 -E '==[0-9]+==ERROR|terminate called|runtime error|deadly signal' "$log" | head -60
    rc=1
  fi
done
exit $rc
