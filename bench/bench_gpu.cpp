// llmft's side of bench/gpu/run.sh (it also runs on the CPU, smaller, as a check of itself): training steps of a
// model shape on a device, and the two measurements around them. Prints one JSON line per command.
//
//   bench_gpu train CONFIG_JSON lora|full SEQ_LEN ROWS STEPS DEVICE [ckpt] [RATE_TFLOPS]
//       Random bf16 weights of CONFIG_JSON's shape (drawn on the device), LoRA r=16 alpha 32 on every linear layer
//       or full fine-tuning with AdamW, ROWS rows of SEQ_LEN tokens, each row packed with documents of 1/4, 1/8, 1/2
//       and 1/8 of it (bench/gpu/bench_hf.py packs the same), clipping at 1.0; `ckpt`: activation checkpointing. Two
//       warm-up steps, then STEPS timed. Reports tokens/s, the device allocator's peak, the model FLOPs per token
//       and, given the device's bf16 matrix rate, the MFU (bench/README.md has the formula).
//   bench_gpu matmul DEVICE
//       The bf16 matrix rate: 8192 x 8192 x 8192 products, 3 warm-ups, the mean of 10.
//   bench_gpu kernels DEVICE
//       Each kernel the device's op table picks against the reference it replaces, forward and backward, the mean of
//       5 after 2 warm-ups: attention (bf16, 32 query heads over 8 key/value heads, D 128, 8,192 packed tokens in four
//       documents; on the CPU 1,024) against the written-out reference; AdamW over 256M fp32 values (CPU: 16M) as
//       ATen's fused kernel against the five tensor operations it replaces.
//   bench_gpu adapter MODEL_DIR OUT_DIR DEVICE
//       LoRA r=16 on every linear layer of a Hugging Face model, 10 bf16 steps on random documents; writes the PEFT
//       adapter (OUT_DIR/adapter) and llmft's logits of a fixed 64-token document (OUT_DIR/logits.safetensors, with
//       its ids) for PEFT to compare on the same machine.
#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "comm/communicator.hpp"
#include "io/checkpoint.hpp"
#include "io/safetensors.hpp"
#include "model/decoder.hpp"
#include "model/device.hpp"
#include "model/param_store.hpp"
#include "optim/sharded_optimizer.hpp"
#include "train/setup.hpp"
#include "util/file.hpp"

using namespace llmft;
using Clock = std::chrono::steady_clock;

namespace {

// A row of `seq` tokens as four documents (1/4, 1/8, 1/2, 1/8 of it), `rows` rows, random ids below `vocab`.
model::Batch packed_batch(int64_t seq, int64_t rows, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> docs;
  std::vector<std::vector<uint8_t>> trained;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t a = seq / 4, b = seq / 8, c = seq / 2, d = seq - a - b - c;
    for (int64_t len : {a, b, c, d}) {
      std::vector<int32_t> doc(static_cast<size_t>(len));
      for (auto& t : doc) t = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
      docs.push_back(doc);
      trained.emplace_back(doc.size(), 1);
    }
  }
  return model::make_batch(docs, trained);
}

model::DecoderOptions lora_options(at::Device device, bool lora, bool ckpt) {
  model::DecoderOptions o;
  o.device = device;
  o.dtype = at::kBFloat16;
  o.mode = lora ? model::TrainMode::kLora : model::TrainMode::kFull;
  o.lora.r = 16;
  o.lora.alpha = 32;
  o.lora.dropout = 0;
  o.lora.target_modules = {"all-linear"};
  o.checkpoint_layers = ckpt;
  return o;
}

