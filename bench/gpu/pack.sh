#!/usr/bin/env bash
# Run here (Debian 12), before bench/gpu/run.sh goes to a GPU machine: gathers into .gpu/ (git-ignored; name it in
# the device tool's `carry`) what that machine cannot install, having no network: Debian's headers, libraries and
# CMake packages of llmft's small dependencies unpacked into .gpu/sysroot, and c10d's Gloo headers from the
# project's environment (scripts/deps.sh build). libtorch, CUDA and NCCL are the GPU machine's own.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ -d .venv/gloo/include ]] || { echo "pack.sh: run scripts/deps.sh build first (.venv/gloo/include)" >&2; exit 1; }
out=.gpu
rm -rf "$out"
mkdir -p "$out/debs" "$out/sysroot" "$out/gloo"
pkgs=(libfmt-dev libfmt9 libyaml-cpp-dev libyaml-cpp0.7 libsimdjson-dev libsimdjson14 nlohmann-json3-dev
      libeigen3-dev libpcre2-dev libpcre2-8-0 libutf8proc-dev libutf8proc2 zlib1g-dev zlib1g libgtest-dev
      pkgconf pkgconf-bin libpkgconf3)
(cd "$out/debs" && apt-get download "${pkgs[@]}" >/dev/null)
for f in "$out"/debs/*.deb; do dpkg -x "$f" "$out/sysroot"; done
rm -rf "$out/debs" "$out/sysroot/usr/share/doc" "$out/sysroot/usr/share/man"
cp -r .venv/gloo/include "$out/gloo/"
echo "pack.sh: $(du -sh "$out" | cut -f1) in $out (carry it: run(carry=[\".gpu\"]))"
