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
// Tensor parallelism (DecoderOptions::tp, inference only: forward_logits and generate). Each of the group's P ranks
// holds H/P query heads and K/P key/value heads (the column slices of q/k/v_proj and the row slice of o_proj's
// columns), F/P of the MLP (gate/up rows, down_proj columns) and ceil(V/P) rows of the embedding and output head.
// A sub-block ends in one all-reduce (after o_proj, after down_proj); the embedding is looked up where each id's row
// lives and all-reduced; logits are all-gathered. LoRA follows its base: B split with a column-parallel weight, A
// with a row-parallel one. The KV cache holds this rank's heads only. load_base reads only this rank's slices.
//
// Dims: N tokens, C hidden, H query heads, K key/value heads, D head dim, F MLP size, V vocabulary.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "comm/communicator.hpp"
#include "io/hf_config.hpp"
#include "io/safetensors.hpp"
#include "lora/lora.hpp"
#include "model/ops.hpp"
#include "model/params.hpp"

namespace llmft::model {

enum class TrainMode { kLora, kFull, kNone };

struct DecoderOptions {
  at::ScalarType dtype = at::kFloat;  // compute dtype: float32 or bfloat16
  // Where every parameter, gradient, activation and cache lives (model/device.hpp resolves model.device). A Batch
  // may come from the CPU: its tensors are moved once per pass.
  at::Device device = at::kCPU;
  TrainMode mode = TrainMode::kLora;
  lora::LoraSpec lora;
  int64_t align = 64;                 // flat buffers padded to a multiple of this many elements
  comm::Communicator* tp = nullptr;   // tensor-parallel group (not owned; null or size 1: the whole model here)
  // false (ZeRO-3 loading): the base weights' buffers (frozen for LoRA, trainable and its gradients for full
  // fine-tuning) are not allocated; each rank fills only its slices with load_base_shard.
  bool materialize_base = true;
  // Frozen linear weights of the layers (q/k/v/o, gate/up/down) in a storage format: NF4 (QLoRA) or FP8 blocks,
  // dequantised a tile at a time in each product (model/stored_weight.hpp). LoRA or inference only; not with
  // tensor parallelism.
  QuantizeOptions quantize;
  // Activation checkpointing per layer: the forward pass of training keeps only each layer's input; the backward
  // recomputes a layer's activations just before its backward (LoRA dropout replays the same masks), trading one
  // more forward pass for activations of one layer instead of all of them. Gradients are bit for bit the same.
  bool checkpoint_layers = false;
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
// Finite-sampling rule shared by every rank: temperature 0 takes the argmax; otherwise the smallest set of tokens
// whose probability reaches top_p, sampled with `gen`. logits: (V) fp32.
int64_t pick_token(const at::Tensor& logits, double temperature, double top_p, at::Generator& gen);

class Decoder {
 public:
  Decoder(io::ModelConfig config, DecoderOptions options);
  ~Decoder();

  const io::ModelConfig& config() const { return config_; }
  // This rank's share under tensor parallelism: heads, key/value heads, MLP size and (padded) vocabulary divided by
  // the group's size; equal to config() without it.
  const io::ModelConfig& local_config() const { return local_; }
  const DecoderOptions& options() const { return options_; }
  std::vector<Unit>& units() { return units_; }
  const std::vector<Unit>& units() const { return units_; }

