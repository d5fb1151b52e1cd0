#include "tokenizer/fast_split.hpp"

#include "tokenizer/unicode.hpp"

namespace llmft::tok {

namespace {

constexpr const char* kLlama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
constexpr const char* kQwen =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";

enum Cls : uint8_t { kLetter, kNumber, kSpace, kOther };

// Class of every ASCII byte, so the common case is one table load.
struct AsciiTable {
  Cls c[128];
  AsciiTable() {
    for (int i = 0; i < 128; ++i) {
      auto u = static_cast<uint32_t>(i);
      c[i] = is_letter(u) ? kLetter : is_number(u) ? kNumber : is_whitespace(u) ? kSpace : kOther;
    }
  }
};
const AsciiTable kAscii;

inline Cls classify(std::string_view t, size_t i, int* len) {
  auto b = static_cast<unsigned char>(t[i]);
  if (b < 0x80) {
    *len = 1;
    return kAscii.c[b];
  }
  uint32_t cp = decode_at(t, i, len);
  return is_letter(cp) ? kLetter : is_number(cp) ? kNumber : is_whitespace(cp) ? kSpace : kOther;
}

inline bool is_crlf(char c) { return c == '\r' || c == '\n'; }

// Case-insensitive letter match for the contractions. Unicode case folding also maps U+017F (long s) to 's'.
inline size_t fold_match(std::string_view t, size_t i, char lower) {
  if (i >= t.size()) return 0;
  char c = t[i];
  if (c == lower || c == lower - 32) return 1;
  if (lower == 's' && t.substr(i, 2) == "\xC5\xBF") return 2;
  return 0;
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d) at i (t[i] == '\''): the match length, or 0.
size_t contraction(std::string_view t, size_t i) {
  size_t j = i + 1, a, b;
  if ((a = fold_match(t, j, 's')) || (a = fold_match(t, j, 't')) || (a = fold_match(t, j, 'm')) ||
      (a = fold_match(t, j, 'd')))
    return 1 + a;
  if ((a = fold_match(t, j, 'r')) && (b = fold_match(t, j + a, 'e'))) return 1 + a + b;
  if ((a = fold_match(t, j, 'v')) && (b = fold_match(t, j + a, 'e'))) return 1 + a + b;
  if ((a = fold_match(t, j, 'l')) && (b = fold_match(t, j + a, 'l'))) return 1 + a + b;
  return 0;
}

}  // namespace

bool FastSplit::recognizes(const std::string& pattern, int* max_digits) {
  if (pattern == kLlama3) {
    *max_digits = 3;
    return true;
  }
  if (pattern == kQwen) {
    *max_digits = 1;
    return true;
  }
  return false;
}

size_t FastSplit::next_match(std::string_view t, size_t i) const {
  const size_t n = t.size();
  int len;
  Cls c = classify(t, i, &len);
  // 1. contractions
  if (t[i] == '\'') {
    size_t m = contraction(t, i);
    if (m) return i + m;
  }
  // 2. [^\r\n\p{L}\p{N}]?\p{L}+
  size_t j = i;
  if (c != kLetter && c != kNumber && !is_crlf(t[i]) && i + static_cast<size_t>(len) < n) {
    int l2;
    if (classify(t, i + static_cast<size_t>(len), &l2) == kLetter) j = i + static_cast<size_t>(len);
  }
  if (j != i || c == kLetter) {
    while (j < n && classify(t, j, &len) == kLetter) j += static_cast<size_t>(len);
    return j;
  }
  // 3. \p{N}{1,K}
  if (c == kNumber) {
    j = i;
    for (int k = 0; k < max_digits_ && j < n && classify(t, j, &len) == kNumber; ++k) j += static_cast<size_t>(len);
    return j;
  }
  // 4. ' '?[^\s\p{L}\p{N}]+[\r\n]*
  j = i;
  if (t[i] == ' ' && i + 1 < n) {
    int l2;
    if (classify(t, i + 1, &l2) == kOther) j = i + 1;
  }
  if (j != i || c == kOther) {
    while (j < n && classify(t, j, &len) == kOther) j += static_cast<size_t>(len);
    while (j < n && is_crlf(t[j])) ++j;
    return j;
  }
  // White space from here: W = t[i, e) is the maximal run.
  size_t e = i, last_crlf = n, last_start = i;
  while (e < n && classify(t, e, &len) == kSpace) {
    if (is_crlf(t[e])) last_crlf = e;
    last_start = e;
    e += static_cast<size_t>(len);
  }
  // 5. \s*[\r\n]+ : up to and including the run's last CR/LF.
  if (last_crlf != n) return last_crlf + 1;
  // 6. \s+(?!\S) : all of W at the end of the text, else W minus its last character if that leaves one.
  if (e == n) return e;
  if (last_start > i) return last_start;
  // 7. \s+
  return e;
}

}  // namespace llmft::tok
