// Tokenizer behaviour that needs no oracle: loading errors that name what is wrong, the SentencePiece converter
// against Hugging Face's conversion, the two BPE merge algorithms agreeing, batch and offsets invariants, invalid
// UTF-8 repair.
#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "llmft/error.hpp"
#include "llmft/tokenizer.hpp"
#include "test_support.hpp"
#include "tokenizer/sentencepiece.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "util/file.hpp"

using llmft::Status;
using llmft::Tokenizer;

namespace {

// A tiny valid byte-level tokenizer.json to mutate.
nlohmann::json tiny() {
  return nlohmann::json::parse(R"({
    "version": "1.0", "truncation": null, "padding": null,
    "added_tokens": [{"id": 6, "content": "<eos>", "single_word": false, "lstrip": false, "rstrip": false,
                      "normalized": false, "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
    "post_processor": null,
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "dropout": null, "unk_token": null, "vocab": {"a": 0, "b": 1, "ab": 2, "c": 3, "abc": 4, "Ġ": 5},
              "merges": ["a b", "ab c"]}
  })");
}

// Expects loading `j` to throw llmft::Error with `status` and a message containing every fragment.
void expect_load_error(const nlohmann::json& j, Status status, std::initializer_list<const char*> fragments) {
  try {
    Tokenizer::from_json(j.dump(), "", "bad/tokenizer.json");
    ADD_FAILURE() << "loading succeeded, expected an error";
  } catch (const llmft::Error& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    for (const char* f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << "'" << f << "' not in: " << e.what();
  }
}

}  // namespace

TEST(TokenizerBasic, TinyTokenizerWorks) {
  auto t = Tokenizer::from_json(tiny().dump());
  EXPECT_EQ(t.encode("abc ab<eos>", false), (std::vector<int32_t>{4, 5, 2, 6}));
  EXPECT_EQ(t.decode({4, 5, 2, 6}), "abc ab<eos>");
  EXPECT_EQ(t.decode({4, 5, 2, 6}, true), "abc ab");
  EXPECT_EQ(t.token_to_id("<eos>").value(), 6);
  EXPECT_TRUE(t.is_special(6));
  EXPECT_EQ(t.vocab_size(), 7u);
}

TEST(TokenizerBasic, LoadErrorsNameTheProblem) {
  try {
    Tokenizer::from_json("{not json", "", "x/tokenizer.json");
    ADD_FAILURE();
  } catch (const llmft::Error& e) {
    EXPECT_EQ(e.status(), Status::kFormat);
    EXPECT_NE(std::string(e.what()).find("x/tokenizer.json"), std::string::npos);
  }
  auto j = tiny();
  j["model"]["type"] = "Unigram";
  expect_load_error(j, Status::kUnsupported, {"bad/tokenizer.json", "Unigram"});
  j = tiny();
  j["normalizer"] = {{"type", "Precompiled"}, {"precompiled_charsmap", "x"}};
  expect_load_error(j, Status::kUnsupported, {"normalizer", "Precompiled"});
  j = tiny();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "UnicodeScripts"}}}}};
  expect_load_error(j, Status::kUnsupported, {"pre_tokenizer.pretokenizers[0]", "UnicodeScripts"});
  j = tiny();
  j["decoder"] = {{"type", "CTC"}};
  expect_load_error(j, Status::kUnsupported, {"decoder", "CTC"});
  j = tiny();
  j["post_processor"] = {{"type", "Weird"}};
  expect_load_error(j, Status::kUnsupported, {"post_processor", "Weird"});
  j = tiny();
  j["model"]["merges"].push_back("a zz");
  expect_load_error(j, Status::kFormat, {"merges[2]", "zz"});
  j = tiny();
  j["model"]["merges"].push_back("a b c");
  expect_load_error(j, Status::kFormat, {"merges[2]"});
  j = tiny();
  j["model"]["dropout"] = 0.1;
  expect_load_error(j, Status::kUnsupported, {"dropout"});
  j = tiny();
  j.erase("model");
  expect_load_error(j, Status::kFormat, {"model"});
  j = tiny();
  j["model"]["vocab"]["d"] = -3;
  expect_load_error(j, Status::kFormat, {"vocab", "\"d\""});
  j = tiny();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_load_error(j, Status::kFormat, {"(unclosed"});
  j = tiny();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "Digits"}, {"individual_digits", true}}}}};
  expect_load_error(j, Status::kUnsupported, {"after ByteLevel"});
  // Fields of the wrong type (found by fuzzing: these escaped as JSON library exceptions).
  j = tiny();
  j["normalizer"] = {{"type", 5}};
  expect_load_error(j, Status::kFormat, {"normalizer"});
  j = tiny();
  j["post_processor"] = nlohmann::json::parse(
      R"({"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<eos>"}}], "special_tokens": {"<eos>": {}}})");
  expect_load_error(j, Status::kFormat, {"post_processor"});
  j = tiny();
  j["added_tokens"][0]["content"] = 17;
  expect_load_error(j, Status::kFormat, {"added_tokens"});
  try {
    Tokenizer::from_file("/nonexistent/tokenizer.json");
    ADD_FAILURE();
  } catch (const llmft::Error& e) {
    EXPECT_EQ(e.status(), Status::kNotFound);
  }
}

