#include "train/plan.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "comm/world.hpp"
#include "lora/lora.hpp"
#include "model/params.hpp"
#include "train/preflight.hpp"
#include "train/resolve.hpp"
#include "util/check.hpp"
#include "util/file.hpp"

namespace llmft::job {

io::ModelConfig planned_model(const Config& c) {
  if (!c.model.path.empty()) return io::ModelConfig::from_file(path_join(c.model.path, "config.json"));
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},  {"vocab_size", 128256},
                      {"hidden_size", c.model.hidden_size},     {"intermediate_size", c.model.intermediate_size},
                      {"num_hidden_layers", c.model.num_layers}, {"num_attention_heads", c.model.num_heads},
                      {"num_key_value_heads", c.model.num_kv_heads}, {"max_position_embeddings", 8192},
                      {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                        {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}}};
  return io::ModelConfig::from_json(j, "the embedded model (model.* keys)");
}

std::pair<int64_t, int64_t> linear_dims(const io::ModelConfig& m, const std::string& module) {
  if (module == "q_proj") return {m.hidden_size, m.q_dim()};
  if (module == "k_proj" || module == "v_proj") return {m.hidden_size, m.kv_dim()};
  if (module == "o_proj") return {m.q_dim(), m.hidden_size};
  if (module == "down_proj") return {m.intermediate_size, m.hidden_size};
  if (module == "experts") return {m.hidden_size, m.moe_intermediate_size};  // each expert's gate/up (down: transposed)
  return {m.hidden_size, m.intermediate_size};  // gate_proj, up_proj
}

double layer_linears(const io::ModelConfig& m, int64_t l) {
  const double C = static_cast<double>(m.hidden_size), Q = static_cast<double>(m.q_dim());
  const double KV = static_cast<double>(m.kv_dim());
  const double mlp = m.is_moe_layer(l) ? static_cast<double>(m.num_experts) * 3 * C * static_cast<double>(m.moe_intermediate_size)
                                       : 3 * C * static_cast<double>(m.intermediate_size);
  return C * (Q + 2 * KV) + Q * C + mlp;
}

std::string training_mode(const Config& c) {
  return c.train.mode == "auto" ? (c.model.path.empty() ? "full" : "lora") : c.train.mode;
}

