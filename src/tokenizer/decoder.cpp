#include "tokenizer/decoder.hpp"

#include "tokenizer/unicode.hpp"
#include "util/check.hpp"
#include "util/utf8.hpp"

namespace llmft::tok {

namespace {

const nlohmann::json& field(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  LLMFT_CHECK(it != j.end(), Status::kFormat, "{}: missing key \"{}\"", where, key);
  return *it;
}

// ---- post-processors ----

class TemplateProcessing : public PostProcessor {
 public:
  struct Item {
    bool is_sequence;
    std::vector<int32_t> ids;  // special token ids
  };
  explicit TemplateProcessing(std::vector<Item> items) : items_(std::move(items)) {}
  void process(std::vector<int32_t>& ids, std::vector<std::pair<uint32_t, uint32_t>>* offsets) const override {
    std::vector<int32_t> out;
    std::vector<std::pair<uint32_t, uint32_t>> out_off;
    out.reserve(ids.size() + 4);
    for (const Item& it : items_) {
      if (it.is_sequence) {
        out.insert(out.end(), ids.begin(), ids.end());
        if (offsets) out_off.insert(out_off.end(), offsets->begin(), offsets->end());
      } else {
        out.insert(out.end(), it.ids.begin(), it.ids.end());
        if (offsets) out_off.insert(out_off.end(), it.ids.size(), {0, 0});
      }
    }
    ids.swap(out);
    if (offsets) offsets->swap(out_off);
  }

 private:
  std::vector<Item> items_;
};

class NoOpProcessing : public PostProcessor {  // ByteLevel: trims offsets only; ids unchanged
 public:
  void process(std::vector<int32_t>&, std::vector<std::pair<uint32_t, uint32_t>>*) const override {}
};

class SequenceProcessing : public PostProcessor {
 public:
  explicit SequenceProcessing(std::vector<std::unique_ptr<PostProcessor>> parts) : parts_(std::move(parts)) {}
  void process(std::vector<int32_t>& ids, std::vector<std::pair<uint32_t, uint32_t>>* offsets) const override {
    for (const auto& p : parts_) p->process(ids, offsets);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> parts_;
};

int32_t special_id(const nlohmann::json& pair, const TokenLookup& lookup, const std::string& where) {
  // ["[CLS]", 101]
  LLMFT_CHECK(pair.is_array() && pair.size() == 2, Status::kFormat, "{}: expected [token, id]", where);
  return pair[1].get<int32_t>();
}

// ---- decoders ----

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out += to;
  }
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      size_t mark = bytes.size();
      if (!byte_level_decode(t, bytes)) {  // a token outside the alphabet goes through as its UTF-8
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, utf8::repair(bytes));
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool prepend) : replacement_(std::move(replacement)), prepend_(prepend) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) replace_all(tokens[i], replacement_, i == 0 && prepend_ ? "" : " ");
  }

 private:
  std::string replacement_;
  bool prepend_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) replace_all(t, from_, to_);
  }

 private:
  std::string from_, to_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  // Runs of <0xXX> tokens become the bytes they name; a run that is not valid UTF-8 becomes one U+FFFD per byte.
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    size_t pending_count = 0;
    auto flush = [&] {
      if (pending_count == 0) return;
      if (utf8::valid(pending)) {
        out.push_back(pending);
      } else {
        for (size_t k = 0; k < pending_count; ++k) out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
      pending_count = 0;
    };
    for (auto& t : tokens) {
      unsigned v = 0;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && std::isxdigit(static_cast<unsigned char>(t[3])) &&
          std::isxdigit(static_cast<unsigned char>(t[4]))) {
        v = static_cast<unsigned>(std::stoul(t.substr(3, 2), nullptr, 16));
        pending.push_back(static_cast<char>(v));
        ++pending_count;
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens.swap(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, all);
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    // Removes up to start_ leading and stop_ trailing characters equal to content_ from every token.
    for (auto& t : tokens) {
      size_t b = 0;
      for (size_t k = 0; k < start_ && t.compare(b, content_.size(), content_) == 0; ++k) b += content_.size();
      size_t e = t.size();
      for (size_t k = 0; k < stop_ && e >= b + content_.size() && t.compare(e - content_.size(), content_.size(), content_) == 0; ++k)
        e -= content_.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string content_;
  size_t start_, stop_;
};

class BpeSuffixDecoder : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) replace_all(tokens[i], suffix_, i + 1 == tokens.size() ? "" : " ");
  }

 private:
  std::string suffix_;
};

