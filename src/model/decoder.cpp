#include "model/decoder.hpp"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "io/dtype_convert.hpp"
#include "util/check.hpp"

namespace llmft::model {

// ---- batches ----

Batch make_batch(const std::vector<std::vector<int32_t>>& docs, const std::vector<std::vector<uint8_t>>& trained) {
  LLMFT_CHECK(docs.size() == trained.size(), Status::kInvalidArgument, "{} documents but {} masks", docs.size(),
              trained.size());
  Batch b;
  int64_t n = 0;
  for (const auto& d : docs) n += static_cast<int64_t>(d.size());
  b.ids = at::empty({n}, at::kLong);
  b.positions = at::empty({n}, at::kLong);
  b.targets = at::empty({n}, at::kLong);
  auto* ids = b.ids.data_ptr<int64_t>();
  auto* pos = b.positions.data_ptr<int64_t>();
  auto* tgt = b.targets.data_ptr<int64_t>();
  int64_t at_ = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    const auto& x = docs[d];
    LLMFT_CHECK(trained[d].size() == x.size(), Status::kInvalidArgument, "document {}: {} tokens but {} mask entries", d,
                x.size(), trained[d].size());
    b.doc_starts.push_back(at_);
    for (size_t t = 0; t < x.size(); ++t, ++at_) {
      ids[at_] = x[t];
      pos[at_] = static_cast<int64_t>(t);
      bool has = t + 1 < x.size() && trained[d][t + 1];
      tgt[at_] = has ? x[t + 1] : -1;
      b.num_targets += has;
    }
  }
  b.doc_starts.push_back(n);
  return b;
}

// ---- construction ----

struct Decoder::LayerWeights {
  at::Tensor attn_norm, mlp_norm, q_norm, k_norm;
  at::Tensor d_attn_norm, d_mlp_norm, d_q_norm, d_k_norm;
  LinearWeights q, k, v, o, gate, up, down;
  at::Tensor w_qkv, dw_qkv, w_gate_up, dw_gate_up;  // fused views (undefined when the weights are not adjacent)
  bool moe = false;  // the MLP is a mixture of experts (then gate/up/down above are unused)
  MoeWeights experts;
};

struct Decoder::LayerCache {
  RmsNormCache norm1, norm2, qn, kn;
  LinearCache q, k, v, o, gate, up, down;
  AttentionCache attn;
  at::Tensor g, u;
  MoeCache moe;
};

struct Decoder::KVCache {
  std::vector<at::Tensor> k, v;  // per layer (T_max, K, D)
  int64_t span = 0;              // a decoding step's positions: the longest sequence's new position + 1 (host-side)
};

