// The JavaScript semantics that @huggingface/jinja (our byte-for-byte reference for chat templates) inherits from
// its host language, re-done on UTF-8 strings: Number-to-string, parseInt/parseFloat/ToNumber, JS whitespace and
// trim, UTF-16 lengths and indexing, toUpperCase/toLowerCase, JSON.stringify of strings, localeCompare.
//
// Promise: each function returns what the named JS built-in returns for the same text (Node 20, en-US), with the
// exceptions listed beside the function. Strings are UTF-8; a lone UTF-16 surrogate (which only `str[i]` and
// "\uD83D"-style escapes can make) is carried as WTF-8 (three bytes ED A0..BF xx).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace llmft::jinja::js {

// Decodes the code point at s[i] and advances i. Accepts WTF-8 surrogates; an ill-formed byte decodes to U+FFFD
// and advances by one.
uint32_t next_code_point(std::string_view s, size_t& i);

// Appends cp as UTF-8 (WTF-8 for a surrogate).
void append_code_point(std::string& out, uint32_t cp);

// /\s/ in a JS regular expression, and the StrWhiteSpaceChar set of parseInt / Number().
bool is_space(uint32_t cp);
// A JS line terminator (\n \r U+2028 U+2029): where a /m regex's ^ matches.
bool is_line_terminator(uint32_t cp);

std::string_view trim(std::string_view s);        // String.prototype.trim
std::string_view trim_start(std::string_view s);  // trimStart
std::string_view trim_end(std::string_view s);    // trimEnd

// Number.prototype.toString() (shortest round-trip digits, JS exponent rules, "NaN", "Infinity").
std::string number_to_string(double v);
// JSON.stringify(number): like number_to_string, but non-finite numbers are "null".
std::string number_to_json(double v);
// Number.prototype.toFixed(1) for an integral value (exact digits; exponent form at 1e21 and above).
std::string to_fixed1(double v);

double parse_int(std::string_view s);    // parseInt(s, 10); NaN when there are no digits
double parse_float(std::string_view s);  // parseFloat(s)
double to_number(std::string_view s);    // Number(s): whole string, "" -> 0, 0x/0o/0b, Infinity

size_t utf16_length(std::string_view s);  // String.prototype.length
// String.prototype.at(index) on UTF-16 code units; false when out of range.
bool utf16_at(std::string_view s, double index, std::string& out);
// < 0, 0, > 0 like JS's `<` on strings (UTF-16 code unit order).
int utf16_compare(std::string_view a, std::string_view b);

// toUpperCase / toLowerCase: utf8proc's simple case mapping corrected by a table of where Node 20 (ICU, Unicode 17)
// differs from it (one-to-many SpecialCasing mappings such as ß -> SS, characters newer than utf8proc's tables),
// plus Greek final sigma in context. Exact for every single code point; final sigma follows Unicode's rule with
// utf8proc's general categories.
std::string to_upper(std::string_view s);
std::string to_lower(std::string_view s);
// s.replace(/\b\w/g, c => c.toUpperCase()) : ASCII word starts only.
std::string title_case(std::string_view s);
// s.charAt(0).toUpperCase() + s.slice(1).
std::string capitalize(std::string_view s);

// JSON.stringify(string): quotes, escapes " \ \b \f \n \r \t, other controls and lone surrogates as \u00xx.
void append_json_string(std::string& out, std::string_view s);
// Replaces every UTF-16 code unit >= 0x7F by \uXXXX (lowercase hex), as tojson(ensure_ascii=true) does.
std::string ascii_safe(std::string_view json);

// a.localeCompare(b) under ICU root collation, for ASCII (tertiary strength: letters case-insensitively first,
// then lowercase before uppercase; punctuation < digits < letters; controls ignorable). Known gap: non-ASCII code
// points are ordered after all ASCII by code point, not by the Unicode collation algorithm.
int locale_compare(std::string_view a, std::string_view b);

}  // namespace llmft::jinja::js
