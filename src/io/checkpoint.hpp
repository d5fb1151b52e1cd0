// Checkpoint formats of the Hugging Face ecosystem:
//  - a model directory: config.json with model.safetensors, or shards listed in model.safetensors.index.json;
//  - writing such a directory, sharded above a size limit (model-00001-of-0000N.safetensors + index);
//  - a PEFT LoRA adapter: adapter_config.json + adapter_model.safetensors with PEFT's tensor names
//    (base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight [r, in], ...lora_B.weight [out, r]).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/hf_config.hpp"
#include "io/safetensors.hpp"
#include "lora/lora.hpp"

namespace llmft::io {

class ModelDir {
 public:
  // Opens config.json and every weight file (headers validated); throws naming the missing or malformed file.
  explicit ModelDir(const std::string& path);
  const std::string& path() const { return path_; }
  const ModelConfig& config() const { return config_; }
  const nlohmann::json& config_json() const { return config_json_; }
  // The tensor named `name` in whichever file holds it, or nullptr.
  const TensorView* find(const std::string& name) const;
  std::vector<std::string> tensor_names() const;
  // A tensor of this directory (from find) was copied out: its pages leave the resident set (MappedFile::release).
  void release(const TensorView& t) const;

 private:
  std::string path_;
  ModelConfig config_;
  nlohmann::json config_json_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, std::pair<size_t, size_t>> index_;  // name -> (file, tensor)
};

// Writes tensors as one model.safetensors, or as shards of at most max_shard_bytes (a tensor larger than that gets a
// shard of its own) plus model.safetensors.index.json. Each file is written atomically; then the weight files of an
// earlier checkpoint in `dir` that the new set does not name are removed (a loader never mixes the two).
void write_model_weights(const std::string& dir, const std::vector<TensorView>& tensors, uint64_t max_shard_bytes,
                         const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
                         WriteMode mode = WriteMode::kAtomic);

// The same, for tensors made one output shard at a time (a conversion of a model larger than memory): `fill` writes a
// tensor's nbytes into the buffer it is given, only when that tensor's shard is written.
struct LazyTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  size_t nbytes = 0;
  std::function<void(uint8_t* out)> fill;
  const uint8_t* data = nullptr;  // already in memory: written from here, `fill` unused
};
void write_model_weights(const std::string& dir, const std::vector<LazyTensor>& tensors, uint64_t max_shard_bytes,
                         const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
                         WriteMode mode = WriteMode::kAtomic);

// PEFT adapters.
constexpr const char* kPeftPrefix = "base_model.model.";
nlohmann::json peft_adapter_config(const lora::LoraSpec& spec, const std::string& base_model_name_or_path);
// `tensors` named as llmft names them (model.layers.{i}...lora_A.weight); saved with PEFT's prefix.
void write_peft_adapter(const std::string& dir, const lora::LoraSpec& spec, const std::string& base_model,
                        const std::vector<TensorView>& tensors, WriteMode mode = WriteMode::kAtomic);

struct PeftAdapter {
  lora::LoraSpec spec;
  std::string base_model_name_or_path;
  std::unique_ptr<SafetensorsFile> weights;
  // The adapter tensor for an llmft name (model.layers.0.self_attn.q_proj.lora_A.weight), or nullptr.
  const TensorView* find(const std::string& name) const;
};
// Reads adapter_config.json (peft_type LORA; rejects what llmft does not implement, by key) and the weights.
PeftAdapter read_peft_adapter(const std::string& dir);

// Whether an adapter fits a model, one check for generate and export: every tensor adapts a layer the model has, a
// module of it with the model's shapes at the adapter's rank ("r" of adapter_config.json), with finite values.
// Errors name the adapter's file and field, the tensor, and the model (`model_origin`).
void check_adapter_fits(const PeftAdapter& adapter, const std::string& adapter_dir, const ModelConfig& model,
                        const std::string& model_origin);

}  // namespace llmft::io
