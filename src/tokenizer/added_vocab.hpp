// Added tokens (tokenizer.json "added_tokens"): found in the text before normalization (or after it, for tokens with
// normalized=true), leftmost-longest, with Hugging Face's lstrip / rstrip / single_word rules, and never split by
// the pre-tokenizer or the model.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llmft::tok {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// A segment of text: either an added token (id >= 0) or text for the normal pipeline (id == -1).
struct Segment {
  int32_t id;
  size_t begin, end;
};

// Leftmost-longest matcher over a set of strings (a byte trie).
class TokenTrie {
 public:
  void add(std::string_view s, int32_t value);
  bool empty() const { return nodes_.size() <= 1; }
  // Longest match starting at text[pos]; returns its length (0 if none) and sets *value.
  size_t longest_at(std::string_view text, size_t pos, int32_t* value) const;
  bool may_start(unsigned char c) const { return first_[c]; }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
    int32_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  bool first_[256] = {};
};

class AddedVocab {
 public:
  // `normalize` turns a normalized=true token's content into the form it is matched in.
  template <typename NormalizeFn>
  void build(std::vector<AddedToken> tokens, NormalizeFn&& normalize) {
    tokens_ = std::move(tokens);
    for (size_t i = 0; i < tokens_.size(); ++i) {
      const auto& t = tokens_[i];
      if (t.content.empty()) continue;
      if (t.normalized)
        normalized_.add(normalize(t.content), static_cast<int32_t>(i));
      else
        raw_.add(t.content, static_cast<int32_t>(i));
    }
  }

  // Hugging Face's AddedVocabulary::find_matches over text, with trie raw (normalized=false) or normalized.
  void split(std::string_view text, bool normalized_set, std::vector<Segment>& out) const;
  bool has_normalized() const { return !normalized_.empty(); }
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  std::vector<AddedToken> tokens_;
  TokenTrie raw_, normalized_;
};

}  // namespace llmft::tok
