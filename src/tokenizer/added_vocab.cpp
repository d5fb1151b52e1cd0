#include "tokenizer/added_vocab.hpp"

#include <algorithm>

#include "tokenizer/unicode.hpp"

namespace llmft::tok {

void TokenTrie::add(std::string_view s, int32_t value) {
  int32_t node = 0;
  for (unsigned char c : s) {
    auto& next = nodes_[static_cast<size_t>(node)].next;
    auto it = std::lower_bound(next.begin(), next.end(), c, [](const auto& p, unsigned char k) { return p.first < k; });
    if (it != next.end() && it->first == c) {
      node = it->second;
    } else {
      auto child = static_cast<int32_t>(nodes_.size());
      next.insert(it, {c, child});
      nodes_.emplace_back();
      node = child;
    }
  }
  first_[static_cast<unsigned char>(s[0])] = true;
  // The first definition of a duplicated content wins, as in Hugging Face's pattern list order.
  if (nodes_[static_cast<size_t>(node)].value < 0) nodes_[static_cast<size_t>(node)].value = value;
}

size_t TokenTrie::longest_at(std::string_view text, size_t pos, int32_t* value) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto& next = nodes_[static_cast<size_t>(node)].next;
    auto c = static_cast<unsigned char>(text[i]);
    auto it = std::lower_bound(next.begin(), next.end(), c, [](const auto& p, unsigned char k) { return p.first < k; });
    if (it == next.end() || it->first != c) break;
    node = it->second;
    if (nodes_[static_cast<size_t>(node)].value >= 0) {
      best = i + 1 - pos;
      *value = nodes_[static_cast<size_t>(node)].value;
    }
  }
  return best;
}

namespace {

// Last code point before byte `end` / first at `begin`.
uint32_t last_cp(std::string_view t, size_t end) {
  size_t p = end - 1;
  while (p > 0 && (static_cast<unsigned char>(t[p]) & 0xC0) == 0x80) --p;
  int len;
  return decode_at(t, p, &len);
}

}  // namespace

void AddedVocab::split(std::string_view text, bool normalized_set, std::vector<Segment>& out) const {
  const TokenTrie& trie = normalized_set ? normalized_ : raw_;
  size_t start_offset = 0;
  if (!trie.empty()) {
    for (size_t pos = 0; pos < text.size();) {
      if (!trie.may_start(static_cast<unsigned char>(text[pos]))) {
        ++pos;
        continue;
      }
      int32_t idx = -1;
      size_t len = trie.longest_at(text, pos, &idx);
      if (len == 0) {
        ++pos;
        continue;
      }
      const AddedToken& tok = tokens_[static_cast<size_t>(idx)];
      size_t start = pos, stop = pos + len;
      pos = stop;  // the automaton resumes after the match whatever the strip rules do
      if (tok.single_word) {
        bool start_space = start == 0 || !is_word_char(last_cp(text, start));
        int l;
        bool stop_space = stop == text.size() || !is_word_char(decode_at(text, stop, &l));
        if (!start_space || !stop_space) continue;
      }
      if (tok.lstrip) {
        size_t s = start;
        while (s > 0) {
          size_t p = s - 1;
          while (p > 0 && (static_cast<unsigned char>(text[p]) & 0xC0) == 0x80) --p;
          int l;
          if (!is_whitespace(decode_at(text, p, &l))) break;
          s = p;
        }
        start = std::max(s, start_offset);
      }
      if (tok.rstrip) {
        while (stop < text.size()) {
          int l;
          if (!is_whitespace(decode_at(text, stop, &l))) break;
          stop += static_cast<size_t>(l);
        }
      }
      if (start_offset < start) out.push_back({-1, start_offset, start});
      out.push_back({tok.id, start, stop});
      start_offset = stop;
    }
  }
  if (start_offset != text.size() || text.empty()) out.push_back({-1, start_offset, text.size()});
}

}  // namespace llmft::tok
