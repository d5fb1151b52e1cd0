#include "tokenizer/pre_tokenizer.hpp"

#include <functional>

#include "tokenizer/fast_split.hpp"
#include "tokenizer/regex.hpp"
#include "tokenizer/unicode.hpp"
#include "util/check.hpp"

namespace llmft::tok {

const char* const kGpt2Pattern = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

namespace {

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

Behavior parse_behavior(const std::string& s, const std::string& where) {
  if (s == "Removed") return Behavior::kRemoved;
  if (s == "Isolated") return Behavior::kIsolated;
  if (s == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::kMergedWithNext;
  if (s == "Contiguous") return Behavior::kContiguous;
  LLMFT_FAIL(Status::kFormat, "{}: unknown split behavior \"{}\"", where, s);
}

struct Span {
  size_t b, e;
  bool match;
};

// Hugging Face's NormalizedString::split: given the text cut into match / non-match spans, decide which spans
// become pieces and which are glued together or removed.
void emit_split(const Piece& p, const std::vector<Span>& spans, Behavior behavior, PieceList& out) {
  std::vector<std::pair<Span, bool>> parts;  // (span, remove)
  bool prev_match = false;
  switch (behavior) {
    case Behavior::kIsolated:
      for (const auto& s : spans) parts.push_back({s, false});
      break;
    case Behavior::kRemoved:
      for (const auto& s : spans) parts.push_back({s, s.match});
      break;
    case Behavior::kContiguous:
      for (const auto& s : spans) {
        if (s.match == prev_match && !parts.empty())
          parts.back().first.e = s.e;
        else
          parts.push_back({s, false});
        prev_match = s.match;
      }
      break;
    case Behavior::kMergedWithPrevious:
      for (const auto& s : spans) {
        if (s.match && !prev_match && !parts.empty())
          parts.back().first.e = s.e;
        else
          parts.push_back({s, false});
        prev_match = s.match;
      }
      break;
    case Behavior::kMergedWithNext:
      for (size_t k = spans.size(); k-- > 0;) {
        const auto& s = spans[k];
        if (s.match && !prev_match && !parts.empty())
          parts.back().first.b = s.b;
        else
          parts.push_back({s, false});
        prev_match = s.match;
      }
      std::reverse(parts.begin(), parts.end());
      break;
  }
  for (const auto& [s, remove] : parts)
    if (!remove && s.e > s.b) out.push_back(sub_piece(p, s.b, s.e));
}

// Cuts text into match/non-match spans with a match finder (Hugging Face's Pattern::find_matches).
using Finder = std::function<bool(std::string_view, size_t, size_t*, size_t*)>;

void find_spans(std::string_view text, const Finder& find, bool invert, std::vector<Span>& spans) {
  spans.clear();
  if (text.empty()) {
    spans.push_back({0, 0, false});
    return;
  }
  size_t prev = 0, pos = 0, b, e;
  while (pos <= text.size() && find(text, pos, &b, &e)) {
    if (prev != b) spans.push_back({prev, b, invert});
    spans.push_back({b, e, !invert});
    prev = e;
    if (e == b) {  // empty match: step over one character
      if (e >= text.size()) break;
      int len;
      decode_at(text, e, &len);
      pos = e + static_cast<size_t>(len);
    } else {
      pos = e;
    }
  }
  if (prev != text.size()) spans.push_back({prev, text.size(), invert});
}

// Applies a per-piece transformation to every piece.
template <typename F>
void for_each_piece(PieceList& pieces, F&& f) {
  PieceList out;
  out.reserve(pieces.size() * 2);
  for (const Piece& p : pieces) f(p, out);
  pieces.swap(out);
}

// Split with the Llama 3 / Qwen pattern, Isolated, not inverted: the matches tile the piece (see fast_split.hpp).
class LlamaSplit : public PreTokenizer {
 public:
  explicit LlamaSplit(int max_digits) : split_(max_digits) {}
  void apply(PieceList& pieces, PieceArena&) const override {
    for_each_piece(pieces, [&](const Piece& p, PieceList& out) {
      for (size_t pos = 0; pos < p.text.size();) {
        size_t end = split_.next_match(p.text, pos);
        out.push_back(sub_piece(p, pos, end));
        pos = end;
      }
    });
  }

 private:
  FastSplit split_;
};

class Split : public PreTokenizer {
 public:
  Split(std::unique_ptr<Regex> regex, std::string literal, Behavior behavior, bool invert)
      : regex_(std::move(regex)), literal_(std::move(literal)), behavior_(behavior), invert_(invert) {}

  void apply(PieceList& pieces, PieceArena&) const override {
    std::vector<Span> spans;
    Finder find;
    if (regex_) {
      find = [this](std::string_view t, size_t pos, size_t* b, size_t* e) { return regex_->find(t, pos, b, e); };
    } else {
      find = [this](std::string_view t, size_t pos, size_t* b, size_t* e) {
        if (literal_.empty()) return false;
        size_t hit = t.find(literal_, pos);
        if (hit == std::string_view::npos) return false;
        *b = hit;
        *e = hit + literal_.size();
        return true;
      };
    }
    for_each_piece(pieces, [&](const Piece& p, PieceList& out) {
      find_spans(p.text, find, invert_, spans);
      emit_split(p, spans, behavior_, out);
    });
  }

 private:
  std::unique_ptr<Regex> regex_;
  std::string literal_;
  Behavior behavior_;
  bool invert_;
};

// Splits by a per-character predicate (Digits, WhitespaceSplit, Punctuation): runs of matching characters are
// matches, each character its own match when `each_char`.
class CharSplit : public PreTokenizer {
 public:
  CharSplit(std::function<bool(uint32_t)> pred, Behavior behavior, bool each_char)
      : pred_(std::move(pred)), behavior_(behavior), each_char_(each_char) {}
  void apply(PieceList& pieces, PieceArena&) const override {
    std::vector<Span> spans;
    Finder find = [this](std::string_view t, size_t pos, size_t* b, size_t* e) {
      while (pos < t.size()) {
        int len;
        uint32_t c = decode_at(t, pos, &len);
        if (pred_(c)) {
          *b = pos;
          *e = pos + static_cast<size_t>(len);
          if (!each_char_) {
            while (*e < t.size() && pred_(decode_at(t, *e, &len))) *e += static_cast<size_t>(len);
          }
          return true;
        }
        pos += static_cast<size_t>(len);
      }
      return false;
    };
    for_each_piece(pieces, [&](const Piece& p, PieceList& out) {
      find_spans(p.text, find, false, spans);
      emit_split(p, spans, behavior_, out);
    });
  }

 private:
  std::function<bool(uint32_t)> pred_;
  Behavior behavior_;
  bool each_char_;
};

class ByteLevel : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), regex_(use_regex ? std::make_unique<Regex>(kGpt2Pattern) : nullptr) {}
  bool is_byte_level() const override { return true; }
  void apply(PieceList& pieces, PieceArena& arena) const override {
    std::vector<Span> spans;
    for_each_piece(pieces, [&](const Piece& p0, PieceList& out) {
      Piece p = p0;
      if (add_prefix_space_ && (p.text.empty() || p.text.front() != ' ')) {
        p.text = arena.keep(" " + std::string(p.text));
        p.exact = false;
      }
      if (!regex_) {
        if (!p.text.empty()) out.push_back(p);
        return;
      }
      find_spans(p.text, [this](std::string_view t, size_t pos, size_t* b, size_t* e) { return regex_->find(t, pos, b, e); },
                 false, spans);
      emit_split(p, spans, Behavior::kIsolated, out);
    });
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

class Metaspace : public PreTokenizer {
 public:
  enum class Prepend { kAlways, kFirst, kNever };
  Metaspace(std::string replacement, Prepend prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void apply(PieceList& pieces, PieceArena& arena) const override {
    for_each_piece(pieces, [&](const Piece& p0, PieceList& out) {
      Piece p = p0;
      std::string s;
      bool changed = false;
      for (char c : p.text) {
        if (c == ' ') {
          s += replacement_;
          changed = true;
        } else {
          s += c;
        }
      }
      bool starts = s.compare(0, replacement_.size(), replacement_) == 0;
      bool prepend = prepend_ == Prepend::kAlways || (prepend_ == Prepend::kFirst && p.begin == 0);
      if (prepend && !starts) {
        s.insert(0, replacement_);
        changed = true;
      }
      if (changed) {
        p.text = arena.keep(std::move(s));
        p.exact = false;
      }
      if (!split_) {
        if (!p.text.empty()) out.push_back(p);
        return;
      }
      std::vector<Span> spans;
      find_spans(p.text,
                 [this](std::string_view t, size_t pos, size_t* b, size_t* e) {
                   size_t hit = t.find(replacement_, pos);
                   if (hit == std::string_view::npos) return false;
                   *b = hit;
                   *e = hit + replacement_.size();
                   return true;
                 },
                 false, spans);
      emit_split(p, spans, Behavior::kMergedWithNext, out);
    });
  }

 private:
  std::string replacement_;
  Prepend prepend_;
  bool split_;
};

class Sequence : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  bool is_byte_level() const override { return !parts_.empty() && parts_.back()->is_byte_level(); }
  void apply(PieceList& pieces, PieceArena& arena) const override {
    for (const auto& p : parts_) p->apply(pieces, arena);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  LLMFT_CHECK(it != j.end(), Status::kFormat, "{}: missing key \"{}\"", where, key);
  return *it;
}

}  // namespace

bool& fast_split_disabled() {
  static bool disabled = false;
  return disabled;
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  LLMFT_CHECK(j.is_object(), Status::kFormat, "{}: expected an object", where);
  std::string type = field(j, "type", where).get<std::string>();
  if (type == "Split") {
    const auto& pat = field(j, "pattern", where);
    Behavior behavior = parse_behavior(field(j, "behavior", where).get<std::string>(), where);
    bool invert = j.value("invert", false);
    if (pat.contains("Regex")) {
      std::string re = pat["Regex"].get<std::string>();
      int max_digits = 0;
      if (behavior == Behavior::kIsolated && !invert && !fast_split_disabled() && FastSplit::recognizes(re, &max_digits))
        return std::make_unique<LlamaSplit>(max_digits);
      return std::make_unique<Split>(std::make_unique<Regex>(re), "", behavior, invert);
    }
    if (pat.contains("String"))
      return std::make_unique<Split>(nullptr, pat["String"].get<std::string>(), behavior, invert);
    LLMFT_FAIL(Status::kFormat, "{}: Split pattern must hold \"String\" or \"Regex\"", where);
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevel>(j.value("add_prefix_space", true), j.value("use_regex", true));
  if (type == "Metaspace") {
    std::string replacement = j.value("replacement", std::string("\xE2\x96\x81"));
    Metaspace::Prepend prepend = Metaspace::Prepend::kAlways;
    if (j.contains("prepend_scheme")) {
      std::string s = j["prepend_scheme"].get<std::string>();
      if (s == "always") prepend = Metaspace::Prepend::kAlways;
      else if (s == "first") prepend = Metaspace::Prepend::kFirst;
      else if (s == "never") prepend = Metaspace::Prepend::kNever;
      else LLMFT_FAIL(Status::kFormat, "{}: unknown prepend_scheme \"{}\"", where, s);
    } else if (j.contains("add_prefix_space")) {
      prepend = j["add_prefix_space"].get<bool>() ? Metaspace::Prepend::kAlways : Metaspace::Prepend::kNever;
    }
    return std::make_unique<Metaspace>(replacement, prepend, j.value("split", true));
  }
  if (type == "Digits")
    return std::make_unique<CharSplit>(is_number, j.value("individual_digits", false) ? Behavior::kIsolated : Behavior::kContiguous,
                                       j.value("individual_digits", false));
  if (type == "WhitespaceSplit") return std::make_unique<CharSplit>(is_whitespace, Behavior::kRemoved, false);
  if (type == "Punctuation") {
    Behavior b = parse_behavior(j.value("behavior", std::string("Isolated")), where);
    return std::make_unique<CharSplit>(
        [](uint32_t c) { return is_punctuation(c) || (c < 0x80 && std::ispunct(static_cast<int>(c))); }, b, true);
  }
  if (type == "Whitespace")  // \w+|[^\w\s]+ kept, whitespace removed
    return std::make_unique<Split>(std::make_unique<Regex>("\\w+|[^\\w\\s]+"), "", Behavior::kRemoved, true);
  if (type == "BertPreTokenizer") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    parts.push_back(std::make_unique<CharSplit>(is_whitespace, Behavior::kRemoved, false));
    parts.push_back(std::make_unique<CharSplit>(
        [](uint32_t c) { return is_punctuation(c) || (c < 0x80 && std::ispunct(static_cast<int>(c))); },
        Behavior::kIsolated, true));
    return std::make_unique<Sequence>(std::move(parts));
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    const auto& list = field(j, "pretokenizers", where);
    for (size_t i = 0; i < list.size(); ++i) {
      std::string w = fmt::format("{}.pretokenizers[{}]", where, i);
      auto p = make_pre_tokenizer(list[i], w);
      if (!p) continue;
      LLMFT_CHECK(parts.empty() || !parts.back()->is_byte_level(), Status::kUnsupported,
                  "{}: a pre-tokenizer after ByteLevel is not supported (ByteLevel must come last)", w);
      parts.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  LLMFT_FAIL(Status::kUnsupported, "{}: pre-tokenizer type \"{}\" is not supported (supported: Split, ByteLevel, "
             "Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation, BertPreTokenizer, Sequence)", where, type);
}

}  // namespace llmft::tok
