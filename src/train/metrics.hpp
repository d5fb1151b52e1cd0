// Training records: printed in the shape Hugging Face's Trainer prints them,
//   {'loss': 1.2345, 'grad_norm': 0.165, 'learning_rate': 3.6e-05, 'epoch': 0.09} | 1234 tokens/s
// and appended as JSON lines to <output.dir>/in_progress/metrics.jsonl while the run goes (one object per record,
// flushed as written), moved to <output.dir>/metrics.jsonl when it ends.
#pragma once

#include <cstdio>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace llmft::job {

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

 private:
  FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace llmft::job
