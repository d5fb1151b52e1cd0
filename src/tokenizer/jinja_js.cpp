// JavaScript built-in semantics on UTF-8 strings; see jinja_js.hpp for what each function promises.
#include "tokenizer/jinja_js.hpp"

#include <fmt/format.h>
#include <utf8proc.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <vector>

namespace llmft::jinja::js {

uint32_t next_code_point(std::string_view s, size_t& i) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data()) + i;
  const size_t n = s.size() - i;
  const unsigned char c = p[0];
  if (c < 0x80) {
    ++i;
    return c;
  }
  int need = 0;
  uint32_t cp = 0;
  uint32_t min = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1, cp = c & 0x1Fu, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2, cp = c & 0x0Fu, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3, cp = c & 0x07u, min = 0x10000;
  } else {
    ++i;
    return 0xFFFD;
  }
  if (n <= static_cast<size_t>(need)) {
    ++i;
    return 0xFFFD;
  }
  for (int k = 1; k <= need; ++k) {
    if ((p[k] & 0xC0u) != 0x80u) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (p[k] & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF) {
    ++i;
    return 0xFFFD;
  }
  i += need + 1;
  return cp;  // surrogates (WTF-8) pass through on purpose
}

void append_code_point(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

bool is_space(uint32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  return cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

bool is_line_terminator(uint32_t cp) { return cp == '\n' || cp == '\r' || cp == 0x2028 || cp == 0x2029; }

std::string_view trim_start(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (!is_space(next_code_point(s, j))) break;
    i = j;
  }
  return s.substr(i);
}

std::string_view trim_end(std::string_view s) {
  size_t i = 0, end = 0;
  while (i < s.size()) {
    if (!is_space(next_code_point(s, i))) end = i;
  }
  return s.substr(0, end);
}

std::string_view trim(std::string_view s) { return trim_end(trim_start(s)); }

// ---- numbers ----

std::string number_to_string(double v) {
  if (std::isnan(v)) return "NaN";
  if (v == 0) return "0";
  if (std::isinf(v)) return v < 0 ? "-Infinity" : "Infinity";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, std::fabs(v), std::chars_format::scientific);
  const std::string_view sci(buf, static_cast<size_t>(res.ptr - buf));  // d[.ddd]e[+-]xx, shortest round-trip
  const size_t e_at = sci.find('e');
  std::string digits(1, sci[0]);
  if (e_at > 1) digits.append(sci.substr(2, e_at - 2));
  const int exp10 = std::atoi(std::string(sci.substr(e_at + 1)).c_str());
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;  // value = 0.digits * 10^n
  std::string out = v < 0 ? "-" : "";
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, static_cast<size_t>(n));
    out += '.';
    out += digits.substr(static_cast<size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<size_t>(-n), '0');
    out += digits;
  } else {
    out += digits[0];
    if (k > 1) {
      out += '.';
      out += digits.substr(1);
    }
    out += 'e';
    out += n - 1 >= 0 ? '+' : '-';
    out += std::to_string(std::abs(n - 1));
  }
  return out;
}

std::string number_to_json(double v) { return std::isfinite(v) ? number_to_string(v) : "null"; }

std::string to_fixed1(double v) {
  if (!std::isfinite(v) || std::fabs(v) >= 1e21) return number_to_string(v);
  return fmt::format("{:.1f}", v);
}

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

size_t skip_spaces(std::string_view s, size_t i) {
  while (i < s.size()) {
    size_t j = i;
    if (!is_space(next_code_point(s, j))) break;
    i = j;
  }
  return i;
}

// Length of the StrDecimalLiteral prefix of s (sign, digits, fraction, exponent), 0 if there is none.
size_t decimal_prefix(std::string_view s, bool* infinity) {
  size_t j = 0;
  if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
  *infinity = s.substr(j, 8) == "Infinity";
  if (*infinity) return j + 8;
  size_t before = 0, after = 0;
  while (j < s.size() && is_digit(s[j])) ++j, ++before;
  if (j < s.size() && s[j] == '.') {
    size_t k = j + 1;
    while (k < s.size() && is_digit(s[k])) ++k, ++after;
    if (before > 0 || after > 0) j = k;
  }
  if (before == 0 && after == 0) return 0;
  if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
    size_t k = j + 1;
    if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
    if (k < s.size() && is_digit(s[k])) {
      while (k < s.size() && is_digit(s[k])) ++k;
      j = k;
    }
  }
  return j;
}

