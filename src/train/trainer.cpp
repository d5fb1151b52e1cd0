// llmft::train: the fine-tuning loop, readable top to bottom in one function (train below). Its parts — tokenizer,
// examples, model, loader, sharded optimizer, metrics — are built by the functions above it and passed in.
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "comm/communicator.hpp"
#include "comm/factory.hpp"
#include "data/dataset.hpp"
#include "data/loader.hpp"
#include "data/prepared.hpp"
#include "io/checkpoint.hpp"
#include "llmft/train.hpp"
#include "optim/schedule.hpp"
#include "optim/sharded_optimizer.hpp"
#include "train/metrics.hpp"
#include "train/preflight.hpp"
#include "train/setup.hpp"
#include "util/check.hpp"
#include "util/file.hpp"
#include "util/log.hpp"
#include "util/sha256.hpp"

namespace llmft {

namespace {

using Clock = std::chrono::steady_clock;

model::Batch to_batch(const data::MicroBatch& mb) { return model::make_batch(mb.ids, mb.trained); }

struct Eval {
  double loss = 0, accuracy = 0;  // token-weighted mean loss; share of target tokens that are the top prediction
};

// Held-out examples, in batches of about `tokens_per_batch` tokens.
Eval evaluate(model::Decoder& m, const std::vector<data::Example>& eval, int64_t tokens_per_batch,
              model::ParamProvider* provider) {
  double loss = 0;
  int64_t targets = 0, correct = 0;
  for (size_t i = 0; i < eval.size();) {
    data::MicroBatch mb;
    int64_t n = 0;
    while (i < eval.size() && (mb.ids.empty() || n + static_cast<int64_t>(eval[i].ids.size()) <= tokens_per_batch)) {
      n += static_cast<int64_t>(eval[i].ids.size());
      mb.ids.push_back(eval[i].ids);
      mb.trained.push_back(eval[i++].trained);
    }
    model::Batch b = to_batch(mb);
    int64_t right = 0;
    loss += m.forward_loss(b, provider, &right);
    targets += b.num_targets;
    correct += right;
  }
  if (targets == 0) return {};
  return {loss / static_cast<double>(targets), static_cast<double>(correct) / static_cast<double>(targets)};
}

void record_eval(job::MetricsSink& metrics, const Eval& e, double epoch) {
  metrics.record({{"eval_loss", e.loss}, {"eval_perplexity", std::exp(e.loss)}, {"eval_accuracy", e.accuracy}, {"epoch", epoch}});
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

struct Samples {
  std::vector<data::Sample> records;
  std::vector<std::string> before, after;
};

std::vector<std::string> answer(model::Decoder& m, const Tokenizer& tok, const data::Templater& fmt,
                                const std::vector<data::Sample>& records, const GenerateSection& g) {
  model::GenerateOptions opt;
  opt.max_new_tokens = g.max_new_tokens;
  opt.temperature = g.temperature;
  opt.top_p = g.top_p;
  opt.stop_ids = fmt.stop_ids();
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(trim(tok.decode(m.generate(fmt.prompt_ids(r), opt), true)));
  return out;
}

void write_samples(const std::string& path, const Samples& s) {
  std::string text;
  for (size_t i = 0; i < s.records.size(); ++i) {
    text += fmt::format("### Sample {}\nquestion: {}\n", i + 1, data::Templater::question(s.records[i]));
    std::string ref = data::Templater::reference(s.records[i]);
    if (!ref.empty()) text += fmt::format("reference: {}\n", ref);
    text += fmt::format("before: {}\nafter: {}\n\n", s.before[i], s.after[i]);
  }
  write_file_atomic(path, text);
}

// Tensors of the model as safetensors views (kept alive by `keep`); `select` picks trainable (adapters or fully
// trained weights) or frozen ones; `dtype` converts.
std::vector<io::TensorView> views_of(const model::Decoder& m, bool adapters, at::ScalarType dtype,
                                     std::vector<at::Tensor>& keep) {
  std::vector<io::TensorView> out;
  m.for_each_parameter([&](const model::ParamSlot& s, const at::Tensor& t, bool) {
    bool is_adapter = s.name.find(".lora_") != std::string::npos;
    if (is_adapter != adapters) return;
    at::Tensor c = t.to(dtype).contiguous();
    keep.push_back(c);
    io::TensorView v;
    v.name = s.name;
    v.dtype = dtype == at::kBFloat16 ? io::DType::kBF16 : dtype == at::kHalf ? io::DType::kF16 : io::DType::kF32;
    v.shape = s.shape;
    v.data = static_cast<const uint8_t*>(c.data_ptr());
    v.nbytes = static_cast<size_t>(c.numel()) * c.element_size();
    out.push_back(v);
  });
  return out;
}

at::ScalarType file_dtype(const std::string& torch_dtype) {
  return torch_dtype == "bfloat16" ? at::kBFloat16 : torch_dtype == "float16" ? at::kHalf : at::kFloat;
}

// tokenizer.json (or tokenizer.model) and its companions, next to saved weights.
void copy_tokenizer_files(const std::string& tokenizer_path, const std::string& dir) {
  std::string src_dir = is_directory(tokenizer_path) ? tokenizer_path : path_dirname(tokenizer_path);
  std::string main = is_directory(tokenizer_path) ? "" : path_basename(tokenizer_path);
  for (const std::string& f : {std::string("tokenizer.json"), std::string("tokenizer.model"), std::string("tokenizer_config.json"),
                               std::string("special_tokens_map.json"), std::string("generation_config.json"), main}) {
    if (f.empty()) continue;
    std::string p = path_join(src_dir, f);
    std::string dst = path_join(dir, f == main && f != "tokenizer.model" ? "tokenizer.json" : f);
    if (file_exists(p) && !file_exists(dst)) write_file_atomic(dst, read_file(p));
  }
}

// A run's own files (config.yaml, metrics.jsonl, samples.txt, and base/ beside an adapter of the embedded model) are
// written to <output.dir>/in_progress while it runs (follow its metrics.jsonl there) and moved into place, each by one
// rename, only once its weights are saved: the output directory describes the last run that finished. A run that fails leaves the previous run's files
// as they were and says so in one place, <output.dir>/run_failed.json.
class RunFiles {
 public:
  RunFiles(std::string out, bool leader) : out_(std::move(out)), stage_(path_join(out_, "in_progress")), leader_(leader) {
    if (!leader_) return;
    remove_tree(stage_);  // what a run that died left
    make_dirs(stage_);
  }
  std::string staged(const std::string& name) const { return path_join(stage_, name); }
  std::string final_path(const std::string& name) const { return path_join(out_, name); }

  void commit() {
    if (!leader_) return;
    for (const std::string& name : list_directory(stage_)) {
      const std::string from = staged(name), to = final_path(name);
      if (is_directory(to)) remove_tree(to);  // a directory is replaced whole (rename cannot replace a full one)
      LLMFT_CHECK(std::rename(from.c_str(), to.c_str()) == 0, Status::kIo, "cannot move {} to {}: {}", from, to,
                  std::strerror(errno));
    }
    remove_tree(stage_);
    std::remove(final_path("run_failed.json").c_str());
    fsync_dir(out_);
  }

  void record_failure(const std::string& error) {
    if (!leader_) return;
    try {
      remove_tree(stage_);
      nlohmann::ordered_json j = {{"error", error},
                                  {"note", "this run failed; the other files here are those of the last run that finished"}};
      write_file_atomic(final_path("run_failed.json"), j.dump(2) + "\n");
    } catch (const std::exception&) {  // the failure itself may be the disk: the error is still reported
    }
  }

 private:
  std::string out_, stage_;
  bool leader_;
};

// What each rank is about to run: its resolved configuration, key by key (but its own node rank), and the size and
// content of what it will read (config.json, weight and tokenizer file sizes, dataset file sizes), as "key=value"
// lines.
std::string run_description(const Config& c) {
  std::string out;
  for (const auto& [key, value] : config_values(c))
    if (key != "dist.node_rank") out += key + "=" + value + "\n";
  auto sizes_of = [](const std::string& path) {
    if (path.empty() || !file_exists(path)) return std::string("-");
    if (!is_directory(path)) return std::to_string(std::filesystem::file_size(path)) + " bytes";
    Sha256 h;
    for (const auto& name : list_directory(path)) {
      const std::string p = path_join(path, name);
      if (name == "config.json") h.update(read_file(p));
      else if (!is_directory(p)) h.update(name + ":" + std::to_string(std::filesystem::file_size(p)) + ";");
    }
    return h.hex_digest().substr(0, 16);
  };
  out += "(the contents of model.path)=" + sizes_of(c.model.path) + "\n";
  out += "(the contents of tokenizer.path)=" + sizes_of(c.tokenizer.path) + "\n";
  std::stringstream ss(c.data.path);
  for (std::string item; std::getline(ss, item, ',');) out += "(the contents of data.path " + item + ")=" + sizes_of(item) + "\n";
  return out;
}

// Ranks started with different configurations (an easy mistake with hand-written Indexed Jobs) fail inside the first
// collective whose sizes differ, or wait out the timeout and blame a live rank. Before any work, every rank shares
// what it is about to run; all of them refuse, naming the first key that differs and its values.
void check_ranks_agree(comm::Communicator& comm, const Config& c) {
  if (comm.size() == 1) return;
  const std::string mine = run_description(c);
  at::Tensor len = at::tensor({static_cast<int64_t>(mine.size())}, at::kLong);
  comm.all_reduce(len, {comm::ReduceOp::kMax})->wait();
  const int64_t n = len.item<int64_t>();
  at::Tensor local = at::zeros({n}, at::kByte), all = at::empty({n * comm.size()}, at::kByte);
  std::memcpy(local.data_ptr(), mine.data(), mine.size());
  comm.all_gather(all, local)->wait();
  auto parse = [](const std::string& text) {
    std::vector<std::pair<std::string, std::string>> kv;
    std::stringstream ss(text);
    for (std::string line; std::getline(ss, line);)
      if (const size_t eq = line.find('='); eq != std::string::npos) kv.emplace_back(line.substr(0, eq), line.substr(eq + 1));
    return kv;
  };
  const auto* bytes = static_cast<const char*>(all.data_ptr());
  auto of_rank = [&](int r) { return parse(std::string(bytes + r * n, strnlen(bytes + r * n, static_cast<size_t>(n)))); };
  const auto first = of_rank(0);
  for (int r = 1; r < comm.size(); ++r) {
    const auto other = of_rank(r);
    for (size_t i = 0; i < std::max(first.size(), other.size()); ++i) {
      const std::string key = i < first.size() ? first[i].first : other[i].first;
      const std::string a = i < first.size() ? first[i].second : "(absent)", b = i < other.size() ? other[i].second : "(absent)";
      LLMFT_CHECK(a == b && (i >= first.size() || i >= other.size() || first[i].first == other[i].first),
                  Status::kInvalidArgument,
                  "rank {}: the ranks were started with different configurations: {} is {} on rank 0 but {} on rank {}; "
                  "every rank of a job must run the same configuration and inputs",
                  comm.rank(), key, a, b, r);
    }
  }
}

void save_model_dir(const model::Decoder& m, const nlohmann::json& config_json, const std::string& tokenizer_path,
                    const std::string& dir) {
  make_dirs(dir);
  std::vector<at::Tensor> keep;
  auto views = views_of(m, false, file_dtype(m.config().torch_dtype), keep);
  io::write_model_weights(dir, views, 5ull << 30);
  write_file_atomic(path_join(dir, "config.json"), config_json.dump(2) + "\n");
  copy_tokenizer_files(tokenizer_path, dir);
}

}  // namespace

namespace {

// The job once its communicator and run files exist: tokenizer, examples, model, optimizer, loader, the loop, saving.
TrainSummary run_training(const Config& c, std::unique_ptr<comm::Communicator>& comm, RunFiles& run,
                          const StopRequest* stop) {
  c10::InferenceMode guard;
  const auto seed = static_cast<uint64_t>(c.train.seed);
  const bool leader = comm->rank() == 0;
  std::string tok_path = job::resolve_tokenizer_path(c);
  Tokenizer tok = Tokenizer::from_file(tok_path);
  job::TrainData td = job::load_training_data(c, tok, seed, leader, [&] { comm->barrier(); });
  data::PreparedData& data = td.prepared;
  log_info("data: {}: {} rows ({} tokens) to train on, {} held-out examples", td.description, data.train->rows(),
           data.train->tokens(), data.eval.size());
  const std::string mode = c.train.mode == "auto" ? (c.model.path.empty() ? "full" : "lora") : c.train.mode;
  job::LoadedModel lm = job::load_model(c, tok, mode, 16 * comm->size());
  model::Decoder& m = *lm.decoder;
  log_info("{}", job::trainable_parameters_line(m));

  TrainSummary summary;
  summary.output_dir = c.output.dir;
  summary.rank = comm->rank();
  summary.world_size = comm->size();
  if (leader) write_file_atomic(run.staged("config.yaml"), config_to_yaml(c));
  if (leader && !lm.dir && mode == "lora") {  // the embedded model is the adapter's base: keep it beside the adapter
    save_model_dir(m, m.config().to_json(), tok_path, run.staged("base"));
    lm.base_name = run.final_path("base");
  }
  optim::AdamWOptions adam{c.train.adam_beta1, c.train.adam_beta2, c.train.adam_eps, c.train.weight_decay};
  optim::ShardedOptimizer opt(m, *comm, static_cast<int>(c.dist.zero_stage), adam);
  data::PackedLoader loader(*data.train, c.train.micro_batch_size, comm->rank(), comm->size(), seed);
  LLMFT_CHECK(c.train.grad_accum >= 1, Status::kInvalidArgument, "train.grad_accum must be >= 1");
  const int64_t rows_per_step = c.train.micro_batch_size * c.train.grad_accum * comm->size();
  const int64_t steps = c.train.max_steps > 0
                            ? c.train.max_steps
                            : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(c.train.epochs * static_cast<double>(loader.rows_per_epoch()) /
                                                                                 static_cast<double>(rows_per_step))));
  const double lr_peak = c.train.lr > 0 ? c.train.lr : !lm.dir ? 3e-3 : mode == "lora" ? 2e-4 : 2e-5;
  optim::Schedule sched{c.train.lr_scheduler, lr_peak, c.train.warmup_steps, steps};
  optim::validate(sched);
  job::MetricsSink metrics(comm->rank() == 0 ? run.staged("metrics.jsonl") : "");
  log_info("training: {} steps of {} rows x {} tokens ({} rows per epoch), ZeRO stage {}, {} rank(s)", steps,
           rows_per_step, c.data.seq_len, loader.rows_per_epoch(), c.dist.zero_stage, comm->size());