// Normal(0, 0.02) weights drawn on the device (an 8B model's draw on the CPU would take a minute), norms at one.
void random_weights(model::Decoder& m) {
  at::Generator gen = model::make_generator(m.options().device, 1);
  for (model::Unit& u : m.units()) {
    for (model::ParamGroup* g : {&u.frozen, &u.trainable}) {
      if (!g->flat.defined() || g->empty()) continue;
      for (size_t i = 0; i < g->slots().size(); ++i) {
        const std::string& name = g->slots()[i].name;
        at::Tensor v = g->view(i);
        if (name.find(".lora_") != std::string::npos) continue;
        if (name.find("norm.weight") != std::string::npos) v.fill_(1.0);
        else v.normal_(0.0, 0.02, gen);
      }
    }
  }
  m.refresh_compute();
}

// Parameters that take part in matrix products (every linear layer and the output head; not the embedding lookup,
// not norms): the N of the FLOP formula.
int64_t matmul_parameters(const io::ModelConfig& c) {
  const int64_t C = c.hidden_size, L = c.num_hidden_layers;
  const int64_t attn = C * c.q_dim() + 2 * C * c.kv_dim() + c.q_dim() * C;
  const int64_t mlp = 3 * C * c.intermediate_size;
  return L * (attn + mlp) + c.vocab_size * C;
}

// Attention's FLOPs per token, forward and backward: 4 H D per attended key a layer forward (q k^T and p v), three
// times that with the backward; the attended keys are counted exactly from the documents (causal: t + 1 for the
// t-th token of a document).
double attention_flops_per_token(const io::ModelConfig& c, const model::Batch& b) {
  double keys = 0;
  for (size_t d = 0; d + 1 < b.doc_starts.size(); ++d) {
    const double n = static_cast<double>(b.doc_starts[d + 1] - b.doc_starts[d]);
    keys += n * (n + 1) / 2;
  }
  const double mean_keys = keys / static_cast<double>(b.doc_starts.back());
  return 3.0 * 4.0 * static_cast<double>(c.num_hidden_layers) * static_cast<double>(c.q_dim()) * mean_keys;
}

