#include "tokenizer/unicode.hpp"

#include <utf8proc.h>

#include "util/utf8.hpp"

namespace llmft::tok {

namespace {
inline utf8proc_category_t cat(uint32_t cp) { return utf8proc_category(static_cast<utf8proc_int32_t>(cp)); }
}  // namespace

bool is_letter(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) - 'a' < 26;
  auto c = cat(cp);
  return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}

bool is_number(uint32_t cp) {
  if (cp < 0x80) return cp - '0' < 10;
  auto c = cat(cp);
  return c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO;
}

bool is_mark(uint32_t cp) {
  auto c = cat(cp);
  return c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME;
}

bool is_punctuation(uint32_t cp) {
  auto c = cat(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

bool is_whitespace(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_word_char(uint32_t cp) {
  if (cp < 0x80) return (cp | 0x20) - 'a' < 26 || cp - '0' < 10 || cp == '_';
  if (cp == 0x200C || cp == 0x200D) return true;
  auto c = cat(cp);
  return (c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO) ||
         (c >= UTF8PROC_CATEGORY_MN && c <= UTF8PROC_CATEGORY_ME) || c == UTF8PROC_CATEGORY_ND ||
         c == UTF8PROC_CATEGORY_NL || c == UTF8PROC_CATEGORY_PC;
}

uint32_t decode_at(std::string_view s, size_t i, int* len) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  unsigned char c = p[0];
  int l = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  if (i + static_cast<size_t>(l) > s.size()) l = 1;  // defensive: callers pass well-formed text
  *len = l;
  return utf8::decode(p, l);
}

const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet table = [] {
    ByteLevelAlphabet t;
    t.inverse.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
      t.byte_to_cp[b] = cp;
      utf8::append(t.byte_to_utf8[b], cp);
      t.inverse[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return table;
}

bool byte_level_decode(std::string_view s, std::string& out) {
  const auto& a = byte_level_alphabet();
  for (size_t i = 0; i < s.size();) {
    int len;
    uint32_t cp = decode_at(s, i, &len);
    int b = a.cp_to_byte(cp);
    if (b < 0) return false;
    out.push_back(static_cast<char>(b));
    i += static_cast<size_t>(len);
  }
  return true;
}

}  // namespace llmft::tok
