// Training records: printed in the shape Hugging Face's Trainer prints them,
//   {'loss': 1.2345, 'grad_norm': 0.165, 'learning_rate': 3.6e-05, 'epoch': 0.09} | 1234 tokens/s
// and appended as JSON lines to <output.dir>/in_progress/metrics.jsonl while the run goes (one object per record,
// flushed as written), moved to <output.dir>/metrics.jsonl when it ends; with log.tensorboard, also as TensorBoard
// scalars (train/loss, train/grad_norm, train/learning_rate, train/epoch, train/tokens_per_second,
// train/peak_rss_mb, eval/loss, eval/perplexity, eval/accuracy) at the record's step.
#pragma once

#include <cstdio>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llmft::job {

class TensorBoardWriter;

class MetricsSink {
 public:
  explicit MetricsSink(const std::string& jsonl_path);  // empty: no file
  ~MetricsSink();
  // fields: (name, value) in print order; floats print as Python's repr would (loss and epoch rounded as HF does).
  // extra: written to the JSON line only; suffix: appended to the printed line.
  using Fields = std::vector<std::pair<std::string, double>>;
  // Returns the JSON object written (one line, no newline).
  std::string record(const Fields& fields, const Fields& extra = {}, const std::string& suffix = "");
  // Writes lines recorded earlier (a resumed run's history) without logging them.
  void replay(const std::vector<std::string>& json_lines);
  // Records from now on also go to `tb` (not owned; nullptr: none).
  void set_tensorboard(TensorBoardWriter* tb) { tb_ = tb; }
  // Records from now on are also logged as one "name=value" line each (step=8 loss=1.2345 ...), the form Katib's
  // default StdOut metrics collector parses; values that are not finite are left out of it.
  void set_katib(bool on) { katib_ = on; }

 private:
  bool katib_ = false;
  TensorBoardWriter* tb_ = nullptr;
  FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace llmft::job