  // Held-out questions answered before training.
  std::unique_ptr<data::Templater> fmt = job::templater_for(c, tok, data.template_name);
  Samples samples;
  for (const auto& p : c.generate.prompts) {
    data::Sample s;
    s.instruction.instruction = p;
    if (fmt->name() == "chat") {
      s.kind = data::Sample::Kind::kChat;
      s.messages = data::OJson::array({{{"role", "user"}, {"content", p}}});
    }
    samples.records.push_back(s);
  }
  if (c.generate.prompts.empty()) {  // distinct held-out questions
    std::set<std::string> seen;
    for (size_t i = 0; i < data.eval_samples.size() && static_cast<int64_t>(samples.records.size()) < c.generate.num_samples; ++i)
      if (seen.insert(data::Templater::question(data.eval_samples[i])).second) samples.records.push_back(data.eval_samples[i]);
  }
  // Generation runs on rank 0 (ZeRO-3 gathers the parameters on every rank first, a collective).
  auto generate_samples = [&] {
    opt.gather_parameters(false);
    std::vector<std::string> out = leader ? answer(m, tok, *fmt, samples.records, c.generate)
                                          : std::vector<std::string>(samples.records.size());
    opt.release_parameters();
    return out;
  };
  samples.before = generate_samples();
  if (!data.eval.empty()) {
    Eval e = evaluate(m, data.eval, c.data.seq_len * c.train.micro_batch_size, &opt);
    summary.eval_loss_before = e.loss;
    summary.eval_accuracy_before = e.accuracy;
    record_eval(metrics, e, 0.0);
  }

