// Record formats and templates on real data: Alpaca, ShareGPT with tool calls through Qwen3's chat template,
// OpenAI messages, LLaMA-Factory's dataset_info.json, prompt/completion, plain text; loss masks (responses only,
// inputs too, last turn only) and the end-of-turn token as a label.
#include <gtest/gtest.h>

#include "data/dataset.hpp"
#include "data/formats.hpp"
#include "llmft/error.hpp"
#include "llmft/tokenizer.hpp"
#include "test_support.hpp"
#include "util/file.hpp"

using namespace llmft;
using test::trained_text;

namespace {

Tokenizer shared(const std::string& name) {
  return Tokenizer::from_file(test::data_path("tokenizers/" + name + "/tokenizer.json"));
}


data::Example encode(const Tokenizer& tok, const data::DataOptions& d, const std::string& record_json) {
  data::FormatSpec spec = data::FormatSpec::from_config(d);
  data::Sample s;
  std::string reason, detail;
  EXPECT_TRUE(data::to_sample(data::OJson::parse(record_json), spec, &s, &reason, &detail)) << reason << ": " << detail;
  data::Templater t(tok, d, spec.format);
  data::Example e;
  EXPECT_TRUE(t.encode(s, &e, &reason, &detail)) << reason << ": " << detail;
  return e;
}

}  // namespace

TEST(DataFormats, AlpacaTrainsTheResponseAndEos) {
  LLMFT_REQUIRE_DATA("tokenizers/llama3_1/tokenizer.json");
  auto tok = shared("llama3_1");
  data::DataOptions d;
  auto e = encode(tok, d, R"({"instruction": "Add.", "input": "2 and 3", "output": "5"})");
  EXPECT_EQ(trained_text(tok, e), "5<|eot_id|>");
  d.train_on_inputs = true;
  auto all = encode(tok, d, R"({"instruction": "Add.", "input": "2 and 3", "output": "5"})");
  EXPECT_EQ(std::count(all.trained.begin(), all.trained.end(), 1), static_cast<long>(all.ids.size()) - 1);
  // Renamed columns.
  data::DataOptions r;
  r.columns = {"prompt=question", "response=answer", "query=context"};
  auto re = encode(tok, r, R"({"question": "Add.", "context": "2 and 3", "answer": "5"})");
  EXPECT_EQ(re.ids, e.ids);
}

TEST(DataFormats, ShareGptToolCallsThroughQwen3Template) {
  LLMFT_REQUIRE_DATA("tokenizers/qwen3/tokenizer.json");
  LLMFT_REQUIRE_DATA("datasets/llama_factory/glaive_toolcall_en_demo.json");
  auto tok = shared("qwen3");
  data::DataOptions d;
  d.format = data::Format::kShareGpt;
  d.path = test::data_path("datasets/llama_factory/glaive_toolcall_en_demo.json");
  d.eval_count = 10;
  d.seq_len = 4096;
  data::Dataset ds = data::build_dataset(d, tok, 3, 2);
  EXPECT_EQ(ds.report.records, 300);
  EXPECT_EQ(ds.report.problems.total(), 0) << ds.report.problems.first();
  EXPECT_EQ(ds.template_name, "chat");
  // A conversation with a tool call: the call is trained, the observation is not.
  const std::string im_end = "<|im_end|>";
  bool saw_call = false;
  for (const auto& e : ds.train) {
    std::string t = trained_text(tok, e);
    if (t.find("<tool_call>") != std::string::npos) {
      saw_call = true;
      EXPECT_EQ(t.find("<tool_response>"), std::string::npos) << t;
      EXPECT_NE(t.find(im_end), std::string::npos) << t;
      // The whole call is trained: name, arguments, closing tag and the end of the turn.
      EXPECT_NE(t.find("\"arguments\": {"), std::string::npos) << t;
      EXPECT_NE(t.find("</tool_call>" + im_end), std::string::npos) << t;
    }
    EXPECT_EQ(tok.decode(e.ids, false).find("<|im_start|>tool"), std::string::npos);
  }
  EXPECT_TRUE(saw_call);
  // The last assistant turn only.
  d.assistant_turns = data::AssistantTurns::kLast;
  data::Dataset last = data::build_dataset(d, tok, 3, 2);
  size_t runs = 0;
  for (const auto& e : last.train)
    for (size_t i = 0; i < e.ids.size(); ++i) runs += e.trained[i] && (i == 0 || !e.trained[i - 1]);
  EXPECT_EQ(runs, last.train.size());
}

