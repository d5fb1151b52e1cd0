#include "model/stored_weight.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <mutex>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include "io/fp8_block.hpp"
#include "util/check.hpp"

namespace llmft::model {

const char* format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::kDense: return "dense";
    case WeightFormat::kNf4: return "nf4";
    case WeightFormat::kFp8Block: return "fp8";
  }
  return "?";
}

const at::Tensor& nf4_levels() {
  // The normal-float levels of QLoRA (Dettmers et al. 2023): quantiles of N(0, 1) scaled to [-1, 1], with an exact
  // zero; the fp32 values bitsandbytes uses.
  static const at::Tensor t = at::tensor(std::vector<float>{
      -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f, -0.28444138169288635f,
      -0.18477343022823334f, -0.09105003625154495f, 0.0f, 0.07958029955625534f, 0.16093020141124725f,
      0.24611230194568634f, 0.33791524171829224f, 0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f,
      1.0f});
  return t;
}

const at::Tensor& dynamic_map() {
  // bitsandbytes' signed dynamic map (8 bits, up to 7 exponent bits): for e = 0..6, 2^e fractions in [0.1, 1]
  // (the midpoints of 2^e + 1 evenly spaced boundaries, fp32) times 10^(e - 6), both signs; then 0 and 1; sorted.
  // The products are fp32 (a Python scalar times an fp32 tensor), so they are computed here the same way.
  static const at::Tensor t = [] {
    std::vector<at::Tensor> parts;
    for (int e = 0; e < 7; ++e) {
      at::Tensor b = at::linspace(0.1, 1.0, (int64_t{1} << e) + 1, at::kFloat);
      at::Tensor means = (b.narrow(0, 0, b.size(0) - 1) + b.narrow(0, 1, b.size(0) - 1)) / 2.0;
      const double scale = e == 6 ? 1.0 : std::pow(10.0, e - 6);
      parts.push_back(means * scale);
      parts.push_back(means * -scale);
    }
    parts.push_back(at::tensor(std::vector<float>{0.0f, 1.0f}));
    return std::get<0>(at::sort(at::cat(parts)));
  }();
  return t;
}

int64_t StoredWeight::bytes() const {
  int64_t n = data.numel() * data.element_size();
  for (const at::Tensor* t : {&absmax, &nested_absmax, &nested_code, &scale})
    if (t->defined()) n += t->numel() * t->element_size();
  return n;
}