int train(int argc, char** argv) {
  if (argc < 8) {
    std::fprintf(stderr, "usage: bench_gpu train CONFIG_JSON lora|full SEQ_LEN ROWS STEPS DEVICE [ckpt] [RATE_TFLOPS]\n");
    return 2;
  }
  c10::InferenceMode guard;
  const io::ModelConfig config = io::ModelConfig::from_json(nlohmann::json::parse(read_file(argv[2])), argv[2]);
  const bool lora = std::string(argv[3]) == "lora";
  const int64_t seq = std::atoll(argv[4]), rows = std::atoll(argv[5]);
  const int steps = std::atoi(argv[6]);
  const at::Device device = model::resolve_device(argv[7], 0);
  const bool ckpt = argc > 8 && std::string(argv[8]) == "ckpt";
  const double rate = argc > 9 ? std::atof(argv[9]) * 1e12 : 0.0;

  model::Decoder m(config, lora_options(device, lora, ckpt));
  random_weights(m);
  if (lora) m.init_lora(2);
  auto one = comm::make_single_process();
  model::ParamStore store(m, *one, false);
  optim::ShardedOptimizer opt(m, store, *one, 0, {});
  const model::Batch probe = packed_batch(seq, rows, config.vocab_size, 0);
  double seconds = 0, loss = 0;
  for (int s = 0; s < steps + 2; ++s) {
    const model::Batch b = packed_batch(seq, rows, config.vocab_size, static_cast<uint32_t>(s));
    model::synchronize(device);
    const auto t0 = Clock::now();
    opt.begin_step();
    loss = m.forward_backward(b, &opt, nullptr) / static_cast<double>(b.num_targets);
    opt.finish_step(1e-4, 1.0, static_cast<double>(b.num_targets));
    model::synchronize(device);
    if (s >= 2) seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  const double tokens = static_cast<double>(steps * seq * rows);
  const double n = static_cast<double>(matmul_parameters(config));
  const double per_token = (lora ? 4.0 : 6.0) * n + attention_flops_per_token(config, probe);
  nlohmann::json j = {{"engine", "llmft"}, {"mode", lora ? "lora" : "full"}, {"device", model::describe(device)},
                      {"seq_len", seq}, {"rows", rows}, {"steps", steps}, {"activation_checkpointing", ckpt},
                      {"tokens_per_s", tokens / seconds}, {"step_s", seconds / steps}, {"last_loss", loss},
                      {"peak_allocated_bytes", model::peak_allocated_bytes(device)},
                      {"matmul_parameters", n}, {"flops_per_token", per_token}};
  if (rate > 0) j["mfu"] = tokens / seconds * per_token / rate;
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int matmul(int argc, char** argv) {
  c10::InferenceMode guard;
  const at::Device device = model::resolve_device(argc > 2 ? argv[2] : "auto", 0);
  const int64_t n = device.is_cpu() ? 1024 : 8192;
  at::Tensor a = at::randn({n, n}, at::TensorOptions().dtype(at::kBFloat16).device(device));
  at::Tensor b = at::randn({n, n}, a.options()), c = at::empty({n, n}, a.options());
  for (int i = 0; i < 3; ++i) at::mm_out(c, a, b);
  model::synchronize(device);
  const auto t0 = Clock::now();
  for (int i = 0; i < 10; ++i) at::mm_out(c, a, b);
  model::synchronize(device);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count() / 10;
  const double tflops = 2.0 * static_cast<double>(n * n * n) / s / 1e12;
  std::printf("%s\n", nlohmann::json({{"device", model::describe(device)}, {"n", n}, {"bf16_tflops", tflops}}).dump().c_str());
  return 0;
}

// Seconds per call of f: the mean of 5 after 2 warm-ups, the device synchronised around each.
template <typename F>
double timed(at::Device device, F&& f) {
  for (int i = 0; i < 2; ++i) f();
  model::synchronize(device);
  const auto t0 = Clock::now();
  for (int i = 0; i < 5; ++i) f();
  model::synchronize(device);
  return std::chrono::duration<double>(Clock::now() - t0).count() / 5;
}

int kernels(int argc, char** argv) {
  c10::InferenceMode guard;
  const at::Device device = model::resolve_device(argc > 2 ? argv[2] : "auto", 0);
  const bool gpu = !device.is_cpu();
  nlohmann::json j = {{"device", model::describe(device)}};
  {  // attention
    const int64_t N = gpu ? 8192 : 1024, H = 32, K = 8, D = 128;
    const std::vector<int64_t> starts = {0, N / 4, N / 4 + N / 8, N / 4 + N / 8 + N / 2, N};
    auto o = at::TensorOptions().dtype(at::kBFloat16).device(device);
    at::Tensor q = at::randn({N, H, D}, o), k = at::randn({N, K, D}, o), v = at::randn({N, K, D}, o),
               dout = at::randn({N, H, D}, o);
    auto pass = [&](std::optional<model::AttentionKernel> kind) {
      model::AttentionCache c;
      model::attention_forward(q, k, v, starts, 0, &c, kind);
      at::Tensor dq, dk, dv;
      model::attention_backward(dout, c, starts, 0, &dq, &dk, &dv);
    };
    const double chosen = timed(device, [&] { pass(std::nullopt); });
    const double reference = timed(device, [&] { pass(model::AttentionKernel::kReference); });
    j["attention"] = {{"kernel", model::attention_kernel_name(model::attention_kernel_for(q))}, {"tokens", N},
                      {"kernel_ms", chosen * 1e3}, {"reference_ms", reference * 1e3}, {"speedup", reference / chosen}};
  }
  {  // AdamW
    const int64_t n = gpu ? (int64_t{1} << 28) : (int64_t{1} << 24);
    auto o = at::TensorOptions().dtype(at::kFloat).device(device);
    at::Tensor p = at::randn({n}, o), g = at::randn({n}, o), m = at::zeros({n}, o), v = at::zeros({n}, o);
    at::Tensor step = at::full({}, 1.0, o);
    const double lr = 1e-4, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    const double fused = timed(device, [&] {
      at::_fused_adamw_({p}, {g}, {m}, {v}, {}, {step}, lr, b1, b2, 0.0, eps, false, false);
    });
    const double ops = timed(device, [&] {  // what the optimizer ran before: five tensor operations
      m.mul_(b1).add_(g, 1.0 - b1);
      v.mul_(b2).addcmul_(g, g, 1.0 - b2);
      at::Tensor denom = (v.sqrt() / std::sqrt(1.0 - b2)).add_(eps);
      p.addcdiv_(m, denom, -lr / (1.0 - b1));
    });
    j["adamw"] = {{"values", n}, {"fused_ms", fused * 1e3}, {"tensor_ops_ms", ops * 1e3}, {"speedup", ops / fused}};
  }
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

int adapter(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench_gpu adapter MODEL_DIR OUT_DIR DEVICE\n");
    return 2;
  }
  c10::InferenceMode guard;
  const io::ModelDir dir(argv[2]);
  const std::string out = argv[3];
  const at::Device device = model::resolve_device(argv[4], 0);
  model::Decoder m(dir.config(), lora_options(device, true, false));
  m.load_base([&](const std::string& name) { return dir.find(name); }, dir.path());
  m.init_lora(2);
  auto one = comm::make_single_process();
  model::ParamStore store(m, *one, false);
  optim::ShardedOptimizer opt(m, store, *one, 0, {});
  for (int s = 0; s < 10; ++s) {
    const model::Batch b = packed_batch(256, 2, m.config().vocab_size, 100 + static_cast<uint32_t>(s));
    opt.begin_step();
    m.forward_backward(b, &opt, nullptr);
    opt.finish_step(1e-3, 1.0, static_cast<double>(b.num_targets));
  }
  // The adapter as PEFT reads it (fp32), and the logits of one document.
  std::vector<at::Tensor> keep;
  make_dirs(out);
  io::write_peft_adapter(path_join(out, "adapter"), m.options().lora, dir.path(), job::views_of(m, true, at::kFloat, keep));
  std::mt19937 rng(7);
  std::vector<int32_t> doc(64);
  std::vector<int64_t> doc64;
  for (auto& t : doc) {
    t = static_cast<int32_t>(rng() % static_cast<uint32_t>(m.config().vocab_size));
    doc64.push_back(t);
  }
  at::Tensor logits = m.forward_logits(model::make_batch({doc}, {std::vector<uint8_t>(64, 1)})).cpu().contiguous();  // (64, V)
  at::Tensor ids = at::tensor(doc64, at::kLong);
  io::TensorView lv, iv;
  lv.name = "logits";
  lv.dtype = io::DType::kF32;
  lv.shape = {logits.size(0), logits.size(1)};
  lv.data = static_cast<const uint8_t*>(logits.data_ptr());
  lv.nbytes = static_cast<size_t>(logits.numel()) * 4;
  iv.name = "ids";
  iv.dtype = io::DType::kI64;
  iv.shape = {64};
  iv.data = static_cast<const uint8_t*>(ids.data_ptr());
  iv.nbytes = 64 * 8;
  io::write_safetensors(path_join(out, "logits.safetensors"), {lv, iv});
  std::printf("%s\n", nlohmann::json({{"adapter", path_join(out, "adapter")}, {"device", model::describe(device)}}).dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  try {
    if (cmd == "train") return train(argc, argv);
    if (cmd == "matmul") return matmul(argc, argv);
    if (cmd == "adapter") return adapter(argc, argv);
    if (cmd == "kernels") return kernels(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu %s: %s\n", cmd.c_str(), e.what());
    return 1;
  }
  std::fprintf(stderr, "usage: bench_gpu train|matmul|kernels|adapter ...\n");
  return 2;
}
