// SentencePiece BPE models (tokenizer.model, protobuf) converted to the tokenizer.json Hugging Face's LlamaConverter
// writes for them: the pieces as the vocabulary, merges derived from the pieces' scores (every split of a piece into
// two pieces, ordered by the merged piece's score, highest first), byte fallback, <unk>/<s>/</s> as special added
// tokens, Prepend + Replace normalizers and the matching decoders. Lets llmft read checkpoints that ship only
// tokenizer.model (Llama 2 and its derivatives). Unigram models are rejected by name.
#pragma once

#include <string>
#include <string_view>

namespace llmft::tok {

// tokenizer.json text for the SentencePiece model in `model_proto` (the bytes of tokenizer.model).
std::string sentencepiece_to_tokenizer_json(std::string_view model_proto, const std::string& origin);

}  // namespace llmft::tok
