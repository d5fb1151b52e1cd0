// llmft::Error: the one exception type the library throws. It carries a closed status code (the same numbers as
// the C ABI's llmft_status), a message for the user that names the file, key, line or rank at fault (what()), and,
// apart from it, where in llmft's source the check sits (where(): for debug logs and bug reports, not for the one
// line a user reads).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

#include "llmft/export.hpp"

namespace llmft {

// Appended only; the values are part of the C ABI (llmft_status).
enum class Status : int32_t {
  kOk = 0,
  kInvalidArgument = -1,  // a caller's value is wrong (bad config key, wrong type, bad shape)
  kNotFound = -2,         // a file, key or tensor that must exist does not
  kIo = -3,               // the operating system refused a read, write, mmap or rename
  kFormat = -4,           // a file exists but its content is malformed (JSON, safetensors, shard)
  kUnsupported = -5,      // a valid input that llmft does not implement (architecture, tokenizer feature)
  kOutOfMemory = -6,
  kComm = -7,             // a collective failed: a peer died, the store is unreachable
  kTimeout = -8,          // an operation ran past its deadline
  kInternal = -9,         // a broken invariant inside llmft: a bug
  kBufferTooSmall = -10,  // C ABI: the caller's output buffer is too small
  kCancelled = -11,       // the host asked to stop
};

LLMFT_API const char* status_string(Status s) noexcept;

// A library's exception text as a user may read it: nlohmann's "[json.exception.parse_error.101] " tag dropped.
LLMFT_API std::string plain_error(const std::exception& e);

class LLMFT_API Error : public std::runtime_error {
 public:
  Error(Status status, const std::string& message, std::string where = {})
      : std::runtime_error(message), status_(status), where_(std::move(where)) {}
  Status status() const noexcept { return status_; }
  // "src/io/checkpoint.cpp:203", or empty.
  const std::string& where() const noexcept { return where_; }

 private:
  Status status_;
  std::string where_;
};

}  // namespace llmft
