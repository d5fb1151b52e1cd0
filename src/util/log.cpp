#include "util/log.hpp"

#include <atomic>
#include <cctype>
#include <cstdio>
#include <mutex>

namespace llmft {

namespace {
std::mutex g_mu;
LogSink g_sink;
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
thread_local const LogContext* t_context = nullptr;

// Hugging Face access tokens ("hf_" and at least 30 letters and digits) never reach a sink: a message that quotes an
// environment, a URL or a file with one in it shows "hf_***" instead.
std::string redact(const std::string& message) {
  size_t at = message.find("hf_");
  if (at == std::string::npos) return message;
  std::string out;
  size_t from = 0;
  for (; at != std::string::npos; at = message.find("hf_", at + 3)) {
    size_t end = at + 3;
    while (end < message.size() && std::isalnum(static_cast<unsigned char>(message[end]))) ++end;
    const bool word_start = at == 0 || !std::isalnum(static_cast<unsigned char>(message[at - 1]));
    if (word_start && end - at - 3 >= 30) {
      out.append(message, from, at - from);
      out += "hf_***";
      from = end;
    }
  }
  return out + message.substr(from);
}

void write_default(LogLevel level, const std::string& message) {
  static const char* names[] = {"debug", "info", "warn", "error", ""};
  if (level == LogLevel::kInfo)
    std::fprintf(stderr, "[llmft] %s\n", message.c_str());
  else
    std::fprintf(stderr, "[llmft %s] %s\n", names[static_cast<int>(level)], message.c_str());
}
}  // namespace

LogScope::LogScope(const LogContext* context) : previous_(t_context) { t_context = context; }
LogScope::~LogScope() { t_context = previous_; }
const LogContext* LogScope::current() { return t_context; }

void set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_sink = std::move(sink);
}

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }

LogLevel log_level() {
  const LogLevel global = static_cast<LogLevel>(g_level.load());
  const LogContext* c = t_context;
  if (!c) return global;
  const LogLevel l = c->level.value_or(global);
  return l < c->floor ? c->floor : l;
}

std::string redact_secrets(const std::string& text) { return redact(text); }

void log_message(LogLevel level, const std::string& raw) {
  if (level < log_level() || level >= LogLevel::kOff) return;
  const std::string message = redact(raw);
  if (const LogContext* c = t_context; c && c->sink && *c->sink) {
    std::lock_guard<std::mutex> lk(const_cast<LogContext*>(c)->mu);
    (*c->sink)(level, message);
    return;
  }
  std::lock_guard<std::mutex> lk(g_mu);
  if (g_sink)
    g_sink(level, message);
  else
    write_default(level, message);
}

}  // namespace llmft
