// What `llmft train` shows while it runs. On an interactive terminal: the log lines as they come, with a progress line
// under them redrawn after every optimizer step (like tqdm: a bar, steps, loss, tokens/s, elapsed<remaining).
// Otherwise (a pipe, a file, a pod's log): the log lines alone, as they come. At the end: a summary table.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "llmft/log.hpp"
#include "llmft/train.hpp"

namespace llmft_cli {

class Progress {
 public:
  explicit Progress(bool interactive) : interactive_(interactive) {}
  // The process-wide log sink's body: info to stdout, warnings and errors to stderr, above the progress line.
  void message(llmft::LogLevel level, const std::string& text);
  // After each step; never asks to stop.
  bool step(const llmft::StepStats& s);
  // Clears the progress line (before the summary or an error).
  void finish();

 private:
  void draw();  // with mu_ held
  std::mutex mu_;
  bool interactive_;
  bool drawn_ = false;
  llmft::StepStats last_;
  int64_t steps_seen_ = 0, tokens_ = 0, first_step_ = 0;
  std::chrono::steady_clock::time_point start_;
};

bool stdout_is_terminal();
// The end of a run as a table: steps, tokens and throughput, losses and held-out numbers before / after, outputs.
std::string summary_table(const llmft::TrainSummary& s);

}  // namespace llmft_cli
