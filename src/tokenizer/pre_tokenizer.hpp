// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): Split (Regex or String pattern, all five delimiter
// behaviours, invert), ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer and
// Sequence, with Hugging Face's semantics. Each one replaces every piece of a list by the pieces it splits it into;
// empty pieces are dropped, as Hugging Face does.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/pieces.hpp"

namespace llmft::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void apply(PieceList& pieces, PieceArena& arena) const = 0;
  // The ByteLevel pre-tokenizer maps bytes to its printable alphabet; llmft does not materialize that mapping:
  // when ByteLevel is the last step the BPE model works on raw bytes instead (same ids, no copies).
  virtual bool is_byte_level() const { return false; }
};

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where);

// Set to true before loading a tokenizer to force the PCRE2 path for patterns FastSplit implements (tests and
// benchmarks compare the two). Not thread-safe; load-time only.
bool& fast_split_disabled();

// The pattern ByteLevel(use_regex=true) splits with (GPT-2's).
extern const char* const kGpt2Pattern;

}  // namespace llmft::tok