namespace {

StoredWeight header(const std::string& name, const at::Tensor& w, WeightFormat format) {
  StoredWeight s;
  s.name = name;
  s.shape = {w.size(0), w.size(1)};
  s.format = format;
  return s;
}

// The fp32 absmax of every NF4 block, undoing the double quantisation: code[q] * nested_absmax + offset.
at::Tensor nf4_block_scales(const StoredWeight& w, int64_t first, int64_t count) {
  if (w.absmax.scalar_type() == at::kFloat) return w.absmax.narrow(0, first, count);
  at::Tensor q = w.absmax.narrow(0, first, count).to(at::kLong);
  at::Tensor outer = at::floor_divide(at::arange(first, first + count, w.absmax.options().dtype(at::kLong)),
                                      w.nested_blocksize);
  return w.nested_code.index_select(0, q) * w.nested_absmax.index_select(0, outer) + w.offset;
}

// Elements [e0, e0 + count) of the flattened weight, dequantised into `out`: level[q] * absmax in fp32, then one
// rounding to Out (float, or bfloat16 to nearest even as ATen rounds).
template <typename Out>
void nf4_fill(const StoredWeight& w, int64_t e0, int64_t count, Out* out) {
  const int64_t bs = w.blocksize, e1 = e0 + count, first = e0 / bs, last = (e1 - 1) / bs;
  const at::Tensor scales = nf4_block_scales(w, first, last - first + 1).contiguous();
  const float* sc = scales.data_ptr<float>();
  const float* lv = nf4_levels().data_ptr<float>();
  const uint8_t* bytes = w.data.data_ptr<uint8_t>();
  // Block by block, a byte (two values, the first in the high nibble) at a time.
  at::parallel_for(first, last + 1, std::max<int64_t>(1, (1 << 16) / bs), [&](int64_t blo, int64_t bhi) {
    for (int64_t k = blo; k < bhi; ++k) {
      const float scale = sc[k - first];
      const int64_t hi = std::min(e1, (k + 1) * bs);
      int64_t e = std::max(e0, k * bs);
      if (e & 1) {  // the block starts in a byte's low nibble
        out[e - e0] = static_cast<Out>(lv[bytes[e >> 1] & 15] * scale);
        ++e;
      }
      for (; e + 1 < hi; e += 2) {
        const uint8_t b = bytes[e >> 1];
        out[e - e0] = static_cast<Out>(lv[b >> 4] * scale);
        out[e + 1 - e0] = static_cast<Out>(lv[b & 15] * scale);
      }
      if (e < hi) out[e - e0] = static_cast<Out>(lv[bytes[e >> 1] >> 4] * scale);
    }
  });
}

// Rows [start, start + n): e4m3(w) * the scale of its block, as torch computes w.to(float32) * scale.
template <typename Out>
void fp8_fill(const StoredWeight& w, int64_t start, int64_t n, Out* out) {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int b = 0; b < 256; ++b) t[static_cast<size_t>(b)] = io::e4m3fn_to_f32(static_cast<uint8_t>(b));
    return t;
  }();
  const int64_t I = w.cols(), B0 = w.block_rows, B1 = w.block_cols, blocks = w.scale.size(1);
  const float* sc = w.scale.data_ptr<float>();
  const uint8_t* bytes = w.data.data_ptr<uint8_t>();
  at::parallel_for(0, n, std::max<int64_t>(1, (1 << 16) / std::max<int64_t>(1, I)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r) {
      const float* srow = sc + ((start + r) / B0) * blocks;
      const uint8_t* in = bytes + (start + r) * I;
      Out* o = out + r * I;
      for (int64_t c = 0; c < blocks; ++c) {
        const float scale = srow[c];
        for (int64_t j = c * B1, end = std::min(I, j + B1); j < end; ++j) o[j] = static_cast<Out>(table[in[j]] * scale);
      }
    }
  });
}

int64_t tile_rows(const StoredWeight& w, int64_t tile_elements) {
  if (tile_elements <= 0) tile_elements = int64_t{1} << 22;
  int64_t rows = std::max<int64_t>(1, tile_elements / std::max<int64_t>(1, w.cols()));
  // FP8 tiles start on block rows so that no scale row is expanded twice.
  if (w.format == WeightFormat::kFp8Block && rows > w.block_rows) rows -= rows % w.block_rows;
  return std::min(rows, w.rows());
}

}  // namespace

at::Tensor StoredWeight::dequantize_rows(int64_t start, int64_t n, at::ScalarType dtype) const {
  LLMFT_CHECK(defined() && start >= 0 && n > 0 && start + n <= rows(), Status::kInternal,
              "{}: rows [{}, {}) of a stored weight of {} rows", name, start, start + n, shape.empty() ? 0 : rows());
  if (format == WeightFormat::kDense) return data.narrow(0, start, n).to(dtype);
  if (!data.device().is_cpu()) return dequantize_rows_ops(start, n, dtype);
  // Written straight into the tile in bf16 or fp32 (other dtypes convert from fp32).
  const bool bf16 = dtype == at::kBFloat16;
  at::Tensor out = at::empty({n, cols()}, bf16 ? at::kBFloat16 : at::kFloat);
  if (format == WeightFormat::kNf4) {
    if (bf16) nf4_fill(*this, start * cols(), n * cols(), out.data_ptr<at::BFloat16>());
    else nf4_fill(*this, start * cols(), n * cols(), out.data_ptr<float>());
  } else {
    if (bf16) fp8_fill(*this, start, n, out.data_ptr<at::BFloat16>());
    else fp8_fill(*this, start, n, out.data_ptr<float>());
  }
  return bf16 || dtype == at::kFloat ? out : out.to(dtype);
}

