// The unit that flows between the tokenizer's stages: a piece of text with its span in the original input.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace llmft::tok {

struct Piece {
  std::string_view text;  // what the next stage sees (a view into the input, a normalized segment or the arena)
  uint32_t begin = 0;     // span [begin, end) of the original input this piece came from
  uint32_t end = 0;
  bool exact = true;      // text is byte-for-byte the original input[begin, end): offsets inside it are exact
};

// Owns the strings that normalizers and pre-tokenizers create; views into it stay valid while it lives
// (std::deque never moves its elements on push_back).
class PieceArena {
 public:
  std::string_view keep(std::string s) {
    strings_.push_back(std::move(s));
    return strings_.back();
  }
  void clear() { strings_.clear(); }

 private:
  std::deque<std::string> strings_;
};

// A sub-piece of p covering p.text[from, to), with its original span computed as exactly as p allows.
inline Piece sub_piece(const Piece& p, size_t from, size_t to) {
  Piece q;
  q.text = p.text.substr(from, to - from);
  q.exact = p.exact;
  if (p.exact) {
    q.begin = p.begin + static_cast<uint32_t>(from);
    q.end = p.begin + static_cast<uint32_t>(to);
  } else {
    uint32_t len = p.end - p.begin;
    q.begin = p.begin + std::min<uint32_t>(static_cast<uint32_t>(from), len);
    q.end = std::max(q.begin, p.begin + std::min<uint32_t>(static_cast<uint32_t>(to), len));
  }
  return q;
}

using PieceList = std::vector<Piece>;

}  // namespace llmft::tok
