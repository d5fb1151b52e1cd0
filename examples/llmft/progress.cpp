#include "progress.hpp"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace llmft_cli {

namespace {
std::string clock_text(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  char b[32];
  if (s >= 3600)
    std::snprintf(b, sizeof b, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else
    std::snprintf(b, sizeof b, "%02lld:%02lld", s / 60, s % 60);
  return b;
}
}  // namespace

bool stdout_is_terminal() {
  const char* term = std::getenv("TERM");
  if (!isatty(STDOUT_FILENO) || (term && std::string(term) == "dumb")) return false;
  // Under torchrun every rank shares the terminal: rank 0 draws, the others only log.
  for (const char* var : {"RANK", "LOCAL_RANK"})
    if (const char* v = std::getenv(var); v && std::atoi(v) != 0) return false;
  return true;
}

void Progress::message(llmft::LogLevel level, const std::string& text) {
  std::lock_guard<std::mutex> lk(mu_);
  if (drawn_) std::fputs("\r\033[K", stdout);  // the progress line gives way to the message
  if (level == llmft::LogLevel::kInfo) {
    std::fprintf(stdout, "%s\n", text.c_str());
  } else {
    std::fflush(stdout);
    std::fprintf(stderr, "llmft: %s: %s\n",
                 level == llmft::LogLevel::kWarn ? "warning" : level == llmft::LogLevel::kDebug ? "debug" : "error",
                 text.c_str());
  }
  if (drawn_) draw();
  std::fflush(stdout);
}

bool Progress::step(const llmft::StepStats& s) {
  std::lock_guard<std::mutex> lk(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (steps_seen_++ == 0) {  // throughput and the estimate count from the end of the first step seen
    start_ = now;
    first_step_ = s.step;
  } else {
    tokens_ += s.tokens;
  }
  last_ = s;
  if (interactive_) draw();
  return false;
}

void Progress::draw() {
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const int64_t total = std::max<int64_t>(last_.total_steps, last_.step);
  const int64_t done_since = last_.step - first_step_;
  const double per_step = done_since > 0 ? elapsed / static_cast<double>(done_since) : NAN;
  const double tps = elapsed > 0 ? static_cast<double>(tokens_) / elapsed : NAN;
  // Fit the terminal's width (a line that wraps cannot be redrawn in place): the bar shrinks, then fields go.
  winsize ws{};
  const int cols = ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
  char counts[64], loss[32], speed[32], times[48];
  std::snprintf(counts, sizeof counts, "%lld/%lld %3d%%", static_cast<long long>(last_.step),
                static_cast<long long>(total), total > 0 ? static_cast<int>(100 * last_.step / total) : 0);
  std::snprintf(loss, sizeof loss, " | loss %.4f", last_.loss);
  std::snprintf(speed, sizeof speed, " | %s tok/s",
                std::isfinite(tps) ? std::to_string(static_cast<long long>(tps)).c_str() : "?");
  std::snprintf(times, sizeof times, " | %s<%s", clock_text(elapsed).c_str(),
                clock_text(per_step * static_cast<double>(total - last_.step)).c_str());
  std::string fields = std::string(counts) + loss + speed + times;
  const int room = cols - 1 - static_cast<int>(std::string("train [] ").size()) - static_cast<int>(fields.size());
  int width = std::min(24, room);
  if (width < 5) {  // no room for a bar: the numbers alone, cut to the width
    fields = std::string(counts) + loss + times;
    width = 0;
  }
  std::string line = "train ";
  if (width > 0) {
    const int filled = total > 0 ? static_cast<int>(width * last_.step / total) : 0;
    line += "[" + std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '-') + "] ";
  }
  line += fields;
  if (static_cast<int>(line.size()) > cols - 1) line.resize(static_cast<size_t>(std::max(0, cols - 1)));
  std::fprintf(stdout, "\r\033[K%s", line.c_str());
  std::fflush(stdout);
  drawn_ = true;
}

void Progress::finish() {
  std::lock_guard<std::mutex> lk(mu_);
  if (drawn_) std::fputs("\r\033[K", stdout);
  drawn_ = false;
  std::fflush(stdout);
}

std::string summary_table(const llmft::TrainSummary& s) {
  std::string out;
  char line[512];
  auto row = [&](const char* what, const std::string& before, const std::string& after) {
    std::snprintf(line, sizeof line, "  %-26s %14s %14s\n", what, before.c_str(), after.c_str());
    out += line;
  };
  auto num = [](const char* f, double v) {
    char b[64];
    std::snprintf(b, sizeof b, f, v);
    return std::string(b);
  };
  std::snprintf(line, sizeof line, "done: %lld steps in %s, %lld tokens, %.0f tokens/s\n", static_cast<long long>(s.steps),
                clock_text(s.seconds).c_str(), static_cast<long long>(s.tokens), s.tokens_per_second);
  out += line;
  row("", "before", "after");
  row("training loss (logged)", num("%.4f", s.first_loss), num("%.4f", s.last_loss));
  row("held-out loss", num("%.4f", s.eval_loss_before), num("%.4f", s.eval_loss_after));
  row("held-out tokens predicted", num("%.1f%%", 100 * s.eval_accuracy_before), num("%.1f%%", 100 * s.eval_accuracy_after));
  row("sample answers right", std::to_string(s.samples_right_before) + "/" + std::to_string(s.samples),
      std::to_string(s.samples_right_after) + "/" + std::to_string(s.samples));
  if (!s.resumed_from.empty()) out += "  resumed from               " + s.resumed_from + "\n";
  out += "  output                     " + s.output_dir + "\n";
  out += "  " + std::string(s.adapter_dir.empty() ? "model                     " : "adapter                   ") +
         " " + (s.adapter_dir.empty() ? s.model_dir : s.adapter_dir) + "\n";
  if (!s.merged_dir.empty()) out += "  merged                     " + s.merged_dir + "\n";
  return out;
}

}  // namespace llmft_cli