namespace {
// The NF4 levels on `device`, copied there once.
const at::Tensor& nf4_levels_on(at::Device device) {
  if (device.is_cpu()) return nf4_levels();
  static std::mutex mu;
  static std::map<std::string, at::Tensor> copies;
  std::lock_guard<std::mutex> lock(mu);
  at::Tensor& t = copies[device.str()];
  if (!t.defined()) t = nf4_levels().to(device);
  return t;
}
}  // namespace

at::Tensor StoredWeight::dequantize_rows_ops(int64_t start, int64_t n, at::ScalarType dtype) const {
  LLMFT_CHECK(defined() && start >= 0 && n > 0 && start + n <= rows(), Status::kInternal,
              "{}: rows [{}, {}) of a stored weight of {} rows", name, start, start + n, shape.empty() ? 0 : rows());
  const int64_t I = cols();
  const at::TensorOptions longs = data.options().dtype(at::kLong);
  at::Tensor w;  // (n, I) fp32
  if (format == WeightFormat::kDense) return data.narrow(0, start, n).to(dtype);
  if (format == WeightFormat::kNf4) {
    const int64_t e0 = start * I, count = n * I, bs = blocksize;
    const int64_t b0 = e0 / 2, b1 = (e0 + count + 1) / 2;                         // the bytes holding them
    at::Tensor bytes = data.narrow(0, b0, b1 - b0).to(at::kLong);                   // (bytes)
    at::Tensor codes = at::stack({bytes.bitwise_right_shift(4), bytes.bitwise_and(15)}, 1)
                           .view({-1}).narrow(0, e0 - 2 * b0, count);                 // (count): high nibble first
    const int64_t first = e0 / bs, last = (e0 + count - 1) / bs;
    at::Tensor scales = nf4_block_scales(*this, first, last - first + 1);           // (blocks) fp32
    at::Tensor block = at::floor_divide(at::arange(e0, e0 + count, longs), bs) - first;
    w = (nf4_levels_on(data.device()).index_select(0, codes) * scales.index_select(0, block)).view({n, I});
  } else {
    at::Tensor values = data.narrow(0, start, n).view(at::kFloat8_e4m3fn).to(at::kFloat);        // (n, I)
    at::Tensor r = at::floor_divide(at::arange(start, start + n, longs), block_rows);
    at::Tensor c = at::floor_divide(at::arange(0, I, longs), block_cols);
    w = values * scale.index_select(0, r).index_select(1, c);
  }
  return w.to(dtype);
}

StoredWeight StoredWeight::to(at::Device device) const {
  StoredWeight s = *this;
  for (at::Tensor* t : {&s.data, &s.absmax, &s.nested_absmax, &s.nested_code, &s.scale})
    if (t->defined()) *t = t->to(device);
  return s;
}

