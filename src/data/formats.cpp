#include "data/formats.hpp"

#include "util/check.hpp"
#include "util/file.hpp"

namespace llmft::data {

const char* format_name(Format f) {
  switch (f) {
    case Format::kAlpaca: return "alpaca";
    case Format::kDolly: return "dolly";
    case Format::kShareGpt: return "sharegpt";
    case Format::kMessages: return "messages";
    case Format::kPromptCompletion: return "prompt_completion";
    case Format::kText: return "text";
  }
  return "?";
}

const char* template_kind_name(TemplateKind t) {
  switch (t) {
    case TemplateKind::kAuto: return "auto";
    case TemplateKind::kAlpaca: return "alpaca";
    case TemplateKind::kDolly: return "dolly";
    case TemplateKind::kChat: return "chat";
    case TemplateKind::kNone: return "none";
  }
  return "?";
}

const char* assistant_turns_name(AssistantTurns t) { return t == AssistantTurns::kLast ? "last" : "all"; }
const char* overlong_name(Overlong o) { return o == Overlong::kDrop ? "drop" : "truncate"; }

Format parse_format(const std::string& s) {
  for (Format f : {Format::kAlpaca, Format::kDolly, Format::kShareGpt, Format::kMessages, Format::kPromptCompletion, Format::kText})
    if (s == format_name(f)) return f;
  LLMFT_FAIL(Status::kInvalidArgument,
             "data.format \"{}\" is not one of alpaca, dolly, sharegpt, messages, prompt_completion, text", s);
}

TemplateKind parse_template_kind(const std::string& s) {
  for (TemplateKind t : {TemplateKind::kAuto, TemplateKind::kAlpaca, TemplateKind::kDolly, TemplateKind::kChat, TemplateKind::kNone})
    if (s == template_kind_name(t)) return t;
  LLMFT_FAIL(Status::kInvalidArgument, "data.template \"{}\" is not one of auto, alpaca, dolly, chat, none", s);
}

namespace {

// Format defaults, before any override.
FormatSpec defaults_for(Format f) {
  FormatSpec s;
  s.format = f;
  switch (f) {
    case Format::kDolly: s.prompt = "instruction"; s.query = "context"; s.response = "response"; break;
    case Format::kMessages:
      s.messages = "messages"; s.role_tag = "role"; s.content_tag = "content"; s.user_tag = "user";
      s.assistant_tag = "assistant"; s.observation_tag = "tool"; s.function_tag = "function_call";
      break;
    case Format::kPromptCompletion: s.prompt = "prompt"; s.completion = "completion"; break;
    default: break;
  }
  return s;
}

void apply_overrides(FormatSpec& s, const std::vector<std::string>& kv, const char* what) {
  for (const auto& item : kv) {
    size_t eq = item.find('=');
    LLMFT_CHECK(eq != std::string::npos, Status::kInvalidArgument, "data.{} entry \"{}\" is not name=value", what, item);
    std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    std::string* field = nullptr;
    if (std::string(what) == "columns") {
      if (k == "prompt") field = &s.prompt;
      else if (k == "query") field = &s.query;
      else if (k == "response") field = &s.response;
      else if (k == "system") field = &s.system;
      else if (k == "messages") field = &s.messages;
      else if (k == "tools") field = &s.tools;
      else if (k == "text") field = &s.text;
      else if (k == "completion") field = &s.completion;
    } else {
      if (k == "role_tag") field = &s.role_tag;
      else if (k == "content_tag") field = &s.content_tag;
      else if (k == "user_tag") field = &s.user_tag;
      else if (k == "assistant_tag") field = &s.assistant_tag;
      else if (k == "system_tag") field = &s.system_tag;
      else if (k == "observation_tag") field = &s.observation_tag;
      else if (k == "function_tag") field = &s.function_tag;
    }
    LLMFT_CHECK(field != nullptr, Status::kInvalidArgument, "data.{}: unknown name \"{}\"", what, k);
    *field = v;
  }
}

}  // namespace

FormatSpec FormatSpec::from_config(const DataOptions& d) {
  FormatSpec s = defaults_for(d.format);
  apply_overrides(s, d.columns, "columns");
  apply_overrides(s, d.tags, "tags");
  return s;
}

FormatSpec FormatSpec::from_dataset_info(const std::string& path, const std::string& name, std::string* file_name) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: not valid JSON: {}", path, plain_error(e));
  }
  LLMFT_CHECK(j.contains(name) && j[name].is_object(), Status::kNotFound, "{} has no dataset \"{}\"", path, name);
  const auto& e = j[name];
  LLMFT_CHECK(e.contains("file_name") && e["file_name"].is_string(), Status::kUnsupported,
              "{}: dataset \"{}\" has no local file_name (hub datasets are not fetched)", path, name);
  LLMFT_CHECK(!e.value("ranking", false), Status::kUnsupported, "{}: dataset \"{}\" is a preference (ranking) dataset",
              path, name);
  *file_name = e["file_name"].get<std::string>();
  std::string formatting = e.value("formatting", std::string("alpaca"));
  FormatSpec s = defaults_for(formatting == "sharegpt" ? Format::kShareGpt : Format::kAlpaca);
  auto take = [&](const char* section, const char* key, std::string* field) {
    if (e.contains(section) && e[section].contains(key) && e[section][key].is_string()) *field = e[section][key].get<std::string>();
  };
  take("columns", "prompt", &s.prompt);
  take("columns", "query", &s.query);
  take("columns", "response", &s.response);
  take("columns", "system", &s.system);
  take("columns", "messages", &s.messages);
  take("columns", "tools", &s.tools);
  for (auto [k, f] : {std::pair{"role_tag", &s.role_tag}, std::pair{"content_tag", &s.content_tag},
                      std::pair{"user_tag", &s.user_tag}, std::pair{"assistant_tag", &s.assistant_tag},
                      std::pair{"system_tag", &s.system_tag}, std::pair{"observation_tag", &s.observation_tag},
                      std::pair{"function_tag", &s.function_tag}})
    take("tags", k, f);
  // LLaMA-Factory's plain-text datasets are alpaca entries whose only column is the prompt (c4_demo: prompt=text).
  if (s.format == Format::kAlpaca && e.contains("columns") && e["columns"].size() == 1 && e["columns"].contains("prompt")) {
    s.format = Format::kText;
    s.text = s.prompt;
  }
  return s;
}