double decimal_value(std::string_view lit, bool infinity) {
  if (infinity) return lit[0] == '-' ? -HUGE_VAL : HUGE_VAL;
  return std::strtod(std::string(lit).c_str(), nullptr);
}

}  // namespace

double parse_int(std::string_view s) {
  size_t i = skip_spaces(s, 0);
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  size_t j = i;
  while (j < s.size() && is_digit(s[j])) ++j;
  if (j == i) return std::numeric_limits<double>::quiet_NaN();
  const double v = std::strtod(std::string(s.substr(i, j - i)).c_str(), nullptr);
  return negative ? -v : v;
}

double parse_float(std::string_view s) {
  s = s.substr(skip_spaces(s, 0));
  bool infinity = false;
  const size_t len = decimal_prefix(s, &infinity);
  if (len == 0) return std::numeric_limits<double>::quiet_NaN();
  return decimal_value(s.substr(0, len), infinity);
}

double to_number(std::string_view s) {
  s = trim(s);
  if (s.empty()) return 0;
  if (s.size() > 2 && s[0] == '0') {
    const char r = static_cast<char>(s[1] | 0x20);
    const int radix = r == 'x' ? 16 : r == 'o' ? 8 : r == 'b' ? 2 : 0;
    if (radix != 0) {
      double v = 0;
      for (char c : s.substr(2)) {
        const char l = static_cast<char>(c | 0x20);
        const int d = is_digit(c) ? c - '0' : (l >= 'a' && l <= 'f') ? l - 'a' + 10 : 99;
        if (d >= radix) return std::numeric_limits<double>::quiet_NaN();
        v = v * radix + d;
      }
      return v;
    }
  }
  bool infinity = false;
  const size_t len = decimal_prefix(s, &infinity);
  if (len == 0 || len != s.size()) return std::numeric_limits<double>::quiet_NaN();
  return decimal_value(s, infinity);
}

// ---- UTF-16 views ----

size_t utf16_length(std::string_view s) {
  size_t i = 0, n = 0;
  while (i < s.size()) n += next_code_point(s, i) >= 0x10000 ? 2 : 1;
  return n;
}

namespace {
std::vector<uint16_t> to_utf16(std::string_view s) {
  std::vector<uint16_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const uint32_t cp = next_code_point(s, i);
    if (cp >= 0x10000) {
      out.push_back(static_cast<uint16_t>(0xD800 + ((cp - 0x10000) >> 10)));
      out.push_back(static_cast<uint16_t>(0xDC00 + ((cp - 0x10000) & 0x3FF)));
    } else {
      out.push_back(static_cast<uint16_t>(cp));
    }
  }
  return out;
}
}  // namespace

bool utf16_at(std::string_view s, double index, std::string& out) {
  const std::vector<uint16_t> units = to_utf16(s);
  double k = std::isnan(index) ? 0 : std::trunc(index);
  if (k < 0) k += static_cast<double>(units.size());
  if (!(k >= 0 && k < static_cast<double>(units.size()))) return false;
  const size_t at = static_cast<size_t>(k);
  out.clear();
  append_code_point(out, units[at]);  // half of a surrogate pair comes out alone, as in JS
  return true;
}

