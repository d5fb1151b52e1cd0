// Post-processors ("post_processor": TemplateProcessing, ByteLevel, BertProcessing, RobertaProcessing, Sequence)
// and decoders ("decoder": ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, BPEDecoder, WordPiece,
// Sequence) of tokenizer.json, with Hugging Face's semantics.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace llmft::tok {

// Adds special tokens around one encoded sequence (applied only with add_special_tokens).
class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // ids / offsets of the sequence in, the processed sequence out. Offsets of inserted tokens are (0, 0).
  virtual void process(std::vector<int32_t>& ids, std::vector<std::pair<uint32_t, uint32_t>>* offsets) const = 0;
};

using TokenLookup = std::function<int32_t(const std::string&)>;
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& j, const TokenLookup& lookup,
                                                   const std::string& where);

// Turns token strings back into text: decode_chain maps the list of tokens to a list of strings, which are joined.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where);

}  // namespace llmft::tok
