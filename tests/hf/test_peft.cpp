// PEFT judges llmft's adapters, both ways, on small random bases of every family that transformers itself wrote:
//  - an adapter llmft trained (llmft::train) loads with PeftModel.from_pretrained with no missing or unexpected key
//    and no warning, and PEFT's logits equal llmft's for the same base + adapter (fp32, <= 1e-5 relative);
//  - so does the adapter inside a checkpoint-<step>/ folder, beside the optimizer and training state;
//  - an adapter PEFT trained and saved (save_pretrained) loads in llmft with PEFT's logits.
// Targets q/k/v/o and all-linear, with and without rsLoRA, several r / alpha; a Qwen3-MoE base with LoRA on its
// experts.
#include <gtest/gtest.h>

#include "hf_support.hpp"
#include "llmft/train.hpp"
#include "io/safetensors.hpp"
#include "model/model_support.hpp"

using namespace llmft;

namespace {

struct AdapterCase {
  const char* name;
  const char* arch;
  std::vector<std::string> settings;  // lora.* for llmft, as key=value
  bool from_checkpoint = false;       // judge the adapter of <output.dir>/checkpoint-2 (with checkpoint.every=2)
};

void PrintTo(const AdapterCase& c, std::ostream* os) { *os << c.name; }

class OursInPeft : public ::testing::TestWithParam<AdapterCase> {};

TEST_P(OursInPeft, LoadsCleanlyWithTheSameLogits) {
  LLMFT_REQUIRE_DATA(std::string(test::kStories) + "/tokenizer.json");
  const AdapterCase& c = GetParam();
  std::string base = test::make_base(c.arch);
  ASSERT_FALSE(base.empty());
  std::string adapter_dir = test::llmft_lora(base, c.settings);
  if (c.from_checkpoint) adapter_dir = path_join(path_dirname(adapter_dir), "checkpoint-2");
  io::ModelDir dir(base);
  io::PeftAdapter adapter = io::read_peft_adapter(adapter_dir);
  auto ids = test::probe_ids(dir.config().vocab_size);
  std::string out = path_join(test::temp_dir("peft-logits"), "peft.safetensors");
  ASSERT_TRUE(test::judge("hf_judge.py", {"peft-logits", base, adapter_dir, test::write_ids(ids), out}));
  io::SafetensorsFile peft(out);
  auto ours = test::load_decoder(dir, &adapter);
  auto plain = test::load_decoder(dir, nullptr);
  double worst = 0, moved = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    at::Tensor theirs = test::to_tensor(peft.get("logits." + std::to_string(i)));
    at::Tensor mine = test::logits_of(*ours, ids[i]);
    worst = std::max(worst, test::rel_err(mine, theirs));
    moved = std::max(moved, test::rel_err(test::logits_of(*plain, ids[i]), theirs));
  }
  EXPECT_LE(worst, 1e-5) << "llmft's logits with its adapter differ from PEFT's";
  EXPECT_GT(moved, 1e-3) << "the adapter should change the model (else this comparison proves nothing)";
  std::printf("[ peft ] %s: %zu tensors, logits rel. err. %.2e (adapter moves logits by %.2e)\n", c.name,
              adapter.weights->tensors().size(), worst, moved);
}

