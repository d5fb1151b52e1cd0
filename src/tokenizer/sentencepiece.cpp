#include "tokenizer/sentencepiece.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/unicode.hpp"
#include "util/check.hpp"
#include "util/utf8.hpp"

namespace llmft::tok {

namespace {

// A minimal protobuf wire-format reader: enough for ModelProto's fields.
class Reader {
 public:
  Reader(std::string_view data, const std::string& origin) : p_(data), origin_(origin) {}
  bool done() const { return pos_ >= p_.size(); }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      LLMFT_CHECK(pos_ < p_.size(), Status::kFormat, "{}: truncated protobuf varint at byte {}", origin_, pos_);
      auto b = static_cast<uint8_t>(p_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    LLMFT_FAIL(Status::kFormat, "{}: malformed protobuf varint at byte {}", origin_, pos_);
  }
  std::string_view bytes(size_t n) {
    LLMFT_CHECK(n <= p_.size() - pos_, Status::kFormat, "{}: protobuf field of {} bytes overruns the file at byte {}",
                origin_, n, pos_);
    auto s = p_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  // Reads a field key; returns the field number and sets the wire type.
  uint32_t key(int* wire) {
    uint64_t k = varint();
    *wire = static_cast<int>(k & 7);
    return static_cast<uint32_t>(k >> 3);
  }
  std::string_view length_delimited() { return bytes(static_cast<size_t>(varint())); }
  float fixed32_float() {
    auto s = bytes(4);
    float f;
    std::memcpy(&f, s.data(), 4);
    return f;
  }
  void skip(int wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: bytes(8); break;
      case 2: length_delimited(); break;
      case 5: bytes(4); break;
      default: LLMFT_FAIL(Status::kFormat, "{}: unsupported protobuf wire type {} at byte {}", origin_, wire, pos_);
    }
  }