Decoder::Decoder(io::ModelConfig config, DecoderOptions options) : config_(std::move(config)), options_(std::move(options)) {
  const auto& c = config_;
  // float64 exists for gradient checks in the tests; users choose float32 or bfloat16.
  LLMFT_CHECK(options_.dtype == at::kFloat || options_.dtype == at::kBFloat16 || options_.dtype == at::kDouble,
              Status::kUnsupported, "compute dtype {} is not supported (float32, bfloat16)", c10::toString(options_.dtype));
  const at::ScalarType master = options_.dtype == at::kDouble ? at::kDouble : at::kFloat;
  local_ = config_;
  if (options_.tp && options_.tp->size() > 1) {
    const int P = tp_size_ = options_.tp->size();
    tp_rank_ = options_.tp->rank();
    auto divides = [&](int64_t n, const char* key) {
      LLMFT_CHECK(n % P == 0, Status::kInvalidArgument,
                  "tensor parallelism over {} ranks splits {} ({}) evenly, and it does not: run with a number of ranks "
                  "that divides num_attention_heads, num_key_value_heads and intermediate_size", P, key, n);
    };
    divides(c.num_attention_heads, "num_attention_heads");
    divides(c.num_key_value_heads, "num_key_value_heads");
    divides(c.intermediate_size, "intermediate_size");
    local_.num_attention_heads /= P;
    local_.num_key_value_heads /= P;
    local_.intermediate_size /= P;
    local_.vocab_size = (c.vocab_size + P - 1) / P;
  }
  const auto& lc = local_;
  std::vector<std::string> targets;
  if (options_.mode == TrainMode::kLora) targets = options_.lora.resolved_targets();
  auto is_target = [&](const std::string& m) { return std::find(targets.begin(), targets.end(), m) != targets.end(); };
  const bool full = options_.mode == TrainMode::kFull;
  const int64_t C = c.hidden_size, Q = lc.q_dim(), KV = lc.kv_dim(), F = lc.intermediate_size, D = c.head_dim;
  const int64_t R = options_.lora.r, P = tp_size_, rank = tp_rank_;
  const bool stored = options_.quantize.format != WeightFormat::kDense;
  if (stored) {
    LLMFT_CHECK(!full, Status::kUnsupported,
                "a base stored in {} (model.quantize) is frozen: train it with LoRA (train.mode lora), or fine-tune the "
                "unquantised model fully", format_name(options_.quantize.format));
    LLMFT_CHECK(P == 1, Status::kUnsupported,
                "model.quantize {} with tensor parallelism: each rank would need row and column slices of quantised "
                "blocks; generate from the unquantised model, or on one rank", format_name(options_.quantize.format));
  }
  const bool lora_experts = options_.mode == TrainMode::kLora &&
                            std::find(options_.lora.target_modules.begin(), options_.lora.target_modules.end(),
                                      "experts") != options_.lora.target_modules.end();
  if (c.moe()) {
    for (const std::string& t : options_.lora.target_modules)
      LLMFT_CHECK(options_.mode != TrainMode::kLora || (t != "gate_proj" && t != "up_proj" && t != "down_proj"),
                  Status::kInvalidArgument,
                  "lora.target_modules names {} in {}, a mixture-of-experts model: PEFT (with transformers 5) reads "
                  "gate_proj, up_proj and down_proj there as the experts' projections, so an adapter on the dense MLP "
                  "layers would not load as trained; target experts (every expert's gate/up/down) instead",
                  t, c.architecture);
    LLMFT_CHECK(P == 1, Status::kUnsupported,
                "{} with tensor parallelism: the experts are not split across ranks; generate on one rank",
                c.architecture);
    LLMFT_CHECK(!(is_target("experts") && options_.lora.dropout > 0), Status::kUnsupported,
                "lora.dropout {} with LoRA on the experts: PEFT applies no dropout to expert weights (its LoRA on "
                "parameters refuses it); set lora.dropout 0, or leave experts out of lora.target_modules",
                options_.lora.dropout);
    LLMFT_CHECK(!(is_target("experts") && options_.lora.use_rslora), Status::kUnsupported,
                "lora.use_rslora with LoRA on the experts: PEFT (0.21, with transformers 5) loads per-expert adapters "
                "by fusing gate and up into one LoRA of twice the rank and twice lora_alpha, which keeps alpha / r but "
                "not rsLoRA's alpha / sqrt(r), so the adapter would not compute there what it trained to; turn "
                "use_rslora off, or leave experts out of lora.target_modules");
  } else {
    LLMFT_CHECK(!lora_experts, Status::kInvalidArgument,
                "lora.target_modules names experts, but {} has no mixture-of-experts layers", c.architecture);
  }

  auto base = [&](Unit& u, const std::string& name, std::vector<int64_t> shape, bool decay, const Split& split = {}) {
    (full ? u.trainable : u.frozen).add(name, std::move(shape), decay, split);
  };
  // A tensor-parallel slice: rows (dim 0) or columns (dim 1) number `rank` of a tensor P times as long there.
  auto slice = [&](int dim, std::vector<int64_t> shape) {
    if (P == 1) return Split{};
    Split s;
    s.dim = dim;
    s.start = rank * shape[static_cast<size_t>(dim)];
    s.full_shape = shape;
    s.full_shape[static_cast<size_t>(dim)] *= P;
    return s;
  };
  // The vocabulary: ceil(V/P) rows per rank, the last rank's tail padded with zero rows.
  const Split vocab_rows = P == 1 ? Split{} : Split{0, rank * lc.vocab_size, {c.vocab_size, C}};
  units_.emplace_back();
  units_.back().name = "embed";
  base(units_.back(), "model.embed_tokens.weight", {lc.vocab_size, C}, true, vocab_rows);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    units_.emplace_back();
    Unit& u = units_.back();
    u.name = "layers." + std::to_string(l);
    std::string p = layer_prefix(static_cast<size_t>(l));
    // Layout: q/k/v weights back to back, then gate/up, so each group is one (sum of outs, in) matrix and one
    // matrix product (see fused_forward); biases and norms after them. Column-parallel weights (q/k/v, gate/up) are
    // split by output rows, row-parallel ones (o, down) by input columns; a LoRA pair splits B or A to match.
    enum Parallel { kColumn, kRow };
    auto weight = [&](const std::string& block, const std::string& m, int64_t out, int64_t in, Parallel par,
                      bool lora) {
      std::string n = p + block + "." + m;
      if (stored) {
        StoredWeight sw;
        sw.name = n + ".weight";
        sw.shape = {out, in};
        u.stored.push_back(std::move(sw));
      } else {
        base(u, n + ".weight", {out, in}, true, slice(par == kColumn ? 0 : 1, {out, in}));
      }
      if (lora) {
        u.trainable.add(n + ".lora_A.weight", {R, in}, true, par == kRow ? slice(1, {R, in}) : Split{});
        u.trainable.add(n + ".lora_B.weight", {out, R}, true, par == kColumn ? slice(0, {out, R}) : Split{});
      }
    };
    auto bias = [&](const std::string& block, const std::string& m, int64_t out, Parallel par) {
      base(u, p + block + "." + m + ".bias", {out}, false, par == kColumn ? slice(0, {out}) : Split{});
    };
    for (const char* m : {"q_proj", "k_proj", "v_proj"}) weight("self_attn", m, m[0] == 'q' ? Q : KV, C, kColumn, is_target(m));
    weight("self_attn", "o_proj", C, Q, kRow, is_target("o_proj"));
    if (c.is_moe_layer(l)) {
      // Router (E, C): trained only under full fine-tuning. Experts: every expert's gate and up back to back (so
      // gate_up of all experts is one (E, 2 Fe, C) block, transformers' fused layout), then every down (E, C, Fe).
      const int64_t E = c.num_experts, Fe = c.moe_intermediate_size;
      base(u, p + "mlp.gate.weight", {E, C}, true);
      const bool le = is_target("experts");
      for (int64_t e = 0; e < E; ++e) {
        const std::string ex = "experts." + std::to_string(e) + ".";
        weight("mlp", ex + "gate_proj", Fe, C, kColumn, le);
        weight("mlp", ex + "up_proj", Fe, C, kColumn, le);
      }
      for (int64_t e = 0; e < E; ++e)
        weight("mlp", "experts." + std::to_string(e) + ".down_proj", C, Fe, kRow, le);
    } else {
      // A dense MLP layer of a mixture-of-experts model takes no LoRA (all-linear there means attention + experts).
      weight("mlp", "gate_proj", F, C, kColumn, !c.moe() && is_target("gate_proj"));
      weight("mlp", "up_proj", F, C, kColumn, !c.moe() && is_target("up_proj"));
      weight("mlp", "down_proj", C, F, kRow, !c.moe() && is_target("down_proj"));
    }
    if (c.qkv_bias) {
      bias("self_attn", "q_proj", Q, kColumn);
      bias("self_attn", "k_proj", KV, kColumn);
      bias("self_attn", "v_proj", KV, kColumn);
    }
    if (c.o_bias) bias("self_attn", "o_proj", C, kRow);
    if (c.mlp_bias && !c.is_moe_layer(l)) {
      bias("mlp", "gate_proj", F, kColumn);
      bias("mlp", "up_proj", F, kColumn);
      bias("mlp", "down_proj", C, kRow);
    }
    base(u, p + "input_layernorm.weight", {C}, false);
    base(u, p + "post_attention_layernorm.weight", {C}, false);
    if (c.qk_norm) {
      base(u, p + "self_attn.q_norm.weight", {D}, false);
      base(u, p + "self_attn.k_norm.weight", {D}, false);
    }
  }
  units_.emplace_back();
  units_.back().name = "head";
  base(units_.back(), "model.norm.weight", {C}, false);
  if (!c.tie_word_embeddings) base(units_.back(), "lm_head.weight", {lc.vocab_size, C}, true, vocab_rows);

  for (Unit& u : units_) {
    u.frozen.finalize(options_.align);
    u.trainable.finalize(options_.align);
    // Without materialize_base the base weights wait for load_base_shard: the frozen buffer (LoRA, inference), or the
    // trainable one with its gradients (full fine-tuning).
    if (options_.materialize_base) u.frozen.allocate(on_device(options_.dtype));
    if (options_.materialize_base || !full) {
      u.trainable.allocate(on_device(master));
      u.grad = at::zeros({u.trainable.padded_numel()}, on_device(master));
      u.compute = options_.dtype == master ? u.trainable.flat : u.trainable.flat.to(options_.dtype);
    }
  }

  // Rotary frequencies, computed as transformers computes them (fp32), then scaled.
  rope_.inv_freq = 1.0 / at::pow(c.rope_theta, at::arange(0, D, 2, at::kLong).to(at::kFloat) / static_cast<double>(D));
  if (c.rope_scaling.type == "linear") {
    rope_.inv_freq = rope_.inv_freq / c.rope_scaling.factor;
  } else if (c.rope_scaling.type == "llama3") {
    const auto& r = c.rope_scaling;
    const double old_ctx = static_cast<double>(r.original_max_position_embeddings);
    const double low_wavelen = old_ctx / r.low_freq_factor, high_wavelen = old_ctx / r.high_freq_factor;
    at::Tensor inv = rope_.inv_freq;
    at::Tensor wavelen = 2 * M_PI / inv;
    at::Tensor scaled = at::where(wavelen > low_wavelen, inv / r.factor, inv);
    at::Tensor smooth = (old_ctx / wavelen - r.low_freq_factor) / (r.high_freq_factor - r.low_freq_factor);
    at::Tensor smoothed = (1 - smooth) * scaled / r.factor + smooth * scaled;
    at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
    rope_.inv_freq = at::where(medium, smoothed, scaled);
  }
  rope_.inv_freq = rope_.inv_freq.to(options_.device);
}

Decoder::~Decoder() = default;

// ---- weights ----

namespace {
// Fills a slot from the checkpoint-shaped tensor `whole`: all of it, or this rank's rows / columns of it (zeros
// past its end).
void copy_slot(const at::Tensor& dst, const at::Tensor& whole, const ParamSlot& s) {
  if (s.split_dim < 0) {
    dst.copy_(whole);
    return;
  }
  const int d = s.split_dim;
  const int64_t want = dst.size(d);
  const int64_t have = std::clamp<int64_t>(whole.size(d) - s.split_start, 0, want);
  if (have > 0) dst.narrow(d, 0, have).copy_(whole.narrow(d, s.split_start, have));
  if (have < want) dst.narrow(d, have, want - have).zero_();
}
}  // namespace

