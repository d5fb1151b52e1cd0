"""The Python package against the library and against Hugging Face tokenizers: tokenization, configuration errors,
training steps, save and resume with the same losses, KeyboardInterrupt, closed handles, threads, chat templates and
greedy generation against transformers, preparation, log sinks, callbacks, a library of another ABI refused."""
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


CHAT = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"}]


@pytest.mark.parametrize("name", ["qwen3", "llama3_1"])
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_chat_template_matches_transformers(name, generation_prompt):
    transformers = pytest.importorskip("transformers")
    folder = DATA / "tokenizers" / name
    if not (folder / "tokenizer_config.json").exists():
        pytest.skip(f"SKIPPED: {folder} is absent")
    theirs = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                                                  **{k: v for k, v in __import__("json").loads(
                                                      (folder / "tokenizer_config.json").read_text()).items()
                                                     if k in ("chat_template", "bos_token", "eos_token")})
    extra = {"date_string": "26 Jul 2024"} if name == "llama3_1" else {"enable_thinking": False}
    expected = theirs.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=generation_prompt, **extra)
    with llmft.Tokenizer(folder) as ours:
        assert ours.apply_chat_template(CHAT, add_generation_prompt=generation_prompt, **extra) == expected


def test_chat_template_errors():
    tok_json = '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}'
    with llmft.Tokenizer(json=tok_json) as tok:
        assert tok.vocab_size == 1
        assert tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                       template="{{ messages[0].content | upper }}") == "HI"
        with pytest.raises(llmft.InvalidArgument, match="no chat template|chat_template|template"):
            tok.apply_chat_template([{"role": "user", "content": "hi"}])
        with pytest.raises(llmft.InvalidArgument, match="role"):
            tok.apply_chat_template([{"content": "hi"}], template="x")


@needs_data
def test_prepare_writes_shards_and_progress_can_cancel(tmp_path):
    with job(tmp_path, tokenizer__path=STORIES) as cfg:
        with pytest.raises(llmft.Cancelled):
            llmft.prepare(cfg, progress=lambda records, done, total: True)
        assert not (tmp_path / "out" / "manifest.json").exists()
        with pytest.raises(ZeroDivisionError):
            llmft.prepare(cfg, progress=lambda records, done, total: 1 / 0)
        seen = []
        s = llmft.prepare(cfg, progress=lambda records, done, total: seen.append(records))
        assert s.records == 48 and s.used == 48 and s.train_rows > 0 and seen[-1] == 48
        assert pathlib.Path(s.dir) == tmp_path / "out" and (tmp_path / "out" / "manifest.json").exists()


@needs_data
def test_trainer_logs_to_its_own_sink_and_run_callback_stops(tmp_path):
    process_wide, own = [], []
    llmft.set_log(lambda level, message: process_wide.append(message))
    try:
        with job(tmp_path, log__every=2) as cfg, llmft.Trainer(cfg, log=lambda l, m: own.append((l, m)),
                                                               log_level=llmft.INFO) as t:
            seen = []
            t.run(lambda s: seen.append(s.step) or s.step >= 3)
            assert seen == [1, 2, 3] and t.done  # asked at 3: step 4 is the last (no callback), checkpointed
            assert t.metrics()["step"] == 4 and "loss" in t.metrics()
            assert any("trainable params" in m for _, m in own) and process_wide == []
    finally:
        llmft.set_log(None)
    with job(tmp_path, train__resume="auto") as cfg, llmft.Trainer(cfg, log_level=llmft.WARN) as t:
        assert t.info()["step"] == 4

        def boom(s):
            raise ValueError("host callback failed")
        with pytest.raises(ValueError, match="host callback failed"):
            t.run(boom)
        assert t.done and t.info()["step"] == 6  # stopped after the next step, checkpointed


@needs_data
def test_generator_matches_transformers_greedy(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(STORIES), torch_dtype=torch.float32)
    prompt = llmft.Tokenizer(STORIES).encode("Once upon a time, there was")
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), max_new_tokens=10, do_sample=False, eos_token_id=None)
    expected = out[0, len(prompt):].tolist()
    with job(tmp_path) as cfg, llmft.Generator(cfg, log_level=llmft.WARN) as g:
        got = g.continue_ids(prompt, max_new_tokens=10)
        eos = 2  # stories260K's </s>: llmft stops there, transformers (eos_token_id=None) goes on
        assert got == expected[: len(got)] and (len(got) == 10 or got[-1] == eos), (got, expected)
        first = g.answer("Tell me a story.", max_new_tokens=6)
        g.answer("Name a colour.", max_new_tokens=6)  # so the next is generated again, not the kept answer
        assert g.answer("Tell me a story.", max_new_tokens=6) == first
        with pytest.raises(llmft.InvalidArgument, match="vocabulary"):
            g.continue_ids([10 ** 6])