class WordPieceDecoder : public Decoder {
 public:
  WordPieceDecoder(std::string prefix, bool cleanup) : prefix_(std::move(prefix)), cleanup_(cleanup) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto& t = tokens[i];
      if (i != 0) {
        if (t.compare(0, prefix_.size(), prefix_) == 0)
          t.erase(0, prefix_.size());
        else
          t.insert(0, " ");
      }
      if (cleanup_) {
        for (const char* p : {" .", " ?", " !", " ,"}) replace_all(t, p, std::string(1, p[1]));
        replace_all(t, " ' ", "'");
        replace_all(t, " n't", "n't");
        replace_all(t, " 'm", "'m");
        replace_all(t, " do not", " don't");
        replace_all(t, " 's", "'s");
        replace_all(t, " 've", "'ve");
        replace_all(t, " 're", "'re");
      }
    }
  }

 private:
  std::string prefix_;
  bool cleanup_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

}  // namespace

std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const TokenLookup& lookup,
                                                   const std::string& where) {
  if (j.is_null()) return nullptr;
  std::string type = field(j, "type", where).get<std::string>();
  if (type == "ByteLevel") return std::make_unique<NoOpProcessing>();
  if (type == "TemplateProcessing") {
    const auto& single = field(j, "single", where);
    const auto& specials = j.value("special_tokens", nlohmann::json::object());
    std::vector<TemplateProcessing::Item> items;
    for (size_t i = 0; i < single.size(); ++i) {
      const auto& piece = single[i];
      std::string w = fmt::format("{}.single[{}]", where, i);
      if (piece.contains("Sequence")) {
        items.push_back({true, {}});
      } else if (piece.contains("SpecialToken")) {
        std::string name = piece["SpecialToken"].at("id").get<std::string>();
        auto it = specials.find(name);
        LLMFT_CHECK(it != specials.end(), Status::kFormat, "{}: special token {:?} is not in special_tokens", w, name);
        items.push_back({false, it->at("ids").get<std::vector<int32_t>>()});
      } else {
        LLMFT_FAIL(Status::kFormat, "{}: expected Sequence or SpecialToken", w);
      }
    }
    return std::make_unique<TemplateProcessing>(std::move(items));
  }
  if (type == "BertProcessing" || type == "RobertaProcessing") {
    int32_t cls = special_id(field(j, "cls", where), lookup, where + ".cls");
    int32_t sep = special_id(field(j, "sep", where), lookup, where + ".sep");
    return std::make_unique<TemplateProcessing>(
        std::vector<TemplateProcessing::Item>{{false, {cls}}, {true, {}}, {false, {sep}}});
  }
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PostProcessor>> parts;
    const auto& list = field(j, "processors", where);
    for (size_t i = 0; i < list.size(); ++i) {
      auto p = make_post_processor(list[i], lookup, fmt::format("{}.processors[{}]", where, i));
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceProcessing>(std::move(parts));
  }
  LLMFT_FAIL(Status::kUnsupported, "{}: post-processor type \"{}\" is not supported (supported: TemplateProcessing, "
             "ByteLevel, BertProcessing, RobertaProcessing, Sequence)", where, type);
}

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  std::string type = field(j, "type", where).get<std::string>();
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") {
    std::string rep = j.value("replacement", std::string("\xE2\x96\x81"));
    bool prepend = true;
    if (j.contains("prepend_scheme")) prepend = j["prepend_scheme"].get<std::string>() != "never";
    else if (j.contains("add_prefix_space")) prepend = j["add_prefix_space"].get<bool>();
    return std::make_unique<MetaspaceDecoder>(rep, prepend);
  }
  if (type == "Replace") {
    const auto& pat = field(j, "pattern", where);
    LLMFT_CHECK(pat.contains("String"), Status::kUnsupported, "{}: Replace decoder with a Regex pattern", where);
    return std::make_unique<ReplaceDecoder>(pat["String"].get<std::string>(), field(j, "content", where).get<std::string>());
  }
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip")
    return std::make_unique<StripDecoder>(field(j, "content", where).get<std::string>(), j.value("start", 0),
                                          j.value("stop", 0));
  if (type == "BPEDecoder") return std::make_unique<BpeSuffixDecoder>(j.value("suffix", std::string("</w>")));
  if (type == "WordPiece")
    return std::make_unique<WordPieceDecoder>(j.value("prefix", std::string("##")), j.value("cleanup", true));
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> parts;
    const auto& list = field(j, "decoders", where);
    for (size_t i = 0; i < list.size(); ++i) {
      auto d = make_decoder(list[i], fmt::format("{}.decoders[{}]", where, i));
      if (d) parts.push_back(std::move(d));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  LLMFT_FAIL(Status::kUnsupported, "{}: decoder type \"{}\" is not supported (supported: ByteLevel, Metaspace, Replace, "
             "ByteFallback, Fuse, Strip, BPEDecoder, WordPiece, Sequence)", where, type);
}

}  // namespace llmft::tok
