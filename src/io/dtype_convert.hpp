// Host conversions between the floating-point formats of weight files: F32 <-> BF16 (round to nearest even, as
// torch's .to(torch.bfloat16)) and F32 <-> F16 (IEEE half, round to nearest even), so exporting a merged checkpoint
// needs no libtorch.
#pragma once

#include <cstdint>
#include <vector>

#include "io/safetensors.hpp"

namespace llmft::io {

float bf16_to_f32(uint16_t v);
uint16_t f32_to_bf16(float f);
float f16_to_f32(uint16_t v);
uint16_t f32_to_f16(float f);

// The tensor's values as float32 (F32, BF16 or F16; anything else is an Error naming the tensor).
std::vector<float> to_f32(const TensorView& t);
// Whether every value of a floating-point tensor is finite (no NaN, no infinity), read in place; integer tensors are.
bool all_finite(const TensorView& t);
// Float values encoded as `dtype` (F32, BF16 or F16).
std::vector<uint8_t> from_f32(const std::vector<float>& v, DType dtype);

}  // namespace llmft::io
