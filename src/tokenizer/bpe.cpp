#include "tokenizer/bpe.hpp"

#include <atomic>
#include <climits>
#include <queue>

#include "tokenizer/unicode.hpp"
#include "util/check.hpp"

namespace llmft::tok {

namespace {

std::atomic<uint64_t> g_next_cache_id{1};

std::string_view sv(simdjson::dom::element e, const std::string& where) {
  std::string_view out;
  auto err = e.get_string().get(out);
  LLMFT_CHECK(!err, Status::kFormat, "{}: expected a string", where);
  return out;
}

// Per-thread cache of pieces already tokenized: piece -> (id, end) pairs in one pool. Cleared when it grows
// past its budget; a thread that alternates between two tokenizers simply rebuilds it.
struct WordCache {
  static constexpr size_t kMaxPool = 1 << 22;  // int32 entries (16 MiB)
  uint64_t owner = 0;
  StringIdMap index;  // piece -> offset into pool
  std::vector<int32_t> pool;  // [n, id0, end0, id1, end1, ...]
  void reset(uint64_t id) {
    owner = id;
    index = StringIdMap();
    pool.clear();
  }
};

WordCache& word_cache(uint64_t owner) {
  thread_local WordCache cache;
  if (cache.owner != owner || cache.pool.size() > WordCache::kMaxPool) cache.reset(owner);
  return cache;
}

}  // namespace

BpeModel::BpeModel(simdjson::dom::element model, bool byte_level, const std::string& where)
    : byte_level_(byte_level), cache_id_(g_next_cache_id.fetch_add(1)) {
  auto opt_string = [&](const char* key) -> std::string {
    simdjson::dom::element e;
    if (model[key].get(e) || e.is_null()) return {};
    return std::string(sv(e, fmt::format("{}.{}", where, key)));
  };
  auto opt_bool = [&](const char* key) {
    simdjson::dom::element e;
    bool b = false;
    if (model[key].get(e) || e.is_null()) return false;
    LLMFT_CHECK(!e.get_bool().get(b), Status::kFormat, "{}.{}: expected true or false", where, key);
    return b;
  };
  {
    simdjson::dom::element d;
    if (!model["dropout"].get(d) && !d.is_null()) {
      double p = 0;
      LLMFT_CHECK(!d.get_double().get(p), Status::kFormat, "{}.dropout: expected a number", where);
      LLMFT_CHECK(p == 0.0, Status::kUnsupported,
                  "{}.dropout = {}: BPE dropout makes encoding random; llmft encodes deterministically", where, p);
    }
  }
  ignore_merges_ = opt_bool("ignore_merges");
  byte_fallback_ = opt_bool("byte_fallback");
  fuse_unk_ = opt_bool("fuse_unk");
  prefix_ = opt_string("continuing_subword_prefix");
  suffix_ = opt_string("end_of_word_suffix");
  LLMFT_CHECK(!byte_level_ || (prefix_.empty() && suffix_.empty()), Status::kUnsupported,
              "{}: continuing_subword_prefix / end_of_word_suffix with a ByteLevel pre-tokenizer", where);

  // Vocabulary.
  simdjson::dom::object vocab;
  LLMFT_CHECK(!model["vocab"].get(vocab), Status::kFormat, "{}.vocab: missing or not an object", where);
  std::vector<std::pair<std::string_view, int64_t>> entries;
  entries.reserve(vocab.size());
  int64_t max_id = -1;
  for (auto kv : vocab) {
    int64_t id = -1;
    LLMFT_CHECK(!kv.value.get_int64().get(id) && id >= 0 && id < INT32_MAX, Status::kFormat,
                "{}.vocab[{:?}]: id must be a non-negative integer", where, std::string(kv.key));
    entries.emplace_back(kv.key, id);
    max_id = std::max(max_id, id);
  }
  tokens_.resize(static_cast<size_t>(max_id + 1));
  vocab_count_ = entries.size();
  raw_.reserve(entries.size());
  {
    // Batches: spell and hash, prefetch the table slots, then insert (the table is far larger than the caches).
    constexpr size_t kBatch = 64;
    std::string spelled[kBatch];
    uint64_t hashes[kBatch];
    bool ok[kBatch];
    for (size_t at = 0; at < entries.size(); at += kBatch) {
      size_t n = std::min(kBatch, entries.size() - at);
      for (size_t k = 0; k < n; ++k) {
        const auto& [key, id] = entries[at + k];
        tokens_[static_cast<size_t>(id)] = std::string(key);
        spelled[k].clear();
        // Tokens outside the byte alphabet can never come out of a byte-level pipeline; they stay decodable.
        ok[k] = byte_level_ ? byte_level_decode(key, spelled[k]) : (spelled[k].assign(key), true);
        hashes[k] = hash_bytes(spelled[k].data(), spelled[k].size());
        raw_.prefetch(hashes[k]);
      }
      for (size_t k = 0; k < n; ++k)
        if (ok[k]) raw_.insert(spelled[k], static_cast<int32_t>(entries[at + k].second), hashes[k]);
    }
  }

  // Special ids.
  std::string unk = opt_string("unk_token");
  if (!unk.empty()) unk_id_ = token_to_id(unk);
  for (int b = 0; b < 256; ++b) {
    fallback_byte_[b] = raw_.find(fmt::format("<0x{:02X}>", b));
    if (byte_level_) {
      char c = static_cast<char>(b);
      single_byte_[b] = raw_.find(std::string_view(&c, 1));
    } else {
      char c = static_cast<char>(b);
      single_byte_[b] = b < 0x80 ? raw_.find(std::string_view(&c, 1)) : -1;
    }
  }

  // Merges: rank = position in the list; the merged token is a + b (minus b's continuing prefix). Lookups go in
  // batches whose table slots are prefetched first: the vocabulary table is far larger than the caches.
  simdjson::dom::array merges;
  // As Hugging Face tokenizers: a BPE model without its merges list is malformed (an empty list is fine).
  LLMFT_CHECK(!model["merges"].get(merges), Status::kFormat, "{}: the BPE model has no \"merges\" list", where);
  {
    merges_.reserve(merges.size());
    struct Pending {
      std::string_view a, b;
      std::string ra, rb, rm;  // lookup spellings of a, b and a+b
      uint64_t ha, hb, hm;
      int32_t ia, ib, im;
    };
    constexpr size_t kBatch = 64;
    std::vector<Pending> batch(kBatch);
    size_t fill = 0;
    int32_t rank = 0;
    auto fail_at = [&](int32_t r, const std::string& what) {
      LLMFT_FAIL(Status::kFormat, "{}.merges[{}]: {}", where, r, what);
    };
    auto spell = [&](std::string_view tok, std::string& out) {
      out.clear();
      if (!byte_level_) {
        out.assign(tok);
        return true;
      }
      return byte_level_decode(tok, out);
    };
    auto flush = [&] {
      for (size_t k = 0; k < fill; ++k) {
        Pending& p = batch[k];
        int32_t r = rank - static_cast<int32_t>(fill) + static_cast<int32_t>(k);
        if (!spell(p.a, p.ra)) fail_at(r, fmt::format("token {:?} is not in the vocabulary", std::string(p.a)));
        if (!spell(p.b, p.rb)) fail_at(r, fmt::format("token {:?} is not in the vocabulary", std::string(p.b)));
        std::string_view btail = p.rb;
        if (!prefix_.empty() && btail.substr(0, prefix_.size()) == prefix_) btail.remove_prefix(prefix_.size());
        p.rm.assign(p.ra).append(btail);
        p.ha = hash_bytes(p.ra.data(), p.ra.size());
        p.hb = hash_bytes(p.rb.data(), p.rb.size());
        p.hm = hash_bytes(p.rm.data(), p.rm.size());
        raw_.prefetch(p.ha);
        raw_.prefetch(p.hb);
        raw_.prefetch(p.hm);
      }
      for (size_t k = 0; k < fill; ++k) {
        Pending& p = batch[k];
        int32_t r = rank - static_cast<int32_t>(fill) + static_cast<int32_t>(k);
        int32_t ia = raw_.find(p.ra, p.ha), ib = raw_.find(p.rb, p.hb), im = raw_.find(p.rm, p.hm);
        if (ia < 0) fail_at(r, fmt::format("token {:?} is not in the vocabulary", std::string(p.a)));
        if (ib < 0) fail_at(r, fmt::format("token {:?} is not in the vocabulary", std::string(p.b)));
        if (im < 0) fail_at(r, fmt::format("merged token {:?} is not in the vocabulary", std::string(p.a) + std::string(p.b)));
        p.ia = ia;
        p.ib = ib;
        p.im = im;
        merges_.prefetch(ia, ib);
      }
      for (size_t k = 0; k < fill; ++k) {
        const Pending& p = batch[k];
        merges_.insert(p.ia, p.ib, rank - static_cast<int32_t>(fill) + static_cast<int32_t>(k), p.im);
      }
      fill = 0;
    };
    for (auto m : merges) {
      Pending& p = batch[fill];
      std::string_view s;
      if (!m.get_string().get(s)) {
        size_t sp = s.find(' ');
        if (sp == std::string_view::npos || s.find(' ', sp + 1) != std::string_view::npos)
          fail_at(rank, fmt::format("{:?} is not two tokens separated by one space", std::string(s)));
        p.a = s.substr(0, sp);
        p.b = s.substr(sp + 1);
      } else {
        simdjson::dom::array pair;
        if (m.get_array().get(pair) || pair.size() != 2 || pair.at(0).get_string().get(p.a) ||
            pair.at(1).get_string().get(p.b))
          fail_at(rank, "expected \"a b\" or [\"a\", \"b\"]");
      }
      ++rank;
      if (++fill == kBatch) flush();
    }
    flush();
  }
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  if (!byte_level_) return raw_.find(token);
  std::string raw;
  if (!byte_level_decode(token, raw)) {
    for (size_t i = 0; i < tokens_.size(); ++i)  // not in the byte alphabet: rare, slow path
      if (tokens_[i] == token) return static_cast<int32_t>(i);
    return -1;
  }
  return raw_.find(raw);
}

const std::string& BpeModel::id_to_token(int32_t id) const {
  static const std::string empty;
  return id >= 0 && static_cast<size_t>(id) < tokens_.size() ? tokens_[static_cast<size_t>(id)] : empty;
}

// Hugging Face's BPE::merge_word before merging: one symbol per character (byte, for byte-level), looked up with
// the subword prefix / word suffix; unknown characters become byte-fallback tokens, or unk (fused if asked), or are
// dropped when the model has neither.
void BpeModel::initial_symbols(std::string_view piece, std::vector<Sym>& syms) const {
  syms.clear();
  const bool plain = prefix_.empty() && suffix_.empty();
  int32_t pending_unk = -1;
  uint32_t pending_end = 0;
  std::string key;
  for (size_t i = 0; i < piece.size();) {
    int len = 1;
    int32_t id;
    auto c = static_cast<unsigned char>(piece[i]);
    if (byte_level_) {
      id = single_byte_[c];
    } else if (c < 0x80 && plain) {
      id = single_byte_[c];
    } else {
      decode_at(piece, i, &len);
      key.clear();
      if (i > 0) key += prefix_;
      key.append(piece.substr(i, static_cast<size_t>(len)));
      if (i + static_cast<size_t>(len) == piece.size()) key += suffix_;
      id = raw_.find(key);
    }
    uint32_t end = static_cast<uint32_t>(i + static_cast<size_t>(len));
    if (id >= 0) {
      if (pending_unk >= 0) {
        syms.push_back({pending_unk, pending_end});
        pending_unk = -1;
      }
      syms.push_back({id, end});
    } else {
      bool done = false;
      if (byte_fallback_) {
        // The character's bytes as <0xXX> tokens, if all exist. (For byte-level input the "character" is the
        // alphabet code point of the byte, as Hugging Face sees it.)
        std::string bytes = byte_level_ ? byte_level_alphabet().byte_to_utf8[c] : std::string(piece.substr(i, static_cast<size_t>(len)));
        bool all = true;
        for (unsigned char b : bytes) all = all && fallback_byte_[b] >= 0;
        if (all) {
          uint32_t start = static_cast<uint32_t>(i);
          for (size_t k = 0; k < bytes.size(); ++k)
            syms.push_back({fallback_byte_[static_cast<unsigned char>(bytes[k])],
                            std::min<uint32_t>(end, start + static_cast<uint32_t>(k) + 1)});
          done = true;
        }
      }
      if (!done && unk_id_ >= 0) {
        if (pending_unk >= 0 && !fuse_unk_) syms.push_back({pending_unk, pending_end});
        pending_unk = unk_id_;
        pending_end = end;
      }
    }
    i += static_cast<size_t>(len);
  }
  if (pending_unk >= 0) syms.push_back({pending_unk, pending_end});
}

void BpeModel::merge_linear(std::vector<Sym>& s) const {
  size_t n = s.size();
  if (n < 2) return;
  constexpr int32_t kNone = INT32_MAX;
  // rank[i], merged[i]: the pair (s[i], s[i+1]).
  int32_t rank_buf[kHeapThreshold], merged_buf[kHeapThreshold];
  int32_t* rank = rank_buf;
  int32_t* merged = merged_buf;
  for (size_t i = 0; i + 1 < n; ++i)
    if (!merges_.find(s[i].id, s[i + 1].id, &rank[i], &merged[i])) rank[i] = kNone;
  for (;;) {
    int32_t best = kNone;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < n; ++i) {
      if (rank[i] < best) {
        best = rank[i];
        bi = i;
      }
    }
    if (best == kNone) break;
    s[bi].id = merged[bi];
    s[bi].end = s[bi + 1].end;
    for (size_t k = bi + 1; k + 1 < n; ++k) s[k] = s[k + 1];
    for (size_t k = bi + 1; k + 2 < n; ++k) {
      rank[k] = rank[k + 1];
      merged[k] = merged[k + 1];
    }
    --n;
    if (bi + 1 < n) {
      if (!merges_.find(s[bi].id, s[bi + 1].id, &rank[bi], &merged[bi])) rank[bi] = kNone;
    }
    if (bi > 0) {
      if (!merges_.find(s[bi - 1].id, s[bi].id, &rank[bi - 1], &merged[bi - 1])) rank[bi - 1] = kNone;
    }
  }
  s.resize(n);
}