TEST(DataFormats, DatasetInfoJsonSelectsFormatColumnsAndTags) {
  LLMFT_REQUIRE_DATA("datasets/llama_factory/dataset_info.json");
  LLMFT_REQUIRE_DATA("tokenizers/qwen3/tokenizer.json");
  auto tok = shared("qwen3");
  data::DataOptions d;
  d.dataset_info = test::data_path("datasets/llama_factory/dataset_info.json");
  d.eval_count = 4;
  d.seq_len = 2048;
  for (const char* name : {"alpaca_en_demo", "identity", "glaive_toolcall_en_demo", "c4_demo"}) {
    d.dataset = name;
    d.template_kind = data::TemplateKind::kAuto;
    if (std::string(name) == "identity" || std::string(name) == "alpaca_en_demo") d.template_kind = data::TemplateKind::kChat;
    auto ds = data::build_dataset(d, tok, 1, 2);
    EXPECT_GT(ds.report.used, 50) << name;
    EXPECT_EQ(ds.report.problems.total(), 0) << name << ": " << ds.report.problems.first();
  }
  d.dataset = "dpo_en_demo";  // preference data: not a fine-tuning format
  EXPECT_THROW(data::build_dataset(d, tok, 1, 1), Error);
  d.dataset = "alpaca_en";  // a hub dataset: nothing local to read
  EXPECT_THROW(data::build_dataset(d, tok, 1, 1), Error);
}

TEST(DataFormats, MessagesPromptCompletionAndText) {
  LLMFT_REQUIRE_DATA("tokenizers/llama3_1/tokenizer.json");
  auto tok = shared("llama3_1");
  data::DataOptions m;
  m.format = data::Format::kMessages;
  auto e = encode(tok, m, R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]})");
  EXPECT_EQ(trained_text(tok, e), "Hello!<|eot_id|>");
  data::DataOptions pc;
  pc.format = data::Format::kPromptCompletion;
  auto p = encode(tok, pc, R"({"prompt": "The sky is", "completion": " blue."})");
  EXPECT_EQ(trained_text(tok, p), " blue.<|eot_id|>");
  EXPECT_EQ(p.ids.front(), 128000);  // BOS from the post-processor, once
  data::DataOptions t;
  t.format = data::Format::kText;
  auto x = encode(tok, t, R"({"text": "Plain text for continued pre-training."})");
  EXPECT_EQ(trained_text(tok, x), "Plain text for continued pre-training.<|eot_id|>");
  // Bad shapes name the field.
  data::Sample s;
  std::string reason, detail;
  EXPECT_FALSE(data::to_sample(data::OJson::parse(R"({"messages": [{"role": "user", "content": "Hi"}]})"),
                               data::FormatSpec::from_config(m), &s, &reason, &detail));
  EXPECT_EQ(reason, "no assistant turn");
  EXPECT_FALSE(data::to_sample(data::OJson::parse(R"({"messages": [{"role": "robot", "content": "Hi"}]})"),
                               data::FormatSpec::from_config(m), &s, &reason, &detail));
  EXPECT_EQ(reason, "unknown role");
  EXPECT_THROW(data::parse_format("csv"), Error);
  EXPECT_THROW(data::parse_template_kind("jinja"), Error);
  data::DataOptions chat_alpaca;
  chat_alpaca.format = data::Format::kShareGpt;
  chat_alpaca.template_kind = data::TemplateKind::kAlpaca;
  EXPECT_THROW(data::Templater(tok, chat_alpaca, data::Format::kShareGpt), Error);
}