namespace {

std::string gb(double bytes) {
  return bytes < 1e9 ? fmt::format("{:.1f} MB", bytes / 1e6) : fmt::format("{:.2f} GB", bytes / 1e9);
}

// Bytes a value of the layers' linear weights takes when stored (model.quantize), 0 for none: NF4 is 4 bits plus an
// 8-bit absmax code per 64 values and an fp32 absmax per 256 codes (4.127 bits); FP8 a byte plus an fp32 scale per
// 128 x 128 block.
double stored_bytes_per_value(const std::string& quantize) {
  if (quantize == "nf4") return 0.5 + 1.0 / 64 + 4.0 / (64 * 256);
  if (quantize == "fp8") return 1.0 + 4.0 / (128 * 128);
  return 0;
}

// Bytes per rank of a training job. Parameters P, trained T, compute dtype b bytes, W ranks:
//   weights     LoRA: P*b + T*4 (fp32 masters) [+ T*b compute copies in bf16]; full: P*b [+ P*4 masters in bf16];
//               ZeRO-3: / W, plus one unit (the largest of a layer and the embedding) gathered. A stored
//               (quantised) base moves the layers' linears Lin out of P*b into Lin * (bytes a stored value), on
//               every rank (stored weights are not sharded)
//   gradients   T*4; ZeRO-2/3: T*4 / W plus one unit's
//   optimizer   T*8 (Adam's two fp32 moments); ZeRO-1/2/3: / W
//   activations per micro-batch of n = micro_batch_size * seq_len tokens, kept for the backward pass:
//               n * L * (b * (5C + 2Q + 2KV + 3F) + 8C), plus a 1024-row chunk of fp32 logits (1024 * V * 4);
//               a mixture-of-experts layer counts k * Fe for F (its k experts a token visits) and adds
//               n * (3 * k * C * b + 8E) (the sorted copies and the router's probabilities); with
//               train.activation_checkpointing, n * L * C * b (each layer's input) plus the largest layer's share
void plan_training(const Config& c, const io::ModelConfig& m, int W, int stage, MemoryPlan* p) {
  const double P = static_cast<double>(m.num_parameters());
  const double b = c.model.dtype == "bfloat16" ? 2 : 4;
  const bool full = training_mode(c) == "full";
  const double L = static_cast<double>(m.num_hidden_layers), C = static_cast<double>(m.hidden_size);
  const double F = static_cast<double>(m.intermediate_size), Q = static_cast<double>(m.q_dim());
  const double KV = static_cast<double>(m.kv_dim()), V = static_cast<double>(m.vocab_size);
  double T = 0;
  if (full) {
    T = P;
  } else {
    lora::LoraSpec spec;
    spec.target_modules = c.lora.target_modules;
    for (const auto& t : spec.resolved_targets()) {
      const auto [in, out] = linear_dims(m, t);
      for (int64_t l = 0; l < m.num_hidden_layers; ++l) {
        const bool moe = m.is_moe_layer(l), mlp = t == "gate_proj" || t == "up_proj" || t == "down_proj";
        if (t == "experts") T += moe ? static_cast<double>(m.num_experts * 3 * c.lora.r * (in + out)) : 0;
        else if (!mlp || !m.moe()) T += static_cast<double>(c.lora.r * (in + out));
      }
    }
  }
  // Per layer: the linears (a mixture of experts holds all its experts), and the MLP width a token's activations
  // span (F, or its k experts of Fe each, plus its k sorted copies of the hidden state and the router's E).
  double lin = 0, largest = 0, act = 0, act_layer = 0;
  const double n = static_cast<double>(c.train.micro_batch_size) * static_cast<double>(c.data.seq_len);
  for (int64_t l = 0; l < m.num_hidden_layers; ++l) {
    const double ll = layer_linears(m, l);
    lin += ll;
    largest = std::max(largest, ll + 2 * C);
    const bool moe = m.is_moe_layer(l);
    const double k = static_cast<double>(m.num_experts_per_tok), E = static_cast<double>(m.num_experts);
    const double width = moe ? k * static_cast<double>(m.moe_intermediate_size) : F;
    const double a = n * (b * (5 * C + 2 * Q + 2 * KV + 3 * width) + 8 * C) + (moe ? n * (3 * k * C * b + 2 * E * 4) : 0);
    act += a;
    act_layer = std::max(act_layer, a);
  }
  // Activation checkpointing: each layer's input (n * C * b) and one layer's activations at a time.
  if (c.train.activation_checkpointing) act = n * L * C * b + act_layer;
  const double unit = std::max(largest, V * C);
  const double qb = full ? 0 : stored_bytes_per_value(c.model.quantize);
  const double dense = qb > 0 ? P - lin : P, stored = qb > 0 ? lin * qb : 0;
  const double weights = full ? P * b + (b == 2 ? P * 4 : 0) : dense * b + T * 4 + (b == 2 ? T * b : 0);
  p->weights = (stage >= 3 && W > 1 ? weights / W + unit * b : weights) + stored;
  p->gradients = stage >= 2 && W > 1 ? T * 4 / W + std::min(T, full ? unit : T / L) * 4 : T * 4;
  p->optimizer = stage >= 1 && W > 1 ? T * 8 / W : T * 8;
  p->activations = act + std::min(n, 1024.0) * V * 4;
  p->kv_cache = 0;
  p->zero_stage = stage;
  p->tensor_parallel = 1;
  p->sequences = c.train.micro_batch_size;
  p->tokens_per_sequence = c.data.seq_len;
  p->training = full ? "full fine-tuning" : fmt::format("LoRA r={}", c.lora.r);
}

// Bytes per rank of generation with the weights split across t ranks (tensor parallelism), B sequences of S
// positions (data.seq_len of prompt + generate.max_new_tokens):
//   weights     b * (L * (layer's linears / t + its norms) + ceil(V/t) * C * (1 tied | 2) + C)
//   KV cache    2 * L * B * S * (K/t) * D * b
//   activations the prefill of B * seq_len tokens: n * (16C + b * ((Q + 2KV)/t + 3F/t)), plus B rows of fp32 logits
//               gathered (2 * B * V * 4)
void plan_generation(const Config& c, const io::ModelConfig& m, int t, MemoryPlan* p) {
  const double b = c.model.dtype == "bfloat16" ? 2 : 4;
  const double L = static_cast<double>(m.num_hidden_layers), C = static_cast<double>(m.hidden_size);
  const double F = static_cast<double>(m.intermediate_size), Q = static_cast<double>(m.q_dim());
  const double KV = static_cast<double>(m.kv_dim()), D = static_cast<double>(m.head_dim);
  const double Vt = std::ceil(static_cast<double>(m.vocab_size) / t), K = static_cast<double>(m.num_key_value_heads);
  double linears = 0;  // of all layers
  for (int64_t l = 0; l < m.num_hidden_layers; ++l) linears += layer_linears(m, l);
  const double norms = 2 * C + (m.qk_norm ? 2 * D : 0);
  const double qb = stored_bytes_per_value(c.model.quantize);
  p->weights = (qb > 0 ? qb : b) * linears / t + b * (L * norms + Vt * C * (m.tie_word_embeddings ? 1 : 2) + C);
  const double B = static_cast<double>(c.generate.batch_size);
  const double S = static_cast<double>(c.data.seq_len + c.generate.max_new_tokens);
  p->kv_cache = 2 * L * B * S * (K / t) * D * b;
  const double n = B * static_cast<double>(c.data.seq_len);
  p->activations = n * (16 * C + b * ((Q + 2 * KV) / t + 3 * F / t)) + 2 * B * static_cast<double>(m.vocab_size) * 4;
  p->gradients = p->optimizer = 0;
  p->zero_stage = 0;
  p->tensor_parallel = t;
  p->sequences = c.generate.batch_size;
  p->tokens_per_sequence = c.data.seq_len + c.generate.max_new_tokens;
  p->training = "inference";
}

// A tensor-parallel degree the model can be split by.
bool splits(const io::ModelConfig& m, int t) {
  if (m.moe() && t > 1) return false;  // experts are not split (Decoder refuses tensor parallelism for them)
  return m.num_attention_heads % t == 0 && m.num_key_value_heads % t == 0 && m.intermediate_size % t == 0;
}

MemoryPlan evaluate(const Config& c, const io::ModelConfig& m, const std::string& job, int ranks) {
  MemoryPlan p;
  p.job = job;
  p.ranks = ranks;
  p.parameters = m.num_parameters();
  if (job == "generate") plan_generation(c, m, ranks, &p);
  else plan_training(c, m, ranks, static_cast<int>(c.dist.zero_stage), &p);
  return p;
}

}  // namespace