StoredWeight quantize_nf4(const std::string& name, const at::Tensor& w, int64_t blocksize, bool double_quant) {
  LLMFT_CHECK(w.dim() == 2 && blocksize > 0, Status::kInvalidArgument, "{}: NF4 stores (out, in) weights", name);
  c10::InferenceMode guard;
  StoredWeight s = header(name, w, WeightFormat::kNf4);
  s.blocksize = blocksize;
  // As bitsandbytes' quantize_4bit: full blocks are multiplied by the reciprocal of their absmax, a last partial block
  // is divided by its absmax (clamped to 1e-38, which is what it stores); then each value takes the level whose
  // midpoints bracket it (a value on a midpoint takes the lower level), all in fp32. Loops over the weight's own
  // values: loading a model quantises one tensor after another, and no temporary the size of a tensor is made.
  const at::Tensor a = w.contiguous();
  const int64_t n = a.numel(), blocks = (n + blocksize - 1) / blocksize, full = n / blocksize;
  at::Tensor am = at::empty({blocks}, at::kFloat);  // (blocks) fp32
  s.data = at::empty({(n + 1) / 2}, at::kByte);
  float bounds[15];
  const float* lv = nf4_levels().data_ptr<float>();
  for (int i = 0; i < 15; ++i) bounds[i] = (lv[i] + lv[i + 1]) / 2;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.scalar_type(), "quantize_nf4", [&] {
    const scalar_t* x = a.data_ptr<scalar_t>();
    float* m = am.data_ptr<float>();
    at::parallel_for(0, blocks, 256, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        float v = 0;
        for (int64_t e = b * blocksize, end = std::min(n, e + blocksize); e < end; ++e)
          v = std::max(v, std::fabs(static_cast<float>(x[e])));
        m[b] = b < full ? v : std::max(v, 1e-38f);
      }
    });
    // How many midpoints lie below the clamped value (a binary search over the 15 sorted midpoints).
    auto level = [&](float v) {
      const float c = std::min(1.0f, std::max(-1.0f, v));
      int q = 0;
      q += bounds[q + 7] < c ? 8 : 0;
      q += bounds[q + 3] < c ? 4 : 0;
      q += bounds[q + 1] < c ? 2 : 0;
      q += bounds[q] < c ? 1 : 0;
      return static_cast<uint8_t>(q);
    };
    uint8_t* out = s.data.data_ptr<uint8_t>();
    // Block by block; a byte holds two values (the first in the high nibble), so blocks of an odd size, which share
    // bytes, run in order on one thread.
    at::parallel_for(0, blocks, blocksize % 2 == 0 ? 1024 : blocks, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        const float r = 1.0f / std::max(m[b], 1e-38f);
        int64_t e = b * blocksize;
        const int64_t end = std::min(n, e + blocksize);
        if (b < full && blocksize % 2 == 0)  // whole bytes: two values at a time
          for (; e < end; e += 2)
            out[e >> 1] = static_cast<uint8_t>(level(static_cast<float>(x[e]) * r) << 4 |
                                               level(static_cast<float>(x[e + 1]) * r));
        for (; e < end; ++e) {
          const uint8_t q = level(b < full ? static_cast<float>(x[e]) * r : static_cast<float>(x[e]) / m[b]);
          if (e & 1) out[e >> 1] |= q;
          else out[e >> 1] = static_cast<uint8_t>(q << 4);
        }
      }
    });
    if (n % 2) out[n >> 1] |= level(0.0f);  // an odd count is padded with a zero, as bitsandbytes pads it
  });
  if (!double_quant) {
    s.absmax = am.contiguous();
    return s;
  }
  // Double quantisation, as bitsandbytes' CPU quantize_blockwise: the mean is subtracted; each block of 256 is
  // divided by its absmax and takes the nearest value of the dynamic map (searched with its first value read as -1;
  // a tie takes the lower index).
  s.offset = am.mean().item<float>();
  at::Tensor centred = (am - s.offset).contiguous();
  const int64_t nb = centred.numel(), nbs = s.nested_blocksize;
  s.nested_code = dynamic_map().clone();
  std::vector<float> code(s.nested_code.data_ptr<float>(), s.nested_code.data_ptr<float>() + 256);
  code[0] = -1.0f;
  const float* c = centred.data_ptr<float>();
  s.absmax = at::empty({nb}, at::kByte);
  s.nested_absmax = at::empty({(nb + nbs - 1) / nbs}, at::kFloat);
  uint8_t* out = s.absmax.data_ptr<uint8_t>();
  float* outer = s.nested_absmax.data_ptr<float>();
  for (int64_t b0 = 0; b0 < nb; b0 += nbs) {
    const int64_t b1 = std::min(nb, b0 + nbs);
    float m = 0;
    for (int64_t i = b0; i < b1; ++i) m = std::fmax(m, std::fabs(c[i]));
    outer[b0 / nbs] = m;
    for (int64_t i = b0; i < b1; ++i) {
      const float v = m > 0 ? c[i] / m : 0.0f;
      // The last index whose value is <= v, then the nearer of it and the next.
      int64_t k = std::upper_bound(code.begin(), code.end(), v) - code.begin() - 1;
      k = std::clamp<int64_t>(k, 0, 255);
      if (k < 255 && std::fabs(v - code[static_cast<size_t>(k + 1)]) < std::fabs(v - code[static_cast<size_t>(k)])) ++k;
      out[i] = static_cast<uint8_t>(k);
    }
  }
  return s;
}

