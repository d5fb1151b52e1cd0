// The jobs llmft runs: train (LoRA or full fine-tuning), generate, export (merge an adapter into its base).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "llmft/config.hpp"
#include "llmft/export.hpp"

namespace llmft {

struct TrainSummary {
  int64_t steps = 0;
  double first_loss = 0, last_loss = 0;               // mean loss of the first / last logged interval
  double eval_loss_before = 0, eval_loss_after = 0;   // held-out split
  double eval_accuracy_before = 0, eval_accuracy_after = 0;  // held-out target tokens predicted (top-1)
  double tokens_per_second = 0;                       // training tokens (all ranks) per second
  int64_t samples = 0, samples_right_before = 0, samples_right_after = 0;  // held-out answers matching the reference
  std::string output_dir, adapter_dir, model_dir;
};

// Trains as `config` says, writing <output.dir>/{config.yaml, metrics.jsonl, samples.txt, adapter/ (LoRA) or
// model/ (full)} (and base/ for the embedded model). Progress goes to the log sink (llmft/log.hpp).
LLMFT_API TrainSummary train(const Config& config);

struct Generation {
  std::string prompt, output;
};
// Answers instructions with model.path (+ generate.adapter), formatted with data.template.
LLMFT_API std::vector<Generation> generate(const Config& config, const std::vector<std::string>& instructions);

// Merges export.adapter into its base model and writes a Hugging Face checkpoint to export.out; returns that path.
LLMFT_API std::string export_merged(const Config& config);

}  // namespace llmft
