// Jinja lexer: the reference's preprocess() (drop one trailing newline, lstrip_blocks, trim_blocks, remove
// {% generation %} tags) and tokenize(), re-done on UTF-8 with a byte map back to the original source so syntax
// errors name the line and column the template author wrote.
//
// Promise: for any template, the token list (types and values) equals @huggingface/jinja 0.5.11's, and input the
// reference rejects is rejected here with Error(kFormat).
#include <array>

#include "tokenizer/jinja_ast.hpp"
#include "tokenizer/jinja_js.hpp"
#include "util/check.hpp"

namespace llmft::jinja::detail {

std::string Source::where(size_t text_offset) const {
  const size_t at = origin.empty() ? 0 : origin[std::min(text_offset, origin.size() - 1)];
  size_t line = 1, col = 1, i = 0;
  while (i < at && i < original.size()) {
    const uint32_t cp = js::next_code_point(original, i);
    if (cp == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return fmt::format("line {} col {}", line, col);
}

const char* token_name(Tok t) {
  static constexpr std::array<const char*, 26> kNames = {"Text",
                                                         "NumericLiteral",
                                                         "StringLiteral",
                                                         "Identifier",
                                                         "Equals",
                                                         "OpenParen",
                                                         "CloseParen",
                                                         "OpenStatement",
                                                         "CloseStatement",
                                                         "OpenExpression",
                                                         "CloseExpression",
                                                         "OpenSquareBracket",
                                                         "CloseSquareBracket",
                                                         "OpenCurlyBracket",
                                                         "CloseCurlyBracket",
                                                         "Comma",
                                                         "Dot",
                                                         "Colon",
                                                         "Pipe",
                                                         "AdditiveBinaryOperator",
                                                         "MultiplicativeBinaryOperator",
                                                         "ExponentiationBinaryOperator",
                                                         "ComparisonBinaryOperator",
                                                         "UnaryOperator",
                                                         "Comment",
                                                         "end of template"};
  return kNames[static_cast<size_t>(t)];
}

namespace {

// A text with the original offset of each byte; the preprocessing passes only ever drop bytes.
struct Mapped {
  std::string s;
  std::vector<uint32_t> o;
  void copy(const Mapped& from, size_t begin, size_t end) {
    s.append(from.s, begin, end - begin);
    o.insert(o.end(), from.o.begin() + static_cast<std::ptrdiff_t>(begin),
             from.o.begin() + static_cast<std::ptrdiff_t>(end));
  }
};

size_t skip_js_space(const std::string& s, size_t i) {
  while (i < s.size()) {
    size_t j = i;
    if (!js::is_space(js::next_code_point(s, j))) break;
    i = j;
  }
  return i;
}

// template.replace(/^[ \t]*({[#%-])/gm, "$1")
Mapped lstrip_blocks(const Mapped& in) {
  Mapped out;
  const std::string& s = in.s;
  size_t i = 0;
  bool line_start = true;
  while (i < s.size()) {
    if (line_start) {
      size_t q = i;
      while (q < s.size() && (s[q] == ' ' || s[q] == '\t')) ++q;
      if (q + 1 < s.size() && s[q] == '{' && (s[q + 1] == '#' || s[q + 1] == '%' || s[q + 1] == '-')) i = q;
    }
    size_t j = i;
    line_start = js::is_line_terminator(js::next_code_point(s, j));
    out.copy(in, i, j);
    i = j;
  }
  return out;
}

// template.replace(/([#%-]})\n/g, "$1")
Mapped trim_blocks(const Mapped& in) {
  Mapped out;
  const std::string& s = in.s;
  size_t i = 0;
  while (i < s.size()) {
    if (i + 2 < s.size() && (s[i] == '#' || s[i] == '%' || s[i] == '-') && s[i + 1] == '}' && s[i + 2] == '\n') {
      out.copy(in, i, i + 2);
      i += 3;
    } else {
      out.copy(in, i, i + 1);
      ++i;
    }
  }
  return out;
}

// Matches {%(-?)\s*(?:end)?generation\s*(-?)%} at s[q]; sets the two strip flags, whether it closes, and the end of
// the tag.
bool match_generation_tag(const std::string& s, size_t q, bool* lstrip, bool* rstrip, bool* closes, size_t* end) {
  if (s.compare(q, 2, "{%") != 0) return false;
  size_t k = q + 2;
  *lstrip = k < s.size() && s[k] == '-';
  if (*lstrip) ++k;
  k = skip_js_space(s, k);
  *closes = s.compare(k, 3, "end") == 0 && s.compare(k + 3, 10, "generation") == 0;
  if (*closes) {
    k += 13;
  } else if (s.compare(k, 10, "generation") == 0) {
    k += 10;
  } else {
    return false;
  }
  k = skip_js_space(s, k);
  *rstrip = k < s.size() && s[k] == '-';
  if (*rstrip) ++k;
  if (s.compare(k, 2, "%}") != 0) return false;
  *end = k + 2;
  return true;
}

// template.replace(/(\s*){%(-?)\s*(?:end)?generation\s*(-?)%}(\s*)/gs, keep-unless-stripped): the transformers
// `generation` tag is parsed away, honouring its whitespace-control dashes, and leaves a marker where it stood
// (kGenerationStart / kGenerationEnd, template text that the rendering then turns into spans).
Mapped mark_generation_tags(const Mapped& in, const std::string& original, bool* found) {
  Mapped out;
  const std::string& s = in.s;
  size_t i = 0, depth = 0, last_open = 0;
  // As jinja2 parses the tag (a block closed by {% endgeneration %}): an unclosed or stray tag is a syntax error.
  auto fail = [&](size_t original_offset, const char* what) {
    Source where;
    where.original = original;
    where.text = original;
    for (size_t k = 0; k <= original.size(); ++k) where.origin.push_back(static_cast<uint32_t>(k));
    LLMFT_FAIL(Status::kFormat, "chat template syntax error at {}: {}", where.where(original_offset), what);
  };
  while (i < s.size()) {
    const size_t q = skip_js_space(s, i);
    bool lstrip = false, rstrip = false, closes = false;
    size_t tag_end = 0;
    if (q < s.size() && match_generation_tag(s, q, &lstrip, &rstrip, &closes, &tag_end)) {
      const size_t r = skip_js_space(s, tag_end);
      if (!lstrip) out.copy(in, i, q);
      if (closes && depth == 0) fail(in.o[q], "{% endgeneration %} without a {% generation %} to close");
      if (closes) {
        --depth;
      } else {
        ++depth;
        last_open = in.o[q];
      }
      const std::string_view marker = closes ? kGenerationEnd : kGenerationStart;
      out.s.append(marker);
      out.o.insert(out.o.end(), marker.size(), in.o[q]);
      if (!rstrip) out.copy(in, tag_end, r);
      i = r;
      *found = true;
      continue;
    }
    // No match starts anywhere in the whitespace run nor at the character after it.
    size_t j = q;
    if (j < s.size()) js::next_code_point(s, j);
    out.copy(in, i, j);
    i = j;
  }
  if (depth > 0) fail(last_open, "{% generation %} is never closed by {% endgeneration %}");
  return out;
}

void preprocess(Source& src) {
  Mapped m;
  m.s = src.original;
  m.o.resize(m.s.size());
  for (size_t i = 0; i < m.o.size(); ++i) m.o[i] = static_cast<uint32_t>(i);
  if (!m.s.empty() && m.s.back() == '\n') {
    m.s.pop_back();
    m.o.pop_back();
  }
  m = mark_generation_tags(trim_blocks(lstrip_blocks(m)), src.original, &src.has_generation);
  src.text = std::move(m.s);
  src.origin = std::move(m.o);
  src.origin.push_back(static_cast<uint32_t>(src.original.size()));
}

struct TableEntry {
  std::string_view seq;
  Tok type;
};
// The reference's ORDERED_MAPPING_TABLE: first match wins.
constexpr std::array<TableEntry, 29> kTable = {{
    {"{%", Tok::kOpenStatement},  {"%}", Tok::kCloseStatement},
    {"{{", Tok::kOpenExpression}, {"}}", Tok::kCloseExpression},
    {"(", Tok::kOpenParen},       {")", Tok::kCloseParen},
    {"{", Tok::kOpenCurly},       {"}", Tok::kCloseCurly},
    {"[", Tok::kOpenSquare},      {"]", Tok::kCloseSquare},
    {",", Tok::kComma},           {".", Tok::kDot},
    {":", Tok::kColon},           {"|", Tok::kPipe},
    {"<=", Tok::kComparison},     {">=", Tok::kComparison},
    {"==", Tok::kComparison},     {"!=", Tok::kComparison},
    {"<", Tok::kComparison},      {">", Tok::kComparison},
    {"+", Tok::kAdditive},        {"-", Tok::kAdditive},
    {"~", Tok::kAdditive},        {"**", Tok::kPower},
    {"*", Tok::kMultiplicative},  {"//", Tok::kMultiplicative},
    {"/", Tok::kMultiplicative},  {"%", Tok::kMultiplicative},
    {"=", Tok::kEquals},
}};

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_word(char c) { return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '_'; }

class Lexer {
 public:
  explicit Lexer(const Source& src) : src_(src), s_(src.text) {}

  std::vector<Token> run() {
    while (at_ < s_.size()) step();
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(size_t pos, const std::string& what) const {
    LLMFT_FAIL(Status::kFormat, "chat template syntax error at {}: {}", src_.where(pos), what);
  }

  Tok last() const { return tokens_.empty() ? Tok::kEof : tokens_.back().type; }
  bool starts(std::string_view seq) const { return s_.compare(at_, seq.size(), seq) == 0; }
  void push(Tok type, std::string value, size_t pos) {
    tokens_.push_back(Token{type, std::move(value), static_cast<uint32_t>(pos)});
  }

  void step();
  bool consume_text();
  void consume_comment();
  void consume_spaces();
  void strip_trailing_whitespace();
  void skip_leading_whitespace() { at_ = skip_js_space(s_, at_); }
  std::string consume_digits();
  std::string consume_string(char quote);
  void append_escape(std::string& out);
  bool consume_unary();
  bool consume_table();

  const Source& src_;
  const std::string& s_;
  size_t at_ = 0;
  int curly_depth_ = 0;
  std::vector<Token> tokens_;
};

void Lexer::step() {
  const Tok prev = last();
  if (prev == Tok::kEof || prev == Tok::kCloseStatement || prev == Tok::kCloseExpression || prev == Tok::kComment) {
    if (consume_text()) return;
  }
  if (starts("{#")) return consume_comment();
  if (starts("{%-") || starts("{{-")) {
    const bool statement = s_[at_ + 1] == '%';
    strip_trailing_whitespace();
    push(statement ? Tok::kOpenStatement : Tok::kOpenExpression, statement ? "{%" : "{{", at_);
    if (!statement) curly_depth_ = 0;
    at_ += 3;
    return;
  }
  consume_spaces();
  if (starts("-%}") || starts("-}}")) {
    const bool statement = s_[at_ + 1] == '%';
    push(statement ? Tok::kCloseStatement : Tok::kCloseExpression, statement ? "%}" : "}}", at_);
    at_ += 3;
    skip_leading_whitespace();
    return;
  }
  if (consume_unary() || consume_table()) return;
  const char c = s_[at_];
  const size_t start = at_;
  if (c == '\'' || c == '"') {
    ++at_;
    std::string str = consume_string(c);
    push(Tok::kString, std::move(str), start);
    ++at_;
    return;
  }
  if (is_digit(c)) {
    std::string num = consume_digits();
    if (last() != Tok::kDot && at_ + 1 < s_.size() && s_[at_] == '.' && is_digit(s_[at_ + 1])) {
      ++at_;
      num += '.' + consume_digits();
    }
    push(Tok::kNumber, std::move(num), start);
    return;
  }
  if (is_word(c)) {
    std::string word;
    while (at_ < s_.size() && is_word(s_[at_])) {
      word += s_[at_++];
      if (at_ >= s_.size()) fail(at_, "unexpected end of input");
    }
    push(Tok::kIdentifier, std::move(word), start);
    return;
  }
  size_t j = at_;
  std::string ch;
  js::append_code_point(ch, js::next_code_point(s_, j));
  fail(at_, "unexpected character: " + ch);
}

bool Lexer::consume_text() {
  const size_t start = at_;
  while (at_ < s_.size() &&
         !(s_[at_] == '{' && at_ + 1 < s_.size() && (s_[at_ + 1] == '%' || s_[at_ + 1] == '{' || s_[at_ + 1] == '#'))) {
    ++at_;
  }
  if (at_ == start) return false;
  push(Tok::kText, s_.substr(start, at_ - start), start);
  return true;
}

void Lexer::consume_comment() {
  const size_t start = at_;
  at_ += 2;
  const bool strip_before = at_ < s_.size() && s_[at_] == '-';
  if (strip_before) ++at_;
  std::string comment;
  while (!(at_ + 1 < s_.size() && s_[at_] == '#' && s_[at_ + 1] == '}')) {
    if (at_ + 2 >= s_.size()) fail(start, "missing end of comment tag");
    comment += s_[at_++];
  }
  const bool strip_after = !comment.empty() && comment.back() == '-';
  if (strip_after) comment.pop_back();
  if (strip_before) strip_trailing_whitespace();
  push(Tok::kComment, std::move(comment), start);
  at_ += 2;
  if (strip_after) skip_leading_whitespace();
}

// consumeWhile(isWhitespace): like every consumeWhile in the reference, running into the end of input is an error.
void Lexer::consume_spaces() {
  while (at_ < s_.size()) {
    size_t j = at_;
    if (!js::is_space(js::next_code_point(s_, j))) break;
    at_ = j;
    if (at_ >= s_.size()) fail(at_, "unexpected end of input");
  }
}

void Lexer::strip_trailing_whitespace() {
  if (tokens_.empty() || tokens_.back().type != Tok::kText) return;
  std::string& text = tokens_.back().value;
  text.resize(js::trim_end(text).size());
  if (text.empty()) tokens_.pop_back();
}

std::string Lexer::consume_digits() {
  std::string digits;
  while (at_ < s_.size() && is_digit(s_[at_])) {
    digits += s_[at_++];
    if (at_ >= s_.size()) fail(at_, "unexpected end of input");
  }
  return digits;
}

std::string Lexer::consume_string(char quote) {
  std::string str;
  while (at_ >= s_.size() || s_[at_] != quote) {
    if (at_ >= s_.size()) fail(at_, "unexpected end of input in string literal");
    if (s_[at_] == '\\') {
      append_escape(str);
      continue;
    }
    str += s_[at_++];
    if (at_ >= s_.size()) fail(at_, "unexpected end of input in string literal");
  }
  return str;
}

void Lexer::append_escape(std::string& out) {
  const size_t start = at_++;
  if (at_ >= s_.size()) fail(start, "unexpected end of input");
  const char e = s_[at_++];
  if (e == 'x' || e == 'u') {
    const size_t len = e == 'x' ? 2 : 4;
    const std::string hex = s_.substr(at_, len);
    bool ok = hex.size() == len;
    for (char h : hex) ok = ok && (is_digit(h) || ((h | 0x20) >= 'a' && (h | 0x20) <= 'f'));
    if (!ok) fail(start, fmt::format("invalid hexadecimal escape sequence: \\{}{}", e, hex));
    const auto unit = static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
    at_ += len;
    // A low surrogate right after a high one forms one character, as JS string concatenation does.
    const size_t n = out.size();
    if (unit >= 0xDC00 && unit <= 0xDFFF && n >= 3 && static_cast<unsigned char>(out[n - 3]) == 0xED &&
        static_cast<unsigned char>(out[n - 2]) >= 0xA0 && static_cast<unsigned char>(out[n - 2]) <= 0xAF) {
      size_t i = n - 3;
      const uint32_t high = js::next_code_point(out, i);
      out.resize(n - 3);
      js::append_code_point(out, 0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00));
    } else {
      js::append_code_point(out, unit);
    }
    return;
  }
  switch (e) {
    case 'n': out += '\n'; return;
    case 't': out += '\t'; return;
    case 'r': out += '\r'; return;
    case 'b': out += '\b'; return;
    case 'f': out += '\f'; return;
    case 'v': out += '\v'; return;
    case '\'': out += '\''; return;
    case '"': out += '"'; return;
    case '\\': out += '\\'; return;
    default: fail(start, fmt::format("unexpected escaped character: {}", e));
  }
}

// A '-' or '+' that cannot be binary (after an operator or an opening bracket) is unary; digits right after it make
// one signed number literal.
bool Lexer::consume_unary() {
  const char c = s_[at_];
  if (c != '-' && c != '+') return false;
  const Tok prev = last();
  if (prev == Tok::kText || prev == Tok::kEof) fail(at_, fmt::format("unexpected character: {}", c));
  if (prev == Tok::kIdentifier || prev == Tok::kNumber || prev == Tok::kString || prev == Tok::kCloseParen ||
      prev == Tok::kCloseSquare) {
    return false;
  }
  const size_t start = at_++;
  std::string num = consume_digits();
  if (!num.empty() && at_ + 1 < s_.size() && s_[at_] == '.' && is_digit(s_[at_ + 1])) {
    ++at_;
    num += '.' + consume_digits();
  }
  push(num.empty() ? Tok::kUnary : Tok::kNumber, std::string(1, c) + num, start);
  return true;
}

bool Lexer::consume_table() {
  for (const TableEntry& e : kTable) {
    if (e.type == Tok::kCloseExpression && curly_depth_ > 0) continue;
    if (!starts(e.seq)) continue;
    push(e.type, std::string(e.seq), at_);
    if (e.type == Tok::kOpenExpression) curly_depth_ = 0;
    if (e.type == Tok::kOpenCurly) ++curly_depth_;
    if (e.type == Tok::kCloseCurly) --curly_depth_;
    at_ += e.seq.size();
    return true;
  }
  return false;
}

}  // namespace

std::vector<Token> tokenize(Source& src) {
  preprocess(src);
  return Lexer(src).run();
}

}  // namespace llmft::jinja::detail
