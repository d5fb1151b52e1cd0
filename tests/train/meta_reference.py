"""Meta-layout Llama checkpoints and transformers' own conversion of them, for tests/train/test_convert.cpp.

    python meta_reference.py make DIR TOKENIZER_MODEL     writes DIR/<case>/meta (params.json, consolidated.NN.pth,
                                                         tokenizer.model) and DIR/<case>/reference (what
                                                         transformers' convert_llama_weights_to_hf.py writes)
    python meta_reference.py check OUT REFERENCE          transformers loads OUT (model and tokenizer) and its
                                                         logits equal REFERENCE's

The checkpoints are written as Meta's model-parallel training saved them: each tensor split across the files of
the model-parallel ranks (wq / wk / wv / w1 / w3 / output by rows, wo / w2 / tok_embeddings by columns, norms
replicated, rope.freqs beside them), in bf16 with torch.save. The converter is transformers 4.46.3's
(scripts/deps.sh test puts it in .venv/share/llmft-oracles); its write_model() runs on the installed transformers."""
import importlib.util
import json
import os
import shutil
import sys

import torch

CASES = {  # name: (dim, layers, heads, kv_heads, multiple_of, model-parallel files, llama version)
    "gqa_two_files": (64, 2, 8, 4, 32, 2, "2"),
    "mha_one_file": (48, 2, 4, 4, 16, 1, "2"),
    "llama1_four_files": (64, 1, 8, 8, 32, 4, "1"),
}


def make(root, tokenizer_model):
    conv_path = os.path.join(sys.prefix, "share", "llmft-oracles", "convert_llama_weights_to_hf.py")
    spec = importlib.util.spec_from_file_location("convert_llama", conv_path)
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    vocab = 512
    for case, (dim, layers, heads, kv, multiple_of, n, version) in CASES.items():
        g = torch.Generator().manual_seed(len(case))
        meta = os.path.join(root, case, "meta")
        os.makedirs(meta, exist_ok=True)
        hd = dim // heads
        hidden = conv.compute_intermediate_size(dim, 1, multiple_of)
        params = {"dim": dim, "n_layers": layers, "n_heads": heads, "multiple_of": multiple_of, "norm_eps": 1e-5,
                  "vocab_size": -1}
        if kv != heads:
            params["n_kv_heads"] = kv
        json.dump(params, open(os.path.join(meta, "params.json"), "w"))
        shutil.copy(tokenizer_model, os.path.join(meta, "tokenizer.model"))
        full = {"tok_embeddings.weight": torch.randn(vocab, dim, generator=g),
                "norm.weight": torch.rand(dim, generator=g) + 0.5,
                "output.weight": torch.randn(vocab, dim, generator=g) * 0.1,
                "rope.freqs": torch.rand(hd // 2, generator=g)}
        for i in range(layers):
            p = f"layers.{i}."
            for name, shape in [("attention.wq", (dim, dim)), ("attention.wk", (kv * hd, dim)),
                                ("attention.wv", (kv * hd, dim)), ("attention.wo", (dim, dim)),
                                ("feed_forward.w1", (hidden, dim)), ("feed_forward.w2", (dim, hidden)),
                                ("feed_forward.w3", (hidden, dim))]:
                full[p + name + ".weight"] = torch.randn(*shape, generator=g) * 0.1
            full[p + "attention_norm.weight"] = torch.rand(dim, generator=g) + 0.5
            full[p + "ffn_norm.weight"] = torch.rand(dim, generator=g) + 0.5

        def split(k, v):
            if k.endswith(("wq.weight", "wk.weight", "wv.weight", "w1.weight", "w3.weight", "output.weight")):
                return list(v.chunk(n, 0))
            if k.endswith(("wo.weight", "w2.weight")) or k == "tok_embeddings.weight":
                return list(v.chunk(n, 1))
            return [v] * n
        shards = [{} for _ in range(n)]
        for k, v in full.items():
            for s, part in zip(shards, split(k, v.bfloat16())):
                s[k] = part.clone()
        for i, s in enumerate(shards):
            torch.save(s, os.path.join(meta, f"consolidated.{i:02d}.pth"))
        conv.write_model(model_path=os.path.join(root, case, "reference"), input_base_path=meta, num_shards=n,
                         llama_version=version, safe_serialization=True, vocab_size=vocab)
    print("made", sorted(CASES))


def check(out, reference):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    ids = torch.tensor([[1, 17, 300, 5, 9]])
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(out).float()(ids).logits
        want = AutoModelForCausalLM.from_pretrained(reference).float()(ids).logits
    assert torch.equal(got, want), (got - want).abs().max()
    tok = AutoTokenizer.from_pretrained(out)
    enc = tok("Once upon a time").input_ids
    assert enc[0] == 1 and len(enc) > 2, enc
    print("transformers loads", out, "with the reference's logits; tokens", enc)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    else:
        check(sys.argv[2], sys.argv[3])
