// A Hugging Face model's config.json, for the decoder families llmft implements: LlamaForCausalLM (Llama 2, Llama 3 /
// 3.1 with rope_scaling type llama3), MistralForCausalLM (sliding window), Qwen2ForCausalLM (q/k/v bias; also
// DeepSeek-R1-Distill-Qwen), Qwen3ForCausalLM (q_norm / k_norm) and Qwen3MoeForCausalLM (Qwen3's attention; a
// top-k routed mixture of SwiGLU experts in the layers decoder_sparse_step and mlp_only_layers choose). Anything llmft would compute differently from
// transformers (another architecture, activation, rope scaling type, inconsistent head counts) is rejected by name
// here, before any weight is read or any memory allocated.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace llmft::io {

enum class Arch { kLlama, kMistral, kQwen2, kQwen3, kQwen3Moe };

struct RopeScaling {
  std::string type;  // "" (none), "linear", "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0, high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string architecture;  // as written: "LlamaForCausalLM", ...
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, num_hidden_layers = 0;
  int64_t num_attention_heads = 0, num_key_value_heads = 0, head_dim = 0, max_position_embeddings = 0;
  double rms_norm_eps = 1e-6, rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // bias on q/k/v projections (Qwen2; Llama with attention_bias)
  bool o_bias = false;    // bias on o_proj (Llama with attention_bias)
  bool mlp_bias = false;
  bool qk_norm = false;   // Qwen3: RMSNorm over each head of q and k before RoPE
  int64_t sliding_window = 0;  // 0: none
  // Mixture of experts (Qwen3MoE; num_experts 0 elsewhere). Layer l routes each token to num_experts_per_tok of
  // num_experts SwiGLU experts of size moe_intermediate_size when l is not in mlp_only_layers and
  // (l + 1) % decoder_sparse_step == 0; the other layers keep a dense MLP of intermediate_size.
  int64_t num_experts = 0, num_experts_per_tok = 0, moe_intermediate_size = 0, decoder_sparse_step = 1;
  bool norm_topk_prob = false;  // renormalise the top-k routing probabilities to sum to 1
  double router_aux_loss_coef = 0.0;
  bool output_router_logits = false;
  std::vector<int64_t> mlp_only_layers;
  std::string torch_dtype = "float32";
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;

  // Throws Error(kUnsupported / kFormat / kNotFound) naming `origin` and the key.
  static ModelConfig from_json(const nlohmann::json& j, const std::string& origin);
  static ModelConfig from_file(const std::string& path);

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  bool moe() const { return num_experts > 0; }
  bool is_moe_layer(int64_t layer) const;
  // Parameter count of the base model (embeddings, layers, final norm, untied head).
  int64_t num_parameters() const;
  // config.json for this configuration (used for checkpoints llmft creates itself).
  nlohmann::json to_json() const;
};

const char* arch_name(Arch a);

}  // namespace llmft::io
