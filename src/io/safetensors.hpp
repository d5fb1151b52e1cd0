// safetensors (Hugging Face's tensor file format): an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then the raw tensor bytes.
//
// Reading maps the file and validates the whole header before any tensor is handed out: header length within the
// 100 MB limit and the file, a JSON object, known dtypes, non-negative shapes whose element count times the dtype
// size equals the byte range (no overflow), offsets in bounds, tensors tiling the data region with no gap and no
// overlap, and string-only metadata. A truncated, oversized or hostile file is an Error naming the file and tensor.
// Writing produces files Hugging Face's reader accepts: header padded with spaces to 8 bytes, metadata strings only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "util/file.hpp"

namespace llmft::io {

enum class DType : uint8_t { kBool, kU8, kI8, kI16, kU16, kF16, kBF16, kI32, kU32, kF32, kF64, kI64, kU64, kF8E4M3, kF8E5M2 };

size_t dtype_size(DType d);
const char* dtype_name(DType d);  // "F32", "BF16", ...
bool parse_dtype(const std::string& name, DType* out);

struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // borrowed: valid while the file (or the caller's buffer) lives
  size_t nbytes = 0;
  int64_t numel() const;
};

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // Hugging Face's limit

class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Throws Error(kNotFound) naming the file and the tensor.
  const TensorView& get(const std::string& name) const;
  const std::vector<TensorView>& tensors() const { return tensors_; }  // in file order
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // The tensor's pages leave this process's resident set (MappedFile::release); its view stays valid.
  void release(const TensorView& t) const { file_.release(t.data, t.nbytes); }

 private:
  MappedFile file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (their bytes are copied from the views) to `path` (atomically unless mode says in place).
void write_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                       const std::map<std::string, std::string>& metadata = {}, WriteMode mode = WriteMode::kAtomic);

// The bytes write_safetensors would produce for this header (exposed for tests).
std::string safetensors_header(const std::vector<TensorView>& tensors, const std::map<std::string, std::string>& metadata);

}  // namespace llmft::io
