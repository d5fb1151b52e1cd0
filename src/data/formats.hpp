// Record formats, turned into samples llmft can template:
//   alpaca             {instruction, input, output, [system]}             -> instruction sample
//   dolly              {instruction, context, response, category}          -> instruction sample
//   sharegpt           {conversations: [{from, value}], [system], [tools]} -> chat (human/gpt/system,
//                      function_call -> assistant tool call, observation -> tool result)
//   messages           {messages: [{role, content}], [tools]}              -> chat (OpenAI style)
//   prompt_completion  {prompt, completion}                                -> completion sample (no template)
//   text               {text}                                              -> text sample (continued pre-training)
// Column names and role tags are configurable as in LLaMA-Factory's dataset_info.json ("columns" / "tags"), and a
// dataset_info.json entry can be used directly (data.dataset_info + data.dataset).
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/synthetic.hpp"
#include "data/options.hpp"

namespace llmft::data {

using OJson = nlohmann::ordered_json;

struct FormatSpec {
  Format format = Format::kAlpaca;
  // Columns (LLaMA-Factory names: prompt, query, response, system, messages, tools; and text, completion).
  std::string prompt = "instruction", query = "input", response = "output", system = "system";
  std::string messages = "conversations", tools = "tools", text = "text", completion = "completion";
  // Role tags of chat turns.
  std::string role_tag = "from", content_tag = "value", user_tag = "human", assistant_tag = "gpt";
  std::string system_tag = "system", observation_tag = "observation", function_tag = "function_call";

  // From data.format / data.columns / data.tags, or a dataset_info.json entry. Throws naming a bad value.
  static FormatSpec from_config(const DataOptions& d);
  static FormatSpec from_dataset_info(const std::string& path, const std::string& name, std::string* file_name);
};

struct Sample {
  enum class Kind { kInstruction, kChat, kCompletion, kText } kind = Kind::kInstruction;
  InstructionRecord instruction;  // kInstruction (system in `system`), kCompletion (prompt in instruction, output)
  std::string system;
  OJson messages;                 // kChat: [{role: system|user|assistant|tool, content, [tool_calls]}]
  OJson tools;                    // kChat: tool definitions, or null
  std::string text;               // kText
};

// Converts one parsed record. On failure returns false and sets the reason (a short category counted in reports,
// e.g. "missing field") and a detail naming the field.
bool to_sample(const OJson& record, const FormatSpec& spec, Sample* out, std::string* reason, std::string* detail);

}  // namespace llmft::data