void Decoder::init_random(uint64_t seed, double std) {
  c10::InferenceMode guard;
  // Drawn on the CPU whatever the device, so that one seed is one model everywhere (a GPU run starts from the CPU's).
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const bool cpu = options_.device.is_cpu();
  auto draw = [&](const at::Tensor& like, c10::IntArrayRef shape) {  // normal(0, std) of `shape`, where `like` lives
    at::Tensor t = at::empty(shape, like.options().device(at::kCPU)).normal_(0.0, std, gen);
    return cpu ? t : t.to(like.device());
  };
  for (Unit& u : units_) {
    // Stored weights draw first, in the order the flat buffer would hold them (q, k, v, o, gate, up, down; the
    // biases and norms after them draw nothing), so a quantised model is the quantisation of the dense one.
    for (StoredWeight& w : u.stored) {
      w = stored_from(w.name, at::empty(w.shape, options_.dtype).normal_(0.0, std, gen));
      if (!cpu) w = w.to(options_.device);
    }
    for (ParamGroup* g : {&u.frozen, &u.trainable}) {
      for (size_t i = 0; i < g->slots().size(); ++i) {
        const ParamSlot& s = g->slots()[i];
        at::Tensor v = g->view(i);
        bool lora = s.name.find(".lora_") != std::string::npos;
        if (lora) continue;
        if (s.name.find("norm.weight") != std::string::npos) v.fill_(1.0);
        else if (s.name.size() > 5 && s.name.compare(s.name.size() - 5, 5, ".bias") == 0) v.zero_();
        else if (s.split_dim < 0 && cpu) v.normal_(0.0, std, gen);
        else if (s.split_dim < 0) v.copy_(draw(v, v.sizes()));
        // A tensor-parallel slice of the tensor one process draws (the same stream, so the same model).
        else copy_slot(v, draw(v, s.full_shape), s);
      }
    }
  }
  refresh_compute();
}

namespace {
at::ScalarType scalar_type(io::DType d, const std::string& name, const std::string& origin) {
  switch (d) {
    case io::DType::kF32: return at::kFloat;
    case io::DType::kBF16: return at::kBFloat16;
    case io::DType::kF16: return at::kHalf;
    default:
      LLMFT_FAIL(Status::kFormat, "{}: tensor \"{}\" has dtype {}; weights must be F32, BF16 or F16", origin, name,
                 io::dtype_name(d));
  }
}

// A NaN or infinity in a checkpoint would train (or generate) garbage without a word: refuse it by name.
void require_finite(const at::Tensor& copied, const io::TensorView& t, const std::string& origin) {
  LLMFT_CHECK(at::isfinite(copied).all().item<bool>(), Status::kFormat,
              "{}: tensor \"{}\" holds values that are not finite (NaN or infinity)", origin, t.name);
}

// Copies the checkpoint tensor `t` (or this rank's slice of it) into `dst`; reads only the slice's bytes.
void copy_in(const at::Tensor& dst, const ParamSlot& s, const io::TensorView& t, const std::string& origin) {
  const std::vector<int64_t>& want = s.checkpoint_shape();
  LLMFT_CHECK(t.shape == want, Status::kFormat, "{}: tensor \"{}\" has shape [{}], the model needs [{}]", origin, t.name,
              fmt::join(t.shape, ", "), fmt::join(want, ", "));
  at::Tensor src = at::from_blob(const_cast<uint8_t*>(t.data), t.shape, at::TensorOptions().dtype(scalar_type(t.dtype, t.name, origin)));
  copy_slot(dst, src, s);
  require_finite(dst, t, origin);
}
}  // namespace

void Decoder::load_base(const TensorLookup& lookup, const std::string& origin, const TensorDone& done) {
  c10::InferenceMode guard;
  load_stored(lookup, origin, done);
  for (Unit& u : units_) {
    for (ParamGroup* g : {&u.frozen, &u.trainable}) {
      for (size_t i = 0; i < g->slots().size(); ++i) {
        const ParamSlot& s = g->slots()[i];
        if (s.name.find(".lora_") != std::string::npos) continue;
        const io::TensorView* t = lookup(s.name);
        LLMFT_CHECK(t != nullptr, Status::kNotFound, "{}: the checkpoint has no tensor \"{}\"", origin, s.name);
        copy_in(g->view(i), s, *t, origin);
        if (done) done(*t);
      }
    }
  }
  refresh_compute();
}

StoredWeight Decoder::stored_from(const std::string& name, const at::Tensor& dense) const {
  const QuantizeOptions& q = options_.quantize;
  switch (q.format) {
    case WeightFormat::kNf4: return quantize_nf4(name, dense, q.nf4_blocksize, q.double_quant);
    case WeightFormat::kFp8Block:
      return q.keep_dense ? store_dense(name, dense, options_.dtype)
                          : quantize_fp8_block(name, dense, q.fp8_block_rows, q.fp8_block_cols);
    case WeightFormat::kDense: break;
  }
  return store_dense(name, dense, options_.dtype);
}

void Decoder::load_stored(const TensorLookup& lookup, const std::string& origin, const TensorDone& done) {
  c10::InferenceMode guard;
  for (Unit& u : units_) {
    for (StoredWeight& w : u.stored) {
      const std::string name = w.name;
      const std::vector<int64_t> shape = w.shape;
      const io::TensorView* t = lookup(name);
      LLMFT_CHECK(t != nullptr, Status::kNotFound, "{}: the checkpoint has no tensor \"{}\"", origin, name);
      std::vector<const io::TensorView*> used{t};
      if (t->dtype == io::DType::kU8) {
        LLMFT_CHECK(options_.quantize.format == WeightFormat::kNf4, Status::kInvalidArgument,
                    "{}: \"{}\" is stored in 4 bits (bitsandbytes); load it with model.quantize nf4", origin, name);
        w = read_bnb_nf4(*t, lookup, origin, &used);
        LLMFT_CHECK(w.shape == shape, Status::kFormat, "{}: \"{}\" quantises a tensor of shape [{}], the model needs [{}]",
                    origin, name, fmt::join(w.shape, ", "), fmt::join(shape, ", "));
      } else if (t->dtype == io::DType::kF8E4M3) {
        LLMFT_CHECK(options_.quantize.format == WeightFormat::kFp8Block, Status::kInternal,
                    "{}: \"{}\" is FP8 but the model stores {}", origin, name, format_name(options_.quantize.format));
        LLMFT_CHECK(t->shape == shape, Status::kFormat, "{}: tensor \"{}\" has shape [{}], the model needs [{}]", origin,
                    name, fmt::join(t->shape, ", "), fmt::join(shape, ", "));
        w = read_fp8_block(*t, lookup, options_.quantize.fp8_block_rows, options_.quantize.fp8_block_cols, origin, &used);
      } else {
        LLMFT_CHECK(t->shape == shape, Status::kFormat, "{}: tensor \"{}\" has shape [{}], the model needs [{}]", origin,
                    name, fmt::join(t->shape, ", "), fmt::join(shape, ", "));
        at::Tensor dense = at::from_blob(const_cast<uint8_t*>(t->data), shape, scalar_type(t->dtype, name, origin));
        // The checkpoint's bits, tested in one pass (the tensor is read whole here, not a slice of it).
        LLMFT_CHECK(io::all_finite(*t), Status::kFormat, "{}: tensor \"{}\" holds values that are not finite (NaN or infinity)",
                    origin, name);
        w = stored_from(name, dense);
      }
      if (!options_.device.is_cpu()) w = w.to(options_.device);  // quantised or read on the CPU, then moved
      if (done)
        for (const io::TensorView* v : used) done(*v);
    }
  }
}