TEST(TokenizerBasic, SentencePieceErrors) {
  // Truncated protobuf, and a Unigram model (TrainerSpec.model_type = 1).
  EXPECT_THROW(llmft::tok::sentencepiece_to_tokenizer_json(std::string("\x0a\x10\x0a", 3), "t.model"), llmft::Error);
  // A piece that is not valid UTF-8 (found by fuzzing).
  std::string bad_piece = std::string("\x0a\x03\x0a\x01\xff", 5) + std::string("\x12\x02\x18\x02", 4);
  try {
    llmft::tok::sentencepiece_to_tokenizer_json(bad_piece, "t.model");
    ADD_FAILURE();
  } catch (const llmft::Error& e) {
    EXPECT_EQ(e.status(), Status::kFormat);
  }
  std::string unigram = std::string("\x0a\x08\x0a\x01\x61\x15\x00\x00\x00\x00", 10) + std::string("\x12\x02\x18\x01", 4);
  try {
    llmft::tok::sentencepiece_to_tokenizer_json(unigram, "t.model");
    ADD_FAILURE();
  } catch (const llmft::Error& e) {
    EXPECT_EQ(e.status(), Status::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("Unigram"), std::string::npos) << e.what();
  }
}

// Our tokenizer.model conversion gives the vocabulary and merge list Hugging Face's converter wrote for stories260K.
TEST(TokenizerBasic, SentencePieceConversionMatchesHuggingFace) {
  LLMFT_REQUIRE_DATA("models/tinyllamas/tok512.model");
  LLMFT_REQUIRE_DATA("models/stories260K-hf/tokenizer.json");
  auto ours = nlohmann::ordered_json::parse(llmft::tok::sentencepiece_to_tokenizer_json(
      llmft::read_file(llmft::test::data_path("models/tinyllamas/tok512.model")), "tok512.model"));
  auto hf = nlohmann::ordered_json::parse(llmft::read_file(llmft::test::data_path("models/stories260K-hf/tokenizer.json")));
  EXPECT_EQ(ours["model"]["vocab"], hf["model"]["vocab"]);
  EXPECT_EQ(ours["model"]["merges"], hf["model"]["merges"]);
  EXPECT_EQ(ours["normalizer"], hf["normalizer"]);
  EXPECT_EQ(ours["decoder"], hf["decoder"]);
  EXPECT_EQ(ours["added_tokens"], hf["added_tokens"]);
  for (const char* k : {"unk_token", "fuse_unk", "byte_fallback"}) EXPECT_EQ(ours["model"][k], hf["model"][k]) << k;
}

