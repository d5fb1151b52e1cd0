// Frozen linear weights kept in a storage format (QLoRA's 4-bit base, an FP8 checkpoint kept in FP8): the bytes
// stay packed in memory and a matrix product dequantises them a tile of output rows at a time, so at most one
// tile of one weight is ever dense. A stored weight is never trained; LoRA trains beside it.
//
// Formats, each bit-exact with the implementation that defines it:
//  - NF4 as bitsandbytes stores it (quantize_4bit, quant_type "nf4"): the flattened weight in blocks of 64 values,
//    each value the index of the nearest of 16 normal-float levels after dividing by the block's absmax, two
//    values a byte (the first in the high nibble). With double quantisation the fp32 absmaxes are stored as 8-bit
//    codes of bitsandbytes' signed dynamic map, in blocks of 256 with an fp32 absmax each, after subtracting their
//    mean (the offset). Dequantised, W = level[q] * absmax, computed in fp32 and rounded once to the compute dtype.
//    Checkpoints that transformers saved with bitsandbytes (weight, weight.absmax, weight.quant_map,
//    weight.nested_absmax, weight.nested_quant_map, weight.quant_state.bitsandbytes__nf4) are read as they are.
//  - FP8 block (E4M3FN bytes with one fp32 scale per [B0, B1] block, io/fp8_block.hpp): W = e4m3(w) * scale, as
//    torch computes w.to(float32) * scale. Quantising a dense weight takes scale = absmax / 448 per block and rounds
//    w / scale to the nearest E4M3FN value.
//  - Dense: the weight in the compute dtype (a module an FP8 checkpoint left unconverted).
//
// Dims: O output rows, I input columns, N tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "io/safetensors.hpp"

namespace llmft::model {

enum class WeightFormat { kDense, kNf4, kFp8Block };
const char* format_name(WeightFormat f);  // "dense", "nf4", "fp8"

// How the decoder stores its frozen linear weights (DecoderOptions::quantize).
struct QuantizeOptions {
  WeightFormat format = WeightFormat::kDense;  // kDense: the ordinary flat buffers, no stored weights
  bool double_quant = true;                    // NF4: absmaxes quantised to 8 bits (bitsandbytes' compress_statistics)
  int64_t nf4_blocksize = 64;
  int64_t fp8_block_rows = 128, fp8_block_cols = 128;
  // FP8 kept from a checkpoint: tensors the checkpoint stores dense (modules_to_not_convert) stay dense.
  bool keep_dense = false;
};

struct StoredWeight {
  std::string name;             // Hugging Face name, "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;   // (O, I)
  WeightFormat format = WeightFormat::kDense;
  at::Tensor data;              // dense: (O, I) compute dtype; NF4: (ceil(O*I/2)) uint8; FP8: (O, I) uint8 bytes
  // NF4
  int64_t blocksize = 64;
  at::Tensor absmax;            // (blocks) fp32, or (blocks) uint8 codes with double quantisation
  at::Tensor nested_absmax;     // (ceil(blocks / nested_blocksize)) fp32
  at::Tensor nested_code;       // (256) fp32, the dynamic map the codes index
  int64_t nested_blocksize = 256;
  float offset = 0;             // the mean subtracted before the absmaxes were quantised
  // FP8
  at::Tensor scale;             // (ceil(O/B0), ceil(I/B1)) fp32
  int64_t block_rows = 128, block_cols = 128;

  bool defined() const { return data.defined(); }
  int64_t rows() const { return shape[0]; }
  int64_t cols() const { return shape[1]; }
  int64_t numel() const { return shape[0] * shape[1]; }
  int64_t bytes() const;  // what the stored form occupies
  // Rows [start, start + n) dequantised: (n, I) in `dtype`, on the device the weight is on. On the CPU, loops over the
  // packed bytes; elsewhere, dequantize_rows_ops.
  at::Tensor dequantize_rows(int64_t start, int64_t n, at::ScalarType dtype) const;
  // The same with ATen tensor operations, on any device: what a GPU runs, and what the tests hold the loops to
  // (bit for bit).
  at::Tensor dequantize_rows_ops(int64_t start, int64_t n, at::ScalarType dtype) const;
  // A copy whose tensors live on `device`.
  StoredWeight to(at::Device device) const;
  at::Tensor dequantize(at::ScalarType dtype) const { return dequantize_rows(0, rows(), dtype); }
};

// The 16 NF4 levels (bitsandbytes' get_4bit_type("nf4"), ascending, -1 .. 1) and the 256 values of its signed
// dynamic 8-bit map (create_dynamic_map), as fp32 tensors.
const at::Tensor& nf4_levels();
const at::Tensor& dynamic_map();

// Quantisers of a dense (O, I) weight (any floating dtype; computed from its fp32 values).
StoredWeight quantize_nf4(const std::string& name, const at::Tensor& w, int64_t blocksize = 64, bool double_quant = true);
StoredWeight quantize_fp8_block(const std::string& name, const at::Tensor& w, int64_t block_rows = 128,
                                int64_t block_cols = 128);
StoredWeight store_dense(const std::string& name, const at::Tensor& w, at::ScalarType dtype);

// Checkpoint tensors already in a storage format, read as they are. `lookup` finds the companion tensors by name;
// every tensor read is appended to `used` (for releasing its pages). Errors name the tensor.
using TensorLookup = std::function<const io::TensorView*(const std::string& name)>;
// bitsandbytes NF4 as transformers saves it: `t` is the packed U8 weight; beside it .absmax, .quant_map,
// .quant_state.bitsandbytes__nf4 (JSON: shape, blocksize, nested_blocksize, nested_offset) and, double-quantised,
// .nested_absmax and .nested_quant_map. FP4 and other quant maps are refused.
StoredWeight read_bnb_nf4(const io::TensorView& t, const TensorLookup& lookup, const std::string& origin,
                          std::vector<const io::TensorView*>* used);
// An F8_E4M3 weight with its <name>_scale_inv blocks (F32 or BF16); NaN bytes and non-finite scales are refused.
StoredWeight read_fp8_block(const io::TensorView& t, const TensorLookup& lookup, int64_t block_rows, int64_t block_cols,
                            const std::string& origin, std::vector<const io::TensorView*>* used);

// Linear products with a stored weight W (O, I), tile by tile over W's rows, in x's dtype:
//   y = x W^T: x (N, I) -> (N, O);   dx = dy W: dy (N, O) -> (N, I).
// `tile_elements` bounds the dense tile (rows * I); 0 picks the default (4M elements).
at::Tensor stored_matmul_t(const at::Tensor& x, const StoredWeight& w, int64_t tile_elements = 0);
at::Tensor stored_matmul(const at::Tensor& dy, const StoredWeight& w, int64_t tile_elements = 0);

}  // namespace llmft::model
