// llmft's job configuration: what `llmft train | generate | export` and embedding hosts pass in. Read from YAML
// plus `key.sub=value` overrides against one schema (config_keys()): an unknown key or a value of the wrong type is
// an error that names the key (and the file and line). Every field has a default; the defaults are the embedded
// job (a seeded Llama-3-architecture model, the Llama 3.1 tokenizer, a generated instruction dataset).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "llmft/export.hpp"

namespace llmft {

struct ModelSection {
  std::string path;             // Hugging Face model directory; empty: the embedded model, initialised from train.seed
  std::string dtype = "float32";  // compute dtype: float32 or bfloat16
  std::string quantize = "none";  // frozen linear weights: none, nf4 (QLoRA) or fp8 (E4M3, 128x128 block scales)
  std::string device = "auto";    // auto | cpu | cuda (the local rank's GPU) | cuda:N
  // The embedded model (used when path is empty): Llama 3 architecture at a size that trains in minutes on a CPU.
  int64_t hidden_size = 128, intermediate_size = 384, num_layers = 4, num_heads = 4, num_kv_heads = 2;
};

struct TokenizerSection {
  std::string path;  // tokenizer.json / tokenizer.model / folder; empty: model.path (the llmft program supplies a default)
};

struct DataSection {
  std::string path;  // dataset file(s) or folder, or prepared shards (llmft prep); empty: the generated dataset
  std::string format = "alpaca";  // alpaca | dolly | sharegpt | messages | prompt_completion | text
  std::vector<std::string> columns;  // column renames, LLaMA-Factory style: "prompt=question", "response=answer"
  std::vector<std::string> tags;     // role tag renames: "role_tag=from", "user_tag=human", ...
  std::string dataset_info;          // a LLaMA-Factory dataset_info.json to take format/columns/tags from
  std::string dataset;               // the entry of dataset_info to use
  std::string template_name = "auto";  // auto | alpaca | dolly | chat (the model's chat template) | none
  std::string assistant_turns = "all";  // chats: train all assistant turns, or only the last
  std::string overlong = "truncate";  // examples longer than seq_len: truncate | drop
  bool packing = true;                // pack examples into rows (false: one example per row)
  bool strict = false;                // the first bad record is an error (else counted and reported)
  std::string cache_dir;              // where train caches prepared data (default <output.dir>/data-cache)
  int64_t threads = 0;                // tokenization threads (0: all cores)
  int64_t seq_len = 256;
  int64_t synthetic_records = 2400;  // size of the generated dataset
  double eval_fraction = 0.05;
  int64_t eval_count = -1;          // > 0 overrides eval_fraction
  bool train_on_inputs = false;
};

struct LoraSection {
  int64_t r = 16;
  double alpha = 32;
  double dropout = 0.05;
  std::vector<std::string> target_modules = {"all-linear"};
  bool use_rslora = false;
};

struct TrainSection {
  // lora | full | auto (auto: full for the embedded, randomly initialised model, which has nothing for an adapter to
  // adapt; lora for a pretrained model.path)
  std::string mode = "auto";
  int64_t max_steps = -1;     // > 0: stop after this many optimizer steps (else train.epochs)
  double epochs = 3;
  // 0: auto — 3e-3 for the embedded model trained from its random start, 2e-4 for LoRA, 2e-5 for full fine-tuning
  // of a pretrained model.
  double lr = 0;
  std::string lr_scheduler = "cosine";
  int64_t warmup_steps = 10;
  int64_t micro_batch_size = 2;
  int64_t grad_accum = 1;
  int64_t seed = 42;
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_eps = 1e-8;
  int64_t eval_every = 0;     // optimizer steps between evaluations (0: only before and after)
  int64_t threads = 0;        // intra-op threads (0: all cores)
  // Keep only each layer's input in the forward pass and recompute its activations in the backward (one more forward
  // pass; activation memory of one layer instead of all).
  bool activation_checkpointing = false;
  // auto: continue from the newest complete checkpoint under checkpoint.dir, if any; never: start afresh; else the
  // path of a checkpoint-<step> directory to continue from.
  std::string resume = "auto";
};

// Checkpoints: <dir>/checkpoint-<step>/ (a loadable PEFT adapter or HF model, the optimizer and training state, a
// manifest written last). Written every `every` steps and when the host asks the job to stop.
struct CheckpointSection {
  int64_t every = 500;  // optimizer steps between checkpoints (0: only when stopped)
  int64_t keep = 2;     // newest checkpoints kept (0: all); older ones are removed once a newer one is complete
  std::string dir;      // empty: <output.dir>
  double grace_s = 30;  // a stop must end within this: a warning says when the last step and save took longer
};

// Data parallelism. The world (rank, size, master) comes from the launcher's environment: torchrun / Kubeflow
// PyTorchJob (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT, or their PET_ forms), or a
// Kubernetes Indexed Job (JOB_COMPLETION_INDEX is the node rank; nnodes and nproc_per_node from here). Values set
// here override the environment.
struct DistSection {
  int64_t zero_stage = 0;
  std::string backend = "auto";      // auto (nccl on GPU, gloo on CPU, single for a world of one) | gloo | nccl | single
  double timeout_s = 300;            // every collective's deadline
  double rendezvous_timeout_s = 600;  // how long to wait for the master and the other ranks at start
  int64_t nnodes = 0;                // 0: from the environment
  int64_t nproc_per_node = 0;        // 0: from the environment (LOCAL_WORLD_SIZE), else 1
  int64_t node_rank = -1;            // -1: from the environment (GROUP_RANK / NODE_RANK / JOB_COMPLETION_INDEX)
  std::string master_addr;           // empty: MASTER_ADDR, else 127.0.0.1
  int64_t master_port = 0;           // 0: MASTER_PORT, else 29500
};

struct OutputSection {
  std::string dir = "out";
};

struct LogSection {
  int64_t every = 10;
  bool tensorboard = false;  // also write TensorBoard event files to <output.dir>/runs (rank 0)
  bool katib = false;        // also log each record as "name=value" pairs (Katib's StdOut metrics collector)
};

struct GenerateSection {
  std::vector<std::string> prompts;  // raw instructions; empty: held-out records of the dataset
  std::string prompts_file;          // llmft generate: more instructions, one per line (.txt) or per JSON line (.jsonl)
  int64_t batch_size = 16;           // llmft generate: prompts decoded together
  int64_t num_samples = 4;
  int64_t max_new_tokens = 48;
  double temperature = 0.0;
  double top_p = 1.0;
  std::string adapter;  // llmft generate: a PEFT adapter directory to apply
};

struct ExportSection {
  std::string adapter;  // PEFT adapter directory (default: <output.dir>/adapter)
  std::string out;      // merged checkpoint directory (default: <output.dir>/merged)
  double max_shard_mb = 5000;
  bool overwrite = false;  // replace the weight files a previous checkpoint left in `out` (else such a directory is refused)
  bool after_train = false;  // llmft train (LoRA): merge the trained adapter into its base at the end, into `out`
  // A quantised base (a bitsandbytes / FP8 checkpoint, or model.quantize): "dequantized" (the weights the adapter
  // trained against plus the adapter, bf16) or "original" (the full-precision weights plus the adapter); "auto"
  // merges an unquantised base and refuses a quantised one, naming the choice.
  std::string merge_into = "auto";
  std::string original;  // the full-precision checkpoint of a quantised one (merge_into original; drift report)
};

struct Config {
  ModelSection model;
  TokenizerSection tokenizer;
  DataSection data;
  LoraSection lora;
  TrainSection train;
  DistSection dist;
  OutputSection output;
  CheckpointSection checkpoint;
  LogSection log;
  GenerateSection generate;
  ExportSection export_;
};

struct ConfigKey {
  std::string key, type, default_value, help;
};

// Loads `yaml_path` (empty: defaults only) and applies overrides "a.b=value" (value in YAML syntax) in order.
LLMFT_API Config load_config(const std::string& yaml_path, const std::vector<std::string>& overrides = {});
// The configuration a YAML text describes (`origin` names it in errors: "file:line").
LLMFT_API Config config_from_yaml(std::string_view text, const std::string& origin = "<yaml>");
// Sets one key ("lora.r") from a value in YAML syntax ("8"); errors name the key (unknown keys with "did you
// mean") and `where` the value came from.
LLMFT_API void config_set(Config& config, const std::string& key, const std::string& value, const std::string& where = "");
// One key's value as flow YAML text ("8", "[q_proj, v_proj]"); an unknown key is an error with "did you mean".
LLMFT_API std::string config_get(const Config& config, const std::string& key);
// Every key, its type, default and meaning (the README's configuration reference is generated from this).
LLMFT_API std::vector<ConfigKey> config_keys();
// Every key and its value (flow YAML text), in the schema's order: what ranks compare before they train together.
LLMFT_API std::vector<std::pair<std::string, std::string>> config_values(const Config& config);
// The configuration as YAML (written to <output.dir>/config.yaml by train).
LLMFT_API std::string config_to_yaml(const Config& config);

}  // namespace llmft
