// Token shards: packed rows of tokenized documents on disk, memory-mapped by every rank.
//
// A shard file is a 512-byte header then the payload:
//   header  magic "LLMFTTOK", format version, header size, vocabulary size, bytes per token (2 when the vocabulary
//           fits in uint16, else 4), seq_len, counts of tokens / documents / rows, payload size, CRC-32 of the
//           payload, the tokenizer's fingerprint (SHA-256 of tokenizer.json) and the preparation fingerprint
//           (template and data settings), all little-endian;
//   payload tokens[tokens], trained-mask bits[(tokens + 7) / 8], document offsets[documents + 1] (u64, into the
//           tokens), row offsets[rows + 1] (u64, into the documents; a row's documents are consecutive).
// Opening validates all of it (sizes against the file, offsets monotonic and in bounds, rows within seq_len, tokens
// within the vocabulary, the CRC) and refuses a shard prepared with another tokenizer, naming both.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/file.hpp"

namespace llmft::data {

constexpr uint32_t kShardVersion = 1;
constexpr uint32_t kShardHeaderBytes = 512;

struct ShardIdentity {
  std::string tokenizer;    // hex SHA-256 of tokenizer.json
  std::string preparation;  // hex SHA-256 of the template and data settings
};

class ShardWriter {
 public:
  ShardWriter(int64_t vocab_size, int64_t seq_len, ShardIdentity identity);
  // Appends one row made of documents (ids with their trained flags).
  void add_row(const std::vector<const std::vector<int32_t>*>& ids, const std::vector<const std::vector<uint8_t>*>& trained);
  int64_t tokens() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t rows() const { return static_cast<int64_t>(row_offsets_.size()) - 1; }
  // Writes the shard atomically.
  void write(const std::string& path) const;

 private:
  int64_t vocab_, seq_len_;
  ShardIdentity id_;
  std::vector<int32_t> tokens_;
  std::vector<uint8_t> mask_;
  std::vector<uint64_t> doc_offsets_{0}, row_offsets_{0};
};

class ShardReader {
 public:
  // Throws Error(kFormat) naming the file and the broken field; Error(kInvalidArgument) when `expect` does not
  // match what the shard was prepared with.
  ShardReader(const std::string& path, const ShardIdentity& expect);
  int64_t rows() const { return rows_; }
  int64_t documents() const { return docs_; }
  int64_t tokens() const { return tokens_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t vocab_size() const { return vocab_; }
  const std::string& path() const { return file_.path(); }
  // The documents of row r, as [first, last) document indices.
  std::pair<int64_t, int64_t> row(int64_t r) const;
  // Document d's ids and trained flags.
  void document(int64_t d, std::vector<int32_t>& ids, std::vector<uint8_t>& trained) const;

 private:
  MappedFile file_;
  int64_t vocab_ = 0, seq_len_ = 0, tokens_ = 0, docs_ = 0, rows_ = 0;
  uint32_t token_bytes_ = 0;
  const uint8_t* tok_ = nullptr;
  const uint8_t* mask_ = nullptr;
  const uint8_t* doc_off_ = nullptr;
  const uint8_t* row_off_ = nullptr;
  uint64_t u64(const uint8_t* base, int64_t i) const;
};

}  // namespace llmft::data
