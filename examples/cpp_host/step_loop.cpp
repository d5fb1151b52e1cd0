// Driving llmft::Trainer from C++ (include/llmft/trainer.hpp): the host owns the loop — its own log line per step,
// the library's messages through the host's sink, an early stop when the held-out loss stops improving, a
// checkpoint when it stops, the adapter at the end, and the tuned model answering through llmft::Generator.
//   step_loop MODEL_DIR OUTPUT_DIR [MAX_STEPS]
// MODEL_DIR may instead be a tokenizer.json: then the library's embedded default model (random weights) is tuned.
#include <cstdio>
#include <limits>
#include <string>

#include "llmft/config.hpp"
#include "llmft/error.hpp"
#include "llmft/generator.hpp"
#include "llmft/log.hpp"
#include "llmft/trainer.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: step_loop MODEL_DIR OUTPUT_DIR [MAX_STEPS]\n");
    return 2;
  }
  try {
    const std::string model = argv[1];
    const bool embedded = model.size() > 5 && model.compare(model.size() - 5, 5, ".json") == 0;
    llmft::Config c = llmft::load_config("", {(embedded ? "tokenizer.path=" : "model.path=") + model,
                                              "output.dir=" + std::string(argv[2]), "train.mode=lora",
                                              "train.max_steps=" + std::string(argc > 3 ? argv[3] : "20"),
                                              "data.synthetic_records=64", "data.seq_len=128",
                                              "generate.num_samples=0", "checkpoint.every=0"});
    llmft::TrainerOptions options;  // this host prints its own step lines; the library's warnings come here
    options.log_level = llmft::LogLevel::kWarn;
    options.log_sink = [](llmft::LogLevel, const std::string& message) {
      std::fprintf(stderr, "[host] llmft says: %s\n", message.c_str());
    };
    auto trainer = llmft::Trainer::create(c, options);
    double best = std::numeric_limits<double>::infinity();
    int worse = 0;
    while (!trainer->done()) {
      const llmft::StepStats s = trainer->step();
      std::printf("[host] step %lld/%lld loss %.4f\n", static_cast<long long>(s.step),
                  static_cast<long long>(trainer->total_steps()), s.loss);
      if (s.step % 5 == 0) {
        const llmft::EvalStats e = trainer->evaluate();
        std::printf("[host] held-out loss %.4f, accuracy %.3f\n", e.loss, e.accuracy);
        worse = e.loss < best ? 0 : worse + 1;
        best = std::min(best, e.loss);
        if (worse >= 2) {  // no progress twice in a row: keep a checkpoint and stop
          std::printf("[host] stopping early; checkpoint %s\n", trainer->save().c_str());
          break;
        }
      }
    }
    const llmft::TrainSummary summary = trainer->finish();
    std::printf("[host] adapter: %s after %lld steps\n", summary.adapter_dir.c_str(),
                static_cast<long long>(summary.steps));
    c.generate.adapter = summary.adapter_dir;
    c.generate.max_new_tokens = 16;
    auto generator = llmft::Generator::create(c, {options.log_sink, llmft::LogLevel::kWarn});
    std::printf("[host] answer: %s\n", generator->answer("Tell me a story about a dog.").c_str());
    return 0;
  } catch (const llmft::Error& e) {
    std::fprintf(stderr, "step_loop: %s: %s\n", llmft::status_string(e.status()), e.what());
    return 1;
  }
}
