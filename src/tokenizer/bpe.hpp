// The BPE model of tokenizer.json ("model": {"type": "BPE"}), with Hugging Face's semantics: merges applied
// lowest rank first (leftmost on ties), ignore_merges, byte_fallback, unk_token with fuse_unk,
// continuing_subword_prefix and end_of_word_suffix; merges in both serialisations ("a b" and ["a", "b"]).
//
// Byte-level vocabularies (GPT-2 alphabet) are converted to raw bytes at load, so encoding never builds the mapped
// text: a piece's bytes are looked up directly (tiktoken's representation; the ids are identical).
//
// Merge core: a word's symbols sit in a small array with the rank of each adjacent pair; every step merges the
// lowest-rank pair and updates its two neighbours' ranks, O(n^2) in the word length n. Words are short (median 4
// bytes in English text), where this beats a heap; words longer than kHeapThreshold symbols use a heap over a
// linked list, O(n log n), as Hugging Face does. Both give the same result (tests compare them).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <simdjson.h>

#include "tokenizer/flat_map.hpp"

namespace llmft::tok {

class BpeModel {
 public:
  static constexpr size_t kHeapThreshold = 96;

  // `byte_level`: pieces arrive as raw bytes (the pre-tokenizer chain ends with ByteLevel).
  BpeModel(simdjson::dom::element model, bool byte_level, const std::string& where);

  // Appends the ids of one piece and, if ends != nullptr, the end offset (in bytes of `piece`) of each token.
  void tokenize(std::string_view piece, std::vector<int32_t>& ids, std::vector<uint32_t>* ends) const;

  // Same, forcing one merge algorithm (tests).
  void tokenize_with(std::string_view piece, bool heap, std::vector<int32_t>& ids, std::vector<uint32_t>& ends) const;

  // Vocabulary access in tokenizer.json's spelling (byte-level tokens in their mapped form).
  int32_t token_to_id(std::string_view token) const;
  const std::string& id_to_token(int32_t id) const;  // empty for ids without a token
  size_t size() const { return tokens_.size(); }     // max id + 1
  size_t vocab_count() const { return vocab_count_; }  // entries of the vocabulary (Hugging Face's get_vocab_size)
  bool byte_level() const { return byte_level_; }
  uint64_t cache_id() const { return cache_id_; }

 private:
  struct Sym {
    int32_t id;
    uint32_t end;  // end offset of the symbol in the piece
  };
  void initial_symbols(std::string_view piece, std::vector<Sym>& syms) const;
  void merge_linear(std::vector<Sym>& syms) const;
  void merge_heap(std::vector<Sym>& syms) const;
  int32_t lookup_raw(std::string_view raw) const { return raw_.find(raw); }

  bool byte_level_ = false;
  bool ignore_merges_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  int32_t unk_id_ = -1;
  std::string prefix_, suffix_;  // continuing_subword_prefix, end_of_word_suffix
  std::vector<std::string> tokens_;
  StringIdMap raw_;                 // raw spelling (bytes for byte-level) -> id
  PairMap merges_;
  int32_t single_byte_[256];        // byte-level: id of each one-byte token; char mode: id of each ASCII char
  int32_t fallback_byte_[256];      // id of "<0xXX>", or -1
  uint64_t cache_id_;
  size_t vocab_count_ = 0;
};

}  // namespace llmft::tok