int utf16_compare(std::string_view a, std::string_view b) {
  const std::vector<uint16_t> x = to_utf16(a), y = to_utf16(b);
  const size_t n = std::min(x.size(), y.size());
  for (size_t i = 0; i < n; ++i) {
    if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return x.size() == y.size() ? 0 : (x.size() < y.size() ? -1 : 1);
}

// ---- case mapping ----

namespace {

// Where Node 20's toUpperCase / toLowerCase (ICU, Unicode 17, full SpecialCasing mappings) differ from utf8proc's
// simple one-to-one mapping: generated by comparing the two over every code point. Up to three code points out.
struct CaseEntry {
  uint32_t cp;
  uint32_t to[3];
};
constexpr CaseEntry kUpperExceptions[] = {
    {0xDF, {0x53, 0x53, 0x0}},       {0x149, {0x2BC, 0x4E, 0x0}},     {0x19B, {0xA7DC, 0x0, 0x0}},
    {0x1F0, {0x4A, 0x30C, 0x0}},     {0x264, {0xA7CB, 0x0, 0x0}},     {0x390, {0x399, 0x308, 0x301}},
    {0x3B0, {0x3A5, 0x308, 0x301}},  {0x587, {0x535, 0x552, 0x0}},    {0x1C8A, {0x1C89, 0x0, 0x0}},
    {0x1E96, {0x48, 0x331, 0x0}},    {0x1E97, {0x54, 0x308, 0x0}},    {0x1E98, {0x57, 0x30A, 0x0}},
    {0x1E99, {0x59, 0x30A, 0x0}},    {0x1E9A, {0x41, 0x2BE, 0x0}},    {0x1F50, {0x3A5, 0x313, 0x0}},
    {0x1F52, {0x3A5, 0x313, 0x300}}, {0x1F54, {0x3A5, 0x313, 0x301}}, {0x1F56, {0x3A5, 0x313, 0x342}},
    {0x1F80, {0x1F08, 0x399, 0x0}},  {0x1F81, {0x1F09, 0x399, 0x0}},  {0x1F82, {0x1F0A, 0x399, 0x0}},
    {0x1F83, {0x1F0B, 0x399, 0x0}},  {0x1F84, {0x1F0C, 0x399, 0x0}},  {0x1F85, {0x1F0D, 0x399, 0x0}},
    {0x1F86, {0x1F0E, 0x399, 0x0}},  {0x1F87, {0x1F0F, 0x399, 0x0}},  {0x1F88, {0x1F08, 0x399, 0x0}},
    {0x1F89, {0x1F09, 0x399, 0x0}},  {0x1F8A, {0x1F0A, 0x399, 0x0}},  {0x1F8B, {0x1F0B, 0x399, 0x0}},
    {0x1F8C, {0x1F0C, 0x399, 0x0}},  {0x1F8D, {0x1F0D, 0x399, 0x0}},  {0x1F8E, {0x1F0E, 0x399, 0x0}},
    {0x1F8F, {0x1F0F, 0x399, 0x0}},  {0x1F90, {0x1F28, 0x399, 0x0}},  {0x1F91, {0x1F29, 0x399, 0x0}},
    {0x1F92, {0x1F2A, 0x399, 0x0}},  {0x1F93, {0x1F2B, 0x399, 0x0}},  {0x1F94, {0x1F2C, 0x399, 0x0}},
    {0x1F95, {0x1F2D, 0x399, 0x0}},  {0x1F96, {0x1F2E, 0x399, 0x0}},  {0x1F97, {0x1F2F, 0x399, 0x0}},
    {0x1F98, {0x1F28, 0x399, 0x0}},  {0x1F99, {0x1F29, 0x399, 0x0}},  {0x1F9A, {0x1F2A, 0x399, 0x0}},
    {0x1F9B, {0x1F2B, 0x399, 0x0}},  {0x1F9C, {0x1F2C, 0x399, 0x0}},  {0x1F9D, {0x1F2D, 0x399, 0x0}},
    {0x1F9E, {0x1F2E, 0x399, 0x0}},  {0x1F9F, {0x1F2F, 0x399, 0x0}},  {0x1FA0, {0x1F68, 0x399, 0x0}},
    {0x1FA1, {0x1F69, 0x399, 0x0}},  {0x1FA2, {0x1F6A, 0x399, 0x0}},  {0x1FA3, {0x1F6B, 0x399, 0x0}},
    {0x1FA4, {0x1F6C, 0x399, 0x0}},  {0x1FA5, {0x1F6D, 0x399, 0x0}},  {0x1FA6, {0x1F6E, 0x399, 0x0}},
    {0x1FA7, {0x1F6F, 0x399, 0x0}},  {0x1FA8, {0x1F68, 0x399, 0x0}},  {0x1FA9, {0x1F69, 0x399, 0x0}},
    {0x1FAA, {0x1F6A, 0x399, 0x0}},  {0x1FAB, {0x1F6B, 0x399, 0x0}},  {0x1FAC, {0x1F6C, 0x399, 0x0}},
    {0x1FAD, {0x1F6D, 0x399, 0x0}},  {0x1FAE, {0x1F6E, 0x399, 0x0}},  {0x1FAF, {0x1F6F, 0x399, 0x0}},
    {0x1FB2, {0x1FBA, 0x399, 0x0}},  {0x1FB3, {0x391, 0x399, 0x0}},   {0x1FB4, {0x386, 0x399, 0x0}},
    {0x1FB6, {0x391, 0x342, 0x0}},   {0x1FB7, {0x391, 0x342, 0x399}}, {0x1FBC, {0x391, 0x399, 0x0}},
    {0x1FC2, {0x1FCA, 0x399, 0x0}},  {0x1FC3, {0x397, 0x399, 0x0}},   {0x1FC4, {0x389, 0x399, 0x0}},
    {0x1FC6, {0x397, 0x342, 0x0}},   {0x1FC7, {0x397, 0x342, 0x399}}, {0x1FCC, {0x397, 0x399, 0x0}},
    {0x1FD2, {0x399, 0x308, 0x300}}, {0x1FD3, {0x399, 0x308, 0x301}}, {0x1FD6, {0x399, 0x342, 0x0}},
    {0x1FD7, {0x399, 0x308, 0x342}}, {0x1FE2, {0x3A5, 0x308, 0x300}}, {0x1FE3, {0x3A5, 0x308, 0x301}},
    {0x1FE4, {0x3A1, 0x313, 0x0}},   {0x1FE6, {0x3A5, 0x342, 0x0}},   {0x1FE7, {0x3A5, 0x308, 0x342}},
    {0x1FF2, {0x1FFA, 0x399, 0x0}},  {0x1FF3, {0x3A9, 0x399, 0x0}},   {0x1FF4, {0x38F, 0x399, 0x0}},
    {0x1FF6, {0x3A9, 0x342, 0x0}},   {0x1FF7, {0x3A9, 0x342, 0x399}}, {0x1FFC, {0x3A9, 0x399, 0x0}},
    {0xA7CD, {0xA7CC, 0x0, 0x0}},    {0xA7CF, {0xA7CE, 0x0, 0x0}},    {0xA7D3, {0xA7D2, 0x0, 0x0}},
    {0xA7D5, {0xA7D4, 0x0, 0x0}},    {0xA7DB, {0xA7DA, 0x0, 0x0}},    {0xFB00, {0x46, 0x46, 0x0}},
    {0xFB01, {0x46, 0x49, 0x0}},     {0xFB02, {0x46, 0x4C, 0x0}},     {0xFB03, {0x46, 0x46, 0x49}},
    {0xFB04, {0x46, 0x46, 0x4C}},    {0xFB05, {0x53, 0x54, 0x0}},     {0xFB06, {0x53, 0x54, 0x0}},
    {0xFB13, {0x544, 0x546, 0x0}},   {0xFB14, {0x544, 0x535, 0x0}},   {0xFB15, {0x544, 0x53B, 0x0}},
    {0xFB16, {0x54E, 0x546, 0x0}},   {0xFB17, {0x544, 0x53D, 0x0}},   {0x10D70, {0x10D50, 0x0, 0x0}},
    {0x10D71, {0x10D51, 0x0, 0x0}},  {0x10D72, {0x10D52, 0x0, 0x0}},  {0x10D73, {0x10D53, 0x0, 0x0}},
    {0x10D74, {0x10D54, 0x0, 0x0}},  {0x10D75, {0x10D55, 0x0, 0x0}},  {0x10D76, {0x10D56, 0x0, 0x0}},
    {0x10D77, {0x10D57, 0x0, 0x0}},  {0x10D78, {0x10D58, 0x0, 0x0}},  {0x10D79, {0x10D59, 0x0, 0x0}},
    {0x10D7A, {0x10D5A, 0x0, 0x0}},  {0x10D7B, {0x10D5B, 0x0, 0x0}},  {0x10D7C, {0x10D5C, 0x0, 0x0}},
    {0x10D7D, {0x10D5D, 0x0, 0x0}},  {0x10D7E, {0x10D5E, 0x0, 0x0}},  {0x10D7F, {0x10D5F, 0x0, 0x0}},
    {0x10D80, {0x10D60, 0x0, 0x0}},  {0x10D81, {0x10D61, 0x0, 0x0}},  {0x10D82, {0x10D62, 0x0, 0x0}},
    {0x10D83, {0x10D63, 0x0, 0x0}},  {0x10D84, {0x10D64, 0x0, 0x0}},  {0x10D85, {0x10D65, 0x0, 0x0}},
    {0x16EBB, {0x16EA0, 0x0, 0x0}},  {0x16EBC, {0x16EA1, 0x0, 0x0}},  {0x16EBD, {0x16EA2, 0x0, 0x0}},
    {0x16EBE, {0x16EA3, 0x0, 0x0}},  {0x16EBF, {0x16EA4, 0x0, 0x0}},  {0x16EC0, {0x16EA5, 0x0, 0x0}},
    {0x16EC1, {0x16EA6, 0x0, 0x0}},  {0x16EC2, {0x16EA7, 0x0, 0x0}},  {0x16EC3, {0x16EA8, 0x0, 0x0}},
    {0x16EC4, {0x16EA9, 0x0, 0x0}},  {0x16EC5, {0x16EAA, 0x0, 0x0}},  {0x16EC6, {0x16EAB, 0x0, 0x0}},
    {0x16EC7, {0x16EAC, 0x0, 0x0}},  {0x16EC8, {0x16EAD, 0x0, 0x0}},  {0x16EC9, {0x16EAE, 0x0, 0x0}},
    {0x16ECA, {0x16EAF, 0x0, 0x0}},  {0x16ECB, {0x16EB0, 0x0, 0x0}},  {0x16ECC, {0x16EB1, 0x0, 0x0}},
    {0x16ECD, {0x16EB2, 0x0, 0x0}},  {0x16ECE, {0x16EB3, 0x0, 0x0}},  {0x16ECF, {0x16EB4, 0x0, 0x0}},
    {0x16ED0, {0x16EB5, 0x0, 0x0}},  {0x16ED1, {0x16EB6, 0x0, 0x0}},  {0x16ED2, {0x16EB7, 0x0, 0x0}},
    {0x16ED3, {0x16EB8, 0x0, 0x0}}};
constexpr CaseEntry kLowerExceptions[] = {
    {0x130, {0x69, 0x307, 0x0}},    {0x1C89, {0x1C8A, 0x0, 0x0}},   {0xA7CB, {0x264, 0x0, 0x0}},
    {0xA7CC, {0xA7CD, 0x0, 0x0}},   {0xA7CE, {0xA7CF, 0x0, 0x0}},   {0xA7D2, {0xA7D3, 0x0, 0x0}},
    {0xA7D4, {0xA7D5, 0x0, 0x0}},   {0xA7DA, {0xA7DB, 0x0, 0x0}},   {0xA7DC, {0x19B, 0x0, 0x0}},
    {0x10D50, {0x10D70, 0x0, 0x0}}, {0x10D51, {0x10D71, 0x0, 0x0}}, {0x10D52, {0x10D72, 0x0, 0x0}},
    {0x10D53, {0x10D73, 0x0, 0x0}}, {0x10D54, {0x10D74, 0x0, 0x0}}, {0x10D55, {0x10D75, 0x0, 0x0}},
    {0x10D56, {0x10D76, 0x0, 0x0}}, {0x10D57, {0x10D77, 0x0, 0x0}}, {0x10D58, {0x10D78, 0x0, 0x0}},
    {0x10D59, {0x10D79, 0x0, 0x0}}, {0x10D5A, {0x10D7A, 0x0, 0x0}}, {0x10D5B, {0x10D7B, 0x0, 0x0}},
    {0x10D5C, {0x10D7C, 0x0, 0x0}}, {0x10D5D, {0x10D7D, 0x0, 0x0}}, {0x10D5E, {0x10D7E, 0x0, 0x0}},
    {0x10D5F, {0x10D7F, 0x0, 0x0}}, {0x10D60, {0x10D80, 0x0, 0x0}}, {0x10D61, {0x10D81, 0x0, 0x0}},
    {0x10D62, {0x10D82, 0x0, 0x0}}, {0x10D63, {0x10D83, 0x0, 0x0}}, {0x10D64, {0x10D84, 0x0, 0x0}},
    {0x10D65, {0x10D85, 0x0, 0x0}}, {0x16EA0, {0x16EBB, 0x0, 0x0}}, {0x16EA1, {0x16EBC, 0x0, 0x0}},
    {0x16EA2, {0x16EBD, 0x0, 0x0}}, {0x16EA3, {0x16EBE, 0x0, 0x0}}, {0x16EA4, {0x16EBF, 0x0, 0x0}},
    {0x16EA5, {0x16EC0, 0x0, 0x0}}, {0x16EA6, {0x16EC1, 0x0, 0x0}}, {0x16EA7, {0x16EC2, 0x0, 0x0}},
    {0x16EA8, {0x16EC3, 0x0, 0x0}}, {0x16EA9, {0x16EC4, 0x0, 0x0}}, {0x16EAA, {0x16EC5, 0x0, 0x0}},
    {0x16EAB, {0x16EC6, 0x0, 0x0}}, {0x16EAC, {0x16EC7, 0x0, 0x0}}, {0x16EAD, {0x16EC8, 0x0, 0x0}},
    {0x16EAE, {0x16EC9, 0x0, 0x0}}, {0x16EAF, {0x16ECA, 0x0, 0x0}}, {0x16EB0, {0x16ECB, 0x0, 0x0}},
    {0x16EB1, {0x16ECC, 0x0, 0x0}}, {0x16EB2, {0x16ECD, 0x0, 0x0}}, {0x16EB3, {0x16ECE, 0x0, 0x0}},
    {0x16EB4, {0x16ECF, 0x0, 0x0}}, {0x16EB5, {0x16ED0, 0x0, 0x0}}, {0x16EB6, {0x16ED1, 0x0, 0x0}},
    {0x16EB7, {0x16ED2, 0x0, 0x0}}, {0x16EB8, {0x16ED3, 0x0, 0x0}}};

// Appends the mapping of cp from an exception table; false when cp has no entry.
template <size_t N>
bool append_exception(const CaseEntry (&table)[N], uint32_t cp, std::string& out) {
  const CaseEntry* e = std::lower_bound(table, table + N, cp, [](const CaseEntry& x, uint32_t c) { return x.cp < c; });
  if (e == table + N || e->cp != cp) return false;
  for (uint32_t to : e->to) {
    if (to != 0) append_code_point(out, to);
  }
  return true;
}

bool is_cased(uint32_t cp) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_LU || cat == UTF8PROC_CATEGORY_LL || cat == UTF8PROC_CATEGORY_LT;
}

bool is_case_ignorable(uint32_t cp) {
  const auto cat = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return cat == UTF8PROC_CATEGORY_MN || cat == UTF8PROC_CATEGORY_ME || cat == UTF8PROC_CATEGORY_CF ||
         cat == UTF8PROC_CATEGORY_LM || cat == UTF8PROC_CATEGORY_SK || cp == '\'' || cp == '.' || cp == ':' ||
         cp == 0x00B7 || cp == 0x2018 || cp == 0x2019;
}

// Unicode's Final_Sigma condition for the Σ whose code points are cps[at].
bool final_sigma(const std::vector<uint32_t>& cps, size_t at) {
  size_t i = at;
  bool before = false;
  while (i > 0) {
    const uint32_t c = cps[--i];
    if (is_case_ignorable(c)) continue;
    before = is_cased(c);
    break;
  }
  if (!before) return false;
  for (size_t j = at + 1; j < cps.size(); ++j) {
    if (is_case_ignorable(cps[j])) continue;
    return !is_cased(cps[j]);
  }
  return true;
}

bool is_ascii(std::string_view s) {
  for (unsigned char c : s) {
    if (c >= 0x80) return false;
  }
  return true;
}

}  // namespace