MemoryPlan plan_for(const Config& c, const io::ModelConfig& m, const std::string& origin, const std::string& job,
                    int ranks, double available, const std::string& available_source) {
  LLMFT_CHECK(job == "train" || job == "generate", Status::kInvalidArgument, "plan: the job is train or generate, not \"{}\"", job);
  LLMFT_CHECK(ranks >= 1, Status::kInvalidArgument, "plan: {} ranks; a job has at least 1", ranks);
  if (job == "generate" && m.moe())
    LLMFT_CHECK(ranks == 1, Status::kUnsupported,
                "{} is a mixture of experts, and its experts are not split by tensor parallelism: generate on one rank",
                origin);
  if (job == "generate")
    LLMFT_CHECK(splits(m, ranks), Status::kInvalidArgument,
                "{} cannot be split across {} ranks: tensor parallelism needs num_attention_heads ({}), "
                "num_key_value_heads ({}) and intermediate_size ({}) divisible by the number of ranks",
                origin, ranks, m.num_attention_heads, m.num_key_value_heads, m.intermediate_size);
  MemoryPlan p = evaluate(c, m, job, ranks);
  p.model = origin;
  p.available = available;
  p.available_source = available_source;
  if (p.fits()) return p;
  // What would fit: each alternative changes one thing.
  auto fits = [&](const MemoryPlan& q) { return q.total() <= available; };
  auto add = [&](const std::string& what, const MemoryPlan& q) {
    p.alternatives.push_back(fmt::format("{} ({} a rank)", what, gb(q.total())));
  };
  // The first of `values` for which the configuration changed by `set` fits, named by `label`.
  auto first_fit = [&](const std::vector<int64_t>& values, const std::function<void(Config&, int64_t)>& set,
                       const std::function<int(int64_t)>& ranks_for, const std::function<std::string(int64_t)>& label) {
    for (int64_t x : values) {
      Config d = c;
      set(d, x);
      if (const MemoryPlan q = evaluate(d, m, job, ranks_for(x)); fits(q)) {
        add(label(x), q);
        return;
      }
    }
  };
  auto same_ranks = [&](int64_t) { return ranks; };
  std::vector<int64_t> shorter, smaller;  // halvings of seq_len (down to 128) and of the generation batch
  for (int64_t s = c.data.seq_len / 2; s >= 128; s /= 2) shorter.push_back(s);
  for (int64_t b = c.generate.batch_size / 2; b >= 1; b /= 2) smaller.push_back(b);
  if (job == "train") {
    std::vector<int64_t> stages, worlds;
    for (int64_t s = c.dist.zero_stage + 1; s <= 3 && ranks > 1; ++s) stages.push_back(s);
    for (int64_t w = ranks * 2; w <= 4096; w *= 2) worlds.push_back(w);
    first_fit(stages, [](Config& d, int64_t s) { d.dist.zero_stage = s; }, same_ranks,
              [](int64_t s) { return fmt::format("dist.zero_stage={}", s); });
    first_fit(worlds, [](Config& d, int64_t) { d.dist.zero_stage = 3; }, [](int64_t w) { return static_cast<int>(w); },
              [](int64_t w) { return fmt::format("{} ranks with dist.zero_stage=3", w); });
    if (training_mode(c) == "full")
      first_fit({0}, [](Config& d, int64_t) { d.train.mode = "lora"; }, same_ranks,
                [](int64_t) { return std::string("train.mode=lora"); });
    if (training_mode(c) == "lora" && c.model.quantize != "nf4")  // QLoRA: the frozen base in 4 bits
      first_fit({0}, [](Config& d, int64_t) { d.model.quantize = "nf4"; }, same_ranks,
                [](int64_t) { return std::string("model.quantize=nf4 (QLoRA)"); });
    if (!c.train.activation_checkpointing)
      first_fit({0}, [](Config& d, int64_t) { d.train.activation_checkpointing = true; }, same_ranks,
                [](int64_t) { return std::string("train.activation_checkpointing=true"); });
    if (c.train.micro_batch_size > 1)
      first_fit({1}, [](Config& d, int64_t) { d.train.micro_batch_size = 1; }, same_ranks, [&](int64_t) {
        return fmt::format("train.micro_batch_size=1 with train.grad_accum={}", c.train.grad_accum * c.train.micro_batch_size);
      });
    first_fit(shorter, [](Config& d, int64_t s) { d.data.seq_len = s; }, same_ranks,
              [](int64_t s) { return fmt::format("data.seq_len={}", s); });
  } else {
    std::vector<int64_t> splits_up;
    for (int t = ranks + 1; t <= 1024; ++t)
      if (splits(m, t)) splits_up.push_back(t);
    first_fit(splits_up, [](Config&, int64_t) {}, [](int64_t t) { return static_cast<int>(t); },
              [](int64_t t) { return fmt::format("{} ranks (tensor parallelism)", t); });
    if (p.alternatives.empty()) {
      const int most = splits_up.empty() ? ranks : static_cast<int>(splits_up.back());
      p.limit = fmt::format("split across the most ranks its heads allow ({}), it needs {} a rank", most,
                            gb(evaluate(c, m, job, most).total()));
    }
    first_fit(smaller, [](Config& d, int64_t b) { d.generate.batch_size = b; }, same_ranks,
              [](int64_t b) { return fmt::format("generate.batch_size={}", b); });
    first_fit(shorter, [](Config& d, int64_t s) { d.data.seq_len = s; }, same_ranks,
              [](int64_t s) { return fmt::format("data.seq_len={} (prompt tokens)", s); });
  }
  return p;
}

}  // namespace llmft::job

