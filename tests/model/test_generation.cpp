// Generation with the KV cache equals recomputing the whole sequence at every step; sampling is reproducible per
// seed; weights stored as BF16 / F16 load; bf16 compute trains; LoRA starts as PEFT starts it.
#include <gtest/gtest.h>

#include "io/checkpoint.hpp"
#include "io/dtype_convert.hpp"
#include "model/decoder.hpp"
#include "model_support.hpp"

using namespace llmft;

namespace {

const char* kQwen3 = R"({"architectures": ["Qwen3ForCausalLM"], "vocab_size": 97, "hidden_size": 32,
  "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
  "head_dim": 16, "rms_norm_eps": 1e-6, "tie_word_embeddings": false})";
const char* kMistral = R"({"architectures": ["MistralForCausalLM"], "vocab_size": 97, "hidden_size": 32,
  "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
  "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "sliding_window": 4})";

std::unique_ptr<model::Decoder> random_model(const char* cfg, model::TrainMode mode = model::TrainMode::kNone,
                                             at::ScalarType dtype = at::kFloat) {
  model::DecoderOptions opt;
  opt.mode = mode;
  opt.dtype = dtype;
  opt.lora.target_modules = {"all-linear"};
  auto m = std::make_unique<model::Decoder>(io::ModelConfig::from_json(nlohmann::json::parse(cfg), "t"), opt);
  m->init_random(9, 0.5);
  if (mode == model::TrainMode::kLora) m->init_lora(10);
  return m;
}

}  // namespace

TEST(Generation, KvCacheEqualsFullRecomputation) {
  for (const char* cfg : {kQwen3, kMistral}) {  // Mistral: the sliding window crosses the cache
    auto m = random_model(cfg);
    std::vector<int32_t> prompt = {5, 17, 3, 44, 8};
    model::GenerateOptions g;
    g.max_new_tokens = 12;
    auto out = m->generate(prompt, g);
    ASSERT_EQ(out.size(), 12u);
    std::vector<int32_t> seq = prompt;
    for (int32_t next : out) {
      model::Batch b = model::make_batch({seq}, {std::vector<uint8_t>(seq.size(), 0)});
      at::Tensor logits = m->forward_logits(b);  // (N, V)
      EXPECT_EQ(logits[static_cast<int64_t>(seq.size()) - 1].argmax().item<int64_t>(), next);
      seq.push_back(next);
    }
  }
}

TEST(Generation, SamplingIsReproduciblePerSeedAndStops) {
  auto m = random_model(kQwen3);
  model::GenerateOptions g;
  g.max_new_tokens = 20;
  g.temperature = 1.0;
  g.top_p = 0.9;
  g.seed = 7;
  auto a = m->generate({1, 2, 3}, g), b = m->generate({1, 2, 3}, g);
  EXPECT_EQ(a, b);
  g.seed = 8;
  EXPECT_NE(m->generate({1, 2, 3}, g), a);
  g.seed = 7;
  g.stop_ids = {a[3]};
  auto c = m->generate({1, 2, 3}, g);
  EXPECT_LE(c.size(), 4u);
  EXPECT_EQ(c.back(), a[3]);
}

TEST(Weights, Bf16AndF16FilesLoad) {
  auto m = random_model(kQwen3);
  model::Batch b = model::make_batch({{4, 9, 12, 40, 2}}, {{0, 1, 1, 1, 1}});
  at::Tensor ref = m->forward_logits(b);
  for (auto [dtype, tol] : {std::pair{at::kBFloat16, 5e-2}, std::pair{at::kHalf, 5e-3}}) {
    std::map<std::string, at::Tensor> ts;
    m->for_each_parameter([&](const model::ParamSlot& s, const at::Tensor& t, bool) { ts[s.name] = t.to(dtype); });
    std::string dir = test::temp_dir("w16");
    std::vector<io::TensorView> views;
    std::vector<at::Tensor> keep;
    for (auto& [name, t] : ts) {
      at::Tensor c = t.contiguous();
      keep.push_back(c);
      views.push_back({name, dtype == at::kBFloat16 ? io::DType::kBF16 : io::DType::kF16,
                       std::vector<int64_t>(c.sizes().begin(), c.sizes().end()), static_cast<const uint8_t*>(c.data_ptr()),
                       static_cast<size_t>(c.numel()) * 2});
    }
    io::write_safetensors(dir + "/model.safetensors", views);
    write_file_atomic(dir + "/config.json", m->config().to_json().dump());
    io::ModelDir md(dir);
    model::DecoderOptions opt;
    opt.mode = model::TrainMode::kNone;
    model::Decoder loaded(md.config(), opt);
    loaded.load_base([&](const std::string& n) { return md.find(n); }, dir);
    EXPECT_LE(test::rel_err(loaded.forward_logits(b), ref), tol) << c10::toString(dtype);
  }
}

