#include "io/fp8_block.hpp"

#include <cmath>
#include <limits>

#include "io/dtype_convert.hpp"
#include "util/check.hpp"

namespace llmft::io {

float e4m3fn_to_f32(uint8_t v) {
  const bool negative = (v & 0x80) != 0;
  const int exponent = (v >> 3) & 0xF, mantissa = v & 0x7;
  float x;
  if (exponent == 0xF && mantissa == 0x7) return std::numeric_limits<float>::quiet_NaN();
  if (exponent == 0) x = std::ldexp(static_cast<float>(mantissa), -9);  // subnormal: m/8 * 2^-6
  else x = std::ldexp(static_cast<float>(8 + mantissa), exponent - 10);  // (1 + m/8) * 2^(e-7)
  return negative ? -x : x;
}

std::optional<Fp8BlockConfig> fp8_block_config(const nlohmann::json& config, const std::string& origin) {
  if (!config.contains("quantization_config") || config["quantization_config"].is_null()) return std::nullopt;
  const nlohmann::json& q = config["quantization_config"];
  LLMFT_CHECK(q.is_object(), Status::kFormat, "{}: quantization_config is not an object", origin);
  const std::string method = q.value("quant_method", std::string());
  // compressed-tensors (llm-compressor's format, e.g. RedHatAI's FP8 checkpoints) describes its schemes in
  // config_groups and stores weight_scale rather than weight_scale_inv, per channel or per block: not read.
  LLMFT_CHECK(method != "compressed-tensors", Status::kUnsupported,
              "{}: quantization_config.quant_method \"compressed-tensors\" (llm-compressor's format: schemes in "
              "config_groups, weight_scale tensors) is not read; llmft reads FP8 block checkpoints as Qwen and DeepSeek "
              "ship them (quant_method fp8, weight_scale_inv), bitsandbytes 4-bit, or the unquantised model", origin);
  LLMFT_CHECK(method == "fp8", Status::kUnsupported,
              "{}: quantization_config.quant_method \"{}\": llmft reads FP8 block checkpoints (quant_method fp8); "
              "load the unquantised model instead", origin, method);
  const std::string fmt = q.value("fmt", std::string("e4m3"));
  LLMFT_CHECK(fmt == "e4m3", Status::kUnsupported, "{}: quantization_config.fmt \"{}\": llmft reads e4m3 only", origin, fmt);
  Fp8BlockConfig c;
  LLMFT_CHECK(q.contains("weight_block_size") && q["weight_block_size"].is_array() && q["weight_block_size"].size() == 2,
              Status::kUnsupported,
              "{}: quantization_config has no weight_block_size [rows, cols]: llmft reads block-scaled FP8 only "
              "(not per-tensor or per-channel scales)", origin);
  c.block_rows = q["weight_block_size"][0].get<int64_t>();
  c.block_cols = q["weight_block_size"][1].get<int64_t>();
  LLMFT_CHECK(c.block_rows > 0 && c.block_cols > 0, Status::kFormat, "{}: quantization_config.weight_block_size [{}, {}]",
              origin, c.block_rows, c.block_cols);
  if (q.contains("modules_to_not_convert") && q["modules_to_not_convert"].is_array())
    for (const auto& m : q["modules_to_not_convert"]) c.modules_to_not_convert.push_back(m.get<std::string>());
  return c;
}

std::string fp8_scale_name(const std::string& weight_name) { return weight_name + "_scale_inv"; }

std::vector<float> dequantize_fp8_block(const TensorView& w, const TensorView& s, const Fp8BlockConfig& c,
                                        const std::string& origin) {
  LLMFT_CHECK(w.dtype == DType::kF8E4M3 && w.shape.size() == 2, Status::kFormat,
              "{}: tensor \"{}\" is {} of {} dims; an FP8 block weight is F8_E4M3 [out, in]", origin, w.name,
              dtype_name(w.dtype), w.shape.size());
  const int64_t rows = w.shape[0], cols = w.shape[1];
  const int64_t br = (rows + c.block_rows - 1) / c.block_rows, bc = (cols + c.block_cols - 1) / c.block_cols;
  LLMFT_CHECK(s.shape == (std::vector<int64_t>{br, bc}), Status::kFormat,
              "{}: tensor \"{}\" has shape [{}]; the scales of \"{}\" [{}, {}] in blocks of [{}, {}] are [{}, {}]", origin,
              s.name, fmt::join(s.shape, ", "), w.name, rows, cols, c.block_rows, c.block_cols, br, bc);
  LLMFT_CHECK(s.dtype == DType::kF32 || s.dtype == DType::kBF16, Status::kFormat,
              "{}: tensor \"{}\" is {}; block scales are F32 or BF16", origin, s.name, dtype_name(s.dtype));
  const std::vector<float> scale = to_f32(s);
  float table[256];
  for (int b = 0; b < 256; ++b) table[b] = e4m3fn_to_f32(static_cast<uint8_t>(b));
  std::vector<float> out(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    const float* srow = scale.data() + (i / c.block_rows) * bc;
    const uint8_t* in = w.data + i * cols;
    float* o = out.data() + i * cols;
    for (int64_t j = 0; j < cols; ++j) {
      const uint8_t b = in[j];
      LLMFT_CHECK((b & 0x7F) != 0x7F, Status::kFormat, "{}: tensor \"{}\" holds a NaN byte at [{}, {}]", origin, w.name, i, j);
      o[j] = table[b] * srow[j / c.block_cols];
    }
  }
  return out;
}

}  // namespace llmft::io
