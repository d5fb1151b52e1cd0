// fmt-style logging helpers over the public sink in llmft/log.hpp.
#pragma once

#include <fmt/format.h>

#include <mutex>
#include <optional>

#include "llmft/log.hpp"

namespace llmft {

// Where the calling thread's messages go. While a LogScope lives, this thread's messages (and those of the thread
// pool's workers running its parallel_for) go to `sink` at `level` instead of the process-wide sink and level: the
// Trainer and the Generator install their host's choice around each call, so two of them in one process log apart
// and neither touches the process-wide settings. Scopes nest; each restores the one it replaced.
struct LogContext {
  const LogSink* sink = nullptr;    // nullptr: the process-wide sink (set_log_sink), else stderr
  std::optional<LogLevel> level;    // unset: the process-wide level, as it is when a message is logged
  LogLevel floor = LogLevel::kDebug;  // never below this (ranks other than 0: warnings)
  std::mutex mu;                    // this context's sink is called by one thread at a time
};
class LogScope {
 public:
  explicit LogScope(const LogContext* context);  // nullptr: the process-wide settings
  ~LogScope();
  LogScope(const LogScope&) = delete;
  LogScope& operator=(const LogScope&) = delete;
  static const LogContext* current();  // the calling thread's, or nullptr

 private:
  const LogContext* previous_;
};

template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
  if (log_level() <= LogLevel::kInfo) log_message(LogLevel::kInfo, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
  if (log_level() <= LogLevel::kWarn) log_message(LogLevel::kWarn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) {
  if (log_level() <= LogLevel::kDebug) log_message(LogLevel::kDebug, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace llmft
