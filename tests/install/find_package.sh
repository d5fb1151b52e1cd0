#!/usr/bin/env bash
# Installs llmft from BUILD_DIR into a scratch prefix, then configures, builds and runs tests/install/consumer (a C++
# and a C program) against it with find_package(llmft CONFIG REQUIRED), and the C program again with pkg-config.
#   tests/install/find_package.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log" || { cat "$work/install.log"; exit 1; }
test -f "$work/prefix/lib/cmake/llmft/llmftConfig.cmake" || { echo "no llmftConfig.cmake installed"; exit 1; }
test -f "$work/prefix/include/llmft/llmft.h" || test -f "$work/prefix/include/llmft/tokenizer.hpp"
cmake -S "$here/consumer" -B "$work/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure.log" 2>&1 \
  || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/consumer" > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
LD_LIBRARY_PATH="$work/prefix/lib:${LD_LIBRARY_PATH:-}" "$work/consumer/consumer"
LD_LIBRARY_PATH="$work/prefix/lib:${LD_LIBRARY_PATH:-}" "$work/consumer/consumer_c"
# A C host through pkg-config (llmft.pc), with the same prefix.
test -f "$work/prefix/lib/pkgconfig/llmft.pc" || { echo "no llmft.pc installed"; exit 1; }
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
cc -std=c11 -o "$work/consumer_c" "$here/consumer_c.c" $(pkg-config --cflags --libs llmft) || exit 1
"$work/consumer_c"
