// Check macros: every error llmft raises goes through one of these, which format the message with fmt and record
// the source location beside it (Error::where()), so a report always says what was wrong and where the check sits.
#pragma once

#include <fmt/format.h>

#include "llmft/error.hpp"

namespace llmft::detail {
[[noreturn]] void raise(Status s, const char* file, int line, const std::string& message);
}  // namespace llmft::detail

// LLMFT_FAIL(status, "format {}", args...): throw llmft::Error(status, message, "file:line").
#define LLMFT_FAIL(status, ...) ::llmft::detail::raise((status), __FILE__, __LINE__, ::fmt::format(__VA_ARGS__))

// LLMFT_CHECK(cond, status, "format {}", args...): fail unless cond holds.
#define LLMFT_CHECK(cond, status, ...)   \
  do {                                   \
    if (!(cond)) [[unlikely]] {          \
      LLMFT_FAIL((status), __VA_ARGS__); \
    }                                    \
  } while (0)

// Internal invariant; a failure is a bug in llmft.
#define LLMFT_ASSERT(cond) LLMFT_CHECK(cond, ::llmft::Status::kInternal, "internal error: {} does not hold", #cond)
