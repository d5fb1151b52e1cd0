// The tokenizer pipeline behind llmft::Tokenizer, in Hugging Face's order:
//   added tokens (raw) -> normalizer -> added tokens (normalized) -> pre-tokenizer -> BPE -> post-processor
// Every stage is built from its tokenizer.json section at load; anything llmft does not implement is rejected then,
// by name, never silently approximated.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "llmft/tokenizer.hpp"
#include "tokenizer/added_vocab.hpp"
#include "tokenizer/bpe.hpp"
#include "tokenizer/decoder.hpp"
#include "tokenizer/normalizer.hpp"
#include "tokenizer/pre_tokenizer.hpp"

namespace llmft::tok {

class TokenizerImpl {
 public:
  TokenizerImpl(std::string_view json, std::string_view config_json, const std::string& origin);

  // ids (and offsets when requested) of text, appended.
  void encode(std::string_view text, bool add_special, std::vector<int32_t>& ids,
              std::vector<std::pair<uint32_t, uint32_t>>* offsets) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const;

  int32_t token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;
  bool is_special(int32_t id) const;
  size_t vocab_size() const { return vocab_size_; }

  const TokenizerConfig& config() const { return config_; }
  int32_t bos_id = -1, eos_id = -1, pad_id = -1;
  std::string origin;
  const std::string& fingerprint() const;  // computed on first use (hashing 10 MB costs ~30 ms)

  const BpeModel& model() const { return *model_; }
  const PreTokenizer* pre_tokenizer() const { return pre_tokenizer_.get(); }

 private:
  void encode_text(std::string_view text, size_t base, std::vector<int32_t>& ids,
                   std::vector<std::pair<uint32_t, uint32_t>>* offsets) const;
  void load_config(std::string_view config_json);

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  AddedVocab added_;
  std::unordered_map<std::string, int32_t> added_by_content_;
  std::unordered_map<int32_t, size_t> added_by_id_;  // id -> index in added_.tokens()
  size_t vocab_size_ = 0;
  TokenizerConfig config_;
  std::string json_;  // kept for the fingerprint
  mutable std::once_flag fingerprint_once_;
  mutable std::string fingerprint_;
};

}  // namespace llmft::tok
