// The decoder-only transformer of the Llama / Mistral / Qwen2 / Qwen3 families on libtorch's ATen, with explicit
// forward and backward passes: pre-norm blocks of RMSNorm -> GQA attention (RoPE, optional q/k norm and biases,
// causal within each document, optional sliding window) -> RMSNorm -> SwiGLU MLP, tied or separate output head.
//
// A batch is documents concatenated without padding (positions restart at 0 in each document), the layout of
// variable-length flash attention; attention never crosses a document boundary. The loss is the SUM of token
// losses over the positions that have a target; gradients of that sum accumulate into the units' gradient buffers
// (the trainer divides by the global number of targets once per optimizer step: a token-weighted mean).
//
// Parameters live in flat per-unit buffers (model/params.hpp). A ParamProvider is told when each unit is about to be
// used and when its gradients are final, which is where data parallelism and ZeRO hook in.
//
// Dims: N tokens, C hidden, H query heads, K key/value heads, D head dim, F MLP size, V vocabulary.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "io/hf_config.hpp"
#include "io/safetensors.hpp"
#include "lora/lora.hpp"
#include "model/ops.hpp"
#include "model/params.hpp"

namespace llmft::model {

enum class TrainMode { kLora, kFull, kNone };

struct DecoderOptions {
  at::ScalarType dtype = at::kFloat;  // compute dtype: float32 or bfloat16
  TrainMode mode = TrainMode::kLora;
  lora::LoraSpec lora;
  int64_t align = 64;                 // flat buffers padded to a multiple of this many elements
};

struct Batch {
  at::Tensor ids;                   // (N) int64
  at::Tensor positions;             // (N) int64, restarting at 0 in every document
  at::Tensor targets;               // (N) int64 next-token target, -1 where there is none
  std::vector<int64_t> doc_starts;  // first token of each document, then N
  int64_t num_targets = 0;
};

// Builds a Batch from documents (token ids) and per-token "is a target" flags for the NEXT token: target[t] =
// ids[t+1] when trained[t+1]. Each document stays whole.
Batch make_batch(const std::vector<std::vector<int32_t>>& docs, const std::vector<std::vector<uint8_t>>& trained);

enum class Pass { kForward, kBackward };

class ParamProvider {
 public:
  virtual ~ParamProvider() = default;
  // The unit's full parameters must be in place (ZeRO-3 gathers them here); in the backward pass its gradient
  // buffer must exist too.
  virtual void acquire(Unit&, Pass) {}
  // The unit is not needed until the next acquire (ZeRO-3 frees the gathered copy).
  virtual void release(Unit&) {}
  // The unit's gradient buffer holds its final contribution from this micro-batch.
  virtual void grads_ready(Unit&) {}
};

struct GenerateOptions {
  int64_t max_new_tokens = 64;
  double temperature = 0.0;  // 0: greedy
  double top_p = 1.0;
  uint64_t seed = 0;
  std::vector<int32_t> stop_ids;
};

class Decoder {
 public:
  Decoder(io::ModelConfig config, DecoderOptions options);
  ~Decoder();

  const io::ModelConfig& config() const { return config_; }
  const DecoderOptions& options() const { return options_; }
  std::vector<Unit>& units() { return units_; }
  const std::vector<Unit>& units() const { return units_; }

  // Base weights: random (transformers' init: normal(0, std) for linears and embeddings, ones for norms) or from
  // tensors looked up by Hugging Face name (shape-checked; F32/BF16/F16 converted). Missing tensors are errors that
  // name the tensor and where it was looked for.
  void init_random(uint64_t seed, double std = 0.02);
  using TensorLookup = std::function<const io::TensorView*(const std::string& name)>;
  void load_base(const TensorLookup& lookup, const std::string& origin);
  // LoRA adapters: A Kaiming-uniform, B zero (PEFT's init); or from PEFT-named tensors.
  void init_lora(uint64_t seed);
  void load_lora(const TensorLookup& lookup, const std::string& origin);

  // Counts as PEFT prints them (tied weights once).
  int64_t trainable_parameters() const;
  int64_t all_parameters() const;

  // Training: forward and backward of one micro-batch; returns the loss sum. dropout: LoRA dropout's generator
  // (nullptr: no dropout).
  double forward_backward(const Batch& batch, ParamProvider* provider = nullptr, at::Generator* dropout = nullptr);
  // Loss sum, no gradients; *correct receives how many targets are the model's top prediction.
  double forward_loss(const Batch& batch, ParamProvider* provider = nullptr, int64_t* correct = nullptr);
  at::Tensor forward_logits(const Batch& batch);                              // (N, V) fp32
  void zero_grad();
  // After the optimizer updated the fp32 master weights: refresh the compute-dtype copies.
  void refresh_compute();

  std::vector<int32_t> generate(const std::vector<int32_t>& prompt, const GenerateOptions& options);

  // Every parameter as (name, tensor) for saving: base weights (compute dtype) and adapters (fp32).
  void for_each_parameter(const std::function<void(const ParamSlot&, const at::Tensor&, bool trainable)>& fn) const;

 private:
  struct LayerCache;
  struct LayerWeights;
  struct KVCache;
  LayerWeights bind_layer(size_t l);
  at::Tensor param(Unit& u, const std::string& name, at::Tensor* grad = nullptr);
  at::Tensor layer_forward(size_t l, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                           const std::vector<int64_t>& doc_starts, at::Generator* gen, LayerCache* cache);
  at::Tensor layer_backward(size_t l, const at::Tensor& dh, LayerCache& cache, const at::Tensor& cos,
                            const at::Tensor& sin, const std::vector<int64_t>& doc_starts);
  at::Tensor layer_step(size_t l, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin, KVCache& kv,
                        int64_t start);
  at::Tensor embed(const at::Tensor& ids, ParamProvider* provider);
  at::Tensor output_weight(at::Tensor* grad);  // (V, C): lm_head or the tied embedding
  Unit& embed_unit() { return units_.front(); }
  Unit& head_unit() { return units_.back(); }
  std::string layer_prefix(size_t l) const { return "model.layers." + std::to_string(l) + "."; }

  io::ModelConfig config_;
  DecoderOptions options_;
  std::vector<Unit> units_;  // embed, layers.0 .. layers.L-1, head
  Rope rope_;
  at::Tensor logits_workspace_;  // the loss's (chunk, V) buffer, kept between micro-batches
};

}  // namespace llmft::model
