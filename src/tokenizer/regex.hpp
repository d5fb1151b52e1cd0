// Regular expressions for tokenizer.json patterns, on PCRE2 with JIT (UTF + UCP mode).
//
// Hugging Face tokenizers runs these patterns on Oniguruma. The two agree on the classes these files use
// (\p{L}, \p{N}, lookahead, (?i:...)) except \s: PCRE2 adds U+180E, Oniguruma follows Unicode White_Space. The
// constructor rewrites \s and \S (outside character classes, and \s inside them) to explicit White_Space classes.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace llmft::tok {

class Regex {
 public:
  // Throws Error(kFormat) naming the pattern and PCRE2's message when it does not compile.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Finds the first match in subject at or after byte `start` (a code point boundary). Subject must be valid
  // UTF-8. Returns false when there is none.
  bool find(std::string_view subject, size_t start, size_t* match_begin, size_t* match_end) const;

  const std::string& pattern() const { return pattern_; }

  // The \s rewrite described above (exposed for tests).
  static std::string rewrite_whitespace_classes(const std::string& pattern);

 private:
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8
  bool jit_ = false;
};

}  // namespace llmft::tok
