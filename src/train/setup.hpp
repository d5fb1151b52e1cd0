// What every job needs before it runs: the tokenizer (resolved from the configuration) and the model (the embedded
// Llama-3-architecture model initialised from the seed, or a Hugging Face directory), with PEFT's
// trainable-parameter line.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <memory>
#include <string>

#include "comm/communicator.hpp"
#include "data/prepared.hpp"
#include "io/checkpoint.hpp"
#include "io/fp8_block.hpp"
#include "llmft/config.hpp"
#include "llmft/tokenizer.hpp"
#include "model/decoder.hpp"

namespace llmft::job {

// tokenizer.path, else model.path; with neither (the embedded model) an error: the library looks up no default
// (the llmft program supplies one, examples/llmft/cmd_jobs.cpp).
std::string resolve_tokenizer_path(const Config& c);

// The embedded model's config.json: Llama 3 architecture (GQA, rope theta 500000, llama3 rope scaling, tied
// embeddings) sized by model.* over the tokenizer's vocabulary.
io::ModelConfig embedded_model_config(const Config& c, const Tokenizer& tok);

// The weights of a model directory as the decoder reads them: tensors by name, FP8 block weights (config.json's
// quantization_config, io/fp8_block.hpp) dequantised to float32 one tensor at a time; done() releases a tensor's
// mapped pages (and frees its dequantised copy).
class WeightSource {
 public:
  // `keep`: the format the model stores its frozen linears in (model.quantize). Tensors already in that format are
  // served as they are (the decoder reads them with their companions); any other quantised tensor (FP8 blocks,
  // bitsandbytes NF4) is served dequantised to F32, one tensor at a time.
  explicit WeightSource(const io::ModelDir& dir, model::WeightFormat keep = model::WeightFormat::kDense);
  const io::TensorView* find(const std::string& name);
  void done(const io::TensorView& t);
  model::Decoder::TensorLookup lookup() { return [this](const std::string& n) { return find(n); }; }
  model::Decoder::TensorDone release() { return [this](const io::TensorView& t) { done(t); }; }
  // How config.json says the checkpoint is quantised: kDense (not), kFp8Block or kNf4.
  model::WeightFormat checkpoint_format() const { return format_; }
  const std::optional<io::Fp8BlockConfig>& fp8() const { return fp8_; }

 private:
  const io::ModelDir& dir_;
  model::WeightFormat keep_, format_ = model::WeightFormat::kDense;
  std::optional<io::Fp8BlockConfig> fp8_;
  std::map<std::string, std::pair<std::vector<float>, io::TensorView>> dequantized_;
  std::map<std::string, std::vector<const io::TensorView*>> companions_;  // of each dequantised tensor
};

struct LoadedModel {
  std::unique_ptr<model::Decoder> decoder;
  std::unique_ptr<io::ModelDir> dir;  // null for the embedded model
  std::unique_ptr<WeightSource> weights;  // over dir
  std::string base_name;              // what adapters record as base_model_name_or_path
};

// mode: "lora", "full" or "none" (inference). Base weights loaded or initialised; LoRA adapters initialised.
// `tp`: a tensor-parallel group (inference): each rank reads and keeps its slices. The checkpoint's pages are
// released as each tensor is copied, so a process's memory stays near what it keeps.
// `defer_base` (ZeRO-3 from a model directory): the base weights are neither allocated nor read here; the
// optimizer asks for each rank's slices (Decoder::load_base_shard over `dir`). `device`: where the model lives
// (model::resolve_device of model.device); the checkpoint is read on the CPU and copied there tensor by tensor.
LoadedModel load_model(const Config& c, const Tokenizer& tok, const std::string& mode, int64_t align,
                       comm::Communicator* tp = nullptr, bool defer_base = false, at::Device device = at::kCPU);

std::string trainable_parameters_line(const model::Decoder& m);

// The model's adapters (`adapters`) or its other weights as safetensors views of CPU copies in `dtype`, kept alive
// by `keep`: what the writers take, wherever the model lives.
std::vector<io::TensorView> views_of(const model::Decoder& m, bool adapters, at::ScalarType dtype,
                                     std::vector<at::Tensor>& keep);

// Threads of CPU tensor math (ATen's OpenMP pool, which MKL's matrix products share): train.threads when > 0, else
// OMP_NUM_THREADS when set (torchrun sets it to 1 for several processes per node), else the CPUs this process may use
// (affinity, cgroup quota: usable_cpus) shared among the node's `local_ranks` processes.
int cpu_threads(int64_t configured, int local_ranks);
int usable_cpus();

// What a job trains and evaluates on: prepared shards (data.path names a folder from llmft prep), the generated
// dataset (in memory), or a raw dataset prepared into the cache (data.cache_dir, keyed by the preparation's
// fingerprint) the first time and reused after.
struct TrainData {
  std::unique_ptr<data::Dataset> in_memory;  // owns the examples of the generated dataset
  data::PreparedData prepared;
  std::string description;
};
// In a data-parallel job only the leader (rank 0) prepares a raw dataset into the cache; `barrier` holds the
// others until it has, then every rank opens the same shards.
TrainData load_training_data(const Config& c, const Tokenizer& tok, uint64_t seed, bool leader = true,
                             const std::function<void()>& barrier = nullptr);

// Ranks started with different configurations (an easy mistake with hand-written Indexed Jobs) fail inside the first
// collective whose sizes differ, or wait out the timeout and blame a live rank. Before any work, every rank shares
// what it is about to run (its configuration key by key, and the sizes of the files it will read); all of them
// refuse, naming the first key that differs and its values. Collective.
void check_ranks_agree(comm::Communicator& comm, const Config& c);

// The templater that formats prompts the same way the training data was formatted.
std::unique_ptr<data::Templater> templater_for(const Config& c, const Tokenizer& tok, const std::string& template_name);

// Logs a preparation report: records, skipped by reason (with the first problems), truncated, dropped, tokens,
// rows and packing utilisation.
void log_preparation(const nlohmann::json& manifest);

}  // namespace llmft::job