StoredWeight quantize_fp8_block(const std::string& name, const at::Tensor& w, int64_t block_rows, int64_t block_cols) {
  LLMFT_CHECK(w.dim() == 2 && block_rows > 0 && block_cols > 0, Status::kInvalidArgument,
              "{}: FP8 blocks store (out, in) weights", name);
  c10::InferenceMode guard;
  StoredWeight s = header(name, w, WeightFormat::kFp8Block);
  s.block_rows = block_rows;
  s.block_cols = block_cols;
  const int64_t O = w.size(0), I = w.size(1);
  const int64_t R = (O + block_rows - 1) / block_rows, C = (I + block_cols - 1) / block_cols;
  // Each block's scale = absmax / 448 (E4M3FN's largest finite value; 1 for a block of zeros); each value w / scale,
  // rounded to the nearest E4M3FN value. One pass per block row, no temporary the size of the tensor.
  const at::Tensor a = w.contiguous();
  s.scale = at::empty({R, C}, at::kFloat);
  s.data = at::empty({O, I}, at::kByte);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.scalar_type(), "quantize_fp8_block", [&] {
    const scalar_t* x = a.data_ptr<scalar_t>();
    float* sc = s.scale.data_ptr<float>();
    uint8_t* out = s.data.data_ptr<uint8_t>();
    at::parallel_for(0, R, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t br = lo; br < hi; ++br) {
        const int64_t r0 = br * block_rows, r1 = std::min(O, r0 + block_rows);
        for (int64_t bc = 0; bc < C; ++bc) {
          const int64_t c0 = bc * block_cols, c1 = std::min(I, c0 + block_cols);
          float amax = 0;
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = c0; c < c1; ++c) amax = std::max(amax, std::fabs(static_cast<float>(x[r * I + c])));
          const float scale = amax > 0 ? amax / 448.0f : 1.0f;
          sc[br * C + bc] = scale;
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t c = c0; c < c1; ++c)
              out[r * I + c] = c10::Float8_e4m3fn(std::clamp(static_cast<float>(x[r * I + c]) / scale, -448.0f, 448.0f)).x;
        }
      }
    });
  });
  return s;
}

StoredWeight store_dense(const std::string& name, const at::Tensor& w, at::ScalarType dtype) {
  StoredWeight s = header(name, w, WeightFormat::kDense);
  s.data = w.to(dtype).contiguous();
  return s;
}

namespace {
const io::TensorView& need(const TensorLookup& lookup, const std::string& name, const std::string& origin,
                           const std::string& of) {
  const io::TensorView* t = lookup(name);
  LLMFT_CHECK(t != nullptr, Status::kNotFound, "{}: the 4-bit weight \"{}\" has no \"{}\" beside it", origin, of, name);
  return *t;
}

at::Tensor f32_tensor(const io::TensorView& t, const std::string& origin) {
  LLMFT_CHECK(t.dtype == io::DType::kF32, Status::kFormat, "{}: tensor \"{}\" is {}, not F32", origin, t.name,
              io::dtype_name(t.dtype));
  return at::from_blob(const_cast<uint8_t*>(t.data), t.shape, at::kFloat).reshape({-1}).clone();
}

// A weight that transformers saved quantised with bitsandbytes (NF4): the packed bytes and their quant state.
}  // namespace

