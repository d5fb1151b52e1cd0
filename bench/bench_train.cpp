// Training throughput of llmft on a GEMM-bound model (Llama architecture, ~40M parameters), the llmft side of
// bench/train.sh: LoRA (r=16, all linear layers) or full fine-tuning, rows of 512 tokens, AdamW. Prints one JSON
// line: tokens/s, the analytic FLOPs of a step and the fraction of this machine's measured GEMM FLOP/s it reaches.
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>

#include "comm/communicator.hpp"
#include "model/decoder.hpp"
#include "optim/sharded_optimizer.hpp"

using namespace llmft;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "lora";
  int steps = argc > 2 ? std::atoi(argv[2]) : 6;
  const int64_t rows = 4, T = 512;
  c10::InferenceMode guard;
  at::set_num_threads(1);  // matrix products run on the BLAS's own threads (see train.threads)

  // GEMM peak of this machine, same BLAS, same shape class as the model's largest products.
  double peak = 0;
  {
    at::Tensor a = at::randn({2048, 2048}), b = at::randn({2048, 2048});
    for (int i = 0; i < 2; ++i) at::mm(a, b);
    for (int r = 0; r < 3; ++r) {
      auto t0 = Clock::now();
      for (int i = 0; i < 4; ++i) at::mm(a, b);
      double s = std::chrono::duration<double>(Clock::now() - t0).count() / 4;
      peak = std::max(peak, 2.0 * 2048 * 2048 * 2048 / s);
    }
  }

  auto cfg = io::ModelConfig::from_json(nlohmann::json::parse(R"({"architectures": ["LlamaForCausalLM"],
    "vocab_size": 32000, "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 8,
    "num_attention_heads": 8, "num_key_value_heads": 4, "rms_norm_eps": 1e-5, "tie_word_embeddings": true})"), "bench");
  model::DecoderOptions opt;
  opt.mode = mode == "full" ? model::TrainMode::kFull : model::TrainMode::kLora;
  opt.lora.r = 16;
  opt.lora.alpha = 32;
  opt.lora.target_modules = {"all-linear"};
  model::Decoder m(cfg, opt);
  m.init_random(1);
  if (opt.mode == model::TrainMode::kLora) m.init_lora(2);
  auto comm = comm::make_single_process();
  optim::ShardedOptimizer adam(m, *comm, 0, {});

  std::mt19937 rng(0);
  std::vector<std::vector<int32_t>> docs(rows, std::vector<int32_t>(T));
  for (auto& d : docs)
    for (auto& x : d) x = static_cast<int32_t>(rng() % 32000);
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
  const double N = static_cast<double>(rows * T), C = 512, F = 1408, V = 32000, L = 8, H = 8, D = 64, KV = 256, R = 16;
  const double linear = L * (C * C + 2 * C * KV + C * C + 3 * C * F);   // weights of q k v o gate up down
  const double lora_params = L * R * ((C + C) + 2 * (C + KV) + (C + C) + 3 * (C + F));
  const bool full = opt.mode == model::TrainMode::kFull;
  double flops = 2 * N * linear * (full ? 3 : 2) + 2 * N * lora_params * 3 +
                 L * rows * 2 * (2.0 * T * T * H * D) * 3 + 2 * N * V * C * (full ? 3 : 2);
  std::printf("{\"impl\": \"llmft\", \"mode\": \"%s\", \"params\": %lld, \"trainable\": %lld, \"tokens_per_s\": %.1f, "
              "\"step_s\": %.3f, \"step_gflop\": %.2f, \"gflops\": %.1f, \"gemm_peak_gflops\": %.1f, \"fraction_of_peak\": %.3f}\n",
              mode.c_str(), static_cast<long long>(m.all_parameters()), static_cast<long long>(m.trainable_parameters()),
              N / secs, secs, flops / 1e9, flops / secs / 1e9, peak / 1e9, flops / secs / peak);
}
