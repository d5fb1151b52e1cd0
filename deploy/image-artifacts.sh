#!/usr/bin/env bash
# What an llmft image holds, built from this source tree (the build stage of deploy/*.Dockerfile runs it):
#   OUT/llmft-<version>-py3-none-linux_x86_64.whl   the Python package with libllmft.so inside (scripts/wheel.sh)
#   OUT/llmft                                        the llmft program, finding libllmft, libtorch and CUDA / NCCL
#                                                    in the virtual environment the wheel is installed into
#   OUT/constraints.txt                              the versions pip installs with the wheel (torch and its wheels)
# The image's runtime stage installs the wheel into a virtual environment at PREFIX (default /opt/llmft) and the
# program into PREFIX/bin, next to torchrun. Arguments after OUT go to CMake (e.g. -DTORCH_CUDA_ARCH_LIST=...).
#   deploy/image-artifacts.sh OUT [CMAKE ARGS...]      (PREFIX: $LLMFT_PREFIX)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?usage: deploy/image-artifacts.sh OUT [CMAKE ARGS...]}; shift
prefix=${LLMFT_PREFIX:-/opt/llmft}
build=${LLMFT_IMAGE_BUILD_DIR:-$here/build-image}
venv=${LLMFT_VENV:-$here/.venv}
mkdir -p "$out" "$build"
cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLMFT_BUILD_TESTS=OFF -DLLMFT_BUILD_BENCH=OFF \
  -DLLMFT_INSTALL=OFF -DLLMFT_ABI_CHECK=OFF "$@" > "$build/configure.log" 2>&1 || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" --target llmft_cli
LLMFT_PYTHON="$venv/bin/python" "$here/scripts/wheel.sh" "$build" "$out"
# The program looks for its libraries where the wheel and torch's wheels land in PREFIX's site-packages.
site=lib/$("$venv/bin/python" -c 'import sys; print(f"python{sys.version_info[0]}.{sys.version_info[1]}")')/site-packages
rpath=""
for d in llmft llmft/.libs torch/lib nvidia/nccl/lib nvidia/cu13/lib; do rpath+="${rpath:+:}\$ORIGIN/../$site/$d"; done
cp "$build/bin/llmft" "$out/llmft"
patchelf --set-rpath "$rpath" "$out/llmft"
cp "$here/scripts/python/constraints.txt" "$out/constraints.txt"
echo "image-artifacts: $(cd "$out" && ls | tr '\n' ' ')for $prefix"
