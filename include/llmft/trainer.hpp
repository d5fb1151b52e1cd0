// The training job as an object with explicit state, for hosts that drive it step by step (the llmft program's
// train, the C ABI, tests and the benchmark all use this one step):
//
//   auto t = llmft::Trainer::create(config);      // settings checked, ranks joined, data, model, optimizer
//   while (!t->done()) t->step();                  // one optimizer step each
//   llmft::TrainSummary s = t->finish();           // final evaluation, samples, trained weights
//
// save() writes a checkpoint (<checkpoint.dir>/checkpoint-<step>/: a loadable PEFT adapter or Hugging Face model,
// optimizer.safetensors, rng_state.safetensors, trainer_state.json with the log history and this TrainState,
// config.yaml, manifest.json written last); restore() continues from one exactly: the same losses and weights, bit
// for bit, as a run that was never interrupted, on the same number of ranks (and the same rows, in fp32 tolerance,
// on another number of ranks with the same global batch). Every method that touches the model is collective: each
// rank of a data-parallel job calls it in the same order. No libtorch type appears here.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "llmft/config.hpp"
#include "llmft/log.hpp"
#include "llmft/train.hpp"

namespace llmft {

struct EvalStats {
  double loss = 0, accuracy = 0;  // token-weighted held-out loss; share of target tokens predicted (top-1)
};

// Where a run is: saved with each checkpoint and restored as it is.
struct TrainState {
  int64_t step = 0;               // optimizer steps taken
  int64_t rows = 0;               // rows of the global data stream consumed (all ranks; independent of the world size)
  int64_t tokens = 0;             // training tokens of all ranks so far
  double seconds = 0;             // time spent in steps so far
  double first_loss = 0;          // mean loss of the first logged interval (0 until then)
  bool first_logged = false;
  double interval_loss = 0;       // the log interval in progress: summed step losses, steps, tokens, seconds
  int64_t interval_steps = 0, interval_tokens = 0;
  double interval_seconds = 0;
  double eval_loss_before = 0, eval_accuracy_before = 0;
  std::vector<std::string> samples_before;      // answers to the sample questions before training
  std::vector<std::vector<uint8_t>> rng;        // per rank: the state of its LoRA-dropout generator
  std::vector<std::string> log_history;         // every record logged so far, one JSON object each (metrics.jsonl)
};

// What the host chooses for one trainer. Its settings are in force on the calling thread during each of the
// trainer's calls and taken away after: two trainers in one process log apart, and the process-wide log settings
// (llmft/log.hpp) and libtorch's thread count are as the host left them between calls. The thread count is
// train.threads (0: the usable CPUs, a container's CPU limit respected, shared among this node's ranks).
struct TrainerOptions {
  const StopRequest* stop = nullptr;   // polled at every step, as request_stop() is
  LogSink log_sink;                    // this trainer's messages; empty: the process-wide sink
  std::optional<LogLevel> log_level;   // unset: the process-wide level. Ranks other than 0 log warnings and errors.
};

class LLMFT_API Trainer {
 public:
  // Checks every setting and output location, joins the other ranks (refusing ranks that disagree), prepares the
  // data, loads the model and builds the optimizer; then continues from a checkpoint as train.resume says (auto: the
  // newest complete one under checkpoint.dir, skipping, with a warning naming the file, any that does not verify).
  // `stop` (optional) is polled at every step, as request_stop() is.
  static std::unique_ptr<Trainer> create(const Config& config, const TrainerOptions& options);
  static std::unique_ptr<Trainer> create(const Config& config, const StopRequest* stop = nullptr);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  int64_t total_steps() const;
  int64_t trainable_parameters() const;  // as PEFT counts them (tied weights once)
  int64_t all_parameters() const;
  int rank() const;        // this process in the data-parallel job
  int world_size() const;
  bool done() const;  // total_steps() taken, or stopped
  // One optimizer step: micro-batches, forward and backward, gradient reduction, clipping, the AdamW update; logs
  // every log.every steps and evaluates every train.eval_every. Throws naming the step if it is not finite.
  StepStats step();
  EvalStats evaluate();
  // Steps until done: a checkpoint every checkpoint.every steps and at the last step, `on_step` (optional) after each
  // (returning true asks to stop, as request_stop()). When a stop was asked for, the step in which every rank saw it
  // is the last: its checkpoint is written and its folder returned, without a call to `on_step`; otherwise returns
  // "" (call finish()).
  using StepCallback = llmft::StepCallback;
  std::string run(const StepCallback& on_step = nullptr);
  // Writes a checkpoint of the current step (rank 0 writes; the others contribute their shards) under `root`
  // (empty: checkpoint.dir, else output.dir) and keeps the newest checkpoint.keep there; returns its folder. A write
  // that fails (a full disk) throws naming the path and changes neither the training state nor earlier checkpoints.
  std::string save(const std::string& root = "");
  // Continues from the checkpoint folder `dir`: refused, naming the key and both values, when it was written by a
  // run whose model, data, tokenizer, template, LoRA settings, seed or global batch differ.
  void restore(const std::string& dir);
  // Asks the job to stop after the step in progress (thread-safe; each rank's request is seen by all of them).
  void request_stop(int reason = 1);
  const TrainState& state() const;
  const std::string& resumed_from() const;  // the checkpoint create() continued from, or empty
  // The newest record logged (a JSON object: step, loss, grad_norm, learning_rate, epoch, tokens_per_second, ... or
  // eval_loss, eval_accuracy, ...), as metrics.jsonl holds it; "" before the first.
  std::string last_metrics() const;
  // After the last step: held-out evaluation, sample answers, the trained adapter or model and the run's files
  // (staged in <output.dir>/in_progress, moved into place now).
  TrainSummary finish();

  struct Impl;

 private:
  friend TrainSummary train(const Config&, const StopRequest*, const StepCallback&);
  explicit Trainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmft
