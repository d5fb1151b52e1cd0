// What every job checks before it prepares data or loads a model, so that a run is refused in seconds, with a
// message that names the key or path, instead of failing after hours or overwriting what it was given:
//  - model.path exists and is a model directory (config.json), and the settings fit the model: data.seq_len within
//    its positions (or what its rope scaling extends them to), lora.r within the dimensions of every targeted matrix;
//  - no output lands on an input (by file identity: a trailing slash, a symbolic link or a/../a is the same place):
//    the fine-tuned model or adapter, data.cache_dir and export.out against model.path, tokenizer.path, data.path and
//    the adapter;
//  - every output location can be created and written (a file where a folder goes, a read-only folder);
//  - an export does not mix its weight files with an older checkpoint's (export.overwrite replaces them);
//  - the run fits in memory: this rank's memory plan (train/plan.hpp) against its share of this machine's.
#pragma once

#include <cstdint>
#include <string>

#include "llmft/config.hpp"
#include "util/file.hpp"

namespace llmft::job {

enum class Job { kTrain, kPrep, kGenerate, kExport };

// Throws Error(kInvalidArgument / kNotFound / kIo / kOutOfMemory) naming the key or path at fault.
void preflight(const Config& c, Job job);

// This machine's memory (physical, capped by a cgroup limit); what memory plans (train/plan.hpp) compare against.
double machine_memory_bytes();

// What an adapter was trained against, for merging it: whether the base checkpoint is stored quantised
// (quantization_config), and the model.quantize of the training (this job's, else what the adapter folder recorded:
// llmft_adapter.json, which llmft writes beside every adapter it saves).
struct MergeBase {
  bool checkpoint_quantised = false;
  std::string quantize = "none";
  bool quantised() const { return checkpoint_quantised || quantize != "none"; }
};
MergeBase merge_base(const Config& c, const std::string& base_dir, const std::string& adapter_dir);
// export.merge_into against that base: a quantised one needs dequantized or original (with export.original when the
// checkpoint itself is quantised); an unquantised one refuses dequantized. Throws naming the keys.
void check_merge_choice(const Config& c, const MergeBase& b, const std::string& base_dir);
// A decoder layer's linear weight by its checkpoint name: what model.quantize stores (q/k/v/o, gate/up/down, every
// expert's).
bool is_layer_linear(const std::string& name);
// llmft_adapter.json in an adapter folder: the model.quantize it trained with.
void write_adapter_note(const std::string& adapter_dir, const Config& c, WriteMode mode = WriteMode::kAtomic);

}  // namespace llmft::job