std::string to_upper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  if (is_ascii(s)) {
    for (char c : s) out += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 32) : c;
    return out;
  }
  size_t i = 0;
  while (i < s.size()) {
    const uint32_t cp = next_code_point(s, i);
    if (append_exception(kUpperExceptions, cp, out)) continue;
    if (cp >= 0xD800 && cp <= 0xDFFF) {
      append_code_point(out, cp);
    } else {
      append_code_point(out, static_cast<uint32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(cp))));
    }
  }
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  if (is_ascii(s)) {
    for (char c : s) out += (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
    return out;
  }
  std::vector<uint32_t> cps;
  size_t i = 0;
  while (i < s.size()) cps.push_back(next_code_point(s, i));
  for (size_t k = 0; k < cps.size(); ++k) {
    const uint32_t cp = cps[k];
    if (append_exception(kLowerExceptions, cp, out)) continue;
    if (cp == 0x03A3) {
      append_code_point(out, final_sigma(cps, k) ? 0x03C2 : 0x03C3);
    } else if (cp >= 0xD800 && cp <= 0xDFFF) {
      append_code_point(out, cp);
    } else {
      append_code_point(out, static_cast<uint32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
    }
  }
  return out;
}

std::string title_case(std::string_view s) {
  auto word = [](unsigned char c) {
    return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_';
  };
  std::string out(s);
  for (size_t i = 0; i < out.size(); ++i) {
    const auto c = static_cast<unsigned char>(out[i]);
    if (word(c) && (i == 0 || !word(static_cast<unsigned char>(out[i - 1]))) && c >= 'a' && c <= 'z') {
      out[i] = static_cast<char>(c - 32);
    }
  }
  return out;
}

std::string capitalize(std::string_view s) {
  if (s.empty()) return {};
  size_t i = 0;
  const uint32_t cp = next_code_point(s, i);
  if (cp >= 0x10000) return std::string(s);  // charAt(0) is a lone high surrogate: unchanged
  std::string first;
  append_code_point(first, cp);
  return to_upper(first) + std::string(s.substr(i));
}

// ---- JSON ----

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = i;
    const uint32_t cp = next_code_point(s, i);
    switch (cp) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      default: break;
    }
    if (cp < 0x20 || (cp >= 0xD800 && cp <= 0xDFFF)) {
      out += fmt::format("\\u{:04x}", cp);
    } else if (cp == 0xFFFD && !(i - start == 3 && static_cast<unsigned char>(s[start]) == 0xEF)) {
      append_code_point(out, cp);  // an ill-formed byte: the reference saw U+FFFD after decoding
    } else {
      out.append(s.substr(start, i - start));
    }
  }
  out += '"';
}

