// The jobs llmft runs: train (LoRA or full fine-tuning), generate, export (merge an adapter into its base).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <utility>
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
  std::string merged_dir;      // export.after_train: the merged checkpoint
  int rank = 0, world_size = 1;  // this process in the data-parallel job
  // What this rank held between optimizer steps (ZeRO shards these by dist.zero_stage).
  int64_t optimizer_state_bytes = 0, parameter_bytes = 0, gradient_bytes = 0;
  // The memory plan of a rank (weights, gradients, optimizer state, activations: llmft plan), logged when training
  // starts, and what this process's peak resident memory came to (the plan plus the runtime's own).
  double planned_bytes = 0;
  int64_t peak_rss_bytes = 0;
  // On a GPU (model.device), the most bytes its tensors held at once during training (the caching allocator's peak).
  std::string device = "cpu";
  int64_t peak_device_bytes = 0;
  bool stopped = false;        // the host asked the job to stop: it wrote checkpoint_dir and ends unfinished
  std::string checkpoint_dir;  // the newest checkpoint this run wrote
  std::string resumed_from;    // the checkpoint this run continued from (empty: it started afresh)
  int64_t tokens = 0;          // training tokens of all ranks, over the whole run (resumed parts included)
  double seconds = 0;          // time in training steps, over the whole run
};

// A host's request that a running job stop: 0 while it should go on; any other value (the host's reason, e.g. a signal
// number) stops it at the next optimizer step. Lock-free, so a signal handler may store to it. In a distributed job the
// ranks agree on it with each step's reduction, so a request on any rank stops every rank after the same step.
using StopRequest = std::atomic<int>;

struct StepStats {
  int64_t step = 0;            // optimizer steps taken, this one included
  double loss = 0;             // token-weighted mean loss of this step over every rank
  double grad_norm = 0;        // before clipping
  double learning_rate = 0;    // used by this step
  double epoch = 0;            // epochs of the training split consumed after it
  int64_t tokens = 0;          // tokens of this step, all ranks
  bool stop_requested = false; // a stop was asked for on some rank: this was the last step (done() is true)
  int64_t total_steps = 0;     // the steps the job takes when not stopped
};

// Called after an optimizer step; returning true asks the job to stop (as a StopRequest would).
using StepCallback = std::function<bool(const StepStats&)>;

// Trains as `config` says (llmft/trainer.hpp: create, step until done, checkpoint every checkpoint.every steps,
// finish), writing <output.dir>/{config.yaml, metrics.jsonl, samples.txt, training_summary.json, adapter/ (LoRA) or
// model/ (full)} (and base/ for the embedded model). Progress goes to the log sink (llmft/log.hpp). When `stop` is
// set, every rank finishes the step it is in and the job writes a checkpoint and returns (summary.stopped); running
// the same configuration again continues from it (train.resume=auto). A run that fails writes no weights and
// leaves the output directory's files as the last finished run wrote them, plus <output.dir>/run_failed.json.
// `on_step` (optional) is called after each optimizer step but the one that ends a stop; returning true asks to stop.
LLMFT_API TrainSummary train(const Config& config, const StopRequest* stop = nullptr,
                             const StepCallback& on_step = nullptr);

struct Generation {
  std::string prompt, output;
};
// Answers instructions with model.path (+ generate.adapter), formatted with data.template; with no instructions,
// those of generate.prompts and generate.prompts_file. Collective under a launcher (see Generator); every rank
// gets the answers.
LLMFT_API std::vector<Generation> generate(const Config& config, const std::vector<std::string>& instructions);
// The instructions of a prompts file: one per non-empty line (.txt), or per JSON line (.jsonl: a string, or an object
// with "prompt" or "instruction"). Errors name the file and line.
LLMFT_API std::vector<std::string> read_prompts_file(const std::string& path);
// The instructions a configuration names: generate.prompts, then those of generate.prompts_file.
LLMFT_API std::vector<std::string> configured_prompts(const Config& config);

// Merges export.adapter into its base model and writes a Hugging Face checkpoint to export.out; returns that path.
LLMFT_API std::string export_merged(const Config& config);

