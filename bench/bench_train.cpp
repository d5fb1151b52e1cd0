// Training throughput of llmft on a GEMM-bound model (Llama architecture, ~40M parameters, a Hugging Face directory
// that bench/train.sh makes; or the Qwen3-MoE of bench/moe.sh), the llmft side of bench/train.sh and bench/moe.sh: LoRA (r=16, all linear layers) or full fine-tuning,
// 4 rows of 512 tokens (one document each, as the peers' rows), AdamW, clipping; each step is Trainer::step, the
// step the llmft program runs. Prints one JSON line: tokens/s, peak resident memory, the analytic FLOPs of a step and
// the fraction of this machine's measured GEMM FLOP/s (same threads) it reaches.
//   bench_train MODEL_DIR lora|full STEPS THREADS [float32|bfloat16] [TOKENIZER]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <malloc.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <cstdio>
#include <random>
#include <string>

#include "io/checkpoint.hpp"
#include "llmft/config.hpp"
#include "llmft/log.hpp"
#include "llmft/trainer.hpp"
#include "util/file.hpp"

using namespace llmft;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_train MODEL_DIR [lora|full] [STEPS] [THREADS] [float32|bfloat16] [TOKENIZER]\n");
    return 2;
  }
  const io::ModelDir dir(argv[1]);
  std::string mode = argc > 2 ? argv[2] : "lora";
  int steps = argc > 3 ? std::atoi(argv[3]) : 6;
  const int threads = argc > 4 ? std::atoi(argv[4]) : 1;
  const std::string dtype = argc > 5 ? argv[5] : "float32";
  const std::string tokenizer = argc > 6 ? argv[6] : path_join(dir.path(), "tokenizer.json");
  const int64_t rows = 4, T = 512;
  const io::ModelConfig& cfg = dir.config();
  // As the llmft program does (examples/llmft/main.cpp): freed activation memory stays in the heap for reuse.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  at::set_num_threads(threads);

  // GEMM peak of this machine, same BLAS, same shape class as the model's largest products.
  double peak = 0;
  {
    c10::InferenceMode guard;
    const auto gemm_type = dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
    at::Tensor a = at::randn({2048, 2048}).to(gemm_type), b = at::randn({2048, 2048}).to(gemm_type);
    for (int i = 0; i < 2; ++i) at::mm(a, b);
    for (int r = 0; r < 3; ++r) {
      auto t0 = Clock::now();
      for (int i = 0; i < 4; ++i) at::mm(a, b);
      double s = std::chrono::duration<double>(Clock::now() - t0).count() / 4;
      peak = std::max(peak, 2.0 * 2048 * 2048 * 2048 / s);
    }
  }

  // Documents longer than a row (random words), truncated to 512 tokens: every row is one whole-row document, the
  // attention the peers compute (full causal square over 512 tokens).
  char tmpl[] = "/tmp/llmft-bench-train.XXXXXX";
  const std::string work = mkdtemp(tmpl);
  {
    std::mt19937 rng(0);
    const char* words[] = {"the", "little", "dog", "ran", "to", "a", "big", "tree", "and", "saw", "bird", "sun"};
    std::ofstream f(path_join(work, "docs.jsonl"));
    for (int d = 0; d < 64; ++d) {
      std::string text;
      for (int w = 0; w < 1200; ++w) text += std::string(w ? " " : "") + words[rng() % 12];
      f << "{\"text\": \"" << text << "\"}\n";
    }
  }
  std::vector<std::string> kv = {"model.path=" + dir.path(), "tokenizer.path=" + tokenizer, "train.mode=" + mode,
                                 "model.dtype=" + dtype, "data.path=" + path_join(work, "docs.jsonl"),
                                 "data.format=text", "data.seq_len=" + std::to_string(T), "data.overlong=truncate",
                                 "data.eval_count=1", "train.micro_batch_size=" + std::to_string(rows),
                                 "train.max_steps=" + std::to_string(steps + 1), "train.lr=1e-4",
                                 "train.warmup_steps=0", "train.lr_scheduler=constant", "train.max_grad_norm=1",
                                 "lora.r=16", "lora.alpha=32", "lora.dropout=0", "lora.target_modules=all-linear",
                                 "train.threads=" + std::to_string(threads), "generate.num_samples=0",
                                 "checkpoint.every=0", "log.every=1000000", "train.resume=never",
                                 "output.dir=" + path_join(work, "out")};
  set_log_level(LogLevel::kWarn);
  auto trainer = Trainer::create(load_config("", kv));
  trainer->step();  // warm-up
  auto t0 = Clock::now();
  int64_t tokens = 0;
  for (int s = 0; s < steps; ++s) tokens += trainer->step().tokens;
  double secs = std::chrono::duration<double>(Clock::now() - t0).count() / steps;
  const int64_t all_params = trainer->all_parameters(), trainable_params = trainer->trainable_parameters();
  trainer.reset();
  std::system(("rm -rf " + work).c_str());
  // FLOPs of a step (multiply-adds x 2): linear layers forward; backward input gradients; weight gradients only
  // when the base is trained; LoRA branches; attention (QK^T and PV, causal: half counted as computed, full square);
  // the head (logits, their input gradient, and its weight gradient when trained).
  const double N = static_cast<double>(tokens) / steps, C = static_cast<double>(cfg.hidden_size),
               F = static_cast<double>(cfg.intermediate_size), V = static_cast<double>(cfg.vocab_size),
               L = static_cast<double>(cfg.num_hidden_layers), H = static_cast<double>(cfg.num_attention_heads),
               D = static_cast<double>(cfg.head_dim), KV = static_cast<double>(cfg.kv_dim()), R = 16;
  const double Q = H * D;
  // Per token: weights of q k v o and of the MLP it runs (gate up down; in a mixture, its k experts and the router),
  // and the LoRA parameters on its path (all-linear: attention and, in a mixture, its k experts').
  double linear = 0, lora_params = 0;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const bool moe = cfg.is_moe_layer(l);
    const double k = static_cast<double>(cfg.num_experts_per_tok), Fe = static_cast<double>(cfg.moe_intermediate_size);
    linear += C * Q + 2 * C * KV + Q * C + (moe ? k * 3 * C * Fe + C * static_cast<double>(cfg.num_experts) : 3 * C * F);
    lora_params += R * ((C + Q) + 2 * (C + KV) + (Q + C) + (moe ? k * 3 * (C + Fe) : cfg.moe() ? 0 : 3 * (C + F)));
  }
  const bool full = mode == "full";
  double flops = 2 * N * linear * (full ? 3 : 2) + 2 * N * lora_params * 3 +
                 L * rows * 2 * (2.0 * T * T * H * D) * 3 + 2 * N * V * C * (full ? 3 : 2);
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("{\"impl\": \"llmft\", \"mode\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, \"params\": %lld, \"trainable\": %lld, "
              "\"tokens_per_s\": %.1f, \"step_s\": %.3f, \"peak_rss_mb\": %.0f, \"step_gflop\": %.2f, \"gflops\": %.1f, "
              "\"gemm_peak_gflops\": %.1f, \"fraction_of_peak\": %.3f}\n",
              mode.c_str(), dtype.c_str(), threads, static_cast<long long>(all_params),
              static_cast<long long>(trainable_params), N / secs, secs, static_cast<double>(ru.ru_maxrss) / 1024.0,
              flops / 1e9, flops / secs / 1e9, peak / 1e9, flops / secs / peak);
}
