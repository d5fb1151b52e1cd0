// Unicode character classes as Hugging Face tokenizers (Rust, Oniguruma) see them, and the GPT-2 byte-level
// alphabet. Categories come from utf8proc.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace llmft::tok {

// General-category groups.
bool is_letter(uint32_t cp);       // L*
bool is_number(uint32_t cp);       // N* (Rust char::is_numeric)
bool is_mark(uint32_t cp);         // M*
bool is_punctuation(uint32_t cp);  // P*
// Unicode White_Space (Rust char::is_whitespace, Oniguruma \s). Note: PCRE2's \s with UCP also matches
// U+180E; regex patterns are rewritten to this set (see regex.cpp).
bool is_whitespace(uint32_t cp);
// Rust regex \w: Alphabetic, marks, decimal numbers, connector punctuation, join controls.
bool is_word_char(uint32_t cp);

// Decodes the code point at s[i] of well-formed UTF-8; returns its length through *len.
uint32_t decode_at(std::string_view s, size_t i, int* len);

// GPT-2's byte-level alphabet: every byte maps to one printable code point (bytes 33..126, 161..172 and 174..255 map
// to themselves; the other 68 map to 256, 257, ... in byte order).
struct ByteLevelAlphabet {
  std::array<uint32_t, 256> byte_to_cp{};
  std::array<std::string, 256> byte_to_utf8;
  // Inverse: code point -> byte, or -1 when cp is not in the alphabet.
  int cp_to_byte(uint32_t cp) const { return cp < inverse.size() ? inverse[cp] : -1; }
  std::array<int16_t, 324> inverse{};
};
const ByteLevelAlphabet& byte_level_alphabet();

// Maps a byte-level string (alphabet code points) back to raw bytes; false if a character is outside the alphabet.
bool byte_level_decode(std::string_view s, std::string& out);

}  // namespace llmft::tok