StoredWeight read_bnb_nf4(const io::TensorView& t, const TensorLookup& lookup, const std::string& origin,
                          std::vector<const io::TensorView*>* used) {
  const std::string& n = t.name;
  auto get = [&](const std::string& suffix) -> const io::TensorView& {
    const io::TensorView& v = need(lookup, n + suffix, origin, n);
    used->push_back(&v);
    return v;
  };
  LLMFT_CHECK(lookup(n + ".quant_state.bitsandbytes__fp4") == nullptr, Status::kUnsupported,
              "{}: \"{}\" is bitsandbytes FP4; llmft reads NF4 (bnb_4bit_quant_type \"nf4\")", origin, n);
  const io::TensorView& state = get(".quant_state.bitsandbytes__nf4");
  nlohmann::json js;
  try {
    js = nlohmann::json::parse(std::string(reinterpret_cast<const char*>(state.data), state.nbytes));
  } catch (const std::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: tensor \"{}\" is not the JSON of a quant state: {}", origin, state.name, e.what());
  }
  LLMFT_CHECK(js.value("quant_type", std::string()) == "nf4", Status::kUnsupported, "{}: \"{}\": quant_type \"{}\", not nf4",
              origin, state.name, js.value("quant_type", std::string()));
  std::vector<int64_t> shape;
  if (js.contains("shape") && js["shape"].is_array()) shape = js["shape"].get<std::vector<int64_t>>();
  LLMFT_CHECK(shape.size() == 2 && shape[0] > 0 && shape[1] > 0, Status::kFormat,
              "{}: \"{}\" has no 2-D \"shape\"", origin, state.name);
  StoredWeight s;
  s.name = n;
  s.shape = shape;
  s.format = WeightFormat::kNf4;
  s.blocksize = js.value("blocksize", int64_t{64});
  const int64_t numel = shape[0] * shape[1], blocks = (numel + s.blocksize - 1) / s.blocksize;
  LLMFT_CHECK(t.dtype == io::DType::kU8 && t.numel() == (numel + 1) / 2, Status::kFormat,
              "{}: tensor \"{}\" is {} of {} elements; {} NF4 values pack into {} U8", origin, n, io::dtype_name(t.dtype),
              t.numel(), numel, (numel + 1) / 2);
  s.data = at::from_blob(const_cast<uint8_t*>(t.data), {t.numel()}, at::kByte).clone();
  const at::Tensor map = f32_tensor(get(".quant_map"), origin);
  LLMFT_CHECK(map.numel() == 16 && at::equal(map, nf4_levels()), Status::kFormat,
              "{}: \"{}.quant_map\" is not the NF4 levels", origin, n);
  const io::TensorView& absmax = get(".absmax");
  const bool nested = js.contains("nested_blocksize");
  if (!nested) {
    s.absmax = f32_tensor(absmax, origin);
  } else {
    LLMFT_CHECK(absmax.dtype == io::DType::kU8, Status::kFormat, "{}: \"{}\" is {}; double-quantised absmaxes are U8",
                origin, absmax.name, io::dtype_name(absmax.dtype));
    s.absmax = at::from_blob(const_cast<uint8_t*>(absmax.data), {absmax.numel()}, at::kByte).clone();
    s.nested_blocksize = js["nested_blocksize"].get<int64_t>();
    s.offset = js.value("nested_offset", 0.0f);
    s.nested_absmax = f32_tensor(get(".nested_absmax"), origin);
    s.nested_code = f32_tensor(get(".nested_quant_map"), origin);
    LLMFT_CHECK(s.nested_code.numel() == 256 && s.nested_blocksize > 0 &&
                    s.nested_absmax.numel() == (blocks + s.nested_blocksize - 1) / s.nested_blocksize,
                Status::kFormat, "{}: the nested quant state of \"{}\" does not match its {} blocks", origin, n, blocks);
  }
  LLMFT_CHECK(s.absmax.numel() == blocks, Status::kFormat, "{}: \"{}\" has {} values for {} blocks of {}", origin,
              absmax.name, s.absmax.numel(), blocks, s.blocksize);
  return s;
}