  // The loop: micro-batches -> forward/backward (gradients of the summed loss) -> one optimizer step.
  at::Generator dropout = at::make_generator<at::CPUGeneratorImpl>(seed + 7);
  double interval_loss = 0, first_loss = NAN;
  int64_t interval_steps = 0, interval_tokens = 0, total_tokens = 0;
  auto interval_start = Clock::now(), train_start = Clock::now();
  for (int64_t step = 0; step < steps; ++step) {
    opt.begin_step();
    double sums[4] = {0, 0, 0, 0};  // loss sum, targets, tokens, stop reason (this rank)
    for (int64_t micro = 0; micro < c.train.grad_accum; ++micro) {
      model::Batch b = to_batch(loader.next());
      opt.set_last_micro_batch(micro + 1 == c.train.grad_accum);
      sums[0] += m.forward_backward(b, &opt, c.lora.dropout > 0 ? &dropout : nullptr);
      sums[1] += static_cast<double>(b.num_targets);
      sums[2] += static_cast<double>(b.ids.numel());
    }
    const int stop_reason = stop ? stop->load() : 0;
    sums[3] = stop_reason != 0 ? 1.0 : 0.0;
    at::Tensor global = at::tensor({sums[0], sums[1], sums[2], sums[3]}, at::kDouble);
    comm->all_reduce(global)->wait();
    if (global[3].item<double>() > 0) {
      // Every rank sees the same sum, so all of them stop here, before this step's update.
      const std::string why = stop_reason != 0 ? fmt::format("the host asked it to stop (reason {})", stop_reason)
                                               : std::string("another rank was asked to stop");
      LLMFT_FAIL(Status::kCancelled, "training stopped during step {} of {}: {}; no weights were written and {} keeps "
                 "the files of the last run that finished", step + 1, steps, why, c.output.dir);
    }
    const double loss = global[0].item<double>() / std::max(1.0, global[1].item<double>());
    const double lr = sched.lr_at(step);
    optim::StepResult r = opt.finish_step(lr, c.train.max_grad_norm, global[1].item<double>());
    if (!std::isfinite(loss) || r.skipped) {
      // Nothing non-finite was applied to the weights (the optimizer skips such a step) and nothing is saved. The
      // weights were checked finite when loaded and token ids are within the vocabulary, so at the first step the
      // model's own numbers overflow; later, the updates diverged.
      const std::string what = !std::isfinite(loss) ? fmt::format("the loss is {}", loss)
                                                     : fmt::format("the gradient norm is {}", r.grad_norm);
      LLMFT_FAIL(Status::kInvalidArgument, "step {}: {}, not finite; {}", step + 1, what,
                 step == 0 ? fmt::format("at the first step, so the weights of {} overflow in {} on this data: try "
                                         "model.dtype=float32 or check the model",
                                         c.model.path.empty() ? "the embedded model" : c.model.path, c.model.dtype)
                           : fmt::format("after {} finite steps the updates diverged: lower train.lr (peak {}) or "
                                         "clip harder with train.max_grad_norm (now {}); no weights were written",
                                         step, lr_peak, c.train.max_grad_norm));
    }

    if (step == 0) {
      const optim::MemoryReport mem = opt.memory();
      log_message(LogLevel::kInfo,
                  fmt::format("[llmft] rank {}: ZeRO stage {} holds {:.2f} MB of optimizer state, {:.2f} MB of parameters "
                              "and {:.2f} MB of gradients between steps",
                              comm->rank(), c.dist.zero_stage, mem.optimizer_state_bytes / 1e6, mem.parameter_bytes / 1e6,
                              mem.gradient_bytes / 1e6));
      summary.optimizer_state_bytes = mem.optimizer_state_bytes;
      summary.parameter_bytes = mem.parameter_bytes;
      summary.gradient_bytes = mem.gradient_bytes;
    }
    interval_loss += loss;
    ++interval_steps;
    interval_tokens += static_cast<int64_t>(global[2].item<double>());
    if ((step + 1) % std::max<int64_t>(1, c.log.every) == 0 || step + 1 == steps) {
      double secs = std::chrono::duration<double>(Clock::now() - interval_start).count();
      double mean = interval_loss / static_cast<double>(interval_steps);
      if (std::isnan(first_loss)) first_loss = mean;
      summary.last_loss = mean;
      metrics.record({{"loss", mean}, {"grad_norm", r.grad_norm}, {"learning_rate", lr}, {"epoch", loader.epoch()}},
                     {{"step", static_cast<double>(step + 1)}, {"tokens_per_second", interval_tokens / secs}},
                     fmt::format(" | step {} | {:.0f} tokens/s", step + 1, interval_tokens / secs));
      total_tokens += interval_tokens;
      interval_loss = 0;
      interval_steps = 0;
      interval_tokens = 0;
      interval_start = Clock::now();
    }
    if (c.train.eval_every > 0 && (step + 1) % c.train.eval_every == 0 && step + 1 < steps && !data.eval.empty()) {
      record_eval(metrics, evaluate(m, data.eval, c.data.seq_len * c.train.micro_batch_size, &opt), loader.epoch());
    }
  }
  summary.steps = steps;
  summary.first_loss = first_loss;
  summary.tokens_per_second = total_tokens / std::chrono::duration<double>(Clock::now() - train_start).count();

