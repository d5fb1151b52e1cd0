#include "tokenizer/normalizer.hpp"

#include <utf8proc.h>

#include <cstdlib>
#include <vector>

#include "tokenizer/regex.hpp"
#include "tokenizer/unicode.hpp"
#include "util/check.hpp"
#include "util/utf8.hpp"

namespace llmft::tok {

namespace {

bool is_ascii(const std::string& s) {
  for (unsigned char c : s)
    if (c >= 0x80) return false;
  return true;
}

class UnicodeForm : public Normalizer {
 public:
  explicit UnicodeForm(std::string form) : form_(std::move(form)) {}
  void normalize(std::string& s) const override {
    if (is_ascii(s)) return;  // every normalization form leaves ASCII unchanged
    s = unicode_normalize(s, form_);
  }

 private:
  std::string form_;
};

class Lowercase : public Normalizer {
 public:
  // Rust's str::to_lowercase: full mappings (U+0130 -> "i\u0307") and the final-sigma rule.
  void normalize(std::string& s) const override {
    std::string out;
    out.reserve(s.size());
    std::vector<uint32_t> cps;
    for (size_t i = 0; i < s.size();) {
      int len;
      cps.push_back(decode_at(s, i, &len));
      i += static_cast<size_t>(len);
    }
    auto cased = [](uint32_t c) { return utf8proc_tolower(c) != static_cast<int32_t>(c) || utf8proc_toupper(c) != static_cast<int32_t>(c); };
    auto ignorable = [](uint32_t c) {
      auto k = utf8proc_category(static_cast<int32_t>(c));
      return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
             k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK || c == '\'' || c == 0x2019 || c == 0xB7 || c == ':';
    };
    for (size_t i = 0; i < cps.size(); ++i) {
      uint32_t c = cps[i];
      if (c == 0x130) {
        utf8::append(out, 'i');
        utf8::append(out, 0x307);
        continue;
      }
      if (c == 0x3A3) {
        size_t j = i;
        bool before = false, after = false;
        while (j > 0 && ignorable(cps[j - 1])) --j;
        before = j > 0 && cased(cps[j - 1]);
        size_t k = i + 1;
        while (k < cps.size() && ignorable(cps[k])) ++k;
        after = k < cps.size() && cased(cps[k]);
        utf8::append(out, before && !after ? 0x3C2 : 0x3C3);
        continue;
      }
      utf8::append(out, static_cast<uint32_t>(utf8proc_tolower(static_cast<int32_t>(c))));
    }
    s.swap(out);
  }
};

class Strip : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& s) const override {
    size_t b = 0, e = s.size();
    if (left_) {
      while (b < e) {
        int len;
        if (!is_whitespace(decode_at(s, b, &len))) break;
        b += static_cast<size_t>(len);
      }
    }
    if (right_) {
      while (e > b) {
        size_t p = e - 1;
        while (p > b && (static_cast<unsigned char>(s[p]) & 0xC0) == 0x80) --p;
        int len;
        if (!is_whitespace(decode_at(s, p, &len))) break;
        e = p;
      }
    }
    s = s.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

class StripAccents : public Normalizer {
 public:
  void normalize(std::string& s) const override {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      int len;
      uint32_t c = decode_at(s, i, &len);
      if (utf8proc_category(static_cast<int32_t>(c)) != UTF8PROC_CATEGORY_MN) out.append(s, i, static_cast<size_t>(len));
      i += static_cast<size_t>(len);
    }
    s.swap(out);
  }
};

class Replace : public Normalizer {
 public:
  Replace(std::string literal, std::unique_ptr<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  void normalize(std::string& s) const override {
    std::string out;
    size_t pos = 0;
    if (regex_) {
      size_t b, e;
      while (pos <= s.size() && regex_->find(s, pos, &b, &e)) {
        out.append(s, pos, b - pos);
        out += content_;
        if (e == b) {  // empty match: keep one character and move on
          if (b >= s.size()) {
            pos = s.size() + 1;
            break;
          }
          int len;
          decode_at(s, b, &len);
          out.append(s, b, static_cast<size_t>(len));
          e = b + static_cast<size_t>(len);
        }
        pos = e;
      }
      if (pos < s.size()) out.append(s, pos, std::string::npos);
    } else {
      if (literal_.empty()) return;
      for (size_t hit; (hit = s.find(literal_, pos)) != std::string::npos; pos = hit + literal_.size()) {
        out.append(s, pos, hit - pos);
        out += content_;
      }
      out.append(s, pos, std::string::npos);
    }
    s.swap(out);
  }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class Prepend : public Normalizer {
 public:
  explicit Prepend(std::string p) : prepend_(std::move(p)) {}
  void normalize(std::string& s) const override {
    if (!s.empty()) s.insert(0, prepend_);
  }

 private:
  std::string prepend_;
};

class Bert : public Normalizer {
 public:
  Bert(bool clean, bool chinese, bool strip_accents, bool lowercase)
      : clean_(clean), chinese_(chinese), strip_(strip_accents), lower_(lowercase) {}
  void normalize(std::string& s) const override {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      int len;
      uint32_t c = decode_at(s, i, &len);
      i += static_cast<size_t>(len);
      if (clean_) {
        auto k = utf8proc_category(static_cast<int32_t>(c));
        bool control = c != '\t' && c != '\n' && c != '\r' && (k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF ||
                                                               k == UTF8PROC_CATEGORY_CN || k == UTF8PROC_CATEGORY_CO);
        if (c == 0 || c == 0xFFFD || control) continue;
        if (is_whitespace(c)) c = ' ';
      }
      bool cjk = (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
                 (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
                 (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
      if (chinese_ && cjk) {
        out += ' ';
        utf8::append(out, c);
        out += ' ';
      } else {
        utf8::append(out, c);
      }
    }
    if (strip_) {
      out = unicode_normalize(out, "NFD");
      StripAccents().normalize(out);
    }
    if (lower_) Lowercase().normalize(out);
    s.swap(out);
  }

 private:
  bool clean_, chinese_, strip_, lower_;
};

class Sequence : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& s) const override {
    for (const auto& p : parts_) p->normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  LLMFT_CHECK(it != j.end(), Status::kFormat, "{}: missing key \"{}\"", where, key);
  return *it;
}

}  // namespace

std::string unicode_normalize(const std::string& s, const std::string& form) {
  int options = UTF8PROC_STABLE;
  if (form == "NFC") options |= UTF8PROC_COMPOSE;
  else if (form == "NFD") options |= UTF8PROC_DECOMPOSE;
  else if (form == "NFKC") options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
  else if (form == "NFKD") options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
  else LLMFT_FAIL(Status::kInvalidArgument, "unknown normalization form {}", form);
  utf8proc_uint8_t* out = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                    static_cast<utf8proc_ssize_t>(s.size()), &out,
                                    static_cast<utf8proc_option_t>(options));
  LLMFT_CHECK(n >= 0, Status::kInvalidArgument, "{} normalization failed: {}", form, utf8proc_errmsg(n));
  std::string result(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return result;
}

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  LLMFT_CHECK(j.is_object(), Status::kFormat, "{}: expected an object", where);
  std::string type = field(j, "type", where).get<std::string>();
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") return std::make_unique<UnicodeForm>(type);
  if (type == "Lowercase") return std::make_unique<Lowercase>();
  if (type == "Strip")
    return std::make_unique<Strip>(j.value("strip_left", true), j.value("strip_right", true));
  if (type == "StripAccents") return std::make_unique<StripAccents>();
  if (type == "Prepend") return std::make_unique<Prepend>(field(j, "prepend", where).get<std::string>());
  if (type == "Replace") {
    const auto& pat = field(j, "pattern", where);
    std::string content = field(j, "content", where).get<std::string>();
    if (pat.contains("String")) return std::make_unique<Replace>(pat["String"].get<std::string>(), nullptr, content);
    if (pat.contains("Regex"))
      return std::make_unique<Replace>("", std::make_unique<Regex>(pat["Regex"].get<std::string>()), content);
    LLMFT_FAIL(Status::kFormat, "{}: Replace pattern must hold \"String\" or \"Regex\"", where);
  }
  if (type == "BertNormalizer") {
    bool lower = j.value("lowercase", true);
    bool strip = j.contains("strip_accents") && !j["strip_accents"].is_null() ? j["strip_accents"].get<bool>() : lower;
    return std::make_unique<Bert>(j.value("clean_text", true), j.value("handle_chinese_chars", true), strip, lower);
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> parts;
    const auto& list = field(j, "normalizers", where);
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = make_normalizer(list[i], fmt::format("{}.normalizers[{}]", where, i));
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<Sequence>(std::move(parts));
  }
  LLMFT_FAIL(Status::kUnsupported, "{}: normalizer type \"{}\" is not supported (supported: NFC, NFD, NFKC, NFKD, "
             "Lowercase, Strip, StripAccents, Replace, Prepend, BertNormalizer, Sequence)", where, type);
}

}  // namespace llmft::tok