  // Base weights: random (transformers' init: normal(0, std) for linears and embeddings, ones for norms) or from
  // tensors looked up by Hugging Face name (shape-checked; F32/BF16/F16 converted). Missing tensors are errors that
  // name the tensor and where it was looked for.
  void init_random(uint64_t seed, double std = 0.02);
  // Under tensor parallelism only this rank's slice of each tensor is read. `done`, when given, is called with each
  // tensor once it has been copied (a memory-mapped directory releases its pages: io::ModelDir::release).
  using TensorLookup = std::function<const io::TensorView*(const std::string& name)>;
  using TensorDone = std::function<void(const io::TensorView&)>;
  // With DecoderOptions::quantize, a layer's linear weights are quantised as they are read (from F32/BF16/F16), or
  // taken as stored when the checkpoint already holds them in that format: bitsandbytes NF4 tensors as transformers
  // saves them, F8_E4M3 with their block scales.
  void load_base(const TensorLookup& lookup, const std::string& origin, const TensorDone& done = nullptr);
  // The stored (quantised) weights only: what ZeRO-3 loading, which fills the flat buffers slice by slice, reads
  // whole on every rank. load_base calls it.
  void load_stored(const TensorLookup& lookup, const std::string& origin, const TensorDone& done = nullptr);
  // ZeRO-3 loading: fills `out` with elements [offset, offset + out.numel()) of unit u's base-weight buffer (frozen
  // or, under full fine-tuning, trainable) from the checkpoint, reading only the bytes of those elements; padding is
  // zero. Checks as load_base (missing, shape, dtype, non-finite), for the tensors the range touches.
  void load_base_shard(const Unit& u, bool trainable, int64_t offset, at::Tensor& out, const TensorLookup& lookup,
                       const std::string& origin, const TensorDone& done = nullptr) const;
  // LoRA adapters: A Kaiming-uniform, B zero (PEFT's init); or from PEFT-named tensors.
  void init_lora(uint64_t seed);
  void load_lora(const TensorLookup& lookup, const std::string& origin);

  // Counts as PEFT prints them (tied weights once).
  int64_t trainable_parameters() const;
  int64_t all_parameters() const;

  // Training: forward and backward of one micro-batch; returns the loss sum (plus, in a mixture of experts whose
  // router trains or that sets output_router_logits, router_aux_loss_coef x the load-balancing loss x the number of
  // targets: divided by the targets, transformers' loss). dropout: LoRA dropout's generator (nullptr: no dropout).
  double forward_backward(const Batch& batch, ParamProvider* provider = nullptr, at::Generator* dropout = nullptr);
  // Loss sum (with the load-balancing term as forward_backward), no gradients; *correct receives how many targets
  // are the model's top prediction.
  double forward_loss(const Batch& batch, ParamProvider* provider = nullptr, int64_t* correct = nullptr);
  at::Tensor forward_logits(const Batch& batch);                              // (N, V) fp32, on every rank
  void zero_grad();
  // After the optimizer updated the fp32 master weights: refresh the compute-dtype copies.
  void refresh_compute();

  // Continuations of a batch of prompts (each without its prompt; ending with a stop id when one came), decoded
  // together: the prompts are run as one packed batch, then one token of every unfinished prompt per step against a
  // KV cache of (B, prompt + max_new_tokens) positions per layer. Under tensor parallelism every rank takes part and
  // gets the same tokens (rank 0 picks them). With a provider (ZeRO-3 during training), each unit is acquired just
  // before it is used and released after, at every step: the whole model is never in place at once; every rank of
  // the data-parallel group `agree` must make the same call, and rank 0's tokens are broadcast on it so all stop
  // together. Each sequence samples from its own generator seeded with options.seed: a prompt gets the tokens it
  // gets alone, whatever else is in the batch.
  std::vector<std::vector<int32_t>> generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                   const GenerateOptions& options, ParamProvider* provider = nullptr,
                                                   comm::Communicator* agree = nullptr);
  std::vector<int32_t> generate(const std::vector<int32_t>& prompt, const GenerateOptions& options);

  // Every parameter as (name, tensor) for saving: base weights (compute dtype; stored weights dequantised, what the
  // model computes with) and adapters (fp32).
  void for_each_parameter(const std::function<void(const ParamSlot&, const at::Tensor&, bool trainable)>& fn) const;

