#!/usr/bin/env bash
# Builds the llmft wheel: the Python package (python/llmft) with the shared library inside it, ready for
#   pip install dist/llmft-<version>-py3-none-linux_x86_64.whl
# The library is the one BUILD_DIR linked (scripts/test.sh or cmake --build build). Inside the wheel it finds
# libtorch, libc10 and NCCL / the CUDA runtime in the site-packages it is installed into (the torch wheel the wheel
# requires, and torch's nvidia-* wheels), through a RUNPATH relative to itself; the Debian libraries it links (fmt,
# yaml-cpp, simdjson, PCRE2, utf8proc, zlib) travel in llmft/.libs, as auditwheel would graft them.
#   scripts/wheel.sh [BUILD_DIR] [OUT_DIR]       (defaults: build, dist)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
out=${2:-$here/dist}
py=${LLMFT_PYTHON:-$here/.venv/bin/python}
command -v patchelf > /dev/null || { echo "wheel: patchelf is needed (apt-get install patchelf; scripts/deps.sh test)"; exit 1; }
lib=$(readlink -f "$build/src/libllmft.so")
[[ -f $lib ]] || { echo "wheel: no library at $build/src/libllmft.so: build first"; exit 1; }
soname=$(patchelf --print-soname "$lib")
torch_version=$("$py" -c 'import torch; print(torch.__version__.split("+")[0])')

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r "$here/python/llmft" "$stage/llmft"
find "$stage/llmft" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p "$stage/llmft/.libs"
cp "$lib" "$stage/llmft/$soname"
# The Debian libraries it needs, by the names it asks for (glibc, libstdc++ and libgcc are the system's).
ldd "$lib" | awk '/=> \// {print $1, $3}' | while read -r name path; do
  case $name in
    libfmt*|libyaml-cpp*|libsimdjson*|libpcre2*|libutf8proc*|libz.so*)
      cp -L "$path" "$stage/llmft/.libs/$name"
      patchelf --set-rpath '$ORIGIN' "$stage/llmft/.libs/$name" ;;
  esac
done
patchelf --set-rpath '$ORIGIN/.libs:$ORIGIN/../torch/lib:$ORIGIN/../nvidia/nccl/lib:$ORIGIN/../nvidia/cu13/lib' \
  "$stage/llmft/$soname"
"$py" "$here/scripts/python/make_wheel.py" "$stage" "$out" "torch==$torch_version"
