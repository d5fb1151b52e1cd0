// Helpers for the tests where the Hugging Face stack judges llmft's files (tests/hf/hf_judge.py and
// tests/hf/vllm_judge.py in the project's Python environment, which scripts/deps.sh test makes): running them, small
// random bases that transformers writes, LoRA fine-tunes through llmft::train, and llmft's own logits for a base
// model with or without an adapter.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/checkpoint.hpp"
#include "llmft/config.hpp"
#include "llmft/train.hpp"
#include "model/decoder.hpp"
#include "test_support.hpp"
#include "util/file.hpp"

namespace llmft::test {

inline const char* kStories = "models/stories260K-hf";

inline std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs tests/hf/<script> with args; a failure (including a warning the judge treats as one) fails the test.
inline bool judge(const std::string& script, const std::vector<std::string>& args) {
  std::string cmd = "OMP_NUM_THREADS=1 " + quote(python()) + " " + quote(path_join(source_dir(), "tests/hf/" + script));
  for (const auto& a : args) cmd += " " + quote(a);
  int rc = std::system(cmd.c_str());
  if (rc != 0) ADD_FAILURE() << "the Hugging Face judge failed (" << rc << "): " << cmd;
  return rc == 0;
}

// A small random model of `arch` (llama, mistral, qwen2, qwen3) saved by transformers, with stories260K's tokenizer.
inline std::string make_base(const std::string& arch) {
  std::string dir = temp_dir("base-" + arch);
  if (!judge("hf_judge.py", {"make-base", arch, dir, data_path(kStories)})) return "";
  return dir;
}

// A short LoRA fine-tune of `base` through llmft::train (the generated instruction dataset); returns the adapter
// folder it wrote.
inline std::string llmft_lora(const std::string& base, const std::vector<std::string>& lora_settings) {
  std::string out = temp_dir("lora");
  std::vector<std::string> kv = {"model.path=" + base, "train.mode=lora", "data.synthetic_records=48",
                                 "data.seq_len=96", "data.eval_count=4", "train.max_steps=4", "train.lr=3e-2",
                                 "train.warmup_steps=0", "train.micro_batch_size=2", "lora.dropout=0",
                                 "generate.num_samples=0", "log.every=100", "output.dir=" + out};
  kv.insert(kv.end(), lora_settings.begin(), lora_settings.end());
  train(load_config("", kv));
  return out + "/adapter";
}

inline std::unique_ptr<model::Decoder> load_decoder(const io::ModelDir& dir, const io::PeftAdapter* adapter) {
  model::DecoderOptions opt;
  opt.mode = adapter ? model::TrainMode::kLora : model::TrainMode::kNone;
  if (adapter) opt.lora = adapter->spec;
  auto m = std::make_unique<model::Decoder>(dir.config(), opt);
  m->load_base([&](const std::string& n) { return dir.find(n); }, dir.path());
  if (adapter) m->load_lora([&](const std::string& n) { return adapter->find(n); }, "adapter");
  return m;
}

// Token sequences the comparisons run on.
inline std::vector<std::vector<int32_t>> probe_ids(int64_t vocab) {
  std::vector<std::vector<int32_t>> out;
  uint32_t x = 12345;
  for (int len : {1, 7, 33}) {
    std::vector<int32_t> ids;
    for (int t = 0; t < len; ++t) ids.push_back(static_cast<int32_t>((x = x * 1103515245u + 12345u) >> 8) % vocab);
    out.push_back(ids);
  }
  return out;
}

inline std::string write_ids(const std::vector<std::vector<int32_t>>& ids) {
  std::string path = path_join(temp_dir("ids"), "ids.json");
  write_file_atomic(path, nlohmann::json(ids).dump());
  return path;
}

// (T, V) logits of one sequence through llmft's decoder.
inline at::Tensor logits_of(model::Decoder& m, const std::vector<int32_t>& ids) {
  return m.forward_logits(model::make_batch({ids}, {std::vector<uint8_t>(ids.size(), 0)}));
}

}  // namespace llmft::test
