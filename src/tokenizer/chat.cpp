#include "tokenizer/chat.hpp"

#include "tokenizer/jinja.hpp"
#include "util/check.hpp"

namespace llmft::tok {

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.size() >= p.size() && s.compare(0, p.size(), p) == 0; }

size_t rtrim_end(const std::string& s, size_t begin, size_t end) {
  while (end > begin && (s[end - 1] == ' ' || s[end - 1] == '\n' || s[end - 1] == '\t' || s[end - 1] == '\r')) --end;
  return end;
}

}  // namespace

Json chat_context(const Json& messages, bool add_generation_prompt, const Json& extra) {
  LLMFT_CHECK(messages.is_array(), Status::kInvalidArgument, "chat messages must be a list of {{role, content}}");
  Json ctx = Json::object();
  for (auto it = extra.begin(); it != extra.end(); ++it) ctx[it.key()] = it.value();
  Json prepared = Json::array();
  for (const Json& m : messages) {
    LLMFT_CHECK(m.is_object(), Status::kInvalidArgument, "chat messages must be objects, got {}", m.dump());
    Json kept = Json::object();
    for (auto it = m.begin(); it != m.end(); ++it)
      if (!it.value().is_null()) kept[it.key()] = it.value();
    const Json* reasoning = nullptr;
    for (const char* key : {"reasoning_content", "thinking", "reasoning"})
      if (!reasoning && kept.contains(key)) reasoning = &kept.at(key);
    if (!reasoning) {
      prepared.push_back(std::move(kept));
      continue;
    }
    Json aliased = Json::object();
    aliased["thinking"] = kept.contains("thinking") ? kept.at("thinking") : *reasoning;
    for (auto it = kept.begin(); it != kept.end(); ++it)
      if (it.key() != "thinking") aliased[it.key()] = it.value();
    aliased["reasoning_content"] = *reasoning;
    prepared.push_back(std::move(aliased));
  }
  ctx["messages"] = std::move(prepared);
  ctx["add_generation_prompt"] = add_generation_prompt;
  return ctx;
}

ChatFormatter::ChatFormatter(Tokenizer tokenizer, const std::string& template_source) : tokenizer_(std::move(tokenizer)) {
  std::string src = template_source.empty() ? tokenizer_.config().chat_template : template_source;
  LLMFT_CHECK(!src.empty(), Status::kInvalidArgument,
              "{} has no chat template (its tokenizer_config.json has no chat_template): give a tokenizer that has "
              "one (tokenizer.path=DIR), or format the data as instructions (data.template=alpaca)",
              tokenizer_.origin());
  template_ = std::make_unique<jinja::Template>(src);
  for (const char* name : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<｜end▁of▁sentence｜>"}) {
    if (auto id = tokenizer_.token_to_id(name); id && tokenizer_.is_special(*id) && src.find(name) != std::string::npos) {
      end_of_turn_id_ = *id;
      break;
    }
  }
  if (end_of_turn_id_ < 0) end_of_turn_id_ = tokenizer_.eos_id();
}

ChatFormatter::~ChatFormatter() = default;
ChatFormatter::ChatFormatter(ChatFormatter&&) noexcept = default;

Json ChatFormatter::context(const Json& messages, bool add_generation_prompt, const Json& extra) const {
  Json ctx = chat_context(messages, add_generation_prompt, extra);
  const auto& cfg = tokenizer_.config();
  // The tokenizer's special tokens, unless `extra` names them (transformers: {**special_tokens_map, **kwargs}).
  auto set_default = [&](const char* key, const std::string& value) {
    if (!value.empty() && !ctx.contains(key)) ctx[key] = value;
  };
  if (!ctx.contains("bos_token")) ctx["bos_token"] = cfg.bos_token;
  if (!ctx.contains("eos_token")) ctx["eos_token"] = cfg.eos_token;
  set_default("pad_token", cfg.pad_token);
  set_default("unk_token", cfg.unk_token);
  return ctx;
}

std::string ChatFormatter::render(const Json& messages, bool add_generation_prompt, const Json& extra) const {
  return template_->render(context(messages, add_generation_prompt, extra));
}

