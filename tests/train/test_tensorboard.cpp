// The framing of TensorBoard event files: CRC-32C against its published check value and TensorFlow's masking
// (tensorflow/core/lib/hash/crc32c.h). The files themselves are judged by TensorBoard's own reader
// (python/tests/test_llmft.py: test_tensorboard_reads_the_scalars_llmft_logged).
#include <gtest/gtest.h>

#include <string>

#include "util/crc32c.hpp"

namespace llmft {

TEST(TensorBoard, Crc32cCheckValueAndMask) {
  const std::string s = "123456789";
  EXPECT_EQ(crc32c(s.data(), s.size()), 0xE3069283u);  // the CRC catalogue's check value for CRC-32C
  EXPECT_EQ(crc32c("", 0), 0u);
  // Continuing: the CRC of the whole equals the CRC of the first part continued over the rest.
  EXPECT_EQ(crc32c(s.data() + 4, 5, crc32c(s.data(), 4)), crc32c(s.data(), s.size()));
  EXPECT_EQ(masked_crc32c(s.data(), s.size()), 0xC78AB0E5u);  // rotated right by 15, plus 0xa282ead8
}

}  // namespace llmft
