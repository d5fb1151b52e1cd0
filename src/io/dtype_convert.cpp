#include "io/dtype_convert.hpp"

#include <cmath>
#include <cstring>

#include "util/check.hpp"

namespace llmft::io {

float bf16_to_f32(uint16_t v) {
  uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7FFF + ((u >> 16) & 1);  // round to nearest even
  return static_cast<uint16_t>(u >> 16);
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalize
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) {
        man <<= 1;
        --exp;
      }
      man &= 0x3FF;
      u = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7F800000 | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  int32_t exp = static_cast<int32_t>((u >> 23) & 0xFF) - 127 + 15;
  uint32_t man = u & 0x7FFFFF;
  if (((u >> 23) & 0xFF) == 0xFF) return static_cast<uint16_t>(sign | 0x7C00 | (man ? 0x200 : 0));
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7C00);  // overflow -> inf
  if (exp <= 0) {                                               // subnormal or zero
    if (exp < -10) return static_cast<uint16_t>(sign);
    man |= 0x800000;
    uint32_t shift = static_cast<uint32_t>(14 - exp);
    uint32_t half = man >> shift, rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  uint32_t half = sign | (static_cast<uint32_t>(exp) << 10) | (man >> 13);
  uint32_t rem = man & 0x1FFF;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) ++half;  // may carry into the exponent: still correct
  return static_cast<uint16_t>(half);
}

std::vector<float> to_f32(const TensorView& t) {
  size_t n = static_cast<size_t>(t.numel());
  std::vector<float> out(n);
  switch (t.dtype) {
    case DType::kF32: std::memcpy(out.data(), t.data, n * 4); break;
    case DType::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, t.data + 2 * i, 2);
        out[i] = bf16_to_f32(v);
      }
      break;
    case DType::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, t.data + 2 * i, 2);
        out[i] = f16_to_f32(v);
      }
      break;
    default: LLMFT_FAIL(Status::kFormat, "tensor \"{}\" has dtype {}; expected F32, BF16 or F16", t.name, dtype_name(t.dtype));
  }
  return out;
}

std::vector<uint8_t> from_f32(const std::vector<float>& v, DType dtype) {
  std::vector<uint8_t> out(v.size() * dtype_size(dtype));
  for (size_t i = 0; i < v.size(); ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      uint16_t h = dtype == DType::kBF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      LLMFT_ASSERT(dtype == DType::kBF16 || dtype == DType::kF16);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

bool all_finite(const TensorView& t) {
  const size_t n = t.nbytes;
  switch (t.dtype) {
    case DType::kF32:
      for (size_t i = 0; i + 4 <= n; i += 4) {
        uint32_t b;
        std::memcpy(&b, t.data + i, 4);
        if ((b & 0x7F800000u) == 0x7F800000u) return false;
      }
      return true;
    case DType::kF64:
      for (size_t i = 0; i + 8 <= n; i += 8) {
        uint64_t b;
        std::memcpy(&b, t.data + i, 8);
        if ((b & 0x7FF0000000000000ull) == 0x7FF0000000000000ull) return false;
      }
      return true;
    case DType::kBF16:
    case DType::kF16: {
      const uint16_t mask = t.dtype == DType::kBF16 ? 0x7F80 : 0x7C00;
      for (size_t i = 0; i + 2 <= n; i += 2) {
        uint16_t b;
        std::memcpy(&b, t.data + i, 2);
        if ((b & mask) == mask) return false;
      }
      return true;
    }
    default: return true;
  }
}

}  // namespace llmft::io
