#!/usr/bin/env bash
# The wheel (scripts/wheel.sh) installs with pip and works on its own: the package loads the library it carries (not
# $LLMFT_LIBRARY, not the build tree), which finds libtorch and the CUDA libraries in the site-packages beside it
# and its Debian libraries in llmft/.libs; then it tokenizes and trains two steps on stories260K.
#   tests/install/wheel_test.sh BUILD_DIR PYTHON
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
build=$1 py=$2
command -v patchelf > /dev/null || { echo "SKIPPED: patchelf is not installed (scripts/deps.sh test)"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=$(LLMFT_PYTHON=$py "$here/scripts/wheel.sh" "$build" "$work/dist" | tail -1)
echo "built $wheel ($(du -h "$wheel" | cut -f1))"
"$py" -m pip install -q --disable-pip-version-check --no-deps --no-index --target "$work/site" "$wheel"
# torch (and its nvidia-* wheels) as pip would have put them beside llmft: the project environment's, linked in.
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ln -s "$site/torch" "$work/site/torch"
ln -s "$site/nvidia" "$work/site/nvidia"
so=$(ls "$work"/site/llmft/libllmft.so.*)
deps=$(ldd "$so")
if grep -E "not found" <<< "$deps"; then echo "the wheel's library has unresolved dependencies"; exit 1; fi
grep -q "$work/site/llmft/.libs/libfmt" <<< "$deps" || { echo "$deps"; echo "libfmt is not the wheel's own"; exit 1; }
cd "$work"
env -u LLMFT_LIBRARY PYTHONPATH="$work/site" LLMFT_TEST_DATA="${LLMFT_TEST_DATA:-$here/../shared/data}" "$py" - <<'PY'
import os, pathlib, llmft
path = pathlib.Path(llmft.library_path())
assert path.parent == pathlib.Path(llmft.__file__).parent, f"loaded {path}, not the wheel's library"
print("loaded", path, "version", llmft.version())
stories = pathlib.Path(os.environ["LLMFT_TEST_DATA"]) / "models" / "stories260K-hf"
if not (stories / "model.safetensors").exists():
    print(f"SKIPPED (training part): {stories} is absent")
else:
    with llmft.Tokenizer(stories) as tok:
        assert tok.decode(tok.encode("Once upon a time"), skip_special_tokens=True) == "Once upon a time"
    with llmft.Config(**{"model.path": str(stories), "output.dir": "out", "train.max_steps": 2,
                         "data.synthetic_records": 16, "data.seq_len": 128, "generate.num_samples": 0}) as cfg, \
            llmft.Trainer(cfg, log_level=llmft.WARN) as t:
        losses = [s.loss for s in t]
        assert len(losses) == 2 and all(l > 0 for l in losses), losses
        print("trained", losses, "->", t.finish())
PY
