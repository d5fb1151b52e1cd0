#include "tokenizer/flat_map.hpp"

#include "util/check.hpp"

namespace llmft::tok {

namespace {
size_t table_size_for(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  return cap;
}
}  // namespace

void StringIdMap::reserve(size_t n) {
  if (table_size_for(n) <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(table_size_for(n), Slot{});
  mask_ = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.value < 0) continue;
    size_t i = s.hash & mask_;
    while (slots_[i].value >= 0) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

void StringIdMap::grow() { reserve(std::max<size_t>(16, size_ * 2)); }

bool StringIdMap::insert(std::string_view key, int32_t value) {
  return insert(key, value, hash_bytes(key.data(), key.size()));
}

bool StringIdMap::insert(std::string_view key, int32_t value, uint64_t h) {
  LLMFT_ASSERT(value >= 0);
  if ((size_ + 1) * 2 > slots_.size()) grow();
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.value < 0) {
      LLMFT_CHECK(arena_.size() + key.size() < UINT32_MAX, Status::kUnsupported, "vocabulary larger than 4 GiB");
      s.hash = h;
      s.offset = static_cast<uint32_t>(arena_.size());
      s.length = static_cast<uint32_t>(key.size());
      s.value = value;
      arena_.append(key);
      ++size_;
      return true;
    }
    if (s.hash == h && s.length == key.size() && std::memcmp(arena_.data() + s.offset, key.data(), key.size()) == 0) {
      s.value = value;
      return false;
    }
  }
}

int32_t StringIdMap::find(std::string_view key, uint64_t h) const {
  if (slots_.empty()) return -1;
  for (size_t i = h & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.value < 0) return -1;
    if (s.hash == h && s.length == key.size() && std::memcmp(arena_.data() + s.offset, key.data(), key.size()) == 0)
      return s.value;
  }
}

void PairMap::reserve(size_t n) {
  if (table_size_for(n) <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(table_size_for(n), Slot{});
  mask_ = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.key == kEmpty) continue;
    size_t i = mix64(s.key) & mask_;
    while (slots_[i].key != kEmpty) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

void PairMap::grow() { reserve(std::max<size_t>(16, size_ * 2)); }

void PairMap::insert(int32_t a, int32_t b, int32_t rank, int32_t merged) {
  if ((size_ + 1) * 2 > slots_.size()) grow();
  uint64_t key = pack(a, b);
  for (size_t i = mix64(key) & mask_;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == kEmpty) {
      s = Slot{key, rank, merged};
      ++size_;
      return;
    }
    if (s.key == key) {
      // Hugging Face keeps the last occurrence of a duplicated merge (HashMap insert overwrites).
      s.rank = rank;
      s.merged = merged;
      return;
    }
  }
}

}  // namespace llmft::tok
