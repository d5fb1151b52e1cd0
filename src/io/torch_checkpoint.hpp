// PyTorch's torch.save files (what Meta's download script delivers as consolidated.NN.pth): a zip archive holding
// <archive>/data.pkl (a pickle of the state dict), <archive>/data/<key> (each storage's raw bytes, little-endian) and
// <archive>/byteorder. Read without running the pickle: a small pickle machine that knows only the opcodes and the
// globals a tensor state dict uses (collections.OrderedDict, torch._utils._rebuild_tensor_v2 /
// _rebuild_parameter, the torch.<Type>Storage classes) and refuses any other global or opcode by name, so a
// hostile file can never run code. The archive is memory-mapped; stored (uncompressed) entries, ZIP64 included.
//
// Tensors come out as borrowed views of the mapping (no copy): each must be contiguous in its storage (a row-major
// view, storage offset allowed), which is what torch.save of a state dict writes; nested dicts are flattened with
// "." between keys; values that are not tensors (ints, strings) are skipped. Every malformed or unexpected part is an
// Error naming the file, and the entry, key or opcode.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "util/file.hpp"

namespace llmft::io {

class TorchCheckpointFile {
 public:
  explicit TorchCheckpointFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  // Throws Error(kNotFound) naming the file and the tensor.
  const TensorView& get(const std::string& name) const;
  const std::vector<TensorView>& tensors() const { return tensors_; }  // in the pickle's order

 private:
  MappedFile file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
};

// A zip archive's stored entries (name -> bytes within `data`), as this reader sees them (exposed for tests).
std::map<std::string, std::pair<const uint8_t*, size_t>> zip_stored_entries(const uint8_t* data, size_t size,
                                                                            const std::string& what);

}  // namespace llmft::io