void Decoder::load_base_shard(const Unit& u, bool trainable, int64_t offset, at::Tensor& out,
                              const TensorLookup& lookup, const std::string& origin, const TensorDone& done) const {
  c10::InferenceMode guard;
  const ParamGroup& g = trainable ? u.trainable : u.frozen;
  LLMFT_CHECK(out.dim() == 1 && offset >= 0 && offset + out.numel() <= g.padded_numel(), Status::kInternal,
              "unit {}: slice [{}, {}) outside its buffer of {}", u.name, offset, offset + out.numel(), g.padded_numel());
  out.zero_();
  const int64_t lo = offset, hi = offset + out.numel();
  for (const ParamSlot& s : g.slots()) {
    const int64_t a = std::max(lo, s.offset), b = std::min(hi, s.offset + s.numel);
    if (a >= b) continue;
    LLMFT_CHECK(s.name.find(".lora_") == std::string::npos && s.split_dim < 0, Status::kInternal,
                "load_base_shard: {} is not a whole base weight", s.name);
    const io::TensorView* t = lookup(s.name);
    LLMFT_CHECK(t != nullptr, Status::kNotFound, "{}: the checkpoint has no tensor \"{}\"", origin, s.name);
    LLMFT_CHECK(t->shape == s.shape, Status::kFormat, "{}: tensor \"{}\" has shape [{}], the model needs [{}]", origin,
                t->name, fmt::join(t->shape, ", "), fmt::join(s.shape, ", "));
    // Only elements [a, b) of this tensor's bytes are read.
    at::Tensor src = at::from_blob(const_cast<uint8_t*>(t->data), {s.numel},
                                   at::TensorOptions().dtype(scalar_type(t->dtype, t->name, origin)))
                         .narrow(0, a - s.offset, b - a);
    at::Tensor dst = out.narrow(0, a - lo, b - a);
    dst.copy_(src);
    require_finite(dst, *t, origin);
    if (done) done(*t);
  }
}

void Decoder::init_lora(uint64_t seed) {
  c10::InferenceMode guard;
  std::mt19937_64 rng(seed);
  for (Unit& u : units_) {
    for (size_t i = 0; i < u.trainable.slots().size(); ++i) {
      const ParamSlot& s = u.trainable.slots()[i];
      at::Tensor v = u.trainable.view(i);
      if (s.name.find(".lora_A.") != std::string::npos) {
        const std::vector<int64_t>& shape = s.checkpoint_shape();
        at::Tensor a = at::empty(shape, at::kFloat);
        lora::kaiming_uniform_a_sqrt5(a.data_ptr<float>(), shape[0], shape[1], rng);
        copy_slot(v, a, s);
      }
      else if (s.name.find(".lora_B.") != std::string::npos)
        v.zero_();
    }
  }
  refresh_compute();
}

void Decoder::load_lora(const TensorLookup& lookup, const std::string& origin) {
  c10::InferenceMode guard;
  for (Unit& u : units_) {
    for (size_t i = 0; i < u.trainable.slots().size(); ++i) {
      const ParamSlot& s = u.trainable.slots()[i];
      if (s.name.find(".lora_") == std::string::npos) continue;
      const io::TensorView* t = lookup(s.name);
      LLMFT_CHECK(t != nullptr, Status::kNotFound, "{}: the adapter has no tensor \"{}\"", origin, s.name);
      copy_in(u.trainable.view(i), s, *t, origin);
    }
  }
  refresh_compute();
}

int64_t Decoder::trainable_parameters() const {
  int64_t n = 0;
  for (const Unit& u : units_) n += u.trainable.numel();
  return n;
}

int64_t Decoder::all_parameters() const {
  int64_t n = 0;
  for (const Unit& u : units_) {
    n += u.trainable.numel() + u.frozen.numel();
    for (const StoredWeight& w : u.stored) n += w.numel();
  }
  return n;
}

void Decoder::zero_grad() {
  for (Unit& u : units_)
    if (u.grad.defined()) u.grad.zero_();
}

void Decoder::refresh_compute() {
  if (options_.dtype == at::kFloat || options_.dtype == at::kDouble) return;
  for (Unit& u : units_)
    if (!u.trainable.empty()) u.compute.copy_(u.trainable.flat);
}

void Decoder::for_each_parameter(
    const std::function<void(const ParamSlot&, const at::Tensor&, bool trainable)>& fn) const {
  for (const Unit& u : units_) {
    for (const StoredWeight& w : u.stored) {
      ParamSlot s;
      s.name = w.name;
      s.shape = w.shape;
      s.numel = w.numel();
      fn(s, w.dequantize(options_.dtype), false);
    }
    // Groups not materialized on this rank (ZeRO-3 between gathers) are skipped.
    if (u.frozen.flat.defined())
      for (size_t i = 0; i < u.frozen.slots().size(); ++i) fn(u.frozen.slots()[i], u.frozen.view(i), false);
    if (u.trainable.flat.defined())
      for (size_t i = 0; i < u.trainable.slots().size(); ++i) fn(u.trainable.slots()[i], u.trainable.view(i), true);
  }
}

// ---- binding views ----

at::Tensor Decoder::param(Unit& u, const std::string& name, at::Tensor* grad) {
  int i = u.trainable.find(name);
  if (i >= 0) {
    // No gradient buffer outside a backward pass when gradients are sharded (ZeRO-2/3): no gradient view either.
    if (grad) *grad = u.grad.numel() > 0 ? u.trainable.view(static_cast<size_t>(i), u.grad) : at::Tensor();
    return u.trainable.view(static_cast<size_t>(i), u.compute);
  }
  if (grad) *grad = at::Tensor();
  int j = u.frozen.find(name);
  return j >= 0 ? u.frozen.view(static_cast<size_t>(j)) : at::Tensor();
}

