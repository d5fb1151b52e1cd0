// A hand-written matcher for the split pattern of Llama 3 / 3.1 and of Qwen2 / 2.5 / 3 / DeepSeek-R1-Distill-Qwen:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,K}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// with K = 3 (Llama 3) or K = 1 (Qwen: plain \p{N}).
//
// Every character is a letter, a number, white space or "other", so some alternative matches at every position
// and the matches tile the text; next_match() returns where the match starting at `pos` ends, deciding the
// alternatives in the regex's order with the backtracking resolved by hand (see the .cpp).
//
// Proven identical to PCRE2 on the same pattern by tests/tokenizer/test_fast_split.cpp (the conformance corpus
// plus random strings over a class-covering alphabet). Performance notes: on the conformance corpus (5.7 MB,
// Llama 3.1) the PCRE2 JIT path spent most of encode time in matching; see bench/README.md for the measured gain.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace llmft::tok {

class FastSplit {
 public:
  // The pattern strings this matcher implements; returns nullptr-like (false) for any other pattern.
  static bool recognizes(const std::string& pattern, int* max_digits);
  explicit FastSplit(int max_digits) : max_digits_(max_digits) {}
  // End of the match that starts at pos (< text.size()); text must be valid UTF-8.
  size_t next_match(std::string_view text, size_t pos) const;

 private:
  int max_digits_;
};

}  // namespace llmft::tok
