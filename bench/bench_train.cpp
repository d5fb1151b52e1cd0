// Training throughput of llmft on a GEMM-bound model (Llama architecture, ~40M parameters, a Hugging Face directory
// that bench/train.sh makes), the llmft side of bench/train.sh: LoRA (r=16, all linear layers) or full fine-tuning,
// 4 rows of 512 tokens, AdamW, clipping. Prints one JSON line: tokens/s, peak resident memory, the analytic FLOPs of
// a step and the fraction of this machine's measured GEMM FLOP/s (same threads) it reaches.
//   bench_train MODEL_DIR lora|full STEPS THREADS [float32|bfloat16]
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <malloc.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include "comm/communicator.hpp"
#include "io/checkpoint.hpp"
#include "model/decoder.hpp"
#include "optim/sharded_optimizer.hpp"

using namespace llmft;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: bench_train MODEL_DIR [lora|full] [STEPS] [THREADS]\n");
    return 2;
  }
  const io::ModelDir dir(argv[1]);
  std::string mode = argc > 2 ? argv[2] : "lora";
  int steps = argc > 3 ? std::atoi(argv[3]) : 6;
  const int threads = argc > 4 ? std::atoi(argv[4]) : 1;
  const std::string dtype = argc > 5 ? argv[5] : "float32";
  const int64_t rows = 4, T = 512;
  // As the llmft program does (examples/llmft/main.cpp): freed activation memory stays in the heap for reuse.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  c10::InferenceMode guard;
  at::set_num_threads(threads);

  // GEMM peak of this machine, same BLAS, same shape class as the model's largest products.
  double peak = 0;
  {
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

  const io::ModelConfig& cfg = dir.config();
  model::DecoderOptions opt;
  opt.mode = mode == "full" ? model::TrainMode::kFull : model::TrainMode::kLora;
  opt.dtype = dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  opt.lora.r = 16;
  opt.lora.alpha = 32;
  opt.lora.target_modules = {"all-linear"};
  model::Decoder m(cfg, opt);
  m.load_base([&](const std::string& n) { return dir.find(n); }, dir.path());
  if (opt.mode == model::TrainMode::kLora) m.init_lora(2);
  auto comm = comm::make_single_process();
  optim::ShardedOptimizer adam(m, *comm, 0, {});

  std::mt19937 rng(0);
  std::vector<std::vector<int32_t>> docs(rows, std::vector<int32_t>(T));
  for (auto& d : docs)
    for (auto& x : d) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(cfg.vocab_size));
  std::vector<std::vector<uint8_t>> trained(rows, std::vector<uint8_t>(T, 1));
  model::Batch b = model::make_batch(docs, trained);

  auto step = [&] {
    adam.begin_step();
    m.forward_backward(b, &adam);
    adam.finish_step(1e-4, 1.0, static_cast<double>(b.num_targets));
  };
  step();  // warm-up
  auto t0 = Clock::now();
  for (int s = 0; s < steps; ++s) step();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count() / steps;

  // FLOPs of a step (multiply-adds x 2): linear layers forward; backward input gradients; weight gradients only
  // when the base is trained; LoRA branches; attention (QK^T and PV, causal: half counted as computed, full square);
  // the head (logits, their input gradient, and its weight gradient when trained).
  const double N = static_cast<double>(rows * T), C = static_cast<double>(cfg.hidden_size),
               F = static_cast<double>(cfg.intermediate_size), V = static_cast<double>(cfg.vocab_size),
               L = static_cast<double>(cfg.num_hidden_layers), H = static_cast<double>(cfg.num_attention_heads),
               D = static_cast<double>(cfg.head_dim), KV = static_cast<double>(cfg.kv_dim()), R = 16;
  const double Q = H * D;
  const double linear = L * (C * Q + 2 * C * KV + Q * C + 3 * C * F);   // weights of q k v o gate up down
  const double lora_params = L * R * ((C + Q) + 2 * (C + KV) + (Q + C) + 3 * (C + F));
  const bool full = opt.mode == model::TrainMode::kFull;
  double flops = 2 * N * linear * (full ? 3 : 2) + 2 * N * lora_params * 3 +
                 L * rows * 2 * (2.0 * T * T * H * D) * 3 + 2 * N * V * C * (full ? 3 : 2);
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("{\"impl\": \"llmft\", \"mode\": \"%s\", \"dtype\": \"%s\", \"threads\": %d, \"params\": %lld, \"trainable\": %lld, "
              "\"tokens_per_s\": %.1f, \"step_s\": %.3f, \"peak_rss_mb\": %.0f, \"step_gflop\": %.2f, \"gflops\": %.1f, "
              "\"gemm_peak_gflops\": %.1f, \"fraction_of_peak\": %.3f}\n",
              mode.c_str(), dtype.c_str(), threads, static_cast<long long>(m.all_parameters()),
              static_cast<long long>(m.trainable_parameters()), N / secs, secs, static_cast<double>(ru.ru_maxrss) / 1024.0,
              flops / 1e9, flops / secs / 1e9, peak / 1e9, flops / secs / peak);
}
