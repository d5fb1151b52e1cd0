#include "data/shards.hpp"

#include <zlib.h>

#include <cstring>

#include "util/check.hpp"

namespace llmft::data {

namespace {

constexpr char kMagic[8] = {'L', 'L', 'M', 'F', 'T', 'T', 'O', 'K'};

// Header layout (offsets in bytes).
enum : size_t {
  kOffMagic = 0, kOffVersion = 8, kOffHeaderBytes = 12, kOffVocab = 16, kOffTokenBytes = 20, kOffSeqLen = 24,
  kOffTokens = 32, kOffDocs = 40, kOffRows = 48, kOffPayload = 56, kOffCrc = 64, kOffTokenizer = 72,
  kOffPreparation = 136, kHeaderUsed = 200
};

void put32(uint8_t* p, uint32_t v) { for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i)); }
void put64(uint8_t* p, uint64_t v) { for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i)); }
uint32_t get32(const uint8_t* p) { uint32_t v = 0; for (int i = 3; i >= 0; --i) v = (v << 8) | p[i]; return v; }
uint64_t get64(const uint8_t* p) { uint64_t v = 0; for (int i = 7; i >= 0; --i) v = (v << 8) | p[i]; return v; }

uint32_t crc32_of(const uint8_t* p, uint64_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<uint64_t>(n, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

std::string fixed(const uint8_t* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len]) ++len;
  return std::string(reinterpret_cast<const char*>(p), len);
}

}  // namespace

ShardWriter::ShardWriter(int64_t vocab_size, int64_t seq_len, ShardIdentity identity)
    : vocab_(vocab_size), seq_len_(seq_len), id_(std::move(identity)) {
  LLMFT_CHECK(id_.tokenizer.size() <= 64 && id_.preparation.size() <= 64, Status::kInternal, "fingerprint too long");
}

void ShardWriter::add_row(const std::vector<const std::vector<int32_t>*>& ids,
                          const std::vector<const std::vector<uint8_t>*>& trained) {
  int64_t row_tokens = 0;
  for (size_t d = 0; d < ids.size(); ++d) {
    const auto& x = *ids[d];
    const auto& m = *trained[d];
    LLMFT_ASSERT(x.size() == m.size());
    for (size_t t = 0; t < x.size(); ++t) {
      size_t bit = tokens_.size();
      if (bit % 8 == 0) mask_.push_back(0);
      if (m[t]) mask_.back() |= static_cast<uint8_t>(1u << (bit % 8));
      tokens_.push_back(x[t]);
    }
    row_tokens += static_cast<int64_t>(x.size());
    doc_offsets_.push_back(tokens_.size());
  }
  LLMFT_CHECK(row_tokens <= seq_len_, Status::kInternal, "a row of {} tokens exceeds seq_len {}", row_tokens, seq_len_);
  row_offsets_.push_back(doc_offsets_.size() - 1);
}

void ShardWriter::write(const std::string& path) const {
  const uint32_t tb = vocab_ <= 65536 ? 2 : 4;
  std::vector<uint8_t> payload;
  payload.reserve(tokens_.size() * tb + mask_.size() + 8 * (doc_offsets_.size() + row_offsets_.size()));
  for (int32_t t : tokens_) {
    for (uint32_t i = 0; i < tb; ++i) payload.push_back(static_cast<uint8_t>(static_cast<uint32_t>(t) >> (8 * i)));
  }
  payload.insert(payload.end(), mask_.begin(), mask_.end());
  for (const auto* offs : {&doc_offsets_, &row_offsets_}) {
    for (uint64_t v : *offs) {
      uint8_t b[8];
      put64(b, v);
      payload.insert(payload.end(), b, b + 8);
    }
  }
  uint8_t h[kShardHeaderBytes] = {};
  std::memcpy(h + kOffMagic, kMagic, 8);
  put32(h + kOffVersion, kShardVersion);
  put32(h + kOffHeaderBytes, kShardHeaderBytes);
  put32(h + kOffVocab, static_cast<uint32_t>(vocab_));
  put32(h + kOffTokenBytes, tb);
  put32(h + kOffSeqLen, static_cast<uint32_t>(seq_len_));
  put64(h + kOffTokens, tokens_.size());
  put64(h + kOffDocs, doc_offsets_.size() - 1);
  put64(h + kOffRows, row_offsets_.size() - 1);
  put64(h + kOffPayload, payload.size());
  put32(h + kOffCrc, crc32_of(payload.data(), payload.size()));
  std::memcpy(h + kOffTokenizer, id_.tokenizer.data(), id_.tokenizer.size());
  std::memcpy(h + kOffPreparation, id_.preparation.data(), id_.preparation.size());
  AtomicFileWriter w(path);
  w.write(h, sizeof h);
  w.write(payload.data(), payload.size());
  w.commit();
}

