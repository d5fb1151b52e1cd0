// The hand-written Llama 3 / Qwen split (fast_split.hpp) must cut text exactly where PCRE2 running the same
// pattern does: random strings over an alphabet that covers every character class and every branch of the
// pattern, plus real text.
#include <gtest/gtest.h>

#include <random>

#include <nlohmann/json.hpp>

#include "test_support.hpp"
#include "tokenizer/fast_split.hpp"
#include "tokenizer/regex.hpp"
#include "util/file.hpp"

namespace {

const char* kLlama3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
const char* kQwen =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";

std::vector<size_t> cuts_fast(const llmft::tok::FastSplit& f, std::string_view t) {
  std::vector<size_t> out;
  for (size_t p = 0; p < t.size();) out.push_back(p = f.next_match(t, p));
  return out;
}

// Hugging Face's Split(Isolated): matches and the gaps between them, each a piece.
std::vector<size_t> cuts_pcre(const llmft::tok::Regex& re, std::string_view t) {
  std::vector<size_t> out;
  size_t pos = 0, b, e;
  while (pos < t.size() && re.find(t, pos, &b, &e)) {
    if (b != pos) out.push_back(b);
    out.push_back(e);
    pos = e;
  }
  if (pos != t.size()) out.push_back(t.size());
  return out;
}

void check_same(const char* pattern, int digits, const std::vector<std::string>& texts) {
  int max_digits = 0;
  ASSERT_TRUE(llmft::tok::FastSplit::recognizes(pattern, &max_digits));
  ASSERT_EQ(max_digits, digits);
  llmft::tok::FastSplit fast(digits);
  llmft::tok::Regex re(pattern);
  size_t bad = 0;
  for (const auto& t : texts) {
    auto a = cuts_fast(fast, t), b = cuts_pcre(re, t);
    if (a != b && ++bad <= 5) {
      size_t k = 0;
      while (k < a.size() && k < b.size() && a[k] == b[k]) ++k;
      size_t at = k == 0 ? 0 : a[k - 1];
      size_t from = at > 20 ? at - 20 : 0;
      ADD_FAILURE() << "first difference after byte " << at << ": fast cuts at "
                    << (k < a.size() ? std::to_string(a[k]) : "end") << ", pcre2 at "
                    << (k < b.size() ? std::to_string(b[k]) : "end") << "; text there: "
                    << nlohmann::json(t.substr(from, 60)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
  }
  EXPECT_EQ(bad, 0u);
}

std::vector<std::string> random_texts(size_t count, uint32_t seed) {
  // Letters, numbers of three kinds, white space incl. CR/LF and the Unicode-only spaces, U+180E (not White_Space),
  // apostrophes and the contraction letters in both cases and U+017F (folds to s), marks, emoji, ZWJ, CJK.
  const std::vector<std::string> alphabet = {
      "a", "b", "s", "S", "t", "T", "r", "R", "e", "E", "v", "m", "M", "l", "L", "d", "D", "\xC5\xBF", "\xC3\xA9",
      "\xE6\x97\xA5", "\xD0\x96", "0", "7", "\xD9\xA3", "\xC2\xB2", "\xC2\xBD", " ", " ", "  ", "\t", "\n", "\r",
      "\r\n", "\xE3\x80\x80", "\xC2\xA0", "\xC2\x85", "\xE2\x80\xA8", "\xE1\xA0\x8E", "'", "'", "!", ".", "-", "_",
      "\xCC\x81", "\xF0\x9F\x98\x80", "\xE2\x80\x8D", "\xEF\xBB\xBF", "\x01"};
  std::mt19937 rng(seed);
  std::vector<std::string> out;
  for (size_t i = 0; i < count; ++i) {
    std::string s;
    size_t len = rng() % 24;
    for (size_t k = 0; k < len; ++k) s += alphabet[rng() % alphabet.size()];
    out.push_back(s);
  }
  return out;
}

std::vector<std::string> real_texts() {
  std::vector<std::string> out;
  out.push_back(llmft::read_file(llmft::path_join(llmft::test::source_dir(), "tests/data/tokenizer_adversarial.txt")));
  for (const char* rel : {"datasets/alpaca/alpaca_5000.json", "datasets/fastchat/dummy_conversation.json",
                          "datasets/llama_factory/glaive_toolcall_en_demo.json", "datasets/spider/dev.json"}) {
    if (llmft::file_exists(llmft::test::data_path(rel))) out.push_back(llmft::read_file(llmft::test::data_path(rel)));
  }
  return out;
}

TEST(FastSplit, Llama3MatchesPcre2OnRandomText) { check_same(kLlama3, 3, random_texts(200000, 1)); }
TEST(FastSplit, QwenMatchesPcre2OnRandomText) { check_same(kQwen, 1, random_texts(200000, 2)); }
TEST(FastSplit, Llama3MatchesPcre2OnRealText) { check_same(kLlama3, 3, real_texts()); }
TEST(FastSplit, QwenMatchesPcre2OnRealText) { check_same(kQwen, 1, real_texts()); }

TEST(FastSplit, OtherPatternsAreNotClaimed) {
  int d;
  EXPECT_FALSE(llmft::tok::FastSplit::recognizes("\\p{N}{1,3}", &d));
  EXPECT_FALSE(llmft::tok::FastSplit::recognizes(std::string(kLlama3) + "|x", &d));
}

}  // namespace
