// llmft::Tokenizer: loads a Hugging Face tokenizer.json (BPE models: byte-level like Llama 3 / Qwen, and
// SentencePiece-style like Llama 2 / Mistral) and produces the ids Hugging Face tokenizers produces.
//
// Invalid UTF-8 input is repaired before encoding: each maximal ill-formed subsequence becomes U+FFFD (the rule of
// JavaScript's TextDecoder and Rust's from_utf8_lossy), so ids match Hugging Face on the repaired text; offsets
// refer to the repaired text.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llmft/export.hpp"

namespace llmft {

namespace tok {
class TokenizerImpl;
}

// What tokenizer_config.json (beside tokenizer.json) says about special tokens and chat formatting.
struct TokenizerConfig {
  std::string bos_token, eos_token, pad_token, unk_token;  // empty when not declared
  bool add_bos_token = false, add_eos_token = false;
  std::string chat_template;                               // the default template ("" when none)
  std::vector<std::pair<std::string, std::string>> named_chat_templates;  // e.g. {"tool_use", ...}
};

class LLMFT_API Tokenizer {
 public:
  // `path` is a tokenizer.json file, a SentencePiece BPE tokenizer.model, or a folder holding one of them (the JSON
  // is preferred); tokenizer_config.json is read from the same folder when present. Throws llmft::Error naming the file and key on malformed or unsupported content.
  static Tokenizer from_file(const std::string& path);
  // Same, from the JSON text itself (config may be empty).
  static Tokenizer from_json(std::string_view tokenizer_json, std::string_view tokenizer_config_json = {},
                             const std::string& origin = "tokenizer.json");

  // Token ids of `text`; with add_special_tokens the post-processor adds its tokens (e.g. BOS).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = true) const;
  // Same, with the byte span [begin, end) of `text` each token came from ((0, 0) for inserted special tokens).
  std::vector<int32_t> encode_with_offsets(std::string_view text, bool add_special_tokens,
                                           std::vector<std::pair<uint32_t, uint32_t>>& offsets) const;
  // Many texts on `threads` threads (0: all cores); the result is in input order.
  std::vector<std::vector<int32_t>> encode_batch(const std::vector<std::string>& texts, bool add_special_tokens,
                                                 size_t threads = 0) const;

  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;
  // The chat template rendered as transformers' apply_chat_template(messages, tokenize=False) renders it:
  // `messages_json` is a JSON array of {"role", "content", ...} objects; `extra_json` a JSON object of further
  // context keys (tools, enable_thinking, ...); `template_source` a Jinja template, empty for the tokenizer's own
  // (tokenizer_config.json's chat_template). Throws naming what is wrong: not JSON, no role, no template, a template
  // error with its line.
  std::string apply_chat_template(std::string_view messages_json, bool add_generation_prompt,
                                  std::string_view extra_json = {}, const std::string& template_source = "") const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  std::string id_to_token(int32_t id) const;  // "" for an unknown id
  bool is_special(int32_t id) const;
  size_t vocab_size() const;  // 1 + the largest id (model and added tokens)

  // Special ids from tokenizer_config.json (or well-known token names), -1 when absent.
  int32_t bos_id() const;
  int32_t eos_id() const;
  int32_t pad_id() const;
  const TokenizerConfig& config() const;

  // Hex SHA-256 of tokenizer.json's bytes: what a token shard records to refuse another tokenizer's data.
  const std::string& fingerprint() const;
  const std::string& origin() const;

  const tok::TokenizerImpl& impl() const { return *impl_; }

 private:
  explicit Tokenizer(std::shared_ptr<const tok::TokenizerImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const tok::TokenizerImpl> impl_;
};

}  // namespace llmft
