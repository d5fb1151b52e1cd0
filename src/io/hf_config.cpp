#include "io/hf_config.hpp"

#include <algorithm>

#include "util/check.hpp"
#include "util/file.hpp"

namespace llmft::io {

namespace {

// Typed accessors that name the key in their errors.
int64_t get_int(const nlohmann::json& j, const char* key, const std::string& origin, int64_t fallback = -1) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    LLMFT_CHECK(fallback >= 0, Status::kFormat, "{}: required key \"{}\" is missing", origin, key);
    return fallback;
  }
  LLMFT_CHECK(it->is_number_integer(), Status::kFormat, "{}: \"{}\" must be an integer, got {}", origin, key, it->dump());
  int64_t v = it->get<int64_t>();
  LLMFT_CHECK(v > 0, Status::kFormat, "{}: \"{}\" must be positive, got {}", origin, key, v);
  return v;
}

double get_double(const nlohmann::json& j, const char* key, const std::string& origin, double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  LLMFT_CHECK(it->is_number(), Status::kFormat, "{}: \"{}\" must be a number, got {}", origin, key, it->dump());
  return it->get<double>();
}

bool get_bool(const nlohmann::json& j, const char* key, const std::string& origin, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  LLMFT_CHECK(it->is_boolean(), Status::kFormat, "{}: \"{}\" must be true or false, got {}", origin, key, it->dump());
  return it->get<bool>();
}

