// Packing is invisible to the model: a document inside a packed row gives the same logits as the same document run
// alone (positions restart at 0 and attention never crosses a document boundary), and the loss and gradients of a
// packed row equal the token-weighted sums over its documents run separately. Checked for each architecture family,
// with LoRA, including Mistral's sliding window (shorter than the documents, so it is exercised inside them).
#include <gtest/gtest.h>

#include <random>

#include "model/decoder.hpp"
#include "model_support.hpp"

using namespace llmft;

namespace {

struct Family {
  const char* name;
  const char* config;
};

const Family kFamilies[] = {
    {"llama3", R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 101, "hidden_size": 32,
      "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
      "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": true,
      "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 16}})"},
    {"mistral_window", R"({"architectures": ["MistralForCausalLM"], "vocab_size": 101, "hidden_size": 32,
      "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
      "rms_norm_eps": 1e-5, "tie_word_embeddings": false, "sliding_window": 5})"},
    {"qwen2_bias", R"({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 101, "hidden_size": 32,
      "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
      "rms_norm_eps": 1e-6, "tie_word_embeddings": false})"},
    {"qwen3_qknorm", R"({"architectures": ["Qwen3ForCausalLM"], "vocab_size": 101, "hidden_size": 32,
      "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
      "head_dim": 16, "rms_norm_eps": 1e-6, "tie_word_embeddings": false})"},
};

std::unique_ptr<model::Decoder> make_model(const char* cfg) {
  model::DecoderOptions opt;
  opt.mode = model::TrainMode::kLora;
  opt.lora.target_modules = {"all-linear"};
  opt.lora.r = 4;
  opt.lora.alpha = 8;
  auto m = std::make_unique<model::Decoder>(io::ModelConfig::from_json(nlohmann::json::parse(cfg), "t"), opt);
  m->init_random(3, 0.3);
  m->init_lora(4);
  // LoRA B starts at zero; give it values so that the adapters take part in the comparison.
  for (auto& u : m->units()) {
    if (u.trainable.flat.defined() && u.trainable.flat.numel() > 0) u.trainable.flat.uniform_(-0.2, 0.2);
  }
  m->refresh_compute();
  return m;
}

struct Docs {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<uint8_t>> trained;
};

Docs random_docs(const std::vector<int>& lengths, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  Docs d;
  for (int n : lengths) {
    std::vector<int32_t> ids(static_cast<size_t>(n));
    std::vector<uint8_t> trained(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      ids[static_cast<size_t>(i)] = static_cast<int32_t>(rng() % 101);
      trained[static_cast<size_t>(i)] = i >= n / 3 ? 1 : 0;  // a prompt that is not trained, then the response
    }
    d.ids.push_back(ids);
    d.trained.push_back(trained);
  }
  return d;
}

std::vector<at::Tensor> gradients(model::Decoder& m) {
  std::vector<at::Tensor> g;
  for (auto& u : m.units())
    if (u.grad.defined() && u.grad.numel() > 0) g.push_back(u.grad.clone());
  return g;
}

}  // namespace

TEST(PackedDocuments, LogitsLossAndGradientsEqualDocumentsRunAlone) {
  const Docs docs = random_docs({7, 13, 3, 11}, 42);
  for (const Family& f : kFamilies) {
    SCOPED_TRACE(f.name);
    auto m = make_model(f.config);
    const model::Batch packed = model::make_batch(docs.ids, docs.trained);
    ASSERT_EQ(packed.doc_starts, (std::vector<int64_t>{0, 7, 20, 23, 34}));
    // Positions restart at 0 in every document.
    for (size_t d = 0; d + 1 < packed.doc_starts.size(); ++d)
      EXPECT_EQ(packed.positions[packed.doc_starts[d]].item<int64_t>(), 0);

    const at::Tensor packed_logits = m->forward_logits(packed);
    m->zero_grad();
    const double packed_loss = m->forward_backward(packed);
    const std::vector<at::Tensor> packed_grads = gradients(*m);

    double alone_loss = 0;
    int64_t alone_targets = 0;
    std::vector<at::Tensor> alone_grads;
    for (size_t d = 0; d < docs.ids.size(); ++d) {
      const model::Batch one = model::make_batch({docs.ids[d]}, {docs.trained[d]});
      const at::Tensor logits = m->forward_logits(one);
      const at::Tensor slice = packed_logits.slice(0, packed.doc_starts[d], packed.doc_starts[d + 1]);
      EXPECT_LE(test::rel_err(slice, logits), 1e-5) << "document " << d;
      m->zero_grad();
      alone_loss += m->forward_backward(one);
      alone_targets += one.num_targets;
      const auto g = gradients(*m);
      if (alone_grads.empty()) alone_grads = g;
      else
        for (size_t i = 0; i < g.size(); ++i) alone_grads[i] += g[i];
    }
    // The loss is a sum over targets: the packed row's mean is the token-weighted mean of its documents.
    EXPECT_EQ(packed.num_targets, alone_targets);
    EXPECT_NEAR(packed_loss / static_cast<double>(packed.num_targets), alone_loss / static_cast<double>(alone_targets),
                1e-5 * std::abs(alone_loss / static_cast<double>(alone_targets)));
    ASSERT_FALSE(packed_grads.empty());
    ASSERT_EQ(packed_grads.size(), alone_grads.size());
    for (size_t i = 0; i < packed_grads.size(); ++i) EXPECT_LE(test::rel_err(packed_grads[i], alone_grads[i]), 1e-5);
  }
}

// The end of one document never becomes a target for the start of the next: the last token of a document predicts
// nothing, whatever follows it in the row.
TEST(PackedDocuments, NoTargetCrossesADocumentBoundary) {
  const Docs docs = random_docs({4, 6}, 7);
  std::vector<std::vector<uint8_t>> all_trained = {std::vector<uint8_t>(4, 1), std::vector<uint8_t>(6, 1)};
  const model::Batch b = model::make_batch(docs.ids, all_trained);
  EXPECT_EQ(b.targets[3].item<int64_t>(), -1);
  EXPECT_EQ(b.targets[9].item<int64_t>(), -1);
  EXPECT_EQ(b.targets[4].item<int64_t>(), docs.ids[1][1]);
  EXPECT_EQ(b.num_targets, 3 + 5);
}