def test_a_library_of_another_abi_version_is_refused(tmp_path):
    import shutil
    import subprocess
    import sys
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("SKIPPED: no C compiler to build a stand-in library")
    (tmp_path / "fake.c").write_text("int llmft_abi_version(void) { return 99; }\n")
    fake = tmp_path / "libllmft.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(fake), str(tmp_path / "fake.c")], check=True)
    env = dict(os.environ, LLMFT_LIBRARY=str(fake))
    r = subprocess.run([sys.executable, "-c", "import llmft"], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "ABI version 99" in r.stderr and "needs 1" in r.stderr, r.stderr


@needs_data
def test_tensorboard_reads_the_scalars_llmft_logged(tmp_path):
    from tensorboard.backend.event_processing import event_accumulator as ea  # a pinned test dependency
    import json as _json
    with job(tmp_path, log__every=2, log__tensorboard=True, train__eval_every=4) as cfg, llmft.Trainer(cfg) as t:
        for _ in t:
            pass
        t.finish()
    records = [_json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    acc = ea.EventAccumulator(str(tmp_path / "out" / "runs"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/grad_norm", "train/learning_rate", "train/epoch", "train/tokens_per_second",
            "train/peak_rss_mb", "eval/loss", "eval/perplexity", "eval/accuracy"} <= tags, tags
    train = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval_loss" in r]
    got = acc.Scalars("train/loss")
    assert [e.step for e in got] == [r["step"] for r in train] == [2, 4, 6, 8]
    assert [e.value for e in got] == pytest.approx([r["loss"] for r in train], rel=1e-6)  # stored as float32
    lr = acc.Scalars("train/learning_rate")
    assert [e.value for e in lr] == pytest.approx([r["learning_rate"] for r in train], rel=1e-6)
    ev = acc.Scalars("eval/loss")
    assert [e.step for e in ev] == [r["step"] for r in evals] == [0, 4, 8]  # before, at 4, after
    assert [e.value for e in ev] == pytest.approx([r["eval_loss"] for r in evals], rel=1e-6)
    assert all(e.value > 0 for e in acc.Scalars("train/peak_rss_mb"))
    assert [e.step for e in acc.Scalars("train/epoch")] == [2, 4, 6, 8]  # epoch only with the training records
    # A run started afresh in the same folder replaces the curves (its SessionLog START drops the earlier points).
    with job(tmp_path, log__every=4, log__tensorboard=True, train__lr=1e-3) as cfg, llmft.Trainer(cfg) as t:
        for _ in t:
            pass
        t.finish()
    second = [r for r in (_json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines())
              if "loss" in r]
    acc = ea.EventAccumulator(str(tmp_path / "out" / "runs"), size_guidance={ea.SCALARS: 0})
    acc.Reload()
    assert len(list((tmp_path / "out" / "runs").glob("events.out.tfevents.*"))) == 2
    got = acc.Scalars("train/loss")
    assert [e.step for e in got] == [4, 8]
    assert [e.value for e in got] == pytest.approx([r["loss"] for r in second], rel=1e-6)


# Katib's default StdOut metrics collector filter (kubeflow/katib pkg/metricscollector/v1beta1/common: DefaultFilter).
KATIB_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"


@needs_data
def test_katib_collector_parses_the_metrics_lines(tmp_path):
    import json as _json
    import re
    lines = []
    with job(tmp_path, log__every=2, log__katib=True, train__eval_every=4) as cfg, \
            llmft.Trainer(cfg, log=lambda level, m: lines.append(m), log_level=llmft.INFO) as t:
        for _ in t:
            pass
        t.finish()
    records = [_json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    parsed = []
    for line in lines:
        pairs = {m.group(1): m.group(2) for m in re.finditer(KATIB_FILTER, line)}
        if "step" in pairs and ("loss" in pairs or "eval_loss" in pairs):
            parsed.append({k: float(v) for k, v in pairs.items()})
    assert len(parsed) == len(records) and len(parsed) >= 6
    for got, want in zip(parsed, records):
        assert got == {k: v for k, v in want.items() if v is not None}, (got, want)
