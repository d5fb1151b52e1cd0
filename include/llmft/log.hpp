// Where llmft's messages go. Library code never writes to stdout; it logs through one sink that a host may replace
// (the default writes "[llmft] message" lines to stderr).
#pragma once

#include <functional>
#include <string>

#include "llmft/export.hpp"

namespace llmft {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

using LogSink = std::function<void(LogLevel, const std::string&)>;

// The process-wide sink and level, for the free functions (train, generate, export_merged, prepare). A Trainer or
// Generator logs to the sink given in its options instead, when one is given, at the level given there.
// Replace the sink (nullptr restores the default). Thread-safe.
LLMFT_API void set_log_sink(LogSink sink);
LLMFT_API void set_log_level(LogLevel level);
LLMFT_API LogLevel log_level();
// Hugging Face access tokens in `message` (hf_ and 30 or more letters and digits) reach the sink as "hf_***".
LLMFT_API void log_message(LogLevel level, const std::string& message);
// `text` with every Hugging Face access token in it shown as "hf_***", as log_message does: for hosts that print
// an error's message (or anything else that may quote an environment) themselves.
LLMFT_API std::string redact_secrets(const std::string& text);

}  // namespace llmft