std::string ChatFormatter::render_with_spans(const Json& messages, bool last_turn_only, std::vector<Span>& spans,
                                             const Json& extra) const {
  spans.clear();
  if (template_->has_generation_spans()) {
    // The template marks the assistant's text itself: its {% generation %} spans, as transformers masks them.
    std::vector<std::pair<size_t, size_t>> marked;
    std::string text = template_->render(context(messages, false, extra), jinja::RenderOptions{}, &marked);
    size_t first = 0;
    if (last_turn_only) {  // the spans the last assistant turn adds: those the conversation before it lacks
      size_t last = messages.size();
      while (last > 0 && messages[last - 1].value("role", "") != "assistant") --last;
      if (last > 0) {
        std::vector<std::pair<size_t, size_t>> before;
        Json earlier = Json::array();
        for (size_t i = 0; i + 1 < last; ++i) earlier.push_back(messages[i]);
        template_->render(context(earlier, false, extra), jinja::RenderOptions{}, &before);
        first = std::min(before.size(), marked.size());
      } else {
        first = marked.size();
      }
    }
    for (size_t i = first; i < marked.size(); ++i) spans.push_back({marked[i].first, marked[i].second});
    return text;
  }
  const std::string full = render(messages, false, extra);
  size_t cursor = 0;
  size_t last = messages.size();
  for (size_t k = 0; k < messages.size(); ++k)
    if (messages[k].value("role", "") == "assistant") last = k;
  for (size_t k = 0; k < messages.size(); ++k) {
    const Json& m = messages[k];
    if (m.value("role", "") != "assistant" || (last_turn_only && k != last)) continue;
    Json before = Json::array(), upto = Json::array();
    for (size_t i = 0; i < k; ++i) before.push_back(messages[i]);
    upto = before;
    upto.push_back(m);
    std::string a = render(before, true, extra), b = render(upto, false, extra);
    Span span{0, 0};
    bool found = false;
    if (starts_with(full, b) && starts_with(b, a) && a.size() >= cursor) {
      span = {a.size(), rtrim_end(b, a.size(), b.size())};
      found = true;
    } else if (m.contains("content") && m["content"].is_string()) {
      // What changes when only this message's content (and the names of its tool calls) change.
      Json changed = messages;
      changed[k]["content"] = "\x02llmft-turn-" + std::to_string(k) + "\x03";
      const bool calls = m.contains("tool_calls") && m["tool_calls"].is_array() && !m["tool_calls"].empty();
      if (calls) {
        for (size_t j = 0; j < m["tool_calls"].size(); ++j) {
          Json& call = changed[k]["tool_calls"][j];
          Json& target = call.contains("function") && call["function"].is_object() ? call["function"] : call;
          target["name"] = "\x02llmft-call-" + std::to_string(k) + "-" + std::to_string(j) + "\x03";
        }
      }
      std::string other = render(changed, false, extra);
      size_t p = 0;
      while (p < full.size() && p < other.size() && full[p] == other[p]) ++p;
      size_t s = 0;
      while (s < full.size() - p && s < other.size() - p && full[full.size() - 1 - s] == other[other.size() - 1 - s]) ++s;
      if (p >= cursor) {
        span = {p, full.size() - s};
        // Extend over a special token right after the content: the end of the turn. A turn with tool calls ends
        // after the arguments of its last call, which the template writes out after the name: up to and including
        // the next end-of-turn token.
        for (const auto& t : {tokenizer_.id_to_token(end_of_turn_id_), tokenizer_.config().eos_token}) {
          if (t.empty()) continue;
          if (full.compare(span.end, t.size(), t) == 0) {
            span.end += t.size();
            break;
          }
          if (const size_t at = full.find(t, span.end); calls && at != std::string::npos) {
            span.end = at + t.size();
            break;
          }
        }
        found = true;
      }
    }
    LLMFT_CHECK(found, Status::kInvalidArgument,
                "cannot locate assistant turn {} in the rendered chat template: the template neither renders it "
                "as a prefix-stable turn nor its content verbatim",
                k);
    spans.push_back(span);
    cursor = span.end;
  }
  return full;
}

