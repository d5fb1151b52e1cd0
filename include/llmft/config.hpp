// llmft's job configuration: what `llmft train | generate | export` and embedding hosts pass in. Read from YAML
// plus `key.sub=value` overrides against one schema (config_keys()): an unknown key or a value of the wrong type is
// an error that names the key (and the file and line). Every field has a default; the defaults are the embedded
// job (a seeded Llama-3-architecture model, the Llama 3.1 tokenizer, a generated instruction dataset).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "llmft/export.hpp"

namespace llmft {

struct ModelSection {
  std::string path;             // Hugging Face model directory; empty: the embedded model, initialised from train.seed
  std::string dtype = "float32";  // compute dtype: float32 or bfloat16
  // The embedded model (used when path is empty): Llama 3 architecture at a size that trains in minutes on a CPU.
  int64_t hidden_size = 128, intermediate_size = 384, num_layers = 4, num_heads = 4, num_kv_heads = 2;
};

struct TokenizerSection {
  std::string path;  // tokenizer.json / tokenizer.model / folder; empty: model.path, else the npm Llama 3.1 tokenizer
};

struct DataSection {
  std::string path;                // dataset file; empty: the generated instruction dataset
  std::string format = "alpaca";   // alpaca (more formats: see the data layer)
  std::string template_name = "alpaca";  // alpaca | dolly | chat (the model's chat template)
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
};

struct DistSection {
  int64_t zero_stage = 0;
};

struct OutputSection {
  std::string dir = "out";
};

struct LogSection {
  int64_t every = 10;
};

struct GenerateSection {
  std::vector<std::string> prompts;  // raw instructions; empty: held-out records of the dataset
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
};

struct Config {
  ModelSection model;
  TokenizerSection tokenizer;
  DataSection data;
  LoraSection lora;
  TrainSection train;
  DistSection dist;
  OutputSection output;
  LogSection log;
  GenerateSection generate;
  ExportSection export_;
};

struct ConfigKey {
  std::string key, type, default_value, help;
};

// Loads `yaml_path` (empty: defaults only) and applies overrides "a.b=value" (value in YAML syntax) in order.
LLMFT_API Config load_config(const std::string& yaml_path, const std::vector<std::string>& overrides = {});
// Every key, its type, default and meaning (the README's configuration reference is generated from this).
LLMFT_API std::vector<ConfigKey> config_keys();
// The configuration as YAML (written to <output.dir>/config.yaml by train).
LLMFT_API std::string config_to_yaml(const Config& config);

}  // namespace llmft
