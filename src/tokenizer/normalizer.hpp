// Normalizers of tokenizer.json ("normalizer"): NFC/NFD/NFKC/NFKD, Lowercase, Strip, StripAccents, Replace,
// Prepend, BertNormalizer and Sequence, with Hugging Face's semantics. Each one rewrites a whole text segment (the
// text between two added tokens) in place.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace llmft::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& s) const = 0;
};

// Builds the normalizer a tokenizer.json section describes (null -> nullptr). Unknown types are an error naming
// the type and `where` (e.g. "tokenizer.json: normalizer.normalizers[1]").
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where);

// Unicode normalization forms through utf8proc (exposed for tests).
std::string unicode_normalize(const std::string& s, const std::string& form);

}  // namespace llmft::tok
