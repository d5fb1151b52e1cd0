// Tokenizer behaviour that needs no oracle: loading errors, special ids, decode round trips on the shared
// tokenizers, the two BPE merge algorithms agreeing.
#include <gtest/gtest.h>

#include "llmft/error.hpp"
#include "llmft/tokenizer.hpp"
#include "test_support.hpp"
#include "tokenizer/tokenizer_impl.hpp"

using llmft::Tokenizer;

TEST(TokenizerBasic, Llama31Hello) {
  LLMFT_REQUIRE_DATA("tokenizers/llama3_1/tokenizer.json");
  auto t = Tokenizer::from_file(llmft::test::data_path("tokenizers/llama3_1/tokenizer.json"));
  EXPECT_EQ(t.encode("Hello world! 1234567 <|eot_id|> 한국어"),
            (std::vector<int32_t>{128000, 9906, 1917, 0, 220, 4513, 10961, 22, 220, 128009, 104008, 32179}));
  EXPECT_EQ(t.bos_id(), 128000);
  EXPECT_EQ(t.eos_id(), 128009);
}
