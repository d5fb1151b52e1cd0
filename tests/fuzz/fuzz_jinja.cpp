// Fuzzes the chat-template engine: any template text parses and renders, or raises llmft::Error; never a crash or a
// hang (the engine bounds recursion and scope growth).
#include <cstdint>
#include <string>

#include "llmft/error.hpp"
#include "tokenizer/jinja.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const llmft::jinja::Json context = llmft::jinja::Json::parse(R"({
    "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi {{ there }}"},
                 {"role": "assistant", "content": "<think>x</think>ok", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}],
    "add_generation_prompt": true, "bos_token": "<s>", "eos_token": "</s>", "tools": [{"name": "f"}]})");
  try {
    llmft::jinja::Template t(std::string_view(reinterpret_cast<const char*>(data), size));
    (void)t.render(context);
  } catch (const llmft::Error&) {
  }
  return 0;
}
