// Memory plans (llmft::plan_memory, llmft/train.hpp): the bytes one rank of a training or generation job holds, by
// part, from the model's config.json and the job's settings; what preflight refuses a run with, and what
// `llmft plan` prints.
#pragma once

#include <string>
#include <utility>

#include "io/hf_config.hpp"
#include "llmft/config.hpp"
#include "llmft/train.hpp"

namespace llmft::job {

// The model the job will build, from config.json or the model.* keys (the embedded model; its vocabulary is the
// tokenizer's, counted here as Llama 3's 128,256).
io::ModelConfig planned_model(const Config& c);
// (in, out) of a decoder layer's linear module.
std::pair<int64_t, int64_t> linear_dims(const io::ModelConfig& m, const std::string& module);
// Parameters of layer l's linear weights: its attention projections and its MLP's (every expert's, in a mixture).
double layer_linears(const io::ModelConfig& m, int64_t l);
// train.mode with auto resolved: "lora" or "full".
std::string training_mode(const Config& c);

// The plan for `ranks` ranks (train: at dist.zero_stage; generate: tensor parallelism over all of them), each with
// `available` bytes (0: unknown). Alternatives are filled in when it does not fit.
MemoryPlan plan_for(const Config& c, const io::ModelConfig& m, const std::string& origin, const std::string& job,
                    int ranks, double available, const std::string& available_source);

}  // namespace llmft::job
