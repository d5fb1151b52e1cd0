// FP8 checkpoints with block scales, as Qwen and DeepSeek ship them (Qwen3-*-FP8, DeepSeek-V3): a linear weight is
// stored as F8_E4M3 [out, in] with `<name>_scale_inv` [ceil(out/B0), ceil(in/B1)] (F32 or BF16) beside it, and
// config.json says {"quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [B0, B1],
// "modules_to_not_convert": [...]}}. The weight is W[i][j] = e4m3(w[i][j]) * scale_inv[i / B0][j / B1], computed in
// float32 as torch computes w.to(float32) * scale (tests/model/fp8_reference.py judges it bit for bit).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"

namespace llmft::io {

// OCP FP8 E4M3FN (torch.float8_e4m3fn): bias 7, subnormals, no infinities; S.1111.111 is NaN.
float e4m3fn_to_f32(uint8_t v);

struct Fp8BlockConfig {
  int64_t block_rows = 128, block_cols = 128;
  std::vector<std::string> modules_to_not_convert;
};
// config.json's quantization_config: nullopt without one; an Error naming the key for a method or format llmft does
// not read (compressed-tensors, bitsandbytes, e5m2, per-tensor scales).
std::optional<Fp8BlockConfig> fp8_block_config(const nlohmann::json& config, const std::string& origin);

// The scale tensor's name for a weight ("x.weight" -> "x.weight_scale_inv").
std::string fp8_scale_name(const std::string& weight_name);

// The dequantised weight, float32, row-major [out, in]. Errors name the tensors: dtypes, a scale of the wrong shape,
// and NaN bytes (E4M3FN's S.1111.111).
std::vector<float> dequantize_fp8_block(const TensorView& w, const TensorView& scale_inv, const Fp8BlockConfig& c,
                                        const std::string& origin);

}  // namespace llmft::io
