// Fuzzes encoding: arbitrary bytes (invalid UTF-8 included) through a real byte-level tokenizer (Llama 3.1 from
// $LLMFT_TEST_DATA, else a small built-in one). Invariants: no crash; decode(encode(x)) == repair(x), since
// byte-level BPE without a normalizer loses nothing.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "llmft/tokenizer.hpp"
#include "tokenizer/unicode.hpp"
#include "util/file.hpp"
#include "util/utf8.hpp"

namespace {
const char* kFallback = R"({"added_tokens": [{"id": 256, "content": "<eos>", "special": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}, "behavior": "Isolated", "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "vocab": {}, "merges": []}})";

std::unique_ptr<llmft::Tokenizer> make() {
  const char* dir = std::getenv("LLMFT_TEST_DATA");
  std::string path = std::string(dir ? dir : "../shared/data") + "/tokenizers/llama3_1/tokenizer.json";
  if (llmft::file_exists(path)) return std::make_unique<llmft::Tokenizer>(llmft::Tokenizer::from_file(path));
  // All 256 bytes in the vocabulary (no merges), so every input is representable.
  auto j = nlohmann::json::parse(kFallback);
  const auto& alphabet = llmft::tok::byte_level_alphabet();
  for (int b = 0; b < 256; ++b) j["model"]["vocab"][alphabet.byte_to_utf8[b]] = b;
  return std::make_unique<llmft::Tokenizer>(llmft::Tokenizer::from_json(j.dump()));
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::unique_ptr<llmft::Tokenizer> tok = make();
  std::string text(reinterpret_cast<const char*>(data), size);
  auto ids = tok->encode(text, false);
  std::string back = tok->decode(ids, false);
  if (back != llmft::utf8::repair(text)) std::abort();
  std::vector<std::pair<uint32_t, uint32_t>> offsets;
  auto ids2 = tok->encode_with_offsets(text, true, offsets);
  if (offsets.size() != ids2.size()) std::abort();
  return 0;
}