struct PrepareSummary {
  std::string dir;  // where the shards and manifest.json are
  int64_t records = 0, used = 0, skipped = 0, truncated = 0, dropped = 0;
  std::vector<std::pair<std::string, int64_t>> skipped_by_reason;
  std::vector<std::string> problems;  // the first few, with file and line
  int64_t tokens = 0, trained_tokens = 0, train_rows = 0, eval_rows = 0, padded_rows = 0;
  double utilisation = 0, padded_utilisation = 0;  // non-padding tokens / row capacity
  double seconds = 0, records_per_second = 0, megabytes_per_second = 0;
};
// Progress of a preparation: records done, input bytes done, total input bytes.
using PrepareProgress = std::function<void(int64_t records, int64_t bytes, int64_t total_bytes)>;
// Tokenizes, templates, splits and packs data.* into token shards under output.dir (tokenizer from tokenizer.path
// or model.path).
LLMFT_API PrepareSummary prepare(const Config& config, const PrepareProgress& progress = nullptr);

// Meta's original Llama 1 / 2 checkpoint (meta_dir: params.json, consolidated.NN.pth split for model parallelism,
// tokenizer.model) as a Hugging Face model directory in out_dir: config.json, generation_config.json, safetensors
// (shards of at most max_shard_mb with model.safetensors.index.json), tokenizer.json (from tokenizer.model, as
// transformers' LlamaConverter makes it), tokenizer.model and tokenizer_config.json. The weights are those
// transformers' convert_llama_weights_to_hf.py writes. The .pth files are read without running their pickle, and
// out_dir is written one shard at a time.
struct ConvertSummary {
  std::string out_dir;
  int model_parallel_files = 0;
  int64_t tensors = 0;
  uint64_t bytes = 0;
  bool tokenizer = false;  // tokenizer.model was there and converted
};
LLMFT_API ConvertSummary convert_meta_llama(const std::string& meta_dir, const std::string& out_dir,
                                            const std::string& llama_version = "2", int64_t max_shard_mb = 5000);

// Where this process stands in the data-parallel job `config` describes: resolved from the launcher's environment
// (torchrun, a Kubeflow PyTorchJob or TrainJob, a Kubernetes Indexed Job) and dist.* as training would resolve it,
// without connecting to anyone. Inconsistent variables throw the error training would, naming them.
struct WorldInfo {
  int rank = 0, size = 1;
  int local_rank = 0, local_size = 1;
  int node_rank = 0, nodes = 1;
  std::string master_addr;
  int master_port = 0;
  std::string source;  // the launcher the values came from: torchrun, PyTorchJob, Indexed Job, single process, ...
};
LLMFT_API WorldInfo describe_world(const Config& config);

// A memory plan, before anything is loaded: what each rank of a job would hold, by part, for the model, the world
// size, the ZeRO stage (train) or tensor-parallel degree (generate: every rank), the batch and the sequence length,
// against the memory a rank has. Estimates from the configuration alone (config.json, never the weights); the
// formulas are in README.md ("Memory plan").
struct PlanRequest {
  std::string job = "train";  // train | generate
  int ranks = 0;              // 0: the launcher's world size (1 without one)
  int local_ranks = 0;        // ranks sharing one machine's memory; 0: the launcher's (all ranks when ranks is given)
  double memory_gb = 0;       // memory of one rank (a GPU's); 0: this machine's memory shared by its local ranks
};
struct MemoryPlan {
  std::string job, model, training;  // training: "LoRA r=16", "full fine-tuning", or "inference"
  int64_t parameters = 0;
  int ranks = 1, zero_stage = 0, tensor_parallel = 1;
  int64_t sequences = 0, tokens_per_sequence = 0;  // train: micro batch x seq_len; generate: batch x (seq_len + new)
  // Bytes one rank holds, by part.
  double weights = 0, gradients = 0, optimizer = 0, activations = 0, kv_cache = 0;
  double available = 0;          // bytes one rank has (0: unknown)
  std::string available_source;  // where `available` came from
  std::vector<std::string> alternatives;  // when it does not fit: settings that would, each with its total
  std::string limit;                      // when none would: how close the furthest split comes
  double total() const { return weights + gradients + optimizer + activations + kv_cache; }
  bool fits() const { return available <= 0 || total() <= available; }
  LLMFT_API std::string table() const;  // the plan as aligned text lines, ending with the verdict
};
LLMFT_API MemoryPlan plan_memory(const Config& config, const PlanRequest& request = {});

}  // namespace llmft