ShardReader::ShardReader(const std::string& path, const ShardIdentity& expect) : file_(path) {
  const uint8_t* p = file_.data();
  const uint64_t size = file_.size();
  LLMFT_CHECK(size >= kShardHeaderBytes && std::memcmp(p, kMagic, 8) == 0, Status::kFormat,
              "{} is not an llmft token shard (no LLMFTTOK header)", path);
  uint32_t version = get32(p + kOffVersion), header = get32(p + kOffHeaderBytes);
  LLMFT_CHECK(version == kShardVersion, Status::kFormat, "{}: shard format version {} (this llmft reads {})", path,
              version, kShardVersion);
  LLMFT_CHECK(header >= kHeaderUsed && header <= size, Status::kFormat, "{}: header size {} is invalid", path, header);
  vocab_ = get32(p + kOffVocab);
  token_bytes_ = get32(p + kOffTokenBytes);
  seq_len_ = get32(p + kOffSeqLen);
  tokens_ = static_cast<int64_t>(get64(p + kOffTokens));
  docs_ = static_cast<int64_t>(get64(p + kOffDocs));
  rows_ = static_cast<int64_t>(get64(p + kOffRows));
  const uint64_t payload = get64(p + kOffPayload);
  LLMFT_CHECK(token_bytes_ == 2 || token_bytes_ == 4, Status::kFormat, "{}: {} bytes per token (2 or 4)", path, token_bytes_);
  LLMFT_CHECK(token_bytes_ == (vocab_ <= 65536 ? 2u : 4u), Status::kFormat, "{}: {} bytes per token for a vocabulary of {}",
              path, token_bytes_, vocab_);
  LLMFT_CHECK(payload == size - header, Status::kFormat, "{}: payload of {} bytes but {} follow the header (truncated?)",
              path, payload, size - header);
  constexpr int64_t kMaxCount = int64_t{1} << 48;  // far beyond any file, and small enough that sizes cannot overflow
  LLMFT_CHECK(tokens_ >= 0 && tokens_ < kMaxCount && docs_ >= 0 && docs_ < kMaxCount && rows_ >= 0 && rows_ < kMaxCount,
              Status::kFormat, "{}: impossible counts ({} tokens, {} documents, {} rows)", path, tokens_, docs_, rows_);
  const unsigned __int128 need = static_cast<unsigned __int128>(tokens_) * token_bytes_ + (tokens_ + 7) / 8 +
                                 8 * (static_cast<unsigned __int128>(docs_) + 1 + rows_ + 1);
  LLMFT_CHECK(need == payload, Status::kFormat, "{}: counts ({} tokens, {} documents, {} rows) do not fit the payload", path,
              tokens_, docs_, rows_);
  const uint8_t* body = p + header;
  LLMFT_CHECK(crc32_of(body, payload) == get32(p + kOffCrc), Status::kFormat, "{}: payload CRC-32 mismatch (corrupted)", path);
  std::string tok = fixed(p + kOffTokenizer, 64), prep = fixed(p + kOffPreparation, 64);
  LLMFT_CHECK(tok == expect.tokenizer, Status::kInvalidArgument,
              "{} was prepared with another tokenizer (fingerprint {}, this job's is {}): prepare the data again with "
              "this tokenizer", path, tok, expect.tokenizer);
  LLMFT_CHECK(expect.preparation.empty() || prep == expect.preparation, Status::kInvalidArgument,
              "{} was prepared with other template or data settings (fingerprint {}, expected {})", path, prep,
              expect.preparation);
  tok_ = body;
  mask_ = tok_ + tokens_ * token_bytes_;
  doc_off_ = mask_ + (tokens_ + 7) / 8;
  row_off_ = doc_off_ + 8 * (docs_ + 1);
  // Offsets monotonic and in bounds; rows within seq_len; tokens within the vocabulary.
  LLMFT_CHECK(u64(doc_off_, 0) == 0 && u64(doc_off_, docs_) == static_cast<uint64_t>(tokens_), Status::kFormat,
              "{}: document offsets do not span the tokens", path);
  for (int64_t d = 0; d < docs_; ++d)
    LLMFT_CHECK(u64(doc_off_, d) <= u64(doc_off_, d + 1), Status::kFormat, "{}: document {} ends before it begins", path, d);
  LLMFT_CHECK(u64(row_off_, 0) == 0 && u64(row_off_, rows_) == static_cast<uint64_t>(docs_), Status::kFormat,
              "{}: row offsets do not span the documents", path);
  for (int64_t r = 0; r < rows_; ++r) {
    uint64_t a = u64(row_off_, r), b = u64(row_off_, r + 1);
    LLMFT_CHECK(a <= b, Status::kFormat, "{}: row {} ends before it begins", path, r);
    LLMFT_CHECK(u64(doc_off_, static_cast<int64_t>(b)) - u64(doc_off_, static_cast<int64_t>(a)) <= static_cast<uint64_t>(seq_len_),
                Status::kFormat, "{}: row {} holds more than seq_len {} tokens", path, r, seq_len_);
  }
  for (int64_t t = 0; t < tokens_; ++t) {
    uint32_t v = token_bytes_ == 2 ? static_cast<uint32_t>(tok_[2 * t] | (tok_[2 * t + 1] << 8)) : get32(tok_ + 4 * t);
    LLMFT_CHECK(v < static_cast<uint64_t>(vocab_), Status::kFormat, "{}: token {} is {}, outside the vocabulary of {}", path,
                t, v, vocab_);
  }
}

uint64_t ShardReader::u64(const uint8_t* base, int64_t i) const { return get64(base + 8 * i); }

std::pair<int64_t, int64_t> ShardReader::row(int64_t r) const {
  return {static_cast<int64_t>(u64(row_off_, r)), static_cast<int64_t>(u64(row_off_, r + 1))};
}

void ShardReader::document(int64_t d, std::vector<int32_t>& ids, std::vector<uint8_t>& trained) const {
  int64_t a = static_cast<int64_t>(u64(doc_off_, d)), b = static_cast<int64_t>(u64(doc_off_, d + 1));
  ids.resize(static_cast<size_t>(b - a));
  trained.resize(static_cast<size_t>(b - a));
  for (int64_t t = a; t < b; ++t) {
    ids[static_cast<size_t>(t - a)] = static_cast<int32_t>(
        token_bytes_ == 2 ? static_cast<uint32_t>(tok_[2 * t] | (tok_[2 * t + 1] << 8)) : get32(tok_ + 4 * t));
    trained[static_cast<size_t>(t - a)] = (mask_[t / 8] >> (t % 8)) & 1;
  }
}

}  // namespace llmft::data
