// Activation checkpointing (DecoderOptions::checkpoint_layers, train.activation_checkpointing): the backward that
// recomputes each layer from its input gives the loss and every gradient of the backward that kept the activations,
// bit for bit: LoRA with dropout (the masks replayed from the generator's state before the layer, and the generator
// left where the stored pass leaves it), full fine-tuning, a Qwen3-MoE whose router trains with the load-balancing
// loss (routing counted once, not again when recomputed), and bf16.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "model/decoder.hpp"

using namespace llmft;

namespace {

struct Case {
  const char* name;
  const char* config;
  model::TrainMode mode;
  double dropout;
  at::ScalarType dtype;
};

const char* kLlama = R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 61, "hidden_size": 32,
  "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
  "rms_norm_eps": 1e-5, "tie_word_embeddings": true})";
const char* kMoe = R"({"architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 53, "hidden_size": 32,
  "intermediate_size": 40, "moe_intermediate_size": 12, "num_hidden_layers": 3, "num_attention_heads": 4,
  "num_key_value_heads": 2, "head_dim": 8, "num_experts": 5, "num_experts_per_tok": 2, "norm_topk_prob": true,
  "mlp_only_layers": [1], "router_aux_loss_coef": 0.05, "tie_word_embeddings": false})";

std::unique_ptr<model::Decoder> make(const Case& c, bool checkpoint) {
  model::DecoderOptions o;
  o.dtype = c.dtype;
  o.mode = c.mode;
  o.lora.r = 4;
  o.lora.dropout = c.dropout;
  o.lora.target_modules = {c.dropout > 0 ? "q_proj" : "all-linear", "v_proj", "down_proj"};
  if (c.config == kMoe) o.lora.target_modules = {"q_proj", "v_proj", "experts"};
  o.checkpoint_layers = checkpoint;
  auto m = std::make_unique<model::Decoder>(io::ModelConfig::from_json(nlohmann::json::parse(c.config), "test"), o);
  m->init_random(7, 0.2);
  if (c.mode == model::TrainMode::kLora) {
    m->init_lora(11);
    for (auto& u : m->units())  // B away from zero, so every gradient flows
      if (!u.trainable.empty()) u.trainable.flat.normal_(0, 0.2, at::make_generator<at::CPUGeneratorImpl>(3));
    m->refresh_compute();
  }
  return m;
}

class Checkpointing : public ::testing::TestWithParam<Case> {};

TEST_P(Checkpointing, GradientsAreBitForBitThoseOfTheStoredActivations) {
  const Case& c = GetParam();
  auto kept = make(c, false), recomputed = make(c, true);
  const int64_t V = kept->config().vocab_size;
  std::vector<std::vector<int32_t>> docs;
  std::vector<std::vector<uint8_t>> trained;
  for (int len : {7, 12, 3, 9}) {
    docs.emplace_back();
    for (int t = 0; t < len; ++t) docs.back().push_back(static_cast<int32_t>((t * 13 + len * 7) % V));
    trained.emplace_back(static_cast<size_t>(len), 1);
  }
  const model::Batch b = model::make_batch(docs, trained);
  at::Generator g1 = at::make_generator<at::CPUGeneratorImpl>(5), g2 = at::make_generator<at::CPUGeneratorImpl>(5);
  const double l1 = kept->forward_backward(b, nullptr, c.dropout > 0 ? &g1 : nullptr);
  const double l2 = recomputed->forward_backward(b, nullptr, c.dropout > 0 ? &g2 : nullptr);
  EXPECT_EQ(l1, l2);
  size_t compared = 0;
  for (size_t i = 0; i < kept->units().size(); ++i) {
    const at::Tensor& a = kept->units()[i].grad;
    if (!a.defined() || a.numel() == 0) continue;
    EXPECT_TRUE(at::equal(a, recomputed->units()[i].grad)) << kept->units()[i].name;
    EXPECT_GT(a.abs().max().item<double>(), 0.0) << kept->units()[i].name;
    ++compared;
  }
  EXPECT_GT(compared, 2u);
  // The dropout generator ends where the stored pass leaves it (the replay drew from a copy).
  if (c.dropout > 0) {
    c10::InferenceMode guard;
    EXPECT_TRUE(at::equal(at::rand({8}, g1), at::rand({8}, g2)));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Modes, Checkpointing,
    ::testing::Values(Case{"lora_dropout", kLlama, model::TrainMode::kLora, 0.1, at::kFloat},
                      Case{"full", kLlama, model::TrainMode::kFull, 0.0, at::kFloat},
                      Case{"moe_full_router_balance", kMoe, model::TrainMode::kFull, 0.0, at::kFloat},
                      Case{"moe_lora_experts", kMoe, model::TrainMode::kLora, 0.0, at::kFloat},
                      Case{"lora_dropout_bf16", kLlama, model::TrainMode::kLora, 0.1, at::kBFloat16}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