 private:
  struct LayerCache;
  struct LayerWeights;
  struct KVCache;
  LayerWeights bind_layer(size_t l);
  at::Tensor param(Unit& u, const std::string& name, at::Tensor* grad = nullptr);
  // One layer is an attention sub-block then an MLP sub-block; training, the prefill and the decoding step share
  // the parts around attention, which is where they differ.
  void attention_inputs(LayerWeights& w, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                        at::Generator* gen, LayerCache* c, at::Tensor* q, at::Tensor* k, at::Tensor* v);
  at::Tensor attention_output(LayerWeights& w, const at::Tensor& h, const at::Tensor& a, at::Generator* gen,
                              LayerCache* c);
  at::Tensor attention_backward_block(LayerWeights& w, const at::Tensor& dh2, LayerCache& c, const at::Tensor& cos,
                                      const at::Tensor& sin, const std::vector<int64_t>& doc_starts);
  // The MLP sub-block (dense SwiGLU or mixture of experts) with its norm and residual, and its backward.
  at::Tensor mlp_forward(LayerWeights& w, const at::Tensor& h2, at::Generator* gen, LayerCache* c);
  at::Tensor mlp_backward(LayerWeights& w, const at::Tensor& dh, LayerCache& c);
  at::Tensor layer_forward(size_t l, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                           const std::vector<int64_t>& doc_starts, at::Generator* gen, LayerCache* cache);
  at::Tensor layer_backward(size_t l, const at::Tensor& dh, LayerCache& cache, const at::Tensor& cos,
                            const at::Tensor& sin, const std::vector<int64_t>& doc_starts);
  // Generation: the prompts' packed prefill (doc_starts) or one token per sequence at positions `lengths` (B).
  at::Tensor layer_prefill(size_t l, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin, KVCache& kv,
                           const std::vector<int64_t>& doc_starts);
  at::Tensor layer_decode(size_t l, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin, KVCache& kv,
                          const at::Tensor& lengths);
  at::Tensor head_logits(const at::Tensor& h);  // (n, C) last hidden states -> (n, V) fp32 logits
  void reduce_partial(at::Tensor& t);             // tensor parallelism: sum of the ranks' partial outputs (in place)
  bool parallel() const { return tp_size_ > 1; }
  void refuse_parallel(const char* what) const;
  at::Tensor embed(const at::Tensor& ids, ParamProvider* provider);
  at::Tensor output_weight(at::Tensor* grad);  // (V, C): lm_head or the tied embedding
  StoredWeight stored_from(const std::string& name, const at::Tensor& dense) const;  // quantised per options
  Unit& embed_unit() { return units_.front(); }
  Unit& head_unit() { return units_.back(); }
  std::string layer_prefix(size_t l) const { return "model.layers." + std::to_string(l) + "."; }
  at::TensorOptions on_device(at::ScalarType t) const { return at::TensorOptions().dtype(t).device(options_.device); }
  // A batch's ids, positions and targets on the model's device.
  Batch to_device(const Batch& b) const;

  io::ModelConfig config_, local_;
  DecoderOptions options_;
  int tp_size_ = 1, tp_rank_ = 0;
  std::vector<Unit> units_;  // embed, layers.0 .. layers.L-1, head
  Rope rope_;
  at::Tensor logits_workspace_;  // the loss's (chunk, V) buffer, kept between micro-batches
  // Mixture of experts: the routing statistics of the pass in progress, and the load-balancing loss's gradient for
  // every MoE layer's probabilities during the backward pass.
  MoeStats moe_stats_;
  at::Tensor aux_dprobs_;
  // Routing is counted in the forward pass of forward_backward and forward_loss only (not in a checkpointed layer's
  // recomputation, nor in generation).
  bool count_routing_ = false;
  bool balance_loss_on() const;
  // The load-balancing loss of the pass, times router_aux_loss_coef and the micro-batch's targets (the loss is a sum
  // the trainer divides by the targets); *dprobs receives its gradient per probability. 0 when off.
  double balance_loss(int64_t num_targets, at::Tensor* dprobs);
};

}  // namespace llmft::model