void BpeModel::merge_heap(std::vector<Sym>& s) const {
  size_t n = s.size();
  if (n < 2) return;
  std::vector<int32_t> prev(n), next(n);
  std::vector<bool> alive(n, true);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Cand {
    int32_t rank, pos, merged;
    bool operator<(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand> q;
  auto push = [&](int32_t pos) {
    int32_t nx = next[static_cast<size_t>(pos)];
    if (nx < 0) return;
    int32_t r, m;
    if (merges_.find(s[static_cast<size_t>(pos)].id, s[static_cast<size_t>(nx)].id, &r, &m)) q.push({r, pos, m});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!q.empty()) {
    Cand c = q.top();
    q.pop();
    auto p = static_cast<size_t>(c.pos);
    if (!alive[p] || next[p] < 0) continue;
    auto nx = static_cast<size_t>(next[p]);
    int32_t r, m;
    // Stale entry: the pair at pos changed since it was queued.
    if (!merges_.find(s[p].id, s[nx].id, &r, &m) || m != c.merged) continue;
    s[p].id = m;
    s[p].end = s[nx].end;
    alive[nx] = false;
    next[p] = next[nx];
    if (next[nx] >= 0) prev[static_cast<size_t>(next[nx])] = c.pos;
    if (prev[p] >= 0) push(prev[p]);
    push(c.pos);
  }
  size_t w = 0;
  for (size_t i = 0; i < n; ++i)
    if (alive[i]) s[w++] = s[i];
  s.resize(w);
}

void BpeModel::tokenize_with(std::string_view piece, bool heap, std::vector<int32_t>& ids,
                             std::vector<uint32_t>& ends) const {
  std::vector<Sym> syms;
  initial_symbols(piece, syms);
  if (heap || syms.size() > kHeapThreshold)
    merge_heap(syms);
  else
    merge_linear(syms);
  for (const Sym& y : syms) {
    ids.push_back(y.id);
    ends.push_back(y.end);
  }
}

void BpeModel::tokenize(std::string_view piece, std::vector<int32_t>& ids, std::vector<uint32_t>* ends) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    int32_t id = raw_.find(piece);
    if (id >= 0) {
      ids.push_back(id);
      if (ends) ends->push_back(static_cast<uint32_t>(piece.size()));
      return;
    }
  }
  constexpr size_t kMaxCachedPiece = 64;
  WordCache* cache = nullptr;
  uint64_t h = 0;
  if (piece.size() <= kMaxCachedPiece) {
    cache = &word_cache(cache_id_);
    h = hash_bytes(piece.data(), piece.size());
    int32_t at = cache->index.find(piece, h);
    if (at >= 0) {
      const int32_t* e = cache->pool.data() + at;
      int32_t n = e[0];
      for (int32_t k = 0; k < n; ++k) {
        ids.push_back(e[1 + 2 * k]);
        if (ends) ends->push_back(static_cast<uint32_t>(e[2 + 2 * k]));
      }
      return;
    }
  }
  thread_local std::vector<Sym> syms;
  initial_symbols(piece, syms);
  if (syms.size() > kHeapThreshold)
    merge_heap(syms);
  else
    merge_linear(syms);
  for (const Sym& y : syms) {
    ids.push_back(y.id);
    if (ends) ends->push_back(y.end);
  }
  if (cache) {
    auto at = static_cast<int32_t>(cache->pool.size());
    cache->pool.push_back(static_cast<int32_t>(syms.size()));
    for (const Sym& y : syms) {
      cache->pool.push_back(y.id);
      cache->pool.push_back(static_cast<int32_t>(y.end));
    }
    cache->index.insert(piece, at);
  }
}

}  // namespace llmft::tok
