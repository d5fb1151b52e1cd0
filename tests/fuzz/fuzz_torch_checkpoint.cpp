// Fuzzes the torch.save reader (zip archive + restricted pickle machine): any bytes either open as a checkpoint whose
// every tensor view lies inside the file, or raise llmft::Error; no opcode or global outside a state dict's runs.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "io/torch_checkpoint.hpp"
#include "llmft/error.hpp"
#include "util/file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/llmft-fuzz-pth-" + std::to_string(getpid()) + ".pth";
  llmft::write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(data), size));
  try {
    llmft::io::TorchCheckpointFile f(path);
    uint64_t sum = 0;
    for (const auto& t : f.tensors()) {
      // Every byte of every view is readable (ASan reports a view past the mapping).
      for (size_t i = 0; i < t.nbytes; ++i) sum += t.data[i];
    }
    (void)sum;
  } catch (const llmft::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