  // After: held-out loss, the same questions again, the trained weights.
  if (!data.eval.empty()) {
    Eval e = evaluate(m, data.eval, c.data.seq_len * c.train.micro_batch_size, &opt);
    summary.eval_loss_after = e.loss;
    summary.eval_accuracy_after = e.accuracy;
    record_eval(metrics, e, loader.epoch());
  }
  samples.after = generate_samples();
  summary.samples = static_cast<int64_t>(samples.records.size());
  for (size_t i = 0; i < samples.records.size(); ++i) {
    const std::string ref = trim(data::Templater::reference(samples.records[i]));
    summary.samples_right_before += !ref.empty() && samples.before[i] == ref;
    summary.samples_right_after += !ref.empty() && samples.after[i] == ref;
  }
  // Saving: ZeRO-3 gathers what is saved (a LoRA adapter: the adapter tensors only); rank 0 writes.
  opt.gather_parameters(mode == "lora");
  if (leader) {
    write_samples(run.staged("samples.txt"), samples);
    if (mode == "lora") {
      summary.adapter_dir = path_join(c.output.dir, "adapter");
      std::vector<at::Tensor> keep;
      model::DecoderOptions o = m.options();
      io::write_peft_adapter(summary.adapter_dir, o.lora, lm.base_name, views_of(m, true, at::kFloat, keep));
    } else {
      summary.model_dir = path_join(c.output.dir, "model");
      save_model_dir(m, lm.dir ? lm.dir->config_json() : m.config().to_json(), tok_path, summary.model_dir);
    }
  }
  opt.release_parameters();
  run.commit();     // the weights are saved: the run's files take the place of the previous run's
  comm->barrier();  // every rank leaves once the files are written (rank 0 may serve the store the others use)
  for (size_t i = 0; i < samples.records.size(); ++i)
    log_info("sample {}: {}\n  before: {}\n  after:  {}", i + 1, data::Templater::question(samples.records[i]),
             samples.before[i], samples.after[i]);
  return summary;
}

}  // namespace

TrainSummary train(const Config& c, const StopRequest* stop) {
  job::preflight(c, job::Job::kTrain);  // settings, output locations and memory, before any data or weights are read
  const comm::World world = comm::resolve_world(c.dist);
  at::set_num_threads(job::cpu_threads(c.train.threads, world.local_size));
  std::unique_ptr<comm::Communicator> comm = comm::make_communicator(c.dist, world);
  const bool leader = comm->rank() == 0;
  // Rank 0 speaks for the job; the others log warnings and errors only (prefixed with their rank).
  struct QuietRanks {
    LogLevel saved = log_level();
    explicit QuietRanks(bool quiet) {
      if (quiet && saved < LogLevel::kWarn) set_log_level(LogLevel::kWarn);
    }
    ~QuietRanks() { set_log_level(saved); }
  } quiet(!leader);
  check_ranks_agree(*comm, c);  // before anyone prepares data or writes a file
  RunFiles run(c.output.dir, leader);
  try {
    return run_training(c, comm, run, stop);
  } catch (const std::exception& e) {
    run.record_failure(e.what());
    throw;
  }
}

}  // namespace llmft
