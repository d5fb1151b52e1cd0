"""The Python package against the library and against Hugging Face tokenizers: tokenization, configuration errors,
training steps, save and resume with the same losses, KeyboardInterrupt, closed handles, threads."""
import os
import pathlib
import signal
import threading

import pytest

import llmft

DATA = pathlib.Path(os.environ.get("LLMFT_TEST_DATA", pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
STORIES = DATA / "models" / "stories260K-hf"
needs_data = pytest.mark.skipif(not (STORIES / "model.safetensors").exists(), reason=f"SKIPPED: {STORIES} is absent")


def job(tmp_path, **settings):
    cfg = llmft.Config(yaml=f"model: {{path: {STORIES}}}\ntrain: {{mode: lora, max_steps: 8, resume: never}}\n"
                            f"data: {{synthetic_records: 48, seq_len: 128}}\ngenerate: {{num_samples: 0}}\n"
                            f"checkpoint: {{every: 0}}\nlog: {{every: 100}}\noutput: {{dir: {tmp_path / 'out'}}}\n")
    for k, v in settings.items():
        cfg[k.replace("__", ".")] = v
    return cfg


def test_version_and_abi():
    assert llmft.version().count(".") == 2


def test_config_set_get_and_errors():
    with llmft.Config() as c:
        c["lora.r"] = 8
        c["lora.target_modules"] = ["q_proj", "v_proj"]
        assert c["lora.r"] == "8"
        assert c["lora.target_modules"] == "[q_proj, v_proj]"
        with pytest.raises(llmft.InvalidArgument, match="did you mean lora.r"):
            c["lora.rank"] = 8
        with pytest.raises(llmft.InvalidArgument):
            c["train.lr"] = -1
        assert "lora:" in c.to_yaml()


@needs_data
@pytest.mark.parametrize("path", ["models/stories260K-hf/tokenizer.json", "tokenizers/llama3_1/tokenizer.json"])
def test_tokenizer_matches_hugging_face(path):
    tokenizers = pytest.importorskip("tokenizers")
    if not (DATA / path).exists():
        pytest.skip(f"SKIPPED: {DATA / path} is absent")
    ours = llmft.Tokenizer(DATA / path)
    theirs = tokenizers.Tokenizer.from_file(str(DATA / path))
    for text in ["Once upon a time, there was a little dog.", "Héllo wörld 123 ... \n\n  tabs\tand 🙂",
                 "<s>special</s> tokens", ""]:
        assert ours.encode(text) == theirs.encode(text).ids, text
        assert ours.decode(ours.encode(text), skip_special_tokens=True) == theirs.decode(theirs.encode(text).ids)


def test_missing_tokenizer_is_not_found():
    with pytest.raises(llmft.NotFound, match="nonexistent"):
        llmft.Tokenizer("/nonexistent/tokenizer.json")


@needs_data
def test_train_save_and_resume_repeat_the_same_losses(tmp_path):
    with job(tmp_path) as cfg, llmft.Trainer(cfg) as t:
        assert t.info()["total_steps"] == 8
        for _ in range(3):
            t.step()
        ckpt = t.save()
        losses = [t.step().loss for _ in range(2)]
    with job(tmp_path, train__resume=ckpt) as cfg, llmft.Trainer(cfg) as t:
        assert t.info()["resumed"] == 1 and t.info()["step"] == 3
        assert [t.step().loss for _ in range(2)] == losses
        steps = [s.step for s in t]
        assert steps == [6, 7, 8]
        adapter = pathlib.Path(t.finish())
        assert (adapter / "adapter_model.safetensors").exists()


@needs_data
def test_keyboard_interrupt_stops_after_a_step_with_a_checkpoint(tmp_path):
    with job(tmp_path, train__max_steps=100000) as cfg, llmft.Trainer(cfg) as t:
        timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            for _ in t:
                pass
        timer.join()
        assert t.done
    ckpts = [p for p in (tmp_path / "out").iterdir() if p.name.startswith("checkpoint-")]
    assert len(ckpts) == 1 and (ckpts[0] / "manifest.json").exists()


def test_closed_handles(tmp_path):
    c = llmft.Config()
    c.close()
    c.close()  # a second close does nothing
    with pytest.raises(llmft.InvalidArgument, match="closed"):
        c["lora.r"] = 4


@needs_data
def test_tokenizers_from_several_threads():
    tok_path = STORIES / "tokenizer.json"
    texts = [f"Story number {i}: the cat sat on the mat." for i in range(200)]
    expected = [llmft.Tokenizer(tok_path).encode(t) for t in texts]
    results = {}

    def work(k):
        with llmft.Tokenizer(tok_path) as tok:
            results[k] = [tok.encode(t) for t in texts]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(results[k] == expected for k in range(4))