TEST(TokenizerBasic, Llama31Basics) {
  LLMFT_REQUIRE_DATA("tokenizers/llama3_1/tokenizer.json");
  auto t = Tokenizer::from_file(llmft::test::data_path("tokenizers/llama3_1/tokenizer.json"));
  EXPECT_EQ(t.encode("Hello world! 1234567 <|eot_id|> 한국어"),
            (std::vector<int32_t>{128000, 9906, 1917, 0, 220, 4513, 10961, 22, 220, 128009, 104008, 32179}));
  EXPECT_EQ(t.bos_id(), 128000);
  EXPECT_EQ(t.eos_id(), 128009);  // tokenizer_config.json: eos_token <|eot_id|>
  EXPECT_EQ(t.vocab_size(), 128256u);
  EXPECT_FALSE(t.config().chat_template.empty());
  EXPECT_EQ(t.fingerprint().size(), 64u);
}

// The O(n^2) array merge and the heap merge give the same tokens on every word.
TEST(TokenizerBasic, MergeAlgorithmsAgree) {
  LLMFT_REQUIRE_DATA("tokenizers/qwen3/tokenizer.json");
  auto t = Tokenizer::from_file(llmft::test::data_path("tokenizers/qwen3/tokenizer.json"));
  const auto& model = t.impl().model();
  std::mt19937 rng(7);
  const std::string alphabet = "etaoinshrdlu eeaa thth  ingtion.,0123";
  size_t checked = 0;
  for (int n = 0; n < 20000; ++n) {
    std::string w;
    size_t len = 1 + rng() % 90;
    for (size_t k = 0; k < len; ++k) w += alphabet[rng() % alphabet.size()];
    std::vector<int32_t> a, b;
    std::vector<uint32_t> ea, eb;
    model.tokenize_with(w, false, a, ea);
    model.tokenize_with(w, true, b, eb);
    ASSERT_EQ(a, b) << w;
    ASSERT_EQ(ea, eb) << w;
    ++checked;
  }
  EXPECT_EQ(checked, 20000u);
}

TEST(TokenizerBasic, BatchEqualsSequentialAndOffsetsTileTheText) {
  LLMFT_REQUIRE_DATA("tokenizers/llama3_1/tokenizer.json");
  auto t = Tokenizer::from_file(llmft::test::data_path("tokenizers/llama3_1/tokenizer.json"));
  std::vector<std::string> texts;
  std::string adv = llmft::read_file(llmft::path_join(llmft::test::source_dir(), "tests/data/tokenizer_adversarial.txt"));
  for (size_t pos = 0, nl; (nl = adv.find('\n', pos)) != std::string::npos; pos = nl + 1) texts.push_back(adv.substr(pos, nl - pos));
  auto batch = t.encode_batch(texts, true, 2);
  ASSERT_EQ(batch.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(batch[i], t.encode(texts[i], true)) << i;
    std::vector<std::pair<uint32_t, uint32_t>> off;
    auto ids = t.encode_with_offsets(texts[i], false, off);
    ASSERT_EQ(ids, t.encode(texts[i], false));
    ASSERT_EQ(off.size(), ids.size());
    // Without a normalizer every byte belongs to exactly one token, in order.
    uint32_t pos = 0;
    for (size_t k = 0; k < off.size(); ++k) {
      EXPECT_EQ(off[k].first, pos) << "text " << i << " token " << k;
      EXPECT_GT(off[k].second, off[k].first);
      pos = off[k].second;
    }
    EXPECT_EQ(pos, texts[i].size());
  }
}

TEST(TokenizerBasic, InvalidUtf8IsRepairedNotRejected) {
  LLMFT_REQUIRE_DATA("tokenizers/llama3_1/tokenizer.json");
  auto t = Tokenizer::from_file(llmft::test::data_path("tokenizers/llama3_1/tokenizer.json"));
  // Each maximal ill-formed subsequence -> one U+FFFD: "\xE2\x28\xA1" is FFFD ( FFFD; "\xF0\x9F\x98" is one FFFD.
  EXPECT_EQ(t.encode("a\xE2\x28\xA1z", false), t.encode("a\xEF\xBF\xBD(\xEF\xBF\xBDz", false));
  EXPECT_EQ(t.encode("x\xF0\x9F\x98", false), t.encode("x\xEF\xBF\xBD", false));
  EXPECT_EQ(t.encode(std::string("\xC0\xAF\x00\xFF", 4), false),
            t.encode(std::string("\xEF\xBF\xBD\xEF\xBF\xBD\x00\xEF\xBF\xBD", 10), false));
}
