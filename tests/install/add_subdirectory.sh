#!/usr/bin/env bash
# llmft inside another CMake project through add_subdirectory: tests/install/consumer configured with
# -DLLMFT_SOURCE_DIR, then its build graph checked: the consumers link llmft::llmft and every command needed to build
# them is planned (ninja -t commands), with llmft's tests, benchmarks and install rules off (it is not the top-level project).
# Compiling the library a second time would double the suite's time; the find_package test builds and runs the same
# consumers against the library this build made.
#   tests/install/add_subdirectory.sh SOURCE_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake -S "$src/tests/install/consumer" -B "$work/b" -G Ninja -DLLMFT_SOURCE_DIR="$src" > "$work/configure.log" 2>&1 \
  || { cat "$work/configure.log"; exit 1; }
cd "$work/b"
targets=$(ninja -t targets all)
for t in consumer consumer_c llmft/src/libllmft.so; do
  grep -q "^$t:" <<< "$targets" || { echo "no target $t in the consumer's build"; exit 1; }
done
if grep -qE "^llmft/tests/|^test_(util|tokenizer|capi)|^llmft/bench/" <<< "$targets"; then
  echo "llmft's tests or benchmarks are built inside another project"; exit 1
fi
if grep -q "^install:" <<< "$targets"; then echo "llmft adds install rules inside another project"; exit 1; fi
plan=$(ninja -t commands consumer consumer_c)
for out in "llmft/src/libllmft.so.[0-9.]*" consumer consumer_c; do
  grep -qE -- "-o $out( |$)" <<< "$plan" || { echo "$plan" | tail -3; echo "building $out is not planned"; exit 1; }
done
grep -E -- "-o consumer_c( |$)" <<< "$plan" | grep -q "libllmft.so" || { echo "consumer_c does not link libllmft"; exit 1; }
echo "add_subdirectory: consumer and consumer_c link llmft::llmft; $(grep -c -- ' -c ' <<< "$plan") compilations planned"
