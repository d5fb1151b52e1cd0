// Fuzzes the SentencePiece tokenizer.model reader (protobuf): any bytes convert or raise llmft::Error.
#include <cstdint>
#include <string>

#include "llmft/error.hpp"
#include "tokenizer/sentencepiece.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    (void)llmft::tok::sentencepiece_to_tokenizer_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz.model");
  } catch (const llmft::Error&) {
  }
  return 0;
}
