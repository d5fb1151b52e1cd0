// transformers judges llmft's chat-template rendering: every real-template case of tests/data/jinja_cases.json (and
// the feature cases marked "judge": "jinja2")
// (Llama 3.1 / 3.2, Qwen2.5, Qwen3 with enable_thinking on and off, DeepSeek-R1 distills; single and multi-turn,
// tools and tool results, reasoning in history, add_generation_prompt on and off) rendered by
// tokenizer.apply_chat_template (jinja2 in transformers' environment, transformers' message preparation;
// tests/hf/hf_chat.py) and by llmft (tok::chat_context + jinja::Template) must be byte-identical, and where
// transformers raises, llmft must raise too.
//
// And the assistant masks: for a template that marks {% generation %} spans, llmft's trained tokens equal
// apply_chat_template(..., return_assistant_tokens_mask=True)'s mask.
#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <map>
#include <sstream>

#include "hf_support.hpp"
#include "llmft/error.hpp"
#include "llmft/tokenizer.hpp"
#include "tokenizer/chat.hpp"
#include "tokenizer/jinja.hpp"

using namespace llmft;
using tok::Json;

namespace {

std::string cases_path() { return path_join(test::source_dir(), "tests/data/jinja_cases.json"); }

std::tm parse_now(const std::string& s) {
  std::tm t{};
  std::sscanf(s.c_str(), "%d-%d-%dT%d:%d", &t.tm_year, &t.tm_mon, &t.tm_mday, &t.tm_hour, &t.tm_min);
  t.tm_year -= 1900;
  t.tm_mon -= 1;
  return t;
}

std::string first_difference(const std::string& want, const std::string& got) {
  size_t i = 0;
  while (i < want.size() && i < got.size() && want[i] == got[i]) ++i;
  const size_t from = i > 50 ? i - 50 : 0;
  auto esc = [](const std::string& s) { return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace); };
  return "first difference at byte " + std::to_string(i) + "\n  transformers: ..." + esc(want.substr(from, 100)) +
         "\n  llmft:        ..." + esc(got.substr(from, 100));
}

}  // namespace

