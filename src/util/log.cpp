#include "util/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace llmft {

namespace {
std::mutex g_mu;
LogSink g_sink;
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
}  // namespace

void set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_sink = std::move(sink);
}

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }

LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

void log_message(LogLevel level, const std::string& message) {
  if (static_cast<int>(level) < g_level.load()) return;
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_sink) {
    g_sink(level, message);
    return;
  }
  static const char* names[] = {"debug", "info", "warn", "error", ""};
  if (level == LogLevel::kInfo)
    std::fprintf(stderr, "[llmft] %s\n", message.c_str());
  else
    std::fprintf(stderr, "[llmft %s] %s\n", names[static_cast<int>(level)], message.c_str());
}

}  // namespace llmft