INSTANTIATE_TEST_SUITE_P(
    Adapters, OursInPeft,
    ::testing::Values(
        AdapterCase{"llama_qkvo_r8", "llama", {"lora.target_modules=q_proj,k_proj,v_proj,o_proj", "lora.r=8", "lora.alpha=16"}},
        AdapterCase{"llama_all_linear_rslora", "llama", {"lora.target_modules=all-linear", "lora.r=4", "lora.alpha=32", "lora.use_rslora=true"}},
        AdapterCase{"mistral_all_linear", "mistral", {"lora.target_modules=all-linear", "lora.r=8", "lora.alpha=8"}},
        AdapterCase{"qwen2_qkvo_rslora_r16", "qwen2", {"lora.target_modules=q_proj,k_proj,v_proj,o_proj", "lora.r=16", "lora.alpha=32", "lora.use_rslora=true"}},
        AdapterCase{"qwen3_all_linear", "qwen3", {"lora.target_modules=all-linear", "lora.r=8", "lora.alpha=16"}},
        AdapterCase{"llama_checkpoint_adapter", "llama", {"lora.target_modules=all-linear", "lora.r=8", "lora.alpha=16", "checkpoint.every=2"}, true},
        // Per-expert adapters (vLLM's layout), which PEFT converts to transformers 5's fused experts on loading.
        AdapterCase{"qwen3_moe_attention_experts", "qwen3_moe", {"lora.target_modules=q_proj,v_proj,experts", "lora.r=4", "lora.alpha=8"}},
        AdapterCase{"qwen3_moe_all_linear", "qwen3_moe", {"lora.target_modules=all-linear", "lora.r=8", "lora.alpha=16"}}),
    [](const auto& info) { return std::string(info.param.name); });

// An adapter on a mixture's experts serves generation with the configuration's defaults (lora.dropout 0.05 is a
// training setting: it must not refuse the adapter at inference).
TEST(ExpertAdapter, GeneratesWithTheDefaultSettings) {
  LLMFT_REQUIRE_DATA(std::string(test::kStories) + "/tokenizer.json");
  const std::string base = test::make_base("qwen3_moe");
  ASSERT_FALSE(base.empty());
  const std::string adapter = test::llmft_lora(base, {"lora.target_modules=q_proj,experts", "lora.r=4", "lora.alpha=8"});
  const auto out = generate(load_config("", {"model.path=" + base, "generate.adapter=" + adapter, "data.template=none",
                                             "generate.max_new_tokens=5"}),
                            {"Once upon a time"});
  ASSERT_EQ(out.size(), 1u);
}

struct PeftCase {
  const char* name;
  const char* arch;
  const char* spec;  // LoraConfig fields
};

void PrintTo(const PeftCase& c, std::ostream* os) { *os << c.name; }

class PeftInOurs : public ::testing::TestWithParam<PeftCase> {};

TEST_P(PeftInOurs, LoadsWithPeftsLogits) {
  LLMFT_REQUIRE_DATA(std::string(test::kStories) + "/tokenizer.json");
  const PeftCase& c = GetParam();
  std::string base = test::make_base(c.arch);
  ASSERT_FALSE(base.empty());
  io::ModelDir dir(base);
  auto ids = test::probe_ids(dir.config().vocab_size);
  std::string work = test::temp_dir("peft-train");
  std::string adapter_dir = work + "/adapter", out = work + "/peft.safetensors";
  ASSERT_TRUE(test::judge("hf_judge.py", {"peft-train", base, adapter_dir, c.spec, test::write_ids(ids), out}));
  io::PeftAdapter adapter = io::read_peft_adapter(adapter_dir);
  io::SafetensorsFile peft(out);
  auto ours = test::load_decoder(dir, &adapter);
  double worst = 0;
  for (size_t i = 0; i < ids.size(); ++i)
    worst = std::max(worst, test::rel_err(test::logits_of(*ours, ids[i]), test::to_tensor(peft.get("logits." + std::to_string(i)))));
  EXPECT_LE(worst, 1e-5) << "llmft's logits with PEFT's adapter differ from PEFT's";
  std::printf("[ peft ] %s: PEFT-trained adapter in llmft, logits rel. err. %.2e\n", c.name, worst);
}

INSTANTIATE_TEST_SUITE_P(
    Adapters, PeftInOurs,
    ::testing::Values(
        PeftCase{"llama_all_linear", "llama", R"({"r": 8, "lora_alpha": 16, "target_modules": "all-linear"})"},
        PeftCase{"qwen3_qv_rslora", "qwen3", R"({"r": 4, "lora_alpha": 8, "use_rslora": true, "target_modules": ["q_proj", "v_proj"]})"},
        PeftCase{"mistral_mlp", "mistral", R"({"r": 6, "lora_alpha": 12, "target_modules": ["gate_proj", "up_proj", "down_proj"]})"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
