#!/usr/bin/env bash
# The test command: installs what is missing (Debian packages, npm oracles), builds llmft and runs the whole test
# suite. Test data comes from ../shared/data (or $LLMFT_TEST_DATA); tests that need it report SKIPPED without it.
# Extra arguments go to ctest (e.g. -L tokenizer, -R Conformance).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/deps.sh test
build=${LLMFT_BUILD_DIR:-$root/build}
mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLLMFT_SHARED_DATA="${LLMFT_TEST_DATA:-$root/../shared/data}" > "$build/configure.log" 2>&1 \
  || { cat "$build/configure.log"; exit 1; }
cmake --build "$build"
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