 private:
  std::string_view p_;
  size_t pos_ = 0;
  const std::string& origin_;
};

struct Piece {
  std::string text;
  float score = 0;
  int type = 1;  // NORMAL=1, UNKNOWN=2, CONTROL=3, USER_DEFINED=4, UNUSED=5, BYTE=6
};

// Splits s into its code points' byte offsets.
std::vector<size_t> char_starts(const std::string& s) {
  std::vector<size_t> out;
  for (size_t i = 0; i < s.size();) {
    out.push_back(i);
    int len;
    decode_at(s, i, &len);
    i += static_cast<size_t>(len);
  }
  return out;
}

}  // namespace

std::string sentencepiece_to_tokenizer_json(std::string_view proto, const std::string& origin) {
  std::vector<Piece> pieces;
  int model_type = 1;  // TrainerSpec.model_type: UNIGRAM=1 (default), BPE=2, WORD=3, CHAR=4
  int64_t unk_id = 0, bos_id = 1, eos_id = 2;
  Reader r(proto, origin);
  while (!r.done()) {
    int wire;
    uint32_t field = r.key(&wire);
    if (field == 1 && wire == 2) {  // SentencePiece
      Reader pr(r.length_delimited(), origin);
      Piece p;
      while (!pr.done()) {
        int w;
        uint32_t f = pr.key(&w);
        if (f == 1 && w == 2) p.text = std::string(pr.length_delimited());
        else if (f == 2 && w == 5) p.score = pr.fixed32_float();
        else if (f == 3 && w == 0) p.type = static_cast<int>(pr.varint());
        else pr.skip(w);
      }
      LLMFT_CHECK(utf8::valid(p.text), Status::kFormat, "{}: piece {} is not valid UTF-8", origin, pieces.size());
      pieces.push_back(std::move(p));
    } else if (field == 2 && wire == 2) {  // TrainerSpec
      Reader tr(r.length_delimited(), origin);
      while (!tr.done()) {
        int w;
        uint32_t f = tr.key(&w);
        if (f == 3 && w == 0) model_type = static_cast<int>(tr.varint());
        else if (f == 40 && w == 0) unk_id = static_cast<int64_t>(tr.varint());
        else if (f == 41 && w == 0) bos_id = static_cast<int64_t>(tr.varint());
        else if (f == 42 && w == 0) eos_id = static_cast<int64_t>(tr.varint());
        else tr.skip(w);
      }
    } else {
      r.skip(wire);
    }
  }
  LLMFT_CHECK(!pieces.empty(), Status::kFormat, "{}: no pieces: not a SentencePiece model", origin);
  LLMFT_CHECK(model_type == 2, Status::kUnsupported,
              "{}: SentencePiece model type {} is not supported (only BPE, type 2; Unigram models need a tokenizer.json)",
              origin, model_type == 1 ? "Unigram" : std::to_string(model_type));
  auto piece_at = [&](int64_t id) -> std::string {
    LLMFT_CHECK(id >= 0 && static_cast<size_t>(id) < pieces.size(), Status::kFormat, "{}: special id {} out of range",
                origin, id);
    return pieces[static_cast<size_t>(id)].text;
  };

  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < pieces.size(); ++i) {
    vocab[pieces[i].text] = i;
    index.emplace(pieces[i].text, i);
  }
  // Merges as Hugging Face's SentencePieceExtractor derives them.
  struct Merge {
    size_t left, right;
    float score;
  };
  std::vector<Merge> merges;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::string& s = pieces[i].text;
    std::vector<Merge> local;
    auto starts = char_starts(s);
    for (size_t k = 1; k < starts.size(); ++k) {
      auto l = index.find(s.substr(0, starts[k])), rr = index.find(s.substr(starts[k]));
      if (l != index.end() && rr != index.end()) local.push_back({l->second, rr->second, pieces[i].score});
    }
    std::sort(local.begin(), local.end(),
              [](const Merge& a, const Merge& b) { return a.left != b.left ? a.left < b.left : a.right < b.right; });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) { return a.score > b.score; });
  nlohmann::ordered_json merge_list = nlohmann::ordered_json::array();
  for (const Merge& m : merges) merge_list.push_back(pieces[m.left].text + " " + pieces[m.right].text);

  nlohmann::ordered_json added = nlohmann::ordered_json::array();
  auto add_token = [&](int64_t id, bool special) {
    added.push_back({{"id", id}, {"content", piece_at(id)}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", special}});
  };
  add_token(unk_id, true);
  add_token(bos_id, true);
  add_token(eos_id, true);
  for (size_t i = 0; i < pieces.size(); ++i)
    if (pieces[i].type == 4) add_token(static_cast<int64_t>(i), false);

  using J = nlohmann::ordered_json;
  const std::string meta = "\xE2\x96\x81";
  std::string bos = piece_at(bos_id);
  auto replace = [](const std::string& from, const std::string& to) {
    J r;
    r["type"] = "Replace";
    r["pattern"]["String"] = from;
    r["content"] = to;
    return r;
  };
  J j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  J prepend;
  prepend["type"] = "Prepend";
  prepend["prepend"] = meta;
  j["normalizer"]["type"] = "Sequence";
  j["normalizer"]["normalizers"] = J::array({prepend, replace(" ", meta)});
  j["pre_tokenizer"] = nullptr;
  J special, seq;
  special["SpecialToken"]["id"] = bos;
  special["SpecialToken"]["type_id"] = 0;
  seq["Sequence"]["id"] = "A";
  seq["Sequence"]["type_id"] = 0;
  J& post = j["post_processor"];
  post["type"] = "TemplateProcessing";
  post["single"] = J::array({special, seq});
  post["pair"] = J::array();
  post["special_tokens"][bos]["id"] = bos;
  post["special_tokens"][bos]["ids"] = J::array({bos_id});
  post["special_tokens"][bos]["tokens"] = J::array({bos});
  J byte_fallback, fuse, strip;
  byte_fallback["type"] = "ByteFallback";
  fuse["type"] = "Fuse";
  strip["type"] = "Strip";
  strip["content"] = " ";
  strip["start"] = 1;
  strip["stop"] = 0;
  j["decoder"]["type"] = "Sequence";
  j["decoder"]["decoders"] = J::array({replace(meta, " "), byte_fallback, fuse, strip});
  J& model = j["model"];
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = piece_at(unk_id);
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = true;
  model["byte_fallback"] = true;
  model["vocab"] = std::move(vocab);
  model["merges"] = std::move(merge_list);
  return j.dump();
}

}  // namespace llmft::tok
