// Tensor parallelism (model/decoder.hpp): a world of 2 or 4 ranks (threads of this process, one Gloo communicator
// each), every rank holding its slices of the heads, the MLP and the vocabulary, gives the logits (within 1e-5) and
// the greedy and sampled tokens (exactly) of one process holding the whole model, for Llama (GQA, untied), Qwen2
// (q/k/v biases), Qwen3 (q/k norms, tied) and Mistral (sliding window) configurations, with and without a LoRA
// adapter; each rank reads only its slices; configurations that do not split are refused by name.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <limits>
#include <map>
#include <set>

#include "dist_support.hpp"
#include "io/safetensors.hpp"
#include "llmft/error.hpp"
#include "model/decoder.hpp"
#include "train/plan.hpp"

using namespace llmft;

namespace {

// Vocabularies of 101 do not split evenly over 2 or 4 ranks: the last rank's padding rows are exercised.
const std::map<std::string, const char*> kConfigs = {
    {"llama", R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 101, "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4,
      "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": false})"},
    {"qwen2", R"({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 101, "hidden_size": 32,
      "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
      "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": false})"},
    {"qwen3", R"({"architectures": ["Qwen3ForCausalLM"], "vocab_size": 101, "hidden_size": 32,
      "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4,
      "head_dim": 16, "rms_norm_eps": 1e-6, "tie_word_embeddings": true})"},
    {"mistral", R"({"architectures": ["MistralForCausalLM"], "vocab_size": 101, "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4,
      "rms_norm_eps": 1e-5, "tie_word_embeddings": false, "sliding_window": 5})"},
};

model::DecoderOptions options(bool lora, comm::Communicator* tp = nullptr) {
  model::DecoderOptions o;
  o.mode = lora ? model::TrainMode::kLora : model::TrainMode::kNone;
  o.lora.r = 4;
  o.lora.alpha = 8;
  o.lora.target_modules = {"all-linear"};
  o.tp = tp;
  return o;
}

// A checkpoint in memory: every tensor of a whole model, by name, as the views a model directory hands out.
struct Checkpoint {
  std::map<std::string, at::Tensor> tensors;
  std::map<std::string, io::TensorView> views;
  void add(const std::string& name, const at::Tensor& t) {
    at::Tensor c = t.to(at::kFloat).contiguous().clone();
    tensors[name] = c;
    io::TensorView v;
    v.name = name;
    v.dtype = io::DType::kF32;
    v.shape = std::vector<int64_t>(c.sizes().begin(), c.sizes().end());
    v.data = static_cast<const uint8_t*>(c.data_ptr());
    v.nbytes = static_cast<size_t>(c.nbytes());
    views[name] = v;
  }
  const io::TensorView* find(const std::string& n) const {
    auto it = views.find(n);
    return it == views.end() ? nullptr : &it->second;
  }
};

const std::vector<std::vector<int32_t>> kPrompts = {{3, 17, 44, 8, 91, 2, 60}, {5}, {100, 9, 33, 12}};

struct Outputs {
  at::Tensor logits;
  std::vector<std::vector<int32_t>> greedy, sampled;
};

Outputs run(model::Decoder& m) {
  Outputs o;
  o.logits = m.forward_logits(model::make_batch({kPrompts[0], kPrompts[2]},
                                                {std::vector<uint8_t>(7, 1), std::vector<uint8_t>(4, 1)}));
  model::GenerateOptions g;
  g.max_new_tokens = 10;
  o.greedy = m.generate_batch(kPrompts, g);
  g.temperature = 0.9;
  g.top_p = 0.8;
  g.seed = 7;
  g.stop_ids = {11};
  o.sampled = m.generate_batch(kPrompts, g);
  return o;
}

}  // namespace

class TensorParallel : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(TensorParallel, WorldsOf2And4MatchOneProcess) {
  c10::InferenceMode guard;
  const auto& [name, lora] = GetParam();
  const io::ModelConfig cfg = io::ModelConfig::from_json(nlohmann::json::parse(kConfigs.at(name)), name);
  // The whole model, with weights large enough that a wrong slice shows.
  model::Decoder whole(cfg, options(lora));
  whole.init_random(5, 0.3);
  Checkpoint ck;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(6);
  whole.for_each_parameter([&](const model::ParamSlot& s, const at::Tensor& t, bool trainable) {
    // LoRA B starts at zero; a trained adapter does not.
    if (trainable) const_cast<at::Tensor&>(t).normal_(0.0, 0.2, gen);
    if (s.name.find(".bias") != std::string::npos) const_cast<at::Tensor&>(t).normal_(0.0, 0.2, gen);
    ck.add(s.name, t);
  });
  whole.load_base([&](const std::string& n) { return ck.find(n); }, "memory");
  if (lora) whole.load_lora([&](const std::string& n) { return ck.find(n); }, "memory");
  const Outputs want = run(whole);
  ASSERT_EQ(want.greedy[0].size(), 10u);

