// Checkpoint throughput through the Trainer object (llmft/trainer.hpp), the llmft side of bench/checkpoint.sh:
//   bench_checkpoint save MODEL_DIR TOKENIZER WORK_DIR     full fine-tuning of MODEL_DIR: one step, then save() (weights
//                                                          in fp32, Adam moments, state, manifest with crc32) and
//                                                          restore() of that checkpoint, each timed
//   bench_checkpoint resume MODEL_DIR TOKENIZER WORK_DIR   a new process continuing from WORK_DIR's checkpoint: the
//                                                          time from entering main to the end of the first resumed step
//   bench_checkpoint fresh MODEL_DIR TOKENIZER WORK_DIR    the same, starting afresh (no checkpoint read)
// Prints one JSON line.
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "llmft/config.hpp"
#include "llmft/log.hpp"
#include "llmft/trainer.hpp"
#include "train/checkpoints.hpp"
#include "util/file.hpp"

using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  const auto start = Clock::now();
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench_checkpoint save|resume|fresh MODEL_DIR TOKENIZER WORK_DIR\n");
    return 2;
  }
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  const std::string what = argv[1], model = argv[2], tokenizer = argv[3], work = argv[4];
  auto seconds = [](Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); };
  std::vector<std::string> kv = {"model.path=" + model, "tokenizer.path=" + tokenizer, "train.mode=full",
                                 "data.synthetic_records=64", "data.seq_len=128", "data.eval_count=2",
                                 "train.micro_batch_size=1", "train.max_steps=4", "generate.num_samples=0",
                                 "checkpoint.every=0", "checkpoint.keep=0", "log.every=100", "output.dir=" + work,
                                 std::string("train.resume=") + (what == "resume" ? "auto" : "never")};
  llmft::set_log_level(llmft::LogLevel::kWarn);
  auto t = llmft::Trainer::create(llmft::load_config("", kv));
  if (what != "save") {
    t->step();
    std::printf("{\"mode\": \"%s\", \"resumed_from\": \"%s\", \"seconds_to_first_step\": %.3f}\n", what.c_str(),
                t->resumed_from().c_str(), seconds(start));
    return 0;
  }
  t->step();
  auto t0 = Clock::now();
  const std::string dir = t->save();
  const double save_s = seconds(t0);
  int64_t bytes = 0;
  for (const auto& name : llmft::list_directory(dir)) bytes += static_cast<int64_t>(llmft::read_file(llmft::path_join(dir, name)).size());
  std::system("sync");
  // A cold read where this process may drop the page cache (root), else a warm one: said in the output.
  const bool cold = std::system("echo 3 > /proc/sys/vm/drop_caches 2>/dev/null") == 0;
  t0 = Clock::now();
  t->restore(dir);
  const double restore_s = seconds(t0);
  std::printf("{\"mode\": \"save\", \"checkpoint\": \"%s\", \"bytes\": %lld, \"save_s\": %.3f, \"save_mb_s\": %.1f, "
              "\"restore_s\": %.3f, \"restore_mb_s\": %.1f, \"restore_cold_cache\": %s}\n",
              dir.c_str(), static_cast<long long>(bytes), save_s, bytes / 1e6 / save_s, restore_s,
              bytes / 1e6 / restore_s, cold ? "true" : "false");
  return 0;
}