TEST(Weights, Bf16ComputeTrains) {
  auto m = random_model(kQwen3, model::TrainMode::kLora, at::kBFloat16);
  auto fp32 = random_model(kQwen3, model::TrainMode::kLora, at::kFloat);
  model::Batch b = model::make_batch({{4, 9, 12, 40, 2, 7, 7, 1}}, {{0, 1, 1, 1, 1, 1, 1, 1}});
  double l16 = m->forward_loss(b), l32 = fp32->forward_loss(b);
  EXPECT_NEAR(l16, l32, 0.05 * l32);  // same weights (bf16-rounded), same loss to bf16 precision
  m->zero_grad();
  m->forward_backward(b);
  double g = 0;
  for (auto& u : m->units()) g += u.grad.defined() ? u.grad.abs().sum().item<double>() : 0;
  EXPECT_GT(g, 0);
}

TEST(Lora, InitialisedAsPeftDoes) {
  auto m = random_model(kQwen3, model::TrainMode::kLora);
  size_t a_count = 0;
  for (auto& u : m->units()) {
    for (size_t i = 0; i < u.trainable.slots().size(); ++i) {
      const auto& s = u.trainable.slots()[i];
      at::Tensor t = u.trainable.view(i);
      if (s.name.find("lora_B") != std::string::npos) {
        EXPECT_EQ(t.abs().max().item<float>(), 0.0f) << s.name;
      } else {
        // Kaiming-uniform(a = sqrt(5)): uniform in [-1/sqrt(in), 1/sqrt(in)]; its variance is bound^2 / 3.
        double bound = 1.0 / std::sqrt(static_cast<double>(s.shape[1]));
        EXPECT_LE(t.abs().max().item<double>(), bound) << s.name;
        EXPECT_NEAR(t.pow(2).mean().item<double>(), bound * bound / 3, 0.35 * bound * bound / 3) << s.name;
        ++a_count;
      }
    }
  }
  EXPECT_EQ(a_count, 3u * 7u);
  // B = 0: the adapted model starts as the base model.
  auto base = random_model(kQwen3);
  model::Batch b = model::make_batch({{3, 1, 4, 1, 5}}, {{0, 1, 1, 1, 1}});
  EXPECT_LE(test::rel_err(m->forward_logits(b), base->forward_logits(b)), 1e-6);
}

TEST(Generation, BatchedPromptsEachGetTheContinuationTheyGetAlone) {
  // Prompts of different lengths decode together (one packed prefill, then one token of each per step); the sliding
  // window of Mistral and a stop token that ends one sequence early do not disturb the others.
  for (const char* cfg : {kQwen3, kMistral}) {
    auto m = random_model(cfg);
    const std::vector<std::vector<int32_t>> prompts = {{5, 17, 3, 44, 8, 9, 61}, {2}, {70, 12, 33}};
    model::GenerateOptions g;
    g.max_new_tokens = 9;
    const auto alone0 = m->generate(prompts[1], g);
    g.stop_ids = {alone0[2]};  // the second prompt stops after three tokens
    std::vector<std::vector<int32_t>> alone;
    for (const auto& p : prompts) alone.push_back(m->generate(p, g));
    EXPECT_EQ(alone[1].size(), 3u);
    EXPECT_EQ(m->generate_batch(prompts, g), alone);
    g.temperature = 0.8;  // sampling: each prompt draws from its own generator, as it would alone
    std::vector<std::vector<int32_t>> sampled_alone;
    for (const auto& p : prompts) sampled_alone.push_back(m->generate(p, g));
    EXPECT_EQ(m->generate_batch(prompts, g), sampled_alone);
  }
}