// The scaling fields of a rope_scaling / rope_parameters object (rope_type or type: default, llama3, linear).
void parse_rope(const nlohmann::json& r, const std::string& where, ModelConfig& c) {
  std::string type = r.value("rope_type", r.value("type", std::string()));
  if (type == "llama3") {
    c.rope_scaling.type = type;
    c.rope_scaling.factor = get_double(r, "factor", where, 8.0);
    c.rope_scaling.low_freq_factor = get_double(r, "low_freq_factor", where, 1.0);
    c.rope_scaling.high_freq_factor = get_double(r, "high_freq_factor", where, 4.0);
    c.rope_scaling.original_max_position_embeddings = get_int(r, "original_max_position_embeddings", where, 8192);
    LLMFT_CHECK(c.rope_scaling.high_freq_factor > c.rope_scaling.low_freq_factor, Status::kFormat,
                "{}: high_freq_factor must exceed low_freq_factor", where);
  } else if (type == "linear") {
    c.rope_scaling.type = type;
    c.rope_scaling.factor = get_double(r, "factor", where, 1.0);
  } else if (type != "default" && !type.empty()) {
    LLMFT_FAIL(Status::kUnsupported, "{}: rope type \"{}\" is not supported (supported: default, llama3, linear)",
               where, type);
  }
}

}  // namespace

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::kLlama: return "LlamaForCausalLM";
    case Arch::kMistral: return "MistralForCausalLM";
    case Arch::kQwen2: return "Qwen2ForCausalLM";
    case Arch::kQwen3: return "Qwen3ForCausalLM";
    case Arch::kQwen3Moe: return "Qwen3MoeForCausalLM";
  }
  return "?";
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  std::string text = read_file(path);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: not valid JSON: {}", path, plain_error(e));
  }
  return from_json(j, path);
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j, const std::string& origin) {
  LLMFT_CHECK(j.is_object(), Status::kFormat, "{}: must be a JSON object", origin);
  ModelConfig c;
  auto archs = j.find("architectures");
  LLMFT_CHECK(archs != j.end() && archs->is_array() && archs->size() == 1 && (*archs)[0].is_string(), Status::kFormat,
              "{}: \"architectures\" must list exactly one architecture", origin);
  c.architecture = (*archs)[0].get<std::string>();
  if (c.architecture == "LlamaForCausalLM") c.arch = Arch::kLlama;
  else if (c.architecture == "MistralForCausalLM") c.arch = Arch::kMistral;
  else if (c.architecture == "Qwen2ForCausalLM") c.arch = Arch::kQwen2;
  else if (c.architecture == "Qwen3ForCausalLM") c.arch = Arch::kQwen3;
  else if (c.architecture == "Qwen3MoeForCausalLM") c.arch = Arch::kQwen3Moe;
  else
    LLMFT_FAIL(Status::kUnsupported,
               "{}: architecture \"{}\" is not supported (supported: LlamaForCausalLM, MistralForCausalLM, "
               "Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM)", origin, c.architecture);

  std::string act = j.value("hidden_act", std::string("silu"));
  LLMFT_CHECK(act == "silu", Status::kUnsupported, "{}: hidden_act \"{}\" is not supported (only silu)", origin, act);

  c.vocab_size = get_int(j, "vocab_size", origin);
  c.hidden_size = get_int(j, "hidden_size", origin);
  c.intermediate_size = get_int(j, "intermediate_size", origin);
  c.num_hidden_layers = get_int(j, "num_hidden_layers", origin);
  c.num_attention_heads = get_int(j, "num_attention_heads", origin);
  c.num_key_value_heads = get_int(j, "num_key_value_heads", origin, c.num_attention_heads);
  LLMFT_CHECK(c.num_attention_heads % c.num_key_value_heads == 0, Status::kFormat,
              "{}: num_attention_heads ({}) is not a multiple of num_key_value_heads ({})", origin,
              c.num_attention_heads, c.num_key_value_heads);
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = get_int(j, "head_dim", origin);
  } else {
    LLMFT_CHECK(c.hidden_size % c.num_attention_heads == 0, Status::kFormat,
                "{}: hidden_size ({}) is not a multiple of num_attention_heads ({}) and head_dim is not given", origin,
                c.hidden_size, c.num_attention_heads);
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  LLMFT_CHECK(c.head_dim % 2 == 0, Status::kFormat, "{}: head_dim {} must be even for rotary embeddings", origin, c.head_dim);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", origin, 2048);
  c.rms_norm_eps = get_double(j, "rms_norm_eps", origin, 1e-6);
  c.rope_theta = get_double(j, "rope_theta", origin, 10000.0);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", origin, false);

  // Per-family projection biases and norms, as transformers builds them.
  bool attention_bias = get_bool(j, "attention_bias", origin, false);
  c.mlp_bias = get_bool(j, "mlp_bias", origin, false);
  switch (c.arch) {
    case Arch::kLlama:
      c.qkv_bias = c.o_bias = attention_bias;
      break;
    case Arch::kMistral:
      LLMFT_CHECK(!attention_bias, Status::kUnsupported, "{}: attention_bias for MistralForCausalLM", origin);
      break;
    case Arch::kQwen2:
      c.qkv_bias = true;  // Qwen2 always has q/k/v bias, no o_proj bias
      LLMFT_CHECK(!get_bool(j, "use_sliding_window", origin, false), Status::kUnsupported,
                  "{}: use_sliding_window=true is not supported for Qwen2ForCausalLM", origin);
      break;
    case Arch::kQwen3:
    case Arch::kQwen3Moe:
      c.qkv_bias = c.o_bias = attention_bias;
      c.qk_norm = true;
      LLMFT_CHECK(!get_bool(j, "use_sliding_window", origin, false), Status::kUnsupported,
                  "{}: use_sliding_window=true is not supported for {}", origin, c.architecture);
      break;
  }
  if (c.arch == Arch::kQwen3Moe) {
    // transformers' Qwen3MoeConfig defaults, where a key is absent.
    // transformers 5 writes num_local_experts (its attribute map's name for num_experts); the Hub's configs num_experts.
    c.num_experts = get_int(j, j.contains("num_experts") ? "num_experts" : "num_local_experts", origin, 128);
    c.num_experts_per_tok = get_int(j, "num_experts_per_tok", origin, 8);
    c.moe_intermediate_size = get_int(j, "moe_intermediate_size", origin, 768);
    c.decoder_sparse_step = get_int(j, "decoder_sparse_step", origin, 1);
    c.norm_topk_prob = get_bool(j, "norm_topk_prob", origin, false);
    c.output_router_logits = get_bool(j, "output_router_logits", origin, false);
    c.router_aux_loss_coef = get_double(j, "router_aux_loss_coef", origin, 0.001);
    LLMFT_CHECK(c.num_experts_per_tok <= c.num_experts, Status::kFormat,
                "{}: num_experts_per_tok ({}) exceeds num_experts ({})", origin, c.num_experts_per_tok, c.num_experts);
    if (j.contains("mlp_only_layers") && !j["mlp_only_layers"].is_null()) {
      const auto& m = j["mlp_only_layers"];
      LLMFT_CHECK(m.is_array(), Status::kFormat, "{}: \"mlp_only_layers\" must be a list of layer indices", origin);
      for (const auto& x : m) {
        LLMFT_CHECK(x.is_number_integer(), Status::kFormat, "{}: \"mlp_only_layers\" entries must be integers, got {}",
                    origin, x.dump());
        c.mlp_only_layers.push_back(x.get<int64_t>());
      }
    }
  }
  LLMFT_CHECK(!c.mlp_bias || c.arch == Arch::kLlama, Status::kUnsupported, "{}: mlp_bias for {}", origin, c.architecture);
  if (c.arch == Arch::kMistral && j.contains("sliding_window") && !j["sliding_window"].is_null())
    c.sliding_window = get_int(j, "sliding_window", origin);

  // Rotary embedding, read as transformers 5 reads it (RotaryEmbeddingConfigMixin): the parameters are rope_scaling
  // when it is a non-empty object (transformers 4's form), else rope_parameters (what transformers 5's
  // save_pretrained writes), possibly one object per layer type; their rope_theta, else the top-level one.
  const nlohmann::json* rope = nullptr;
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (rope || !j.contains(key) || j[key].is_null()) continue;
    LLMFT_CHECK(j[key].is_object(), Status::kFormat, "{}: {} must be an object or null", origin, key);
    if (!j[key].empty()) rope = &j[key];
  }
  if (rope && !rope->contains("rope_type") && !rope->contains("type") && !rope->contains("rope_theta") &&
      rope->begin()->is_object()) {
    // One object per layer type ({"full_attention": {...}, ...}): these families use one rotary embedding.
    for (const auto& [type, params] : rope->items())
      LLMFT_CHECK(params == *rope->begin(), Status::kUnsupported,
                  "{}: different rotary parameters per layer type (\"{}\") are not supported", origin, type);
    rope = &*rope->begin();
  }
  if (rope) {
    const std::string where = origin + ": rope parameters";
    c.rope_theta = get_double(*rope, "rope_theta", where, c.rope_theta);
    parse_rope(*rope, where, c);
  }
  for (const nlohmann::json* r : {&j, rope}) {
    const double partial = r ? get_double(*r, "partial_rotary_factor", origin, 1.0) : 1.0;
    LLMFT_CHECK(partial == 1.0, Status::kUnsupported, "{}: partial_rotary_factor {} is not supported (1.0)", origin,
                partial);
  }
  c.torch_dtype = j.value("torch_dtype", j.value("dtype", std::string("float32")));
  LLMFT_CHECK(c.torch_dtype == "float32" || c.torch_dtype == "bfloat16" || c.torch_dtype == "float16", Status::kUnsupported,
              "{}: torch_dtype \"{}\" is not supported (float32, bfloat16, float16)", origin, c.torch_dtype);
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer()) c.bos_token_id = j["bos_token_id"].get<int64_t>();
  if (j.contains("eos_token_id")) {
    const auto& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int64_t>());
    else if (e.is_array())
      for (const auto& x : e)
        if (x.is_number_integer()) c.eos_token_ids.push_back(x.get<int64_t>());
  }
  return c;
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  return num_experts > 0 && (layer + 1) % decoder_sparse_step == 0 &&
         std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) == mlp_only_layers.end();
}

