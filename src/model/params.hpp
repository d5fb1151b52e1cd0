// Parameters in flat buffers. A model is a list of units — the embedding, each decoder layer, the final norm and
// head — and each unit keeps its parameters back to back in flat 1-D buffers: one for frozen base weights (compute
// dtype), one for trainable weights (fp32 master: the LoRA adapters, or every weight under full fine-tuning) and
// its gradient buffer. Buffers are padded to a multiple of `align` elements so a data-parallel group can shard them
// into equal contiguous slices (ZeRO); a shard is an (offset, numel) range of a flat buffer.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <ATen/ATen.h>

#include "model/stored_weight.hpp"

namespace llmft::model {

struct ParamSlot {
  std::string name;              // Hugging Face / PEFT name, e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;
  int64_t offset = 0, numel = 0;  // in elements of the group's flat buffer
  bool decay = true;              // AdamW weight decay applies (false for norms and biases)
  // Tensor parallelism: the slot holds rows (split_dim 0) or columns (1) [split_start, split_start + shape[dim]) of
  // the checkpoint's tensor, whose shape is full_shape. Rows past the checkpoint's end (the padding of a vocabulary
  // that does not split evenly) are zeros. split_dim -1: the whole tensor (full_shape empty).
  int split_dim = -1;
  int64_t split_start = 0;
  std::vector<int64_t> full_shape;
  const std::vector<int64_t>& checkpoint_shape() const { return split_dim < 0 ? shape : full_shape; }
};

// Where a tensor-parallel slot's values come from in the checkpoint's tensor (dim -1: all of it).
struct Split {
  int dim = -1;
  int64_t start = 0;
  std::vector<int64_t> full_shape;
};

class ParamGroup {
 public:
  void add(const std::string& name, std::vector<int64_t> shape, bool decay, const Split& split = {});
  // Fixes the layout: padded size is a multiple of align (the data-parallel world size times a small alignment).
  void finalize(int64_t align);
  void allocate(const at::TensorOptions& options);  // zero-filled flat buffer
  bool empty() const { return slots_.empty(); }
  int64_t numel() const { return numel_; }
  int64_t padded_numel() const { return padded_; }
  const std::vector<ParamSlot>& slots() const { return slots_; }
  // Index of a slot by name, or -1.
  int find(const std::string& name) const;
  // View of slot i in `flat` (defaults to this group's own buffer).
  at::Tensor view(size_t i) const { return view(i, flat); }
  at::Tensor view(size_t i, const at::Tensor& buffer) const;
  at::Tensor view(const std::string& name) const;  // undefined if absent

  at::Tensor flat;  // (padded_numel) or undefined while not materialized

 private:
  std::vector<ParamSlot> slots_;
  std::unordered_map<std::string, int> index_;  // slot of each name
  int64_t numel_ = 0, padded_ = 0;
  bool final_ = false;
};

struct Unit {
  std::string name;       // "embed", "layers.3", "head"
  ParamGroup frozen;      // base weights that are not trained (compute dtype)
  ParamGroup trainable;   // fp32 master copy of trained weights
  at::Tensor grad;        // fp32 gradients, same layout as trainable.flat
  at::Tensor compute;     // trainable weights in the compute dtype (aliases trainable.flat in fp32)
  // Frozen linear weights kept in a storage format (DecoderOptions::quantize: NF4, FP8 blocks), outside the flat
  // buffers: the same on every data-parallel rank, never sharded or gathered.
  std::vector<StoredWeight> stored;
  const StoredWeight* find_stored(const std::string& name) const {
    for (const StoredWeight& w : stored)
      if (w.name == name) return &w;
    return nullptr;
  }
};

// Formats a count with thousands separators (PEFT's print_trainable_parameters style).
std::string with_commas(int64_t n);

}  // namespace llmft::model
