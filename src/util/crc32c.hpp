// CRC-32C (Castagnoli, the polynomial 0x1EDC6F41 reflected), as TFRecord files frame their records, and the masked
// form TensorFlow stores (rotated and offset, so a CRC of data that holds CRCs stays well distributed).
#pragma once

#include <cstddef>
#include <cstdint>

namespace llmft {

uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
inline uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t c = crc32c(data, size);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

}  // namespace llmft