std::string ascii_safe(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  size_t i = 0;
  while (i < json.size()) {
    const uint32_t cp = next_code_point(json, i);
    if (cp < 0x7F) {
      out += static_cast<char>(cp);
    } else if (cp >= 0x10000) {
      out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF));
    } else {
      out += fmt::format("\\u{:04x}", cp);
    }
  }
  return out;
}

// ---- collation ----

namespace {

struct Collation {
  uint16_t primary[128];  // 0 = ignorable
  uint8_t tertiary[128];  // 1 for uppercase letters
  Collation() {
    // ICU root order of the non-ignorable ASCII characters (read off Node's localeCompare).
    const std::string_view order = "\t\n\v\f\r _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$0123456789";
    for (int c = 0; c < 128; ++c) primary[c] = 0, tertiary[c] = 0;
    uint16_t w = 1;
    for (char c : order) primary[static_cast<unsigned char>(c)] = w++;
    for (char c = 'a'; c <= 'z'; ++c) {
      primary[static_cast<unsigned char>(c)] = w;
      primary[static_cast<unsigned char>(c - 32)] = w++;
      tertiary[static_cast<unsigned char>(c - 32)] = 1;
    }
  }
};

void collation_keys(std::string_view s, std::vector<uint32_t>& primary, std::vector<uint8_t>& tertiary) {
  static const Collation table;
  size_t i = 0;
  while (i < s.size()) {
    const uint32_t cp = next_code_point(s, i);
    if (cp < 128) {
      if (table.primary[cp] == 0) continue;
      primary.push_back(table.primary[cp]);
      tertiary.push_back(table.tertiary[cp]);
    } else {
      primary.push_back(1000 + cp);
      tertiary.push_back(0);
    }
  }
}

template <class T>
int lexicographic(const std::vector<T>& a, const std::vector<T>& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return a.size() == b.size() ? 0 : (a.size() < b.size() ? -1 : 1);
}

}  // namespace

int locale_compare(std::string_view a, std::string_view b) {
  std::vector<uint32_t> pa, pb;
  std::vector<uint8_t> ta, tb;
  collation_keys(a, pa, ta);
  collation_keys(b, pb, tb);
  const int p = lexicographic(pa, pb);
  return p != 0 ? p : lexicographic(ta, tb);
}

}  // namespace llmft::jinja::js