Encoded encode_with_spans(const Tokenizer& tok, const std::string& text, const std::vector<Span>& spans,
                          int32_t append_id) {
  const std::string& bos = tok.config().bos_token;
  bool add_special = bos.empty() || !starts_with(text, bos);
  std::vector<std::pair<uint32_t, uint32_t>> offsets;
  Encoded out;
  out.ids = tok.encode_with_offsets(text, add_special, offsets);
  out.trained.assign(out.ids.size(), 0);
  size_t s = 0;
  for (size_t i = 0; i < out.ids.size(); ++i) {
    auto [b, e] = offsets[i];
    if (e == b) continue;  // a token the post-processor inserted
    while (s < spans.size() && spans[s].end <= b) ++s;
    if (s < spans.size() && spans[s].begin < e && b < spans[s].end) out.trained[i] = 1;
  }
  if (append_id >= 0) {
    out.ids.push_back(append_id);
    out.trained.push_back(1);
  }
  return out;
}

Encoded ChatFormatter::encode(const Json& messages, bool last_turn_only, const Json& extra) const {
  std::vector<Span> spans;
  std::string text = render_with_spans(messages, last_turn_only, spans, extra);
  return encode_with_spans(tokenizer_, text, spans);
}

std::vector<int32_t> ChatFormatter::encode_prompt(const Json& messages, const Json& extra) const {
  return encode_with_spans(tokenizer_, render(messages, true, extra), {}).ids;
}

std::string alpaca_prompt(const std::string& instruction, const std::string& input) {
  if (input.empty())
    return "Below is an instruction that describes a task. Write a response that appropriately completes the "
           "request.\n\n### Instruction:\n" + instruction + "\n\n### Response:\n";
  return "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
         "response that appropriately completes the request.\n\n### Instruction:\n" + instruction +
         "\n\n### Input:\n" + input + "\n\n### Response:\n";
}

std::string dolly_prompt(const std::string& instruction, const std::string& context) {
  std::string p = "Below is an instruction that describes a task. Write a response that appropriately completes the "
                  "request.\n\n### Instruction:\n" + instruction + "\n\n";
  if (!context.empty()) p += "Input:\n" + context + "\n\n";
  return p + "### Response:\n";
}

std::string dolly_response(const std::string& response) { return response + "\n\n### End"; }

Encoded encode_completion(const Tokenizer& tok, const std::string& prompt, const std::string& completion, bool add_eos,
                          bool train_on_prompt) {
  std::string text = prompt + completion;
  Span span{train_on_prompt ? 0 : prompt.size(), text.size()};
  int32_t eos = add_eos ? tok.eos_id() : -1;
  LLMFT_CHECK(!add_eos || eos >= 0, Status::kInvalidArgument,
              "{} declares no EOS token (tokenizer_config.json eos_token); the model could not learn to stop",
              tok.origin());
  return encode_with_spans(tok, text, {span}, eos);
}

}  // namespace llmft::tok

namespace llmft {

std::string Tokenizer::apply_chat_template(std::string_view messages_json, bool add_generation_prompt,
                                           std::string_view extra_json, const std::string& template_source) const {
  auto parse = [](std::string_view text, const char* what) {
    tok::Json j;
    try {
      j = tok::Json::parse(text);
    } catch (const std::exception& e) {
      LLMFT_FAIL(Status::kInvalidArgument, "{} is not JSON: {}", what, e.what());
    }
    return j;
  };
  tok::Json messages = parse(messages_json, "the messages");
  LLMFT_CHECK(messages.is_array(), Status::kInvalidArgument,
              "the messages must be a JSON array of {{\"role\": ..., \"content\": ...}} objects");
  for (size_t i = 0; i < messages.size(); ++i)
    LLMFT_CHECK(messages[i].is_object() && messages[i].contains("role"), Status::kInvalidArgument,
                "message {} has no \"role\" (each is a {{\"role\": ..., \"content\": ...}} object)", i);
  tok::Json extra = extra_json.empty() ? tok::Json::object() : parse(extra_json, "the template's extra context");
  LLMFT_CHECK(extra.is_object(), Status::kInvalidArgument, "the template's extra context must be a JSON object");
  return tok::ChatFormatter(*this, template_source).render(messages, add_generation_prompt, extra);
}

}  // namespace llmft
