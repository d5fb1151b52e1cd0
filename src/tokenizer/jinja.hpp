// Jinja2 chat templates: parse a Hugging Face `chat_template` once, render it for many conversations.
//
// Promise: chat templates render byte-for-byte as transformers' apply_chat_template renders them (jinja2 in its
// environment; tests/hf/test_chat_templates.cpp on every real template of the fixtures). Everything else follows
// @huggingface/jinja 0.5.11 (the engine transformers.js and the HF Hub use), including its environment
// (trim_blocks and lstrip_blocks on, one trailing newline dropped) and its quirks: booleans print as
// `true`/`false`, floats keep one decimal (`2.0`), only the filters and tests it implements exist (no `dict`,
// `round`, `loop.cycle`) -- except where real templates rely on jinja2's behaviour, which wins: str.strip(chars),
// select / reject, string filters reading an undefined value as "", trim of a container giving Python's repr.
// `{% generation %}` tags render nothing; their spans are available (render with generation_spans).
// Conformance suites: tests/tokenizer/test_jinja.cpp against @huggingface/jinja itself (tests/oracle/jinja_render.js)
// and tests/hf/test_chat_templates.cpp against transformers.
// Known gaps, none of which chat templates exercise: printing a function value (the reference prints its JS source;
// we print "function"), lone UTF-16 surrogates from indexing a string inside an emoji, tojson(sort_keys=true) on
// non-ASCII keys (ICU collation; we order them after ASCII by code point), range() over non-numbers, a whole-number
// float of the context (100.0) in a container that jinja2 would print as Python's repr (100.0; we print 100), and runaway
// templates (nested calls beyond 200 or more than 2^20 scopes fail; the reference overflows or hangs).
//
// Errors: a syntax error throws Error(kFormat, "chat template syntax error at line L col C: ..."); anything the
// reference rejects while rendering throws Error(kInvalidArgument, "chat template: ..."); raise_exception("msg")
// in a template throws Error(kInvalidArgument, "chat template: msg") with exactly that message.
//
// Thread safety: a Template is immutable after construction; render() may run concurrently on one Template.
#pragma once

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace llmft::jinja {

using Json = nlohmann::ordered_json;  // key order is kept: tojson prints keys in insertion order

struct RenderOptions {
  // The local time strftime_now() formats. Unset: the clock at render time. Tests fix it for reproducibility.
  std::optional<std::tm> now;
};

namespace detail {
struct Program;
struct Source;
}  // namespace detail

class Template {
 public:
  explicit Template(std::string_view source);
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;

  // context: a JSON object whose keys become template variables (messages, tools, add_generation_prompt,
  // bos_token, ... and any extra kwargs such as enable_thinking). A key that names a global (range, namespace,
  // true, ...) is an error, as in the reference.
  std::string render(const Json& context) const;
  std::string render(const Json& context, const RenderOptions& options) const;

  // Whether the template marks the assistant's text with transformers' {% generation %} ... {% endgeneration %}.
  bool has_generation_spans() const;
  // render(), and the byte ranges [begin, end) of the output that {% generation %} blocks produced, in order: what
  // transformers' apply_chat_template(return_assistant_tokens_mask=True) masks. The context must not contain
  // U+FDD0 / U+FDD1 (the markers); Error(kInvalidArgument) if it does.
  std::string render(const Json& context, const RenderOptions& options,
                     std::vector<std::pair<size_t, size_t>>* generation_spans) const;

  const std::string& source() const;

 private:
  std::unique_ptr<const detail::Source> source_;
  std::unique_ptr<const detail::Program> program_;
};

}  // namespace llmft::jinja
