#!/usr/bin/env bash
# Checks an llmft image's runtime as deploy/*.Dockerfile leaves it (after deploy/dockerfile_steps.py, or inside a
# built image): the program and the Python package run from PREFIX alone, and every library they load resolves
# inside PREFIX or to the C and C++ runtime a Debian slim image has.
#   deploy/check-image.sh [PREFIX]      (default /opt/llmft)
set -euo pipefail
prefix=${1:-/opt/llmft}
fail() { echo "check-image: $*" >&2; exit 1; }
[[ -x $prefix/bin/llmft ]] || fail "no program at $prefix/bin/llmft"
[[ -x $prefix/bin/torchrun ]] || fail "no torchrun at $prefix/bin/torchrun"
clean=(env -i "PATH=$prefix/bin:/usr/bin:/bin" HOME=/tmp)
for bin in "$prefix/bin/llmft" "$prefix"/lib/python3*/site-packages/llmft/libllmft.so.*; do
  bad=$(ldd "$bin" | awk '/not found/ {print $1; next}
    /=> \// && $3 !~ "^'"$prefix"'/" && $1 !~ /^(libc|libm|libdl|libpthread|librt|libutil|libgcc_s|libstdc\+\+)\.so/ {print $1 " => " $3}')
  [[ -z $bad ]] || fail "$bin needs libraries from outside $prefix and the C/C++ runtime: $bad"
done
"${clean[@]}" llmft --help > /dev/null || fail "llmft --help failed"
world=$("${clean[@]}" PET_NNODES=2 PET_NPROC_PER_NODE=1 PET_NODE_RANK=1 PET_MASTER_ADDR=job-node-0-0.job \
        PET_MASTER_PORT=29500 llmft world)
[[ $world == *'"rank": 1, "world_size": 2'* ]] || fail "llmft world printed: $world"
"${clean[@]}" python -c 'import llmft, os; p = llmft.library_path(); assert os.path.exists(p), p; print("llmft", p)'
ranks=$("${clean[@]}" torchrun --nproc-per-node=2 --no-python llmft world | grep -c '"world_size": 2, .*"source": "torchrun"')
[[ $ranks == 2 ]] || fail "torchrun --nproc-per-node=2 llmft world: $ranks of 2 processes reported a world of 2"
echo "check-image: $prefix holds a working llmft (program, library, Python package, torchrun)"