namespace {

// A string field: missing / wrong type / empty are distinct failures.
bool string_field(const OJson& r, const std::string& key, bool required, bool nonempty, std::string* out,
                  std::string* reason, std::string* detail) {
  auto it = r.find(key);
  if (it == r.end() || it->is_null()) {
    if (!required) return true;
    *reason = "missing field";
    *detail = fmt::format("no \"{}\" field", key);
    return false;
  }
  if (!it->is_string()) {
    *reason = "field not a string";
    *detail = fmt::format("\"{}\" is a {}, not a string", key, it->type_name());
    return false;
  }
  *out = it->get<std::string>();
  if (nonempty && out->find_first_not_of(" \t\r\n") == std::string::npos) {
    *reason = key == "output" || key == "response" || key == "completion" ? "empty response" : "empty field";
    *detail = fmt::format("\"{}\" is empty", key);
    return false;
  }
  return true;
}

// A tool call written as text ({"name": ..., "arguments": ...}) becomes an assistant message with tool_calls.
OJson tool_call_message(const std::string& value) {
  OJson call = OJson::parse(value, nullptr, false);
  OJson m = {{"role", "assistant"}, {"content", ""}};
  if (call.is_discarded() || !call.is_object() || !call.contains("name")) {
    m["content"] = value;  // not a parsable call: keep the text
    return m;
  }
  OJson args = call.contains("arguments") ? call["arguments"] : OJson::object();
  if (args.is_string()) {
    OJson parsed = OJson::parse(args.get<std::string>(), nullptr, false);
    if (!parsed.is_discarded()) args = parsed;
  }
  m["tool_calls"] = OJson::array({{{"type", "function"}, {"function", {{"name", call["name"]}, {"arguments", args}}}}});
  return m;
}

bool chat_sample(const OJson& r, const FormatSpec& s, Sample* out, std::string* reason, std::string* detail) {
  auto it = r.find(s.messages);
  if (it == r.end() || !it->is_array()) {
    *reason = "missing field";
    *detail = fmt::format("no \"{}\" list of turns", s.messages);
    return false;
  }
  out->kind = Sample::Kind::kChat;
  out->messages = OJson::array();
  std::string system;
  if (!string_field(r, s.system, false, false, &system, reason, detail)) return false;
  if (!system.empty()) out->messages.push_back({{"role", "system"}, {"content", system}});
  bool has_assistant = false;
  for (size_t i = 0; i < it->size(); ++i) {
    const OJson& turn = (*it)[i];
    if (!turn.is_object() || !turn.contains(s.role_tag) || !turn[s.role_tag].is_string()) {
      *reason = "bad turn";
      *detail = fmt::format("turn {} has no string \"{}\"", i, s.role_tag);
      return false;
    }
    std::string role = turn[s.role_tag].get<std::string>(), content;
    if (!string_field(turn, s.content_tag, true, false, &content, reason, detail)) {
      *detail = fmt::format("turn {}: {}", i, *detail);
      return false;
    }
    if (role == s.user_tag) out->messages.push_back({{"role", "user"}, {"content", content}});
    else if (role == s.assistant_tag) {
      out->messages.push_back({{"role", "assistant"}, {"content", content}});
      has_assistant = true;
    } else if (role == s.system_tag) out->messages.push_back({{"role", "system"}, {"content", content}});
    else if (role == s.observation_tag) out->messages.push_back({{"role", "tool"}, {"content", content}});
    else if (role == s.function_tag) {
      out->messages.push_back(tool_call_message(content));
      has_assistant = true;
    } else {
      *reason = "unknown role";
      *detail = fmt::format("turn {} has role \"{}\" (data.tags names user, assistant, system, observation, function)", i, role);
      return false;
    }
  }
  if (!has_assistant) {
    *reason = "no assistant turn";
    *detail = "the conversation has nothing to learn";
    return false;
  }
  out->tools = nullptr;
  if (r.contains(s.tools) && !r[s.tools].is_null()) {
    OJson tools = r[s.tools];
    if (tools.is_string()) tools = OJson::parse(tools.get<std::string>(), nullptr, false);
    if (tools.is_discarded() || !tools.is_array()) {
      *reason = "bad tools";
      *detail = fmt::format("\"{}\" is not a JSON list of tools", s.tools);
      return false;
    }
    // OpenAI's shape: {"type": "function", "function": {...}}.
    OJson wrapped = OJson::array();
    for (const auto& t : tools) wrapped.push_back(t.contains("type") ? t : OJson{{"type", "function"}, {"function", t}});
    if (!wrapped.empty()) out->tools = wrapped;
  }
  return true;
}

}  // namespace