Decoder::LayerWeights Decoder::bind_layer(size_t l) {
  Unit& u = units_[l + 1];
  std::string p = layer_prefix(l);
  LayerWeights w;
  auto linear = [&](LinearWeights& lw, const std::string& block, const std::string& m) {
    std::string n = p + block + "." + m;
    lw.w = param(u, n + ".weight", &lw.dw);
    lw.stored = u.find_stored(n + ".weight");
    lw.b = param(u, n + ".bias", &lw.db);
    // A row-parallel bias is added once, by rank 0, to the partial outputs the all-reduce sums.
    if (tp_rank_ != 0 && (m == "o_proj" || m == "down_proj")) lw.b = at::Tensor();
    lw.lora_a = param(u, n + ".lora_A.weight", &lw.dlora_a);
    lw.lora_b = param(u, n + ".lora_B.weight", &lw.dlora_b);
    lw.scaling = options_.lora.scaling();
    lw.dropout = options_.lora.dropout;
  };
  w.attn_norm = param(u, p + "input_layernorm.weight", &w.d_attn_norm);
  w.mlp_norm = param(u, p + "post_attention_layernorm.weight", &w.d_mlp_norm);
  if (config_.qk_norm) {
    w.q_norm = param(u, p + "self_attn.q_norm.weight", &w.d_q_norm);
    w.k_norm = param(u, p + "self_attn.k_norm.weight", &w.d_k_norm);
  }
  linear(w.q, "self_attn", "q_proj");
  linear(w.k, "self_attn", "k_proj");
  linear(w.v, "self_attn", "v_proj");
  linear(w.o, "self_attn", "o_proj");
  w.moe = config_.is_moe_layer(static_cast<int64_t>(l));
  if (!w.moe) {
    linear(w.gate, "mlp", "gate_proj");
    linear(w.up, "mlp", "up_proj");
    linear(w.down, "mlp", "down_proj");
  }
  // Weights that sit back to back in one buffer form one (sum of outs, in) matrix.
  auto fuse = [&](std::initializer_list<const char*> names, at::Tensor* wf, at::Tensor* dwf) {
    for (ParamGroup* g : {&u.trainable, &u.frozen}) {
      std::vector<int> idx;
      for (const char* n : names) idx.push_back(g->find(p + n + ".weight"));
      bool adjacent = idx[0] >= 0;
      int64_t rows = 0;
      for (size_t i = 0; adjacent && i < idx.size(); ++i) {
        adjacent = idx[i] >= 0 && (i == 0 || g->slots()[static_cast<size_t>(idx[i])].offset ==
                                                 g->slots()[static_cast<size_t>(idx[i - 1])].offset +
                                                     g->slots()[static_cast<size_t>(idx[i - 1])].numel);
        if (adjacent) rows += g->slots()[static_cast<size_t>(idx[i])].shape[0];
      }
      if (!adjacent) continue;
      const ParamSlot& first = g->slots()[static_cast<size_t>(idx[0])];
      const int64_t cols = first.shape[1], n = rows * cols;
      const bool trained = g == &u.trainable;
      *wf = (trained ? u.compute : g->flat).narrow(0, first.offset, n).view({rows, cols});
      if (trained) *dwf = u.grad.numel() > 0 ? u.grad.narrow(0, first.offset, n).view({rows, cols}) : at::Tensor();
      return;
    }
  };
  fuse({"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, &w.w_qkv, &w.dw_qkv);
  if (!w.moe) {
    fuse({"mlp.gate_proj", "mlp.up_proj"}, &w.w_gate_up, &w.dw_gate_up);
    return w;
  }
  MoeWeights& m = w.experts;
  m.router = param(u, p + "mlp.gate.weight", &m.drouter);
  m.top_k = config_.num_experts_per_tok;
  m.norm_topk_prob = config_.norm_topk_prob;
  m.row_granule = options_.device.is_cpu() && at::isReducedFloatingType(options_.dtype) ? 64 : 1;  // oneDNN only
  m.experts.resize(static_cast<size_t>(config_.num_experts));
  for (size_t e = 0; e < m.experts.size(); ++e) {
    ExpertWeights& ex = m.experts[e];
    const std::string expert = "experts." + std::to_string(e) + ".";
    linear(ex.gate, "mlp", expert + "gate_proj");
    linear(ex.up, "mlp", expert + "up_proj");
    linear(ex.down, "mlp", expert + "down_proj");
    ex.gate.dropout = ex.up.dropout = ex.down.dropout = 0.0;  // refused with expert LoRA (constructor)
    const std::string gate = "mlp." + expert + "gate_proj", up = "mlp." + expert + "up_proj";
    if (!ex.gate.stored) fuse({gate.c_str(), up.c_str()}, &ex.w_gate_up, &ex.dw_gate_up);
  }
  return w;
}

at::Tensor Decoder::output_weight(at::Tensor* grad) {
  if (config_.tie_word_embeddings) return param(embed_unit(), "model.embed_tokens.weight", grad);
  return param(head_unit(), "lm_head.weight", grad);
}

at::Tensor Decoder::embed(const at::Tensor& ids, ParamProvider* provider) {
  if (provider) provider->acquire(embed_unit(), Pass::kForward);
  at::Tensor w = param(embed_unit(), "model.embed_tokens.weight");
  at::Tensor h;
  if (!parallel()) {
    h = w.index_select(0, ids);  // (N, C)
  } else {
    // Each id's row lives on one rank: the others contribute zeros to the sum.
    const int64_t lo = tp_rank_ * local_.vocab_size;
    at::Tensor mine = (ids >= lo).logical_and(ids < lo + local_.vocab_size);                    // (N)
    h = w.index_select(0, at::where(mine, ids - lo, at::zeros_like(ids)));                       // (N, C)
    h.masked_fill_(mine.logical_not().unsqueeze(1), 0);
    reduce_partial(h);
  }
  if (provider) provider->release(embed_unit());
  return h;
}

void Decoder::reduce_partial(at::Tensor& t) {
  if (!parallel()) return;
  // Summed in fp32 (a bf16 sum of P partial products would round P times).
  at::Tensor sum = t.to(at::kFloat).contiguous();
  options_.tp->all_reduce(sum)->wait();
  t = sum.to(t.scalar_type());
}

void Decoder::refuse_parallel(const char* what) const {
  LLMFT_CHECK(!parallel(), Status::kUnsupported,
              "{} runs on a whole model: tensor parallelism serves inference (forward_logits, generate); training "
              "shards with ZeRO (dist.zero_stage)", what);
}

at::Tensor Decoder::head_logits(const at::Tensor& hn) {
  const at::ScalarType out = options_.dtype == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor local = at::mm(hn, output_weight(nullptr).t()).to(out).contiguous();  // (n, V/P)
  if (!parallel()) return local;
  const int64_t n = hn.size(0), P = tp_size_, Vp = local_.vocab_size;
  at::Tensor all = at::empty({P * n * Vp}, local.options());
  options_.tp->all_gather(all, local.view({-1}))->wait();
  return all.view({P, n, Vp}).permute({1, 0, 2}).reshape({n, P * Vp}).narrow(1, 0, config_.vocab_size).contiguous();  // (n, V)
}

// ---- one decoder layer ----

// The attention sub-block's input side: x1 = norm(h), then q (n, H, D), k and v (n, K, D) with the q/k norms and
// RoPE applied; what training, the prefill and the decoding step share.
void Decoder::attention_inputs(LayerWeights& w, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                               at::Generator* gen, LayerCache* c, at::Tensor* q, at::Tensor* k, at::Tensor* v) {
  const auto& cf = local_;  // this rank's heads under tensor parallelism
  const int64_t n = h.size(0), H = cf.num_attention_heads, K = cf.num_key_value_heads, D = cf.head_dim;
  at::Tensor x1 = rmsnorm_forward(h, w.attn_norm, cf.rms_norm_eps, c ? &c->norm1 : nullptr);  // (n, C)
  if (w.w_qkv.defined()) {
    auto qkv = fused_linear_forward(x1, w.w_qkv, {&w.q, &w.k, &w.v}, gen,
                                    {c ? &c->q : nullptr, c ? &c->k : nullptr, c ? &c->v : nullptr});
    *q = qkv[0].view({n, H, D});
    *k = qkv[1].view({n, K, D});
    *v = qkv[2].view({n, K, D});
  } else {
    *q = linear_forward(x1, w.q, gen, c ? &c->q : nullptr).view({n, H, D});  // (n, H, D)
    *k = linear_forward(x1, w.k, gen, c ? &c->k : nullptr).view({n, K, D});  // (n, K, D)
    *v = linear_forward(x1, w.v, gen, c ? &c->v : nullptr).view({n, K, D});  // (n, K, D)
  }
  if (cf.qk_norm) {
    *q = rmsnorm_forward(q->reshape({n * H, D}), w.q_norm, cf.rms_norm_eps, c ? &c->qn : nullptr).view({n, H, D});
    *k = rmsnorm_forward(k->reshape({n * K, D}), w.k_norm, cf.rms_norm_eps, c ? &c->kn : nullptr).view({n, K, D});
  }
  *q = rope_apply(*q, cos, sin);
  *k = rope_apply(*k, cos, sin);
}

// The attention sub-block's output side: h + o(a), the projection summed across tensor-parallel ranks.
at::Tensor Decoder::attention_output(LayerWeights& w, const at::Tensor& h, const at::Tensor& a, at::Generator* gen,
                                     LayerCache* c) {
  at::Tensor o = linear_forward(a.reshape({a.size(0), -1}), w.o, gen, c ? &c->o : nullptr);  // (n, C)
  reduce_partial(o);
  return h + o;
}

// The MLP sub-block with its residual: h2 + mlp(x2), x2 = norm(h2); mlp the dense SwiGLU
// down(silu(gate(x2)) * up(x2)) (summed across tensor-parallel ranks), or the mixture of experts.
at::Tensor Decoder::mlp_forward(LayerWeights& w, const at::Tensor& h2, at::Generator* gen, LayerCache* c) {
  at::Tensor x2 = rmsnorm_forward(h2, w.mlp_norm, local_.rms_norm_eps, c ? &c->norm2 : nullptr);  // (n, C)
  if (w.moe) return h2 + moe_forward(x2, w.experts, c ? &c->moe : nullptr, count_routing_ ? &moe_stats_ : nullptr);
  at::Tensor g, u;  // (n, F)
  if (w.w_gate_up.defined()) {
    auto gu = fused_linear_forward(x2, w.w_gate_up, {&w.gate, &w.up}, gen,
                                   {c ? &c->gate : nullptr, c ? &c->up : nullptr});
    g = gu[0];
    u = gu[1];
  } else {
    g = linear_forward(x2, w.gate, gen, c ? &c->gate : nullptr);
    u = linear_forward(x2, w.up, gen, c ? &c->up : nullptr);
  }
  if (c) {
    c->g = g;
    c->u = u;
  }
  at::Tensor down = linear_forward(swiglu_forward(g, u), w.down, gen, c ? &c->down : nullptr);  // (n, C)
  reduce_partial(down);
  return h2 + down;
}

// d(loss)/d(h2) of the MLP sub-block, for dh = d(loss)/d(h3).
at::Tensor Decoder::mlp_backward(LayerWeights& w, const at::Tensor& dh, LayerCache& c) {
  at::Tensor dx2;  // (N, C)
  if (w.moe) {
    dx2 = moe_backward(dh, w.experts, c.moe, aux_dprobs_);
  } else {
    at::Tensor da = linear_backward(dh, w.down, c.down);  // (N, F)
    at::Tensor dg, du;
    swiglu_backward(da, c.g, c.u, &dg, &du);
    if (w.w_gate_up.defined()) {
      dx2 = fused_linear_backward({dg, du}, w.w_gate_up, w.dw_gate_up, {&w.gate, &w.up}, {&c.gate, &c.up});
    } else {
      dx2 = linear_backward(dg, w.gate, c.gate);
      dx2.add_(linear_backward(du, w.up, c.up));
    }
  }
  return dh + rmsnorm_backward(dx2, w.mlp_norm, c.norm2, &w.d_mlp_norm);
}

// d(loss)/d(h) of the attention sub-block h2 = h + o(attn(rope(q), rope(k), v)), for dh2 = d(loss)/d(h2).
at::Tensor Decoder::attention_backward_block(LayerWeights& w, const at::Tensor& dh2, LayerCache& c, const at::Tensor& cos,
                                             const at::Tensor& sin, const std::vector<int64_t>& doc_starts) {
  const auto& cf = local_;
  const int64_t N = dh2.size(0), H = cf.num_attention_heads, K = cf.num_key_value_heads, D = cf.head_dim;
  at::Tensor dattn = linear_backward(dh2, w.o, c.o).view({N, H, D});
  at::Tensor dq, dk, dv;
  attention_backward(dattn, c.attn, doc_starts, cf.sliding_window, &dq, &dk, &dv);
  dq = rope_backward(dq, cos, sin);
  dk = rope_backward(dk, cos, sin);
  if (cf.qk_norm) {
    dq = rmsnorm_backward(dq.reshape({N * H, D}), w.q_norm, c.qn, &w.d_q_norm).view({N, H, D});
    dk = rmsnorm_backward(dk.reshape({N * K, D}), w.k_norm, c.kn, &w.d_k_norm).view({N, K, D});
  }
  at::Tensor dx1;
  if (w.w_qkv.defined()) {
    dx1 = fused_linear_backward({dq.reshape({N, H * D}), dk.reshape({N, K * D}), dv.reshape({N, K * D})}, w.w_qkv,
                                w.dw_qkv, {&w.q, &w.k, &w.v}, {&c.q, &c.k, &c.v});
  } else {
    dx1 = linear_backward(dq.reshape({N, H * D}), w.q, c.q);
    dx1.add_(linear_backward(dk.reshape({N, K * D}), w.k, c.k));
    dx1.add_(linear_backward(dv.reshape({N, K * D}), w.v, c.v));
  }
  return dh2 + rmsnorm_backward(dx1, w.attn_norm, c.norm1, &w.d_attn_norm);
}

at::Tensor Decoder::layer_forward(size_t l, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                                  const std::vector<int64_t>& doc_starts, at::Generator* gen, LayerCache* c) {
  LayerWeights w = bind_layer(l);
  at::Tensor q, k, v;
  attention_inputs(w, h, cos, sin, gen, c, &q, &k, &v);
  at::Tensor a = attention_forward(q, k, v, doc_starts, local_.sliding_window, c ? &c->attn : nullptr);  // (N, H, D)
  return mlp_forward(w, attention_output(w, h, a, gen, c), gen, c);
}

at::Tensor Decoder::layer_backward(size_t l, const at::Tensor& dh, LayerCache& c, const at::Tensor& cos,
                                   const at::Tensor& sin, const std::vector<int64_t>& doc_starts) {
  LayerWeights w = bind_layer(l);
  return attention_backward_block(w, mlp_backward(w, dh, c), c, cos, sin, doc_starts);
}

// ---- whole model ----

bool Decoder::balance_loss_on() const {
  return config_.moe() && config_.router_aux_loss_coef > 0 &&
         (config_.output_router_logits || options_.mode == TrainMode::kFull);
}

// transformers' load_balancing_loss_func over the pass's MoE layers: aux = E * sum_e f_e P_e, f_e the share of top-k
// assignments to expert e (summing to k), P_e its mean probability, both over every token of every MoE layer. Its
// gradient reaches each token's probabilities as E f_e / rows (f is a count, not differentiable).
double Decoder::balance_loss(int64_t num_targets, at::Tensor* dprobs) {
  if (!balance_loss_on() || moe_stats_.rows == 0) return 0.0;
  const double rows = static_cast<double>(moe_stats_.rows), E = static_cast<double>(config_.num_experts);
  const double scale = config_.router_aux_loss_coef * static_cast<double>(num_targets);
  at::Tensor f = moe_stats_.counts.to(at::kDouble) / rows, P = moe_stats_.prob_sum.to(at::kDouble) / rows;
  if (dprobs) *dprobs = (f * (scale * E / rows)).to(moe_stats_.counts.scalar_type());
  return scale * E * (f * P).sum().item<double>();
}

Batch Decoder::to_device(const Batch& b) const {
  if (b.ids.device() == options_.device) return b;
  Batch d = b;
  d.ids = b.ids.to(options_.device);
  d.positions = b.positions.to(options_.device);
  d.targets = b.targets.to(options_.device);
  return d;
}

double Decoder::forward_backward(const Batch& batch, ParamProvider* provider, at::Generator* dropout) {
  c10::InferenceMode guard;
  const Batch b = to_device(batch);
  refuse_parallel("training (forward_backward)");
  ParamProvider none;
  ParamProvider& pp = provider ? *provider : none;
  const size_t L = static_cast<size_t>(config_.num_hidden_layers);
  at::Tensor cos, sin;
  rope_tables(rope_, b.positions, options_.dtype, &cos, &sin);
  at::Tensor h = embed(b.ids, &pp);
  moe_stats_ = MoeStats();
  count_routing_ = true;  // the forward pass's routing feeds the load-balancing loss (not the recomputation's)
  const bool ckpt = options_.checkpoint_layers;
  std::vector<LayerCache> caches(L);
  std::vector<at::Tensor> inputs(ckpt ? L : 0);                 // checkpointing: each layer's input (N, C)
  std::vector<at::Generator> dropout_states(ckpt && dropout ? L : 0);  // and the dropout generator before it
  for (size_t l = 0; l < L; ++l) {
    pp.acquire(units_[l + 1], Pass::kForward);
    if (ckpt) {
      inputs[l] = h;
      if (dropout) dropout_states[l] = dropout->clone();
      h = layer_forward(l, h, cos, sin, b.doc_starts, dropout, nullptr);
    } else {
      h = layer_forward(l, h, cos, sin, b.doc_starts, dropout, &caches[l]);
    }
    pp.release(units_[l + 1]);
  }
  count_routing_ = false;
  // Head: loss over the positions that have a target.
  pp.acquire(head_unit(), Pass::kBackward);
  if (config_.tie_word_embeddings) pp.acquire(embed_unit(), Pass::kBackward);
  at::Tensor d_norm;
  at::Tensor norm_w = param(head_unit(), "model.norm.weight", &d_norm);
  RmsNormCache nc;
  at::Tensor hn = rmsnorm_forward(h, norm_w, config_.rms_norm_eps, &nc);  // (N, C)
  at::Tensor idx = at::nonzero(b.targets >= 0).squeeze(1);                // (M)
  at::Tensor dw_out;
  at::Tensor w_out = output_weight(&dw_out);
  at::Tensor dsel;
  double loss = cross_entropy_forward_backward(hn.index_select(0, idx), b.targets.index_select(0, idx), w_out, &dsel,
                                               &dw_out, 1024, &logits_workspace_);
  at::Tensor dhn = at::zeros_like(hn).index_copy_(0, idx, dsel);
  at::Tensor dh = rmsnorm_backward(dhn, norm_w, nc, &d_norm);
  loss += balance_loss(b.num_targets, &aux_dprobs_);
  if (config_.tie_word_embeddings) pp.release(embed_unit());
  pp.release(head_unit());
  pp.grads_ready(head_unit());
  for (size_t l = L; l-- > 0;) {
    pp.acquire(units_[l + 1], Pass::kBackward);
    if (ckpt) {  // the layer's activations again, from its input (the same dropout masks)
      layer_forward(l, inputs[l], cos, sin, b.doc_starts, dropout ? &dropout_states[l] : nullptr, &caches[l]);
      inputs[l] = at::Tensor();
    }
    dh = layer_backward(l, dh, caches[l], cos, sin, b.doc_starts);
    caches[l] = LayerCache();
    pp.release(units_[l + 1]);
    pp.grads_ready(units_[l + 1]);
  }
  aux_dprobs_ = at::Tensor();
  at::Tensor d_embed;
  pp.acquire(embed_unit(), Pass::kBackward);
  param(embed_unit(), "model.embed_tokens.weight", &d_embed);
  if (d_embed.defined()) d_embed.index_add_(0, b.ids, dh.to(d_embed.scalar_type()));
  pp.release(embed_unit());
  pp.grads_ready(embed_unit());
  return loss;
}

double Decoder::forward_loss(const Batch& batch, ParamProvider* provider, int64_t* correct) {
  c10::InferenceMode guard;
  const Batch b = to_device(batch);
  refuse_parallel("the evaluation loss (forward_loss)");
  ParamProvider none;
  ParamProvider& pp = provider ? *provider : none;
  at::Tensor cos, sin;
  rope_tables(rope_, b.positions, options_.dtype, &cos, &sin);
  at::Tensor h = embed(b.ids, &pp);
  moe_stats_ = MoeStats();
  count_routing_ = true;
  for (size_t l = 0; l < static_cast<size_t>(config_.num_hidden_layers); ++l) {
    pp.acquire(units_[l + 1], Pass::kForward);
    h = layer_forward(l, h, cos, sin, b.doc_starts, nullptr, nullptr);
    pp.release(units_[l + 1]);
  }
  count_routing_ = false;
  pp.acquire(head_unit(), Pass::kForward);
  if (config_.tie_word_embeddings) pp.acquire(embed_unit(), Pass::kForward);
  at::Tensor hn = rmsnorm_forward(h, param(head_unit(), "model.norm.weight"), config_.rms_norm_eps, nullptr);
  at::Tensor idx = at::nonzero(b.targets >= 0).squeeze(1);
  double loss = cross_entropy_forward(hn.index_select(0, idx), b.targets.index_select(0, idx), output_weight(nullptr), 1024,
                                      &logits_workspace_, correct);
  loss += balance_loss(b.num_targets, nullptr);
  if (config_.tie_word_embeddings) pp.release(embed_unit());
  pp.release(head_unit());
  return loss;
}

at::Tensor Decoder::forward_logits(const Batch& batch) {
  c10::InferenceMode guard;
  const Batch b = to_device(batch);
  at::Tensor cos, sin;
  rope_tables(rope_, b.positions, options_.dtype, &cos, &sin);
  at::Tensor h = embed(b.ids, nullptr);
  for (size_t l = 0; l < static_cast<size_t>(config_.num_hidden_layers); ++l)
    h = layer_forward(l, h, cos, sin, b.doc_starts, nullptr, nullptr);
  at::Tensor hn = rmsnorm_forward(h, param(head_unit(), "model.norm.weight"), config_.rms_norm_eps, nullptr);
  return head_logits(hn);  // (N, V)
}

// ---- generation with a KV cache ----

at::Tensor Decoder::layer_prefill(size_t l, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                                  KVCache& kv, const std::vector<int64_t>& doc_starts) {
  LayerWeights w = bind_layer(l);
  at::Tensor q, k, v;  // (N, H, D), (N, K, D)
  attention_inputs(w, h, cos, sin, nullptr, nullptr, &q, &k, &v);
  for (size_t b = 0; b + 1 < doc_starts.size(); ++b) {  // prompt b's keys and values at positions 0..len-1
    const int64_t len = doc_starts[b + 1] - doc_starts[b];
    kv.k[l].select(0, static_cast<int64_t>(b)).narrow(0, 0, len).copy_(k.narrow(0, doc_starts[b], len));
    kv.v[l].select(0, static_cast<int64_t>(b)).narrow(0, 0, len).copy_(v.narrow(0, doc_starts[b], len));
  }
  at::Tensor a = attention_forward(q, k, v, doc_starts, local_.sliding_window, nullptr);  // (N, H, D)
  return mlp_forward(w, attention_output(w, h, a, nullptr, nullptr), nullptr, nullptr);
}

at::Tensor Decoder::layer_decode(size_t l, const at::Tensor& h, const at::Tensor& cos, const at::Tensor& sin,
                                 KVCache& kv, const at::Tensor& lengths) {
  LayerWeights w = bind_layer(l);
  const auto& cf = local_;
  const int64_t B = h.size(0), H = cf.num_attention_heads, K = cf.num_key_value_heads, D = cf.head_dim;
  at::Tensor q, k, v;  // (B, H, D), (B, K, D): one new token per sequence
  attention_inputs(w, h, cos, sin, nullptr, nullptr, &q, &k, &v);
  at::Tensor rows = at::arange(B, lengths.options());
  kv.k[l].index_put_({rows, lengths}, k);  // sequence b's new key at position lengths[b]
  kv.v[l].index_put_({rows, lengths}, v);
  const int64_t T = kv.span, rep = H / K;
  at::Tensor kall = kv.k[l].narrow(1, 0, T).permute({0, 2, 1, 3});  // (B, K, T, D)
  at::Tensor vall = kv.v[l].narrow(1, 0, T).permute({0, 2, 1, 3});
  if (rep > 1) {
    kall = kall.unsqueeze(2).expand({B, K, rep, T, D}).reshape({B, H, T, D});
    vall = vall.unsqueeze(2).expand({B, K, rep, T, D}).reshape({B, H, T, D});
  }
  at::Tensor scores = at::matmul(q.unsqueeze(2), kall.transpose(2, 3)).mul_(1.0 / std::sqrt(double(D))).to(at::kFloat);  // (B, H, 1, T)
  // Sequence b's query sits at position lengths[b]: it sees keys j <= lengths[b] (and within the window).
  at::Tensor qi = lengths.view({B, 1, 1, 1}), kj = at::arange(T, lengths.options()).view({1, 1, 1, T});
  at::Tensor blocked = kj > qi;
  if (cf.sliding_window > 0) blocked = blocked.logical_or(kj <= qi - cf.sliding_window);
  scores.masked_fill_(blocked, -std::numeric_limits<float>::infinity());
  at::Tensor a = at::matmul(at::softmax(scores, -1).to(h.scalar_type()), vall).reshape({B, H, D});  // (B, H, D)
  return mlp_forward(w, attention_output(w, h, a, nullptr, nullptr), nullptr, nullptr);
}

int64_t pick_token(const at::Tensor& logits, double temperature, double top_p, at::Generator& gen) {
  if (temperature <= 0) return logits.argmax().item<int64_t>();
  at::Tensor probs = at::softmax(logits / temperature, -1);
  if (top_p < 1.0) {
    auto sorted = probs.sort(-1, true);
    at::Tensor sp = std::get<0>(sorted), si = std::get<1>(sorted);
    at::Tensor before = sp.cumsum(0) - sp;  // mass of the tokens ranked above each one
    sp.masked_fill_(before >= top_p, 0.0);  // keep the smallest set reaching top_p
    probs = at::zeros_like(probs).scatter_(0, si, sp);
  }
  return at::multinomial(probs, 1, false, gen).item<int64_t>();
}

std::vector<std::vector<int32_t>> Decoder::generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                          const GenerateOptions& opt, ParamProvider* provider,
                                                          comm::Communicator* agree) {
  c10::InferenceMode guard;
  LLMFT_CHECK(!prompts.empty(), Status::kInvalidArgument, "generate: no prompts");
  const int64_t B = static_cast<int64_t>(prompts.size());
  std::vector<std::vector<int32_t>> out(prompts.size());
  if (opt.max_new_tokens <= 0) return out;
  std::vector<int64_t> ids, positions, doc_starts;
  int64_t longest = 0;
  for (size_t b = 0; b < prompts.size(); ++b) {
    LLMFT_CHECK(!prompts[b].empty(), Status::kInvalidArgument, "generate: prompt {} is empty", b);
    doc_starts.push_back(static_cast<int64_t>(ids.size()));
    for (size_t t = 0; t < prompts[b].size(); ++t) {
      ids.push_back(prompts[b][t]);
      positions.push_back(static_cast<int64_t>(t));
    }
    longest = std::max<int64_t>(longest, static_cast<int64_t>(prompts[b].size()));
  }
  doc_starts.push_back(static_cast<int64_t>(ids.size()));
  // The KV cache: this rank's key/value heads of every sequence, (B, longest prompt + max_new_tokens, K, D) a layer.
  KVCache kv;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    // Zeros: a shorter sequence's unwritten positions are masked out, but 0 * (uninitialised NaN) would not be.
    kv.k.push_back(at::zeros({B, longest + opt.max_new_tokens, local_.num_key_value_heads, local_.head_dim},
                             on_device(options_.dtype)));
    kv.v.push_back(at::zeros_like(kv.k.back()));
  }
  std::vector<at::Generator> gens;
  for (int64_t b = 0; b < B; ++b) gens.push_back(at::make_generator<at::CPUGeneratorImpl>(opt.seed));
  comm::Communicator* group = parallel() ? options_.tp : agree;  // whose ranks must feed the same tokens
  const bool picker = group == nullptr || group->rank() == 0;
  const size_t L = static_cast<size_t>(config_.num_hidden_layers);
  ParamProvider none;
  ParamProvider& pp = provider ? *provider : none;
  auto logits_of = [&](const at::Tensor& last) {  // (B, C) -> (B, V) fp32
    pp.acquire(head_unit(), Pass::kForward);
    if (config_.tie_word_embeddings) pp.acquire(embed_unit(), Pass::kForward);
    at::Tensor hn = rmsnorm_forward(last, param(head_unit(), "model.norm.weight"), config_.rms_norm_eps, nullptr);
    at::Tensor logits = head_logits(hn).to(at::kFloat).cpu();  // picked on the CPU: the same tokens on any device
    if (config_.tie_word_embeddings) pp.release(embed_unit());
    pp.release(head_unit());
    return logits;
  };
  auto layer = [&](size_t l, auto&& run) {
    pp.acquire(units_[l + 1], Pass::kForward);
    at::Tensor out = run();
    pp.release(units_[l + 1]);
    return out;
  };

  // Prefill: every prompt in one packed batch; each sequence's last position gives its first token.
  at::Tensor cos, sin;
  rope_tables(rope_, at::tensor(positions, at::kLong).to(options_.device), options_.dtype, &cos, &sin);
  at::Tensor h = embed(at::tensor(ids, at::kLong).to(options_.device), provider);
  for (size_t l = 0; l < L; ++l) h = layer(l, [&] { return layer_prefill(l, h, cos, sin, kv, doc_starts); });
  std::vector<int64_t> last(doc_starts.begin() + 1, doc_starts.end());
  for (auto& x : last) --x;
  h = h.index_select(0, at::tensor(last, at::kLong).to(options_.device));  // (B, C)
  std::vector<int64_t> prompt_lengths;
  for (const auto& p : prompts) prompt_lengths.push_back(static_cast<int64_t>(p.size()));
  at::Tensor lengths = at::tensor(prompt_lengths, at::kLong).to(options_.device);  // (B)
  std::vector<bool> done(prompts.size(), false);
  for (int64_t t = 0;; ++t) {
    at::Tensor logits = logits_of(h);  // (B, V)
    // Every rank holds the same logits; rank 0's choice is broadcast so all ranks feed the same tokens and stop
    // together (a near-tie decided differently would otherwise leave the ranks issuing different collectives).
    at::Tensor next = at::zeros({B}, at::kLong);
    if (picker)
      for (int64_t b = 0; b < B; ++b)
        if (!done[static_cast<size_t>(b)])
          next[b] = pick_token(logits[b], opt.temperature, opt.top_p, gens[static_cast<size_t>(b)]);
    if (group != nullptr && group->size() > 1) comm::broadcast_host(*group, next);
    const int64_t* nx = next.data_ptr<int64_t>();
    bool all_done = true;
    for (size_t b = 0; b < prompts.size(); ++b) {
      if (done[b]) continue;
      const auto id = static_cast<int32_t>(nx[b]);
      out[b].push_back(id);
      done[b] = static_cast<int64_t>(out[b].size()) >= opt.max_new_tokens ||
                std::find(opt.stop_ids.begin(), opt.stop_ids.end(), id) != opt.stop_ids.end();
      all_done = all_done && done[b];
    }
    if (all_done) break;
    // One step for every sequence (a finished one keeps stepping on a placeholder token; its output is not kept).
    rope_tables(rope_, lengths, options_.dtype, &cos, &sin);
    kv.span = longest + t + 1;  // every sequence has advanced t tokens past its prompt
    h = embed(next.to(options_.device), provider);
    for (size_t l = 0; l < L; ++l) h = layer(l, [&] { return layer_decode(l, h, cos, sin, kv, lengths); });
    lengths.add_(1);
  }
  return out;
}

std::vector<int32_t> Decoder::generate(const std::vector<int32_t>& prompt, const GenerateOptions& options) {
  return generate_batch({prompt}, options).front();
}

}  // namespace llmft::model