int64_t ModelConfig::num_parameters() const {
  const int64_t h = hidden_size, q = q_dim(), kv = kv_dim(), f = intermediate_size;
  int64_t attn = h * q + 2 * h * kv + q * h + 2 * h;
  if (qkv_bias) attn += q + 2 * kv;
  if (o_bias) attn += h;
  if (qk_norm) attn += 2 * head_dim;
  int64_t n = vocab_size * h * (tie_word_embeddings ? 1 : 2) + h;
  for (int64_t l = 0; l < num_hidden_layers; ++l) {
    n += attn;
    if (is_moe_layer(l)) n += num_experts * (3 * h * moe_intermediate_size + h);  // experts and the router's row
    else n += 3 * h * f + (mlp_bias ? 2 * f + h : 0);
  }
  return n;
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j;
  j["architectures"] = {architecture};
  j["model_type"] = arch == Arch::kLlama     ? "llama"
                    : arch == Arch::kMistral ? "mistral"
                    : arch == Arch::kQwen2   ? "qwen2"
                    : arch == Arch::kQwen3   ? "qwen3"
                                             : "qwen3_moe";
  j["hidden_act"] = "silu";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  if (rope_scaling.type == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  } else if (rope_scaling.type == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rope_scaling.factor}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (arch == Arch::kLlama || arch == Arch::kQwen3 || arch == Arch::kQwen3Moe) j["attention_bias"] = qkv_bias;
  if (arch == Arch::kQwen3Moe) {
    j["num_experts"] = num_experts;
    j["num_experts_per_tok"] = num_experts_per_tok;
    j["moe_intermediate_size"] = moe_intermediate_size;
    j["decoder_sparse_step"] = decoder_sparse_step;
    j["mlp_only_layers"] = mlp_only_layers;
    j["norm_topk_prob"] = norm_topk_prob;
    j["output_router_logits"] = output_router_logits;
    j["router_aux_loss_coef"] = router_aux_loss_coef;
  }
  if (arch == Arch::kLlama) j["mlp_bias"] = mlp_bias;
  if (arch == Arch::kMistral) j["sliding_window"] = sliding_window > 0 ? nlohmann::json(sliding_window) : nlohmann::json();
  j["torch_dtype"] = torch_dtype;
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  return j;
}

}  // namespace llmft::io
