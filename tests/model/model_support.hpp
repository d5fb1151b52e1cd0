// Helpers for model tests: small random configurations, saving a Decoder's tensors as safetensors, running the
// Hugging Face reference (tests/model/hf_reference.py: transformers' model classes and PEFT, in the project's
// Python environment).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "model/decoder.hpp"
#include "test_support.hpp"

namespace llmft::test {

inline io::DType to_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return io::DType::kF32;
    case at::kDouble: return io::DType::kF64;
    case at::kBFloat16: return io::DType::kBF16;
    case at::kLong: return io::DType::kI64;
    default: throw std::runtime_error("unexpected dtype");
  }
}

// Writes tensors (kept alive by `keep`) to a safetensors file.
inline void save_tensors(const std::string& path, const std::map<std::string, at::Tensor>& tensors) {
  std::vector<io::TensorView> views;
  std::vector<at::Tensor> keep;
  for (const auto& [name, t0] : tensors) {
    at::Tensor t = t0.contiguous();
    keep.push_back(t);
    io::TensorView v;
    v.name = name;
    v.dtype = to_dtype(t.scalar_type());
    v.shape.assign(t.sizes().begin(), t.sizes().end());
    v.data = static_cast<const uint8_t*>(t.data_ptr());
    v.nbytes = static_cast<size_t>(t.numel()) * t.element_size();
    views.push_back(v);
  }
  io::write_safetensors(path, views);
}

// What tests/model/hf_reference.py reads: config.json, the base weights (model.safetensors) and the LoRA tensors
// (adapter.safetensors) of a decoder, by Hugging Face / PEFT name.
inline void save_for_reference(const model::Decoder& m, const std::string& dir) {
  std::map<std::string, at::Tensor> base, adapter;
  m.for_each_parameter([&](const model::ParamSlot& s, const at::Tensor& t, bool) {
    (s.name.find(".lora_") != std::string::npos ? adapter : base)[s.name] = t;
  });
  save_tensors(dir + "/model.safetensors", base);
  if (!adapter.empty()) save_tensors(dir + "/adapter.safetensors", adapter);
  write_file_atomic(dir + "/config.json", m.config().to_json().dump());
}

inline at::Tensor to_tensor(const io::TensorView& v) {
  at::ScalarType t = v.dtype == io::DType::kF64    ? at::kDouble
                     : v.dtype == io::DType::kI64  ? at::kLong
                     : v.dtype == io::DType::kBF16 ? at::kBFloat16
                                                   : at::kFloat;
  return at::from_blob(const_cast<uint8_t*>(v.data), v.shape, at::TensorOptions().dtype(t)).clone();
}

// max |a - b| / max |b|
inline double rel_err(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor ad = a.to(at::kDouble), bd = b.to(at::kDouble);
  double denom = bd.abs().max().item<double>();
  double num = (ad - bd).abs().max().item<double>();
  return denom == 0 ? num : num / denom;
}

// Runs a Python script of the repository (in the project's environment) on a case folder.
inline bool run_reference(const std::string& dir) { return run_python_script("tests/model/hf_reference.py", dir); }

}  // namespace llmft::test