namespace llmft {

std::string MemoryPlan::table() const {
  std::string out = fmt::format("memory plan: {} {} ({} parameters), {}, {} rank{}", job, model,
                                model::with_commas(parameters), training, ranks, ranks == 1 ? "" : "s");
  if (job == "train") out += fmt::format(", ZeRO stage {}", zero_stage);
  else if (tensor_parallel > 1) out += fmt::format(", weights split {} ways (tensor parallelism)", tensor_parallel);
  out += fmt::format(", {} x {} tokens\n", sequences, tokens_per_sequence);
  auto row = [&](const char* what, double bytes) { out += fmt::format("  {:<18}{:>12}\n", what, job::gb(bytes)); };
  row("weights", weights);
  if (job == "train") {
    row("gradients", gradients);
    row("optimizer state", optimizer);
  }
  row("activations", activations);
  if (job == "generate") row("KV cache", kv_cache);
  out += fmt::format("  {:<18}{:>12} a rank", "total", job::gb(total()));
  if (available > 0) out += fmt::format(", of {} ({})", job::gb(available), available_source);
  out += "\n";
  if (available <= 0) out += "  (no memory size to compare with)\n";
  else if (fits()) out += "  fits\n";
  else {
    out += "  does not fit";
    out += alternatives.empty() ? ": no single change of ranks, ZeRO stage, batch or sequence length makes it fit" +
                                      (limit.empty() ? std::string() : " (" + limit + ")") + "\n"
                                : "; what would:\n";
    for (const auto& a : alternatives) out += "    - " + a + "\n";
  }
  return out;
}

MemoryPlan plan_memory(const Config& c, const PlanRequest& r) {
  const io::ModelConfig m = job::planned_model(c);
  const std::string origin = c.model.path.empty() ? "the embedded model" : c.model.path;
  int ranks = r.ranks, local = r.local_ranks;
  if (ranks <= 0) {
    const comm::World w = comm::resolve_world(job::dist_options(c.dist));
    ranks = w.size;
    if (local <= 0) local = w.local_size;
  }
  if (local <= 0) local = ranks;
  double available = 0;
  std::string source;
  if (r.memory_gb > 0) {
    available = r.memory_gb * 1e9;
    source = "the memory given for one rank";
  } else if (const double machine = job::machine_memory_bytes(); machine > 0) {
    available = machine / local;
    source = local == 1 ? "this machine's memory" : fmt::format("this machine's memory shared by {} ranks", local);
  }
  return job::plan_for(c, m, origin, r.job, ranks, available, source);
}

}  // namespace llmft