bool to_sample(const OJson& r, const FormatSpec& s, Sample* out, std::string* reason, std::string* detail) {
  if (!r.is_object()) {
    *reason = "not an object";
    *detail = fmt::format("the record is a {}, not an object", r.type_name());
    return false;
  }
  switch (s.format) {
    case Format::kAlpaca:
    case Format::kDolly:
      out->kind = Sample::Kind::kInstruction;
      return string_field(r, s.prompt, true, true, &out->instruction.instruction, reason, detail) &&
             string_field(r, s.query, false, false, &out->instruction.input, reason, detail) &&
             string_field(r, s.response, true, true, &out->instruction.output, reason, detail) &&
             string_field(r, s.system, false, false, &out->system, reason, detail);
    case Format::kPromptCompletion:
      out->kind = Sample::Kind::kCompletion;
      return string_field(r, s.prompt, true, false, &out->instruction.instruction, reason, detail) &&
             string_field(r, s.completion, true, true, &out->instruction.output, reason, detail);
    case Format::kText:
      out->kind = Sample::Kind::kText;
      return string_field(r, s.text, true, true, &out->text, reason, detail);
    case Format::kShareGpt:
    case Format::kMessages:
      return chat_sample(r, s, out, reason, detail);
  }
  return false;
}

}  // namespace llmft::data
