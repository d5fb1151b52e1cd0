// Text generation with a base model and, optionally, a PEFT adapter, loaded once and kept for many calls:
//
//   llmft::Config c;  c.model.path = "models/base";  c.generate.adapter = "out/adapter";
//   auto g = llmft::Generator::create(c);
//   std::string answer = g->answer("Name three primary colours.");
//
// Prompts are formatted as data.template says (auto: Alpaca; chat: the tokenizer's chat template, one user turn),
// decoding stops at the end-of-sequence or end-of-turn token or after max_new_tokens; temperature 0 is greedy
// (what transformers' generate(do_sample=False) returns), otherwise top-p sampling from a generator seeded by
// train.seed at each call. No libtorch type appears here.
//
// Under a launcher (torchrun: WORLD_SIZE > 1) create() joins the world and splits the model across its ranks by
// tensor parallelism: each rank reads and holds its share of the heads, the MLP, the vocabulary and the KV cache.
// Every call is then collective: every rank makes the same calls with the same arguments, and gets the same result.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "llmft/config.hpp"
#include "llmft/log.hpp"
#include "llmft/tokenizer.hpp"

namespace llmft {

// Per-call overrides of generate.*; unset fields take the configuration's values.
struct GenerateParams {
  std::optional<int64_t> max_new_tokens;
  std::optional<double> temperature, top_p;
  std::optional<uint64_t> seed;
};

// As TrainerOptions: in force on the calling thread during each call, then taken away (train.threads applies).
struct GeneratorOptions {
  LogSink log_sink;                   // empty: the process-wide sink
  std::optional<LogLevel> log_level;  // unset: the process-wide level
};

class LLMFT_API Generator {
 public:
  // Loads model.path (or the adapter's base_model_name_or_path) and generate.adapter when given, refusing an adapter
  // that does not fit the model by name and shape, and weights that are not finite.
  static std::unique_ptr<Generator> create(const Config& config, const GeneratorOptions& options = {});
  ~Generator();
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  // The answer to one instruction (templated as a user turn), decoded without special tokens.
  std::string answer(const std::string& instruction, const GenerateParams& params = {});
  // The ids that follow `prompt` (the prompt itself not included), stopping as above.
  std::vector<int32_t> continue_ids(const std::vector<int32_t>& prompt, const GenerateParams& params = {});
  // Several at once: decoded together, generate.batch_size prompts a batch (each as it would be alone).
  std::vector<std::string> answers(const std::vector<std::string>& instructions, const GenerateParams& params = {});
  std::vector<std::vector<int32_t>> continue_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                   const GenerateParams& params = {});
  // The ids answer() feeds the model for `instruction`.
  std::vector<int32_t> prompt_ids(const std::string& instruction) const;
  const Tokenizer& tokenizer() const;
  // This process's rank among the ranks the model is split across, and how many there are (0 and 1 alone).
  int rank() const;
  int world_size() const;

  struct Impl;

 private:
  explicit Generator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmft
