// UTF-8 decoding, encoding and repair.
//
// Invalid input policy (used by the tokenizer and the data readers): every maximal ill-formed subsequence is
// replaced by U+FFFD, exactly as the WHATWG/Unicode "substitution of maximal subparts" rule does (the rule of
// JavaScript's TextDecoder and Rust's String::from_utf8_lossy), so our ids match Hugging Face's on the same
// repaired text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace llmft::utf8 {

// Length of the well-formed sequence starting at s[0] (1..4), or 0 if it is ill-formed; in that case *bad is the
// length of its maximal subpart (>= 1), the bytes one U+FFFD replaces.
inline int sequence_length(const unsigned char* s, size_t n, int* bad) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  int need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    *bad = 1;
    return 0;
  }
  for (int k = 1; k <= need; ++k) {
    if (static_cast<size_t>(k) >= n || s[k] < lo || s[k] > hi) {
      *bad = k;
      return 0;
    }
    lo = 0x80;
    hi = 0xBF;
  }
  return need + 1;
}

// Decodes the code point of a well-formed sequence of length len.
inline uint32_t decode(const unsigned char* s, int len) {
  switch (len) {
    case 1: return s[0];
    case 2: return ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu);
    case 3: return ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
    default: return ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
  }
}

// Appends the UTF-8 encoding of cp.
void append(std::string& out, uint32_t cp);

// True if s is well-formed UTF-8.
bool valid(std::string_view s);

// s with every maximal ill-formed subsequence replaced by U+FFFD (s itself when it is valid).
std::string repair(std::string_view s);

// Number of code points in well-formed s.
size_t length(std::string_view s);

// `s` for one line of a log: line breaks, tabs and other control characters shown as escapes (\n, \t, \x1b), cut
// after `max` bytes of output at a whole character or escape, with "..." added when cut. Ill-formed UTF-8 is repaired.
std::string one_line(std::string_view s, size_t max = 160);

}  // namespace llmft::utf8
