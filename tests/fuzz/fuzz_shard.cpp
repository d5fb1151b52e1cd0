// Fuzzes the token-shard reader: any bytes either open as a shard whose every row and document then reads within
// bounds, or raise llmft::Error. The tokenizer fingerprint expected is the one the input's header names, so that
// the fuzzer gets past the identity check into the structure.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "data/shards.hpp"
#include "llmft/error.hpp"
#include "util/file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/llmft-fuzz-shard-" + std::to_string(getpid()) + ".tok";
  llmft::write_file_atomic(path, std::string_view(reinterpret_cast<const char*>(data), size));
  llmft::data::ShardIdentity id;
  if (size >= 136) {
    for (size_t i = 72; i < 136 && data[i] != 0; ++i) id.tokenizer += static_cast<char>(data[i]);
  }
  try {
    llmft::data::ShardReader r(path, id);
    std::vector<int32_t> ids;
    std::vector<uint8_t> trained;
    for (int64_t row = 0; row < r.rows(); ++row) {
      auto [a, b] = r.row(row);
      for (int64_t doc = a; doc < b; ++doc) r.document(doc, ids, trained);
    }
  } catch (const llmft::Error&) {
  }
  std::remove(path.c_str());
  return 0;
}