StoredWeight read_fp8_block(const io::TensorView& t, const TensorLookup& lookup, int64_t block_rows, int64_t block_cols,
                            const std::string& origin, std::vector<const io::TensorView*>* used) {
  LLMFT_CHECK(t.dtype == io::DType::kF8E4M3 && t.shape.size() == 2, Status::kFormat,
              "{}: tensor \"{}\" is {} of {} dims; an FP8 block weight is F8_E4M3 [out, in]", origin, t.name,
              io::dtype_name(t.dtype), t.shape.size());
  const std::vector<int64_t> shape = t.shape;
  const io::TensorView* sv = lookup(io::fp8_scale_name(t.name));
  LLMFT_CHECK(sv != nullptr, Status::kNotFound, "{}: the FP8 weight \"{}\" has no \"{}\" beside it", origin, t.name,
              io::fp8_scale_name(t.name));
  used->push_back(sv);
  StoredWeight s;
  s.name = t.name;
  s.shape = shape;
  s.format = WeightFormat::kFp8Block;
  s.block_rows = block_rows;
  s.block_cols = block_cols;
  const std::vector<int64_t> blocks = {(shape[0] + s.block_rows - 1) / s.block_rows, (shape[1] + s.block_cols - 1) / s.block_cols};
  LLMFT_CHECK(sv->shape == blocks && (sv->dtype == io::DType::kF32 || sv->dtype == io::DType::kBF16), Status::kFormat,
              "{}: tensor \"{}\" is {} [{}]; the scales of \"{}\" in blocks of [{}, {}] are F32 or BF16 [{}]", origin,
              sv->name, io::dtype_name(sv->dtype), fmt::join(sv->shape, ", "), t.name, s.block_rows, s.block_cols,
              fmt::join(blocks, ", "));
  s.scale = at::from_blob(const_cast<uint8_t*>(sv->data), sv->shape,
                          sv->dtype == io::DType::kF32 ? at::kFloat : at::kBFloat16).to(at::kFloat).contiguous();
  s.data = at::from_blob(const_cast<uint8_t*>(t.data), shape, at::kByte).clone();
  // E4M3FN's only non-finite bytes are S.1111.111 (NaN).
  at::Tensor nan = s.data.bitwise_and(0x7F).eq(0x7F);
  if (nan.any().item<bool>()) {
    at::Tensor at_ = nan.nonzero()[0];
    LLMFT_FAIL(Status::kFormat, "{}: tensor \"{}\" holds a NaN byte at [{}, {}]", origin, t.name, at_[0].item<int64_t>(),
               at_[1].item<int64_t>());
  }
  LLMFT_CHECK(at::isfinite(s.scale).all().item<bool>(), Status::kFormat,
              "{}: tensor \"{}\" holds values that are not finite (NaN or infinity)", origin, sv->name);
  return s;
}

at::Tensor stored_matmul_t(const at::Tensor& x, const StoredWeight& w, int64_t tile_elements) {
  if (w.format == WeightFormat::kDense) return at::mm(x, w.data.t());
  const int64_t O = w.rows(), step = tile_rows(w, tile_elements);
  if (step >= O) return at::mm(x, w.dequantize(x.scalar_type()).t());
  at::Tensor y = at::empty({x.size(0), O}, x.options());  // (N, O)
  for (int64_t r = 0; r < O; r += step) {
    const int64_t n = std::min(step, O - r);
    y.narrow(1, r, n).copy_(at::mm(x, w.dequantize_rows(r, n, x.scalar_type()).t()));
  }
  return y;
}

at::Tensor stored_matmul(const at::Tensor& dy, const StoredWeight& w, int64_t tile_elements) {
  if (w.format == WeightFormat::kDense) return at::mm(dy, w.data);
  const int64_t O = w.rows(), step = tile_rows(w, tile_elements);
  if (step >= O) return at::mm(dy, w.dequantize(dy.scalar_type()));
  // The tiles' partial products are summed in fp32 (a bf16 running sum would round once per tile).
  const bool wide = dy.scalar_type() == at::kFloat || dy.scalar_type() == at::kDouble;
  at::Tensor dx = at::zeros({dy.size(0), w.cols()}, dy.options().dtype(wide ? dy.scalar_type() : at::kFloat));  // (N, I)
  for (int64_t r = 0; r < O; r += step) {
    const int64_t n = std::min(step, O - r);
    at::Tensor wt = w.dequantize_rows(r, n, dy.scalar_type());
    if (wide) dx.addmm_(dy.narrow(1, r, n), wt);
    else dx.add_(at::mm(dy.narrow(1, r, n), wt));
  }
  return wide ? dx : dx.to(dy.scalar_type());
}

}  // namespace llmft::model
