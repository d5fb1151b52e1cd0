// Open-addressing hash tables for the tokenizer's hot paths: byte string -> id (vocabulary) and
// (left id, right id) -> (rank, merged id) (BPE merges). Both are built once at load and then only read, so they
// need no deletion and are safe to share between threads.
//
// Performance notes: std::unordered_map<std::string, int> costs an allocation per key and a pointer chase per
// probe. Linear probing over a power-of-two table at load factor <= 0.5, with all keys in one arena, keeps a probe
// to one or two cache lines; the measured effect is in bench/README.md (tokenizer load and encode).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace llmft::tok {

inline uint64_t hash_bytes(const char* p, size_t n) {
  // 64-bit multiply-mix over 8-byte words (wyhash-style folding); good enough for short tokens, not for adversaries
  // choosing keys (vocabularies are fixed at load time).
  const uint64_t k = 0x9E3779B97F4A7C15ull;
  uint64_t h = 0xA0761D6478BD642Full ^ (n * k);
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * k;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  std::memcpy(&w, p, n);
  h = (h ^ w ^ (static_cast<uint64_t>(n) << 56)) * k;
  h ^= h >> 32;
  return h * 0xD6E8FEB86659FD93ull;
}

inline uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ull;
  x ^= x >> 33;
  return x;
}

// Byte string -> int32 id. Keys are copied into an arena.
class StringIdMap {
 public:
  void reserve(size_t n);
  // Inserts or overwrites; returns false if the key already existed (value is then replaced).
  bool insert(std::string_view key, int32_t value);
  // -1 when absent.
  int32_t find(std::string_view key) const { return find(key, hash_bytes(key.data(), key.size())); }
  int32_t find(std::string_view key, uint64_t h) const;
  size_t size() const { return size_; }
  void prefetch(uint64_t h) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[h & mask_]);
  }
  // Inserts with a precomputed hash (batched loaders prefetch first).
  bool insert(std::string_view key, int32_t value, uint64_t h);

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t offset = 0, length = 0;
    int32_t value = -1;
  };
  void grow();
  std::vector<Slot> slots_;
  std::string arena_;
  size_t size_ = 0;
  size_t mask_ = 0;
};

// (a, b) -> (rank, merged id); lookups of absent pairs return false.
class PairMap {
 public:
  void reserve(size_t n);
  void insert(int32_t a, int32_t b, int32_t rank, int32_t merged);
  void prefetch(int32_t a, int32_t b) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[mix64(pack(a, b)) & mask_], 1);
  }
  bool find(int32_t a, int32_t b, int32_t* rank, int32_t* merged) const {
    if (slots_.empty()) return false;
    uint64_t key = pack(a, b);
    for (size_t i = mix64(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) {
        *rank = s.rank;
        *merged = s.merged;
        return true;
      }
      if (s.key == kEmpty) return false;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~0ull;
  static uint64_t pack(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  struct Slot {
    uint64_t key = kEmpty;
    int32_t rank = 0, merged = 0;
  };
  void grow();
  std::vector<Slot> slots_;
  size_t size_ = 0;
  size_t mask_ = 0;
};

}  // namespace llmft::tok
