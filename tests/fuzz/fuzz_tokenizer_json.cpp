// Fuzzes the tokenizer.json loader: any bytes either load or raise llmft::Error, never crash; a loaded tokenizer
// must then encode and decode without crashing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "llmft/error.hpp"
#include "llmft/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string json(reinterpret_cast<const char*>(data), size);
  try {
    auto tok = llmft::Tokenizer::from_json(json, "", "fuzz/tokenizer.json");
    auto ids = tok.encode("Hello, world! 12345 <s> \xF0\x9F\x98\x80 \xFF", true);
    (void)tok.decode(ids, false);
    (void)tok.decode({0, 1, 2, 3, -1, 1 << 30}, true);
  } catch (const llmft::Error&) {
  }
  return 0;
}
