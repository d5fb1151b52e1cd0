// Prompt and chat formatting for training and generation: the model's own chat template (Jinja, rendered as
// Hugging Face renders it) and the Alpaca / Dolly instruction formats, turned into token ids with a mask of the
// tokens the model is trained to produce.
//
// Masks are computed on the rendered text, then mapped onto the tokens of the whole text through offsets, so the
// ids are exactly tokenizer.encode(rendered) — what the model sees at inference — never a concatenation of
// separately encoded pieces. BOS is added by the tokenizer's post-processor only when the rendered text does not
// already start with it (templates like Llama 3.1's write it themselves): no doubled BOS.
//
// Which part of a chat is an assistant turn: where the template marks it with transformers' {% generation %} tags,
// exactly those spans (what apply_chat_template(return_assistant_tokens_mask=True) masks). Otherwise, for turn k, if
// the template is prefix-stable there
// (render(messages[:k], add_generation_prompt) is a prefix of render(messages[:k+1]), itself a prefix of the whole
// rendering), the turn is everything between the two, less trailing white space: the reasoning block and the
// end-of-turn token included. Otherwise (Qwen3 drops earlier turns' reasoning, DeepSeek-R1's generation prompt adds
// <think>) the turn is the part of the rendering that changes when only that message's content changes, extended over
// a special token that directly follows it (the end-of-turn token).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "llmft/tokenizer.hpp"

namespace llmft::jinja {
class Template;
}

namespace llmft::tok {

using Json = nlohmann::ordered_json;

struct Encoded {
  std::vector<int32_t> ids;
  std::vector<uint8_t> trained;  // 1 where the token is a training target (same length as ids)
};

struct Span {
  size_t begin, end;  // bytes of the rendered text
};

// The context a chat template renders with, prepared as transformers' apply_chat_template prepares it (the
// renderer of record for Hugging Face templates): `extra`'s keys (tools, enable_thinking, bos_token, ...), then
// `messages` with keys whose value is null dropped and each message's reasoning (the first non-null of
// reasoning_content, thinking, reasoning) under both `thinking` (first key) and `reasoning_content` (the names
// templates read it by), then add_generation_prompt.
Json chat_context(const Json& messages, bool add_generation_prompt, const Json& extra = Json::object());

class ChatFormatter {
 public:
  // template_source: Jinja text; empty means the tokenizer's default chat template (tokenizer_config.json).
  // Throws Error(kInvalidArgument) when there is none.
  ChatFormatter(Tokenizer tokenizer, const std::string& template_source = "");
  ~ChatFormatter();
  ChatFormatter(ChatFormatter&&) noexcept;

  // The template's text for `messages` ([{role, content, ...}]); `extra` adds context keys (tools,
  // enable_thinking, date_string, ...). bos_token / eos_token come from tokenizer_config.json.
  std::string render(const Json& messages, bool add_generation_prompt, const Json& extra = Json::object()) const;

  // Rendered conversation and the byte spans of its assistant turns (all of them, or only the last).
  std::string render_with_spans(const Json& messages, bool last_turn_only, std::vector<Span>& spans,
                                const Json& extra = Json::object()) const;

  // Training example: ids of the whole conversation, assistant turns marked trained.
  Encoded encode(const Json& messages, bool last_turn_only = false, const Json& extra = Json::object()) const;
  // Generation prompt: the conversation so far plus the template's assistant header.
  std::vector<int32_t> encode_prompt(const Json& messages, const Json& extra = Json::object()) const;

  const Tokenizer& tokenizer() const { return tokenizer_; }
  // "<|im_end|>"-style end-of-turn id: the special token that closes an assistant turn (-1 if unknown).
  int32_t end_of_turn_id() const { return end_of_turn_id_; }

 private:
  Json context(const Json& messages, bool add_generation_prompt, const Json& extra) const;
  Tokenizer tokenizer_;
  std::unique_ptr<jinja::Template> template_;
  int32_t end_of_turn_id_ = -1;
};

// Encodes `text` with `spans` marked trained (a token is trained if its bytes overlap a span), adding BOS unless
// text already starts with it, and appending `append_id` (trained) when >= 0.
Encoded encode_with_spans(const Tokenizer& tok, const std::string& text, const std::vector<Span>& spans,
                          int32_t append_id = -1);

// Instruction formats (Stanford Alpaca's prompt, Databricks Dolly's): prompt text for the model to continue.
std::string alpaca_prompt(const std::string& instruction, const std::string& input);
std::string dolly_prompt(const std::string& instruction, const std::string& context);
// Dolly's training text ends the response with "\n\n### End".
std::string dolly_response(const std::string& response);

// prompt + completion, the completion (and EOS, when add_eos) trained; with train_on_prompt everything is trained.
Encoded encode_completion(const Tokenizer& tok, const std::string& prompt, const std::string& completion, bool add_eos,
                          bool train_on_prompt = false);

}  // namespace llmft::tok
