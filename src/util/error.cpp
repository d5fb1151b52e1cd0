#include <cstring>

#include "util/check.hpp"

namespace llmft {

const char* status_string(Status s) noexcept {
  switch (s) {
    case Status::kOk: return "ok";
    case Status::kInvalidArgument: return "invalid argument";
    case Status::kNotFound: return "not found";
    case Status::kIo: return "i/o error";
    case Status::kFormat: return "malformed input";
    case Status::kUnsupported: return "unsupported";
    case Status::kOutOfMemory: return "out of memory";
    case Status::kComm: return "communication error";
    case Status::kTimeout: return "timeout";
    case Status::kInternal: return "internal error";
    case Status::kBufferTooSmall: return "buffer too small";
    case Status::kCancelled: return "cancelled";
  }
  return "unknown status";
}

std::string plain_error(const std::exception& e) {
  std::string s = e.what();
  if (s.rfind("[json.exception.", 0) == 0) {
    const size_t end = s.find("] ");
    if (end != std::string::npos) s.erase(0, end + 2);
  }
  return s;
}

namespace detail {
void raise(Status s, const char* file, int line, const std::string& message) {
  const char* base = std::strstr(file, "src/");
  throw Error(s, message, fmt::format("{}:{}", base ? base : file, line));
}
}  // namespace detail
}  // namespace llmft