TEST(ChatTemplates, RenderAsTransformersApplyChatTemplate) {
  LLMFT_REQUIRE_DATA("chat_templates/llama.cpp/Qwen-Qwen3-0.6B.jinja");
  LLMFT_REQUIRE_DATA("tokenizers/llama3_1/tokenizer.json");
  const std::string out = path_join(test::temp_dir("hf-chat"), "rendered.jsonl");
  ASSERT_TRUE(test::judge("hf_chat.py", {cases_path(), test::data_dir(),
                                         test::data_path("tokenizers/llama3_1/tokenizer.json"), out}));
  std::map<std::string, Json> theirs;
  std::istringstream lines(read_file(out));
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) {
      Json r = Json::parse(line);
      theirs[r.at("name").get<std::string>()] = r;
    }
  const Json doc = Json::parse(read_file(cases_path()));
  const Json& contexts = doc.at("contexts");
  size_t total = 0, same = 0, errors = 0, reported = 0;
  for (const Json& c : doc.at("cases")) {
    const bool feature = c.contains("template");
    if (feature && c.value("judge", "") != "jinja2") continue;
    const std::string name = c.at("name");
    ASSERT_TRUE(theirs.count(name)) << "no transformers result for " << name;
    const Json& want = theirs[name];
    ++total;
    Json ctx = c.contains("context_ref") ? contexts.at(c.at("context_ref").get<std::string>()) : Json::object();
    if (c.contains("context"))
      for (const auto& [k, v] : c.at("context").items()) ctx[k] = v;
    if (!feature) {  // a chat: prepared as apply_chat_template prepares it
      Json messages = ctx.contains("messages") ? ctx.at("messages") : Json::array();
      const bool gen = ctx.value("add_generation_prompt", false);
      ctx.erase("messages");
      ctx.erase("add_generation_prompt");
      ctx = tok::chat_context(messages, gen, ctx);
    }
    jinja::RenderOptions options;
    options.now = parse_now(c.value("now", "2024-07-26T10:30"));
    std::string problem;
    try {
      const std::string source =
          feature ? c.at("template").get<std::string>()
          : c.contains("template_file")
              ? read_file(test::data_path(c.at("template_file")))
              : Json::parse(read_file(test::data_path(c.at("template_config")))).at("chat_template").get<std::string>();
      const jinja::Template t(source);
      const std::string got = t.render(ctx, options);
      if (want.contains("error")) problem = "transformers raised (" + want.at("error").get<std::string>() + "), llmft rendered";
      else if (got != want.at("text").get<std::string>()) problem = first_difference(want.at("text"), got);
    } catch (const Error& e) {
      if (!want.contains("error")) {
        problem = std::string("llmft raised, transformers rendered: ") + e.what();
      } else {
        // Both refuse: it must be the template refusing (a render or syntax error on llmft's side; jinja2's errors
        // or the Python type errors a template's operations raise), not the harness (a missing file, an import).
        const std::string theirs = want.at("error");
        const bool harness = theirs.rfind("FileNotFoundError", 0) == 0 || theirs.rfind("OSError", 0) == 0 ||
                             theirs.rfind("ImportError", 0) == 0 || theirs.rfind("JSONDecodeError", 0) == 0;
        if (harness || (e.status() != Status::kInvalidArgument && e.status() != Status::kFormat))
          problem = "both failed, not both in the template: llmft " + std::string(e.what()) + "; transformers " + theirs;
        else
          ++errors;
      }
    }
    if (problem.empty()) ++same;
    else if (++reported <= 20) ADD_FAILURE() << name << ": " << problem;
  }
  std::printf("[ chat ] %zu/%zu cases (real templates, and features judged by jinja2) identical to transformers' apply_chat_template (%zu raise in both)\n",
              same, total, errors);
  EXPECT_EQ(same, total);
  EXPECT_GT(total, 300u);
}

TEST(ChatTemplates, GenerationSpansMaskAsTransformersDoes) {
  LLMFT_REQUIRE_DATA("tokenizers/qwen3/tokenizer.json");
  const std::string templates_path = path_join(test::source_dir(), "tests/data/generation_templates.json");
  const std::string tokenizer = test::data_path("tokenizers/qwen3/tokenizer.json");
  const std::string out = path_join(test::temp_dir("hf-masks"), "masks.jsonl");
  ASSERT_TRUE(test::judge("hf_chat.py", {"--masks", templates_path, cases_path(), tokenizer, out}));
  const Json doc = Json::parse(read_file(templates_path));
  const Json contexts = Json::parse(read_file(cases_path())).at("contexts");
  Tokenizer tok = Tokenizer::from_file(tokenizer);
  std::istringstream lines(read_file(out));
  size_t compared = 0, trained = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    const Json want = Json::parse(line);
    const std::string name = want.at("template"), conv = want.at("conversation");
    tok::ChatFormatter chat(tok, doc.at("templates").at(name).get<std::string>());
    const tok::Encoded got = chat.encode(contexts.at(conv).at("messages"));
    EXPECT_EQ(got.ids, want.at("ids").get<std::vector<int32_t>>()) << name << " on " << conv;
    std::vector<int> mask(got.trained.begin(), got.trained.end());
    EXPECT_EQ(mask, want.at("mask").get<std::vector<int>>()) << name << " on " << conv;
    ++compared;
    for (int m : mask) trained += static_cast<size_t>(m);
  }
  EXPECT_EQ(compared, doc.at("templates").size() * doc.at("conversations").size());
  EXPECT_GT(trained, 0u) << "some assistant tokens must be marked, else the comparison proves nothing";
  std::printf("[ chat ] %zu generation-tagged renderings: ids and assistant masks equal transformers' (%zu trained tokens)\n",
              compared, trained);
}