  for (int n : {2, 4}) {
    std::vector<Outputs> got(static_cast<size_t>(n));
    const auto errors = test::on_world(n, 120, [&](int r, comm::Communicator& c) {
      c10::InferenceMode g;
      model::Decoder part(cfg, options(lora, &c));
      EXPECT_EQ(part.local_config().num_attention_heads, cfg.num_attention_heads / n);
      EXPECT_EQ(part.local_config().vocab_size, (cfg.vocab_size + n - 1) / n);
      part.load_base([&](const std::string& t) { return ck.find(t); }, "memory");
      if (lora) part.load_lora([&](const std::string& t) { return ck.find(t); }, "memory");
      got[static_cast<size_t>(r)] = run(part);
      // Under tensor parallelism a rank keeps about 1/n of the layers' weights.
      int64_t held = 0, total = 0;
      for (const auto& u : part.units()) held += u.frozen.numel();
      for (const auto& u : whole.units()) total += u.frozen.numel();
      EXPECT_LT(held, total / n + total / 8) << "rank " << r;
    });
    for (int r = 0; r < n; ++r) {
      ASSERT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
      const Outputs& o = got[static_cast<size_t>(r)];
      EXPECT_EQ(o.logits.sizes(), want.logits.sizes());
      EXPECT_LE((o.logits - want.logits).abs().max().item<double>(), 1e-5) << name << " world " << n << " rank " << r;
      EXPECT_EQ(o.greedy, want.greedy) << name << " world " << n << " rank " << r;
      EXPECT_EQ(o.sampled, want.sampled) << name << " world " << n << " rank " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, TensorParallel,
                         ::testing::Combine(::testing::Values("llama", "qwen2", "qwen3", "mistral"), ::testing::Bool()),
                         [](const auto& info) {
                           return std::get<0>(info.param) + (std::get<1>(info.param) ? "_lora" : "_base");
                         });

TEST(TensorParallelSetup, RandomInitialisationIsTheSliceOfOneProcesss) {
  c10::InferenceMode guard;
  const io::ModelConfig cfg = io::ModelConfig::from_json(nlohmann::json::parse(kConfigs.at("llama")), "llama");
  model::Decoder whole(cfg, options(false));
  whole.init_random(3);
  const at::Tensor want = whole.forward_logits(model::make_batch({kPrompts[0]}, {std::vector<uint8_t>(7, 1)}));
  std::vector<at::Tensor> got(2);
  const auto errors = test::on_world(2, 60, [&](int r, comm::Communicator& c) {
    c10::InferenceMode g;
    model::Decoder part(cfg, options(false, &c));
    part.init_random(3);
    got[static_cast<size_t>(r)] = part.forward_logits(model::make_batch({kPrompts[0]}, {std::vector<uint8_t>(7, 1)}));
  });
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(errors[static_cast<size_t>(r)], "");
    EXPECT_LE((got[static_cast<size_t>(r)] - want).abs().max().item<double>(), 1e-5);
  }
}

TEST(TensorParallelSetup, WhatDoesNotSplitIsRefusedByName) {
  // Qwen2's 4 key/value heads do not split over 3 ranks; training is not a tensor-parallel pass.
  const io::ModelConfig cfg = io::ModelConfig::from_json(nlohmann::json::parse(kConfigs.at("qwen2")), "qwen2");
  const auto errors = test::on_world(3, 60, [&](int, comm::Communicator& c) { model::Decoder part(cfg, options(false, &c)); });
  for (const auto& e : errors) EXPECT_NE(e.find("splits num_attention_heads (4) evenly"), std::string::npos) << e;
  const auto errors2 = test::on_world(2, 60, [&](int, comm::Communicator& c) {
    model::Decoder part(cfg, options(true, &c));
    part.init_random(1);
    part.forward_backward(model::make_batch({kPrompts[0]}, {std::vector<uint8_t>(7, 1)}));
  });
  for (const auto& e : errors2) EXPECT_NE(e.find("training (forward_backward) runs on a whole model"), std::string::npos) << e;
}

TEST(TensorParallelSetup, EachRankReadsOnlyItsSlices) {
  // A column slice (o_proj) and a row slice (q_proj) of a tensor whose other slices hold NaN: a rank that read
  // outside its slice would refuse the checkpoint as not finite.
  c10::InferenceMode guard;
  const io::ModelConfig cfg = io::ModelConfig::from_json(nlohmann::json::parse(kConfigs.at("llama")), "llama");
  model::Decoder whole(cfg, options(false));
  whole.init_random(4);
  const int n = 2;
  std::vector<Checkpoint> per_rank(n);
  for (int r = 0; r < n; ++r) {
    whole.for_each_parameter([&](const model::ParamSlot& s, const at::Tensor& t, bool) {
      at::Tensor c = t.clone();
      if (s.name.find("q_proj.weight") != std::string::npos) {
        const int64_t rows = c.size(0) / n;
        for (int o = 0; o < n; ++o)
          if (o != r) c.narrow(0, o * rows, rows).fill_(std::numeric_limits<float>::quiet_NaN());
      }
      if (s.name.find("o_proj.weight") != std::string::npos) {
        const int64_t cols = c.size(1) / n;
        for (int o = 0; o < n; ++o)
          if (o != r) c.narrow(1, o * cols, cols).fill_(std::numeric_limits<float>::quiet_NaN());
      }
      per_rank[static_cast<size_t>(r)].add(s.name, c);
    });
  }
  const auto errors = test::on_world(n, 60, [&](int r, comm::Communicator& c) {
    c10::InferenceMode g;
    model::Decoder part(cfg, options(false, &c));
    const Checkpoint& ck = per_rank[static_cast<size_t>(r)];
    part.load_base([&](const std::string& t) { return ck.find(t); }, "memory");
  });
  for (const auto& e : errors) EXPECT_EQ(e, "");
}

TEST(TensorParallelSetup, ThePlansWeightsAreWhatEachRankHolds) {
  // llmft plan's generation formula, against the bytes a rank's decoder allocates (no alignment padding).
  c10::InferenceMode guard;
  const io::ModelConfig cfg = io::ModelConfig::from_json(nlohmann::json::parse(kConfigs.at("llama")), "llama");
  Config c;
  c.model.dtype = "float32";
  for (int n : {2, 4}) {
    const MemoryPlan plan = job::plan_for(c, cfg, "llama", "generate", n, 0, "");
    std::vector<int64_t> held(static_cast<size_t>(n), 0);
    const auto errors = test::on_world(n, 60, [&](int r, comm::Communicator& comm) {
      model::DecoderOptions o = options(false, &comm);
      o.align = 1;
      model::Decoder part(cfg, o);
      for (const auto& u : part.units()) held[static_cast<size_t>(r)] += u.frozen.flat.numel() * 4;
    });
    for (int r = 0; r < n; ++r) {
      ASSERT_EQ(errors[static_cast<size_t>(r)], "");
      EXPECT_DOUBLE_EQ(plan.weights, static_cast<double>(held[static_cast<size_t>(r)])) << n << " ranks, rank " << r;
    }
  }
}

TEST(ZeroSlices, ARankReadsOnlyTheElementsOfItsSlice) {
  // ZeRO-3 loading (Decoder::load_base_shard): the second half of layer 0's frozen buffer equals the whole model's,
  // read from a checkpoint whose other elements are NaN; the first half, which holds them, is refused by name.
  c10::InferenceMode guard;
  const io::ModelConfig cfg = io::ModelConfig::from_json(nlohmann::json::parse(kConfigs.at("qwen2")), "qwen2");
  model::Decoder whole(cfg, options(true));
  whole.init_random(8);
  model::Unit& u = whole.units()[1];
  const int64_t half = u.frozen.padded_numel() / 2;
  Checkpoint ck;
  std::string poisoned;
  whole.for_each_parameter([&](const model::ParamSlot& s, const at::Tensor& t, bool trainable) {
    at::Tensor c = t.clone();
    if (!trainable && u.frozen.find(s.name) >= 0 && s.offset < half) {
      const int64_t n = std::min(s.numel, half - s.offset);
      c.view({-1}).narrow(0, 0, n).fill_(std::numeric_limits<float>::quiet_NaN());
      if (poisoned.empty()) poisoned = s.name;
    }
    ck.add(s.name, c);
  });
  model::DecoderOptions o = options(true);
  o.materialize_base = false;
  model::Decoder part(cfg, o);
  EXPECT_FALSE(part.units()[1].frozen.flat.defined());
  at::Tensor out = at::empty({u.frozen.padded_numel() - half}, at::kFloat);
  part.load_base_shard(part.units()[1], false, half, out, [&](const std::string& n) { return ck.find(n); }, "memory");
  EXPECT_TRUE(at::equal(out, u.frozen.flat.narrow(0, half, out.numel())));
  at::Tensor first = at::empty({half}, at::kFloat);
  try {
    part.load_base_shard(part.units()[1], false, 0, first, [&](const std::string& n) { return ck.find(n); }, "memory");
    FAIL() << "read NaN without a word";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"" + poisoned + "\" holds values that are not finite"), std::string::npos)
        << e.what();
  }
}
