// llmft::train: the fine-tuning loop, readable top to bottom in one function (train below). Its parts — tokenizer,
// examples, model, loader, sharded optimizer, metrics — are built by the functions above it and passed in.
#include <sys/resource.h>

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
#include "llmft/trainer.hpp"
#include "model/device.hpp"
#include "optim/schedule.hpp"
#include "optim/sharded_optimizer.hpp"
#include "train/call_scope.hpp"
#include "train/checkpoints.hpp"
#include "train/metrics.hpp"
#include "train/plan.hpp"
#include "train/preflight.hpp"
#include "train/tensorboard.hpp"
#include "train/resolve.hpp"
#include "train/setup.hpp"
#include "util/check.hpp"
#include "util/file.hpp"
#include "util/build_info.hpp"
#include "util/log.hpp"
#include "util/sha256.hpp"
#include "util/utf8.hpp"

#include <torch/version.h>

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

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
}

struct Samples {
  std::vector<data::Sample> records;
  std::vector<std::string> before, after;
};

// The answers to `records`, decoded as one batch. Under ZeRO-3 (`provider`, `group`) every rank of the group takes
// part, each layer gathered in turn.
std::vector<std::string> answer(model::Decoder& m, const Tokenizer& tok, const data::Templater& fmt,
                                const std::vector<data::Sample>& records, const GenerateSection& g,
                                model::ParamProvider* provider = nullptr, comm::Communicator* group = nullptr) {
  model::GenerateOptions opt;
  opt.max_new_tokens = g.max_new_tokens;
  opt.temperature = g.temperature;
  opt.top_p = g.top_p;
  opt.stop_ids = fmt.stop_ids();
  std::vector<std::string> out;
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& r : records) prompts.push_back(fmt.prompt_ids(r));
  if (prompts.empty()) return out;
  for (const auto& ids : m.generate_batch(prompts, opt, provider, group)) out.push_back(trim(tok.decode(ids, true)));
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


at::ScalarType file_dtype(const std::string& torch_dtype) {
  return torch_dtype == "bfloat16" ? at::kBFloat16 : torch_dtype == "float16" ? at::kHalf : at::kFloat;
}

// tokenizer.json (or tokenizer.model) and its companions, next to saved weights.
void copy_tokenizer_files(const std::string& tokenizer_path, const std::string& dir, WriteMode mode = WriteMode::kAtomic) {
  std::string src_dir = is_directory(tokenizer_path) ? tokenizer_path : path_dirname(tokenizer_path);
  std::string main = is_directory(tokenizer_path) ? "" : path_basename(tokenizer_path);
  for (const std::string& f : {std::string("tokenizer.json"), std::string("tokenizer.model"), std::string("tokenizer_config.json"),
                               std::string("special_tokens_map.json"), std::string("generation_config.json"), main}) {
    if (f.empty()) continue;
    std::string p = path_join(src_dir, f);
    std::string dst = path_join(dir, f == main && f != "tokenizer.model" ? "tokenizer.json" : f);
    if (file_exists(p) && !file_exists(dst)) write_file_atomic(dst, read_file(p), mode);
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

void save_model_dir(const model::Decoder& m, const nlohmann::json& config_json, const std::string& tokenizer_path,
                    const std::string& dir, at::ScalarType dtype, WriteMode mode = WriteMode::kAtomic) {
  make_dirs(dir);
  std::vector<at::Tensor> keep;
  auto views = job::views_of(m, false, dtype, keep);
  io::write_model_weights(dir, views, 5ull << 30, {{"format", "pt"}}, mode);
  write_file_atomic(path_join(dir, "config.json"), config_json.dump(2) + "\n", mode);
  copy_tokenizer_files(tokenizer_path, dir, mode);
}

// What a checkpoint must agree with to be continued from: identities of the inputs. The base weights are
// fingerprinted by their config.json, each weight file's name, size and safetensors header (names, dtypes, shapes,
// offsets) and its first and last MiB, so a resume does not read a 140 GB model through; the tokenizer and its
// tokenizer_config.json (the chat template) by content; the training rows by their count, tokens and 64 rows spread
// over them.
std::string weights_identity(const std::string& model_path) {
  if (model_path.empty()) return "embedded (model.* and train.seed)";
  Sha256 h;
  for (const std::string& name : list_directory(model_path)) {
    const std::string p = path_join(model_path, name);
    if (is_directory(p)) continue;
    if (name == "config.json") {
      h.update(read_file(p));
    } else if (name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0) {
      MappedFile f(p);
      uint64_t header = 0;
      if (f.size() >= 8) std::memcpy(&header, f.data(), 8);
      const size_t head = static_cast<size_t>(std::min<uint64_t>(f.size(), 8 + std::min<uint64_t>(header, f.size())));
      const size_t mib = 1 << 20;
      h.update(name + ":" + std::to_string(f.size()) + ";");
      h.update(f.data(), std::min(f.size(), head + mib));
      if (f.size() > head + mib) h.update(f.data() + f.size() - std::min(mib, f.size() - head - mib), std::min(mib, f.size() - head - mib));
    }
  }
  return h.hex_digest();
}

std::string tokenizer_identity(const std::string& tok_path) {
  Sha256 h;
  const std::string dir = is_directory(tok_path) ? tok_path : path_dirname(tok_path);
  for (const std::string& f : {is_directory(tok_path) ? path_join(dir, "tokenizer.json") : tok_path,
                               is_directory(tok_path) ? path_join(dir, "tokenizer.model") : std::string(),
                               path_join(dir, "tokenizer_config.json")})
    if (!f.empty() && file_exists(f) && !is_directory(f)) h.update(path_basename(f) + ":" + read_file(f) + ";");
  return h.hex_digest();
}

std::string rows_identity(const data::RowSource& rows) {
  Sha256 h;
  h.update(fmt::format("{} rows, {} tokens;", rows.rows(), rows.tokens()));
  const int64_t n = rows.rows(), picks = std::min<int64_t>(64, n);
  for (int64_t i = 0; i < picks; ++i) {
    std::vector<std::vector<int32_t>> ids;
    std::vector<std::vector<uint8_t>> trained;
    rows.row(i * n / picks, ids, trained);
    for (size_t d = 0; d < ids.size(); ++d) {
      h.update(ids[d].data(), ids[d].size() * sizeof(int32_t));
      h.update(trained[d].data(), trained[d].size());
    }
  }
  return h.hex_digest();
}

nlohmann::ordered_json state_to_json(const TrainState& s) {
  nlohmann::ordered_json j;
  j["step"] = s.step;
  j["rows"] = s.rows;
  j["tokens"] = s.tokens;
  j["seconds"] = s.seconds;
  j["first_loss"] = s.first_loss;
  j["first_logged"] = s.first_logged;
  j["interval_loss"] = s.interval_loss;
  j["interval_steps"] = s.interval_steps;
  j["interval_tokens"] = s.interval_tokens;
  j["interval_seconds"] = s.interval_seconds;
  j["eval_loss_before"] = s.eval_loss_before;
  j["eval_accuracy_before"] = s.eval_accuracy_before;
  j["samples_before"] = s.samples_before;
  return j;
}

// Doubles are written by nlohmann's shortest round-trip form, so they come back bit for bit.
TrainState state_from_json(const nlohmann::json& j, const std::string& origin) {
  TrainState s;
  try {
    s.step = j.at("step").get<int64_t>();
    s.rows = j.at("rows").get<int64_t>();
    s.tokens = j.at("tokens").get<int64_t>();
    s.seconds = j.at("seconds").get<double>();
    s.first_loss = j.at("first_loss").get<double>();
    s.first_logged = j.at("first_logged").get<bool>();
    s.interval_loss = j.at("interval_loss").get<double>();
    s.interval_steps = j.at("interval_steps").get<int64_t>();
    s.interval_tokens = j.at("interval_tokens").get<int64_t>();
    s.interval_seconds = j.at("interval_seconds").get<double>();
    s.eval_loss_before = j.at("eval_loss_before").get<double>();
    s.eval_accuracy_before = j.at("eval_accuracy_before").get<double>();
    s.samples_before = j.at("samples_before").get<std::vector<std::string>>();
  } catch (const nlohmann::json::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: the training state is incomplete: {}", origin, plain_error(e));
  }
  return s;
}

io::TensorView byte_view(const std::string& name, const std::vector<uint8_t>& bytes) {
  io::TensorView v;
  v.name = name;
  v.dtype = io::DType::kU8;
  v.shape = {static_cast<int64_t>(bytes.size())};
  v.data = bytes.data();
  v.nbytes = bytes.size();
  return v;
}

io::TensorView f32_view(const std::string& name, const at::Tensor& t) {
  io::TensorView v;
  v.name = name;
  v.dtype = io::DType::kF32;
  v.shape = t.sizes().vec();
  v.data = static_cast<const uint8_t*>(t.data_ptr());
  v.nbytes = static_cast<size_t>(t.numel()) * sizeof(float);
  return v;
}

at::Tensor f32_tensor(const io::TensorView& v, const std::string& origin) {
  LLMFT_CHECK(v.dtype == io::DType::kF32 && v.nbytes == static_cast<size_t>(v.numel()) * 4, Status::kFormat,
              "{}: {} must be F32", origin, v.name);
  at::Tensor t = at::empty(v.shape, at::kFloat);
  std::memcpy(t.data_ptr(), v.data, v.nbytes);
  return t;
}

// Settings a resumed run must share with the checkpoint's run: what it trains (model, tokenizer, data, template,
// LoRA, mode) and the order it trains in (seed). The global batch is compared apart (world sizes may differ).
bool must_not_change(const std::string& key) {
  for (const char* prefix : {"model.", "tokenizer.", "data.", "lora.", "train.mode", "train.seed"})
    if (key.rfind(prefix, 0) == 0) return key != "data.threads" && key != "data.cache_dir" && key != "model.device";
  return false;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// The trainer's parts, built by create() in this order.
struct Trainer::Impl {
  job::HostSettings host;  // the host's log sink and level, the thread count: in force during each call
  Config c;
  std::unique_ptr<comm::Communicator> comm;
  bool leader = false;
  std::unique_ptr<RunFiles> run;
  const StopRequest* host_stop = nullptr;
  StopRequest own_stop{0};

  std::string tok_path;
  std::unique_ptr<Tokenizer> tok;
  job::TrainData td;
  std::string mode;  // lora | full
  job::LoadedModel lm;
  std::unique_ptr<model::ParamStore> store;  // the weights and their sharding (ZeRO-3)
  std::unique_ptr<optim::ShardedOptimizer> opt;  // gradients and moments, over `store`
  std::unique_ptr<data::PackedLoader> loader;
  int64_t rows_per_step = 0, steps = 0;
  double lr_peak = 0;
  std::unique_ptr<optim::Schedule> sched;
  std::unique_ptr<job::MetricsSink> metrics;
  std::unique_ptr<job::TensorBoardWriter> tensorboard;  // log.tensorboard, rank 0: <output.dir>/runs
  std::unique_ptr<data::Templater> fmt;
  Samples samples;
  at::Generator dropout;  // LoRA dropout's, on the model's device
  at::Device device = at::kCPU;
  std::string identity_weights, identity_tokenizer, identity_rows;

  TrainState st;
  bool stopped = false;
  std::string resumed_from, last_checkpoint;
  TrainSummary summary;

  model::Decoder& model() { return *lm.decoder; }
  std::string checkpoint_root() const { return c.checkpoint.dir.empty() ? c.output.dir : c.checkpoint.dir; }
  int64_t tokens_per_eval_batch() const { return c.data.seq_len * c.train.micro_batch_size; }

  std::vector<std::string> generate_samples() {
    if (samples.records.empty()) return {};
    // ZeRO-3: every rank generates in step with rank 0, each layer gathered just before it runs and freed after
    // (the whole model is never in one place); below stage 3 every rank holds the model and rank 0 answers alone.
    if (c.dist.zero_stage >= 3) return answer(model(), *tok, *fmt, samples.records, c.generate, store.get(), comm.get());
    return leader ? answer(model(), *tok, *fmt, samples.records, c.generate)
                  : std::vector<std::string>(samples.records.size());
  }

  void log_record(const job::MetricsSink::Fields& fields, const job::MetricsSink::Fields& extra = {},
                  const std::string& suffix = "") {
    st.log_history.push_back(metrics->record(fields, extra, suffix));
  }

  EvalStats evaluate_and_log() {
    Eval e = llmft::evaluate(model(), td.prepared.eval, tokens_per_eval_batch(), store.get());
    log_record({{"eval_loss", e.loss}, {"eval_perplexity", std::exp(e.loss)}, {"eval_accuracy", e.accuracy},
                {"epoch", loader->epoch()}},
               {{"step", static_cast<double>(st.step)}});
    return {e.loss, e.accuracy};
  }

  std::vector<std::pair<std::string, std::string>> identities() const {
    return {{"the base weights (model.path)", identity_weights},
            {"the tokenizer and its chat template", identity_tokenizer},
            {"the training rows (data.*)", identity_rows}};
  }

  void build(const Config& config, const StopRequest* stop);
  void build_parts();
  void write_checkpoint_files(const std::string& dir, WriteMode wm, const optim::ShardedOptimizer::State& os,
                              const std::vector<std::vector<uint8_t>>& rng);
  void restore(const std::string& dir);
  nlohmann::json check_resumable(const std::string& dir);
  void restore_from(const std::string& dir, const nlohmann::json& trainer_state);
  std::string resume_dir;         // found (and verified) before any data or weights are loaded
  nlohmann::json resume_state;
};

void Trainer::Impl::build(const Config& config, const StopRequest* stop) {
  c = config;
  host_stop = stop;
  job::preflight(c, job::Job::kTrain);  // settings, output locations and memory, before any data or weights are read
  const comm::DistOptions dist = job::dist_options(c.dist);
  const comm::World world = comm::resolve_world(dist);
  host.threads = job::cpu_threads(c.train.threads, world.local_size);
  at::set_num_threads(host.threads);  // until create() returns; then during each call
  device = job::model_device(c, world.local_rank);  // before the communicator: NCCL follows it
  host.cuda_device = device.is_cuda() ? device.index() : -1;
  std::optional<c10::DeviceGuard> on_device;  // create()'s call scope began before the device was known
  if (device.is_cuda()) on_device.emplace(device);
  comm = comm::make_communicator(dist, world, device.is_cuda() ? device.index() : -1);
  leader = comm->rank() == 0;
  host.settle(!leader);  // rank 0 speaks for the job; the others warn and fail only
  LogScope quiet(host.scoped_log ? &host.context : nullptr);
  job::check_ranks_agree(*comm, c);  // before anyone prepares data or writes a file
  run = std::make_unique<RunFiles>(c.output.dir, leader);
  mode = c.train.mode == "auto" ? (c.model.path.empty() ? "full" : "lora") : c.train.mode;
  rows_per_step = c.train.micro_batch_size * c.train.grad_accum * comm->size();
  // The checkpoint to continue from, and whether this run may: before data preparation or model loading.
  if (c.train.resume == "auto") {
    auto found = job::find_latest_checkpoint(checkpoint_root(), [&](const std::string& w) {
      if (leader) log_message(LogLevel::kWarn, w);
    });
    if (found) resume_dir = *found;
  } else if (c.train.resume != "never") {
    resume_dir = c.train.resume;
    job::verify_checkpoint(resume_dir);
  }
  if (!resume_dir.empty()) resume_state = check_resumable(resume_dir);
  try {
    build_parts();
  } catch (const std::exception& e) {
    run->record_failure(e.what());
    throw;
  }
}

void Trainer::Impl::build_parts() {
  c10::InferenceMode guard;
  const auto seed = static_cast<uint64_t>(c.train.seed);
  tok_path = job::resolve_tokenizer_path(c);
  tok = std::make_unique<Tokenizer>(Tokenizer::from_file(tok_path));
  td = job::load_training_data(c, *tok, seed, leader, [&] { comm->barrier(); });
  data::PreparedData& data = td.prepared;
  log_info("data: {}: {} rows ({} tokens) to train on, {} held-out examples", td.description, data.train->rows(),
           data.train->tokens(), data.eval.size());
  // ZeRO-3 from a model directory: no rank builds the whole model; each reads only its slices of the weights.
  const bool by_slice = c.dist.zero_stage >= 3 && comm->size() > 1 && !c.model.path.empty();
  lm = job::load_model(c, *tok, mode, 16 * comm->size(), nullptr, by_slice, device);
  log_info("{}", job::trainable_parameters_line(model()));

  summary.output_dir = c.output.dir;
  summary.rank = comm->rank();
  summary.world_size = comm->size();
  if (leader) write_file_atomic(run->staged("config.yaml"), config_to_yaml(c));
  if (leader && !lm.dir && mode == "lora") {  // the embedded model is the adapter's base: keep it beside the adapter
    save_model_dir(model(), model().config().to_json(), tok_path, run->staged("base"),
                   file_dtype(model().config().torch_dtype));
  }
  if (!lm.dir && mode == "lora") lm.base_name = run->final_path("base");
  optim::AdamWOptions adam{c.train.adam_beta1, c.train.adam_beta2, c.train.adam_eps, c.train.weight_decay};
  model::ShardFill fill;
  if (by_slice) {
    job::WeightSource* weights = lm.weights.get();
    fill = [this, weights](model::Unit& u, bool trainable, int64_t offset, at::Tensor& out) {
      model().load_base_shard(u, trainable, offset, out, weights->lookup(), c.model.path, weights->release());
    };
  }
  store = std::make_unique<model::ParamStore>(model(), *comm, c.dist.zero_stage >= 3, fill);
  opt = std::make_unique<optim::ShardedOptimizer>(model(), *store, *comm, static_cast<int>(c.dist.zero_stage), adam);
  if (by_slice)
    log_info("rank {}: read its 1/{} of the weights of {} (ZeRO-3)", comm->rank(), comm->size(), c.model.path);
  {  // what the plan expects a rank to hold; training_summary.json sets the measured peak beside it
    const MemoryPlan mp = job::plan_for(c, model().config(), c.model.path.empty() ? "the embedded model" : c.model.path,
                                        "train", comm->size(), 0, "");
    summary.planned_bytes = mp.total();
    log_info("memory plan of a rank: weights {:.1f} MB, gradients {:.1f} MB, optimizer state {:.1f} MB, activations "
             "{:.1f} MB ({} x {} tokens{}): {:.1f} MB", mp.weights / 1e6, mp.gradients / 1e6, mp.optimizer / 1e6,
             mp.activations / 1e6, c.train.micro_batch_size, c.data.seq_len,
             c.train.activation_checkpointing ? ", activation checkpointing" : "", mp.total() / 1e6);
  }
  loader = std::make_unique<data::PackedLoader>(*data.train, c.train.micro_batch_size, comm->rank(), comm->size(), seed);
  steps = c.train.max_steps > 0
              ? c.train.max_steps
              : std::max<int64_t>(1, static_cast<int64_t>(std::ceil(c.train.epochs * static_cast<double>(loader->rows_per_epoch()) /
                                                                   static_cast<double>(rows_per_step))));
  lr_peak = c.train.lr > 0 ? c.train.lr : !lm.dir ? 3e-3 : mode == "lora" ? 2e-4 : 2e-5;
  sched = std::make_unique<optim::Schedule>(optim::Schedule{c.train.lr_scheduler, lr_peak, c.train.warmup_steps, steps});
  optim::validate(*sched);
  metrics = std::make_unique<job::MetricsSink>(leader ? run->staged("metrics.jsonl") : "");
  metrics->set_katib(c.log.katib);
  if (leader && c.log.tensorboard) {
    tensorboard = std::make_unique<job::TensorBoardWriter>(path_join(c.output.dir, "runs"));
    metrics->set_tensorboard(tensorboard.get());
    log_info("TensorBoard: {} (tensorboard --logdir {})", tensorboard->path(), path_join(c.output.dir, "runs"));
  }
  dropout = model::make_generator(device, seed + 7);
  identity_weights = weights_identity(c.model.path);
  identity_tokenizer = tokenizer_identity(tok_path);
  identity_rows = rows_identity(*data.train);

  // The sample questions: the configured prompts, else distinct held-out records.
  fmt = job::templater_for(c, *tok, data.template_name);
  for (const auto& p : c.generate.prompts) {
    data::Sample s;
    s.instruction.instruction = p;
    if (fmt->name() == "chat") {
      s.kind = data::Sample::Kind::kChat;
      s.messages = data::OJson::array({{{"role", "user"}, {"content", p}}});
    }
    samples.records.push_back(s);
  }
  if (c.generate.prompts.empty()) {
    std::set<std::string> seen;
    for (size_t i = 0; i < data.eval_samples.size() && static_cast<int64_t>(samples.records.size()) < c.generate.num_samples; ++i)
      if (seen.insert(data::Templater::question(data.eval_samples[i])).second) samples.records.push_back(data.eval_samples[i]);
  }

  // Continue from the checkpoint, or start: the questions answered and the held-out loss before training.
  if (!resume_dir.empty()) {
    restore_from(resume_dir, resume_state);
    resumed_from = resume_dir;
  } else {
    st.samples_before = generate_samples();
    if (!data.eval.empty()) {
      EvalStats e = evaluate_and_log();
      st.eval_loss_before = e.loss;
      st.eval_accuracy_before = e.accuracy;
    }
  }
  log_info("training: {} steps of {} rows x {} tokens ({} rows per epoch), ZeRO stage {}, {} rank(s){}", steps,
           rows_per_step, c.data.seq_len, loader->rows_per_epoch(), c.dist.zero_stage, comm->size(),
           resumed_from.empty() ? std::string() : fmt::format(", continuing after step {} from {}", st.step, resumed_from));
}

void Trainer::Impl::write_checkpoint_files(const std::string& dir, WriteMode wm, const optim::ShardedOptimizer::State& os,
                                           const std::vector<std::vector<uint8_t>>& rng) {
  // The trained tensors in fp32 (the master weights: exact resume), loadable as they are: a PEFT adapter, or a
  // Hugging Face model directory.
  std::vector<at::Tensor> keep;
  if (mode == "lora") {
    io::write_peft_adapter(dir, model().options().lora, lm.base_name, job::views_of(model(), true, at::kFloat, keep), wm);
    job::write_adapter_note(dir, c, wm);
  } else {
    save_model_dir(model(), lm.dir ? lm.dir->config_json() : model().config().to_json(), tok_path, dir, at::kFloat, wm);
  }
  std::vector<io::TensorView> moments;
  for (size_t i = 0; i < os.names.size(); ++i) {
    moments.push_back(f32_view(os.names[i] + ".exp_avg", os.exp_avg[i]));
    moments.push_back(f32_view(os.names[i] + ".exp_avg_sq", os.exp_avg_sq[i]));
  }
  io::write_safetensors(path_join(dir, "optimizer.safetensors"), moments,
                        {{"format", "llmft-adamw"}, {"step", std::to_string(os.steps)}}, wm);
  std::vector<io::TensorView> gens;
  for (size_t r = 0; r < rng.size(); ++r) gens.push_back(byte_view(fmt::format("rank{}.lora_dropout", r), rng[r]));
  io::write_safetensors(path_join(dir, "rng_state.safetensors"), gens, {{"format", "llmft-rng"}}, wm);

  // trainer_state.json as Hugging Face's Trainer writes it (global_step, epoch, log_history, ...), with llmft's own
  // state and what the resumed run must agree with under "llmft".
  nlohmann::ordered_json history = nlohmann::ordered_json::array();
  for (const auto& line : st.log_history) history.push_back(nlohmann::ordered_json::parse(line));
  nlohmann::ordered_json ts;
  ts["global_step"] = st.step;
  ts["epoch"] = loader->epoch();
  ts["max_steps"] = steps;
  ts["logging_steps"] = c.log.every;
  ts["eval_steps"] = c.train.eval_every;
  ts["save_steps"] = c.checkpoint.every;
  ts["train_batch_size"] = c.train.micro_batch_size;
  ts["num_train_epochs"] = c.train.epochs;
  ts["total_flos"] = 0;
  ts["log_history"] = history;
  nlohmann::ordered_json l;
  l["format"] = "llmft-trainer-state/1";
  l["state"] = state_to_json(st);
  l["world_size"] = comm->size();
  l["global_batch_rows"] = rows_per_step;
  l["mode"] = mode;
  nlohmann::ordered_json cfg = nlohmann::ordered_json::object();
  for (const auto& [key, value] : config_values(c)) cfg[key] = value;
  l["config"] = cfg;
  nlohmann::ordered_json ids = nlohmann::ordered_json::object();
  for (const auto& [what, id] : identities()) ids[what] = id;
  l["identities"] = ids;
  ts["llmft"] = l;
  write_file_atomic(path_join(dir, "trainer_state.json"), ts.dump(2) + "\n", wm);
  write_file_atomic(path_join(dir, "config.yaml"), config_to_yaml(c), wm);
}

void Trainer::Impl::restore(const std::string& dir) {
  LLMFT_CHECK(is_directory(dir), Status::kNotFound, "train.resume: {} is not a checkpoint folder", dir);
  job::verify_checkpoint(dir);
  restore_from(dir, check_resumable(dir));
}

// The checkpoint's trainer_state.json, once its settings are found compatible with this run's: everything that needs
// no data, tokenizer or model, so a mismatch is refused before any of them is loaded.
nlohmann::json Trainer::Impl::check_resumable(const std::string& dir) {
  const std::string tpath = path_join(dir, "trainer_state.json");
  nlohmann::json ts;
  try {
    ts = nlohmann::json::parse(read_file(tpath));
  } catch (const nlohmann::json::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: not valid JSON: {}", tpath, plain_error(e));
  }
  LLMFT_CHECK(ts.contains("llmft") && ts["llmft"].value("format", "") == "llmft-trainer-state/1", Status::kFormat,
              "{}: not written by llmft (no \"llmft\" section)", tpath);
  const nlohmann::json& l = ts["llmft"];

  // What must not change, each named with both values.
  const auto saved_cfg = l.value("config", nlohmann::json::object());
  for (const auto& [key, value] : config_values(c)) {
    if (!must_not_change(key) || !saved_cfg.contains(key)) continue;
    const std::string before = saved_cfg[key].get<std::string>();
    LLMFT_CHECK(before == value, Status::kInvalidArgument,
                "cannot continue from {}: {} was {} there and is {} now; it must not change in a resumed run "
                "(train.resume=never starts afresh)", dir, key, before, value);
  }
  std::string changed;  // other settings may change (a longer run, a lower learning rate): said once, plainly
  for (const auto& [key, value] : config_values(c)) {
    if (must_not_change(key) || !saved_cfg.contains(key) || saved_cfg[key].get<std::string>() == value) continue;
    bool operational = false;
    for (const char* p : {"output.", "log.", "generate.", "checkpoint.", "dist.", "export.", "train.resume", "train.threads"})
      operational = operational || key.rfind(p, 0) == 0;
    if (!operational) changed += fmt::format("{}{} {} -> {}", changed.empty() ? "" : ", ", key, saved_cfg[key].get<std::string>(), value);
  }
  if (!changed.empty() && leader)
    log_message(LogLevel::kWarn, fmt::format("continuing from {} with changed settings: {}", dir, changed));
  const int64_t saved_batch = l.value("global_batch_rows", int64_t{0});
  LLMFT_CHECK(saved_batch == rows_per_step, Status::kInvalidArgument,
              "cannot continue from {}: its global batch was {} rows per step ({} ranks), now it is {} "
              "(train.micro_batch_size {} x train.grad_accum {} x {} ranks); set them so the product is {}",
              dir, saved_batch, l.value("world_size", 0), rows_per_step, c.train.micro_batch_size, c.train.grad_accum,
              comm->size(), saved_batch);
  LLMFT_CHECK(l.value("mode", "") == mode, Status::kInvalidArgument, "cannot continue from {}: it trained {} and this run trains {}",
              dir, l.value("mode", ""), mode);
  return ts;
}

void Trainer::Impl::restore_from(const std::string& dir, const nlohmann::json& ts) {
  c10::InferenceMode guard;
  const std::string tpath = path_join(dir, "trainer_state.json");
  const nlohmann::json& l = ts["llmft"];
  const auto saved_ids = l.value("identities", nlohmann::json::object());
  for (const auto& [what, id] : identities())
    LLMFT_CHECK(!saved_ids.contains(what) || saved_ids[what].get<std::string>() == id, Status::kInvalidArgument,
                "cannot continue from {}: {} changed since it was written (fingerprint {} there, {} now)", dir, what,
                saved_ids.value(what, std::string()).substr(0, 16), id.substr(0, 16));
  TrainState restored = state_from_json(l.at("state"), tpath);
  for (const auto& rec : ts.value("log_history", nlohmann::json::array())) restored.log_history.push_back(rec.dump());

  // The trained weights. Full fine-tuning at ZeRO-3: each rank reads only its slices of the checkpoint's model (the
  // whole model is never built). Otherwise into the full buffers (ZeRO-3 gathers an adapter first), then each rank
  // keeps its slice.
  if (mode != "lora" && c.dist.zero_stage >= 3) {
    io::ModelDir md(dir);
    store->reload([&](model::Unit& u, bool trainable, int64_t offset, at::Tensor& out) {
      model().load_base_shard(u, trainable, offset, out, [&](const std::string& n) { return md.find(n); }, dir,
                              [&](const io::TensorView& t) { md.release(t); });
    });
  } else {
    store->gather(mode == "lora");
    if (mode == "lora") {
      io::PeftAdapter a = io::read_peft_adapter(dir);
      model().load_lora([&](const std::string& n) { return a.find(n); }, path_join(dir, "adapter_model.safetensors"));
    } else {
      io::ModelDir md(dir);
      model().load_base([&](const std::string& n) { return md.find(n); }, dir);
    }
    store->changed();
    store->release_all();
  }

  // Optimizer moments (any world size wrote them) and the generators.
  io::SafetensorsFile of(path_join(dir, "optimizer.safetensors"));
  optim::ShardedOptimizer::State os;
  os.steps = restored.step;
  for (const auto& t : of.tensors()) {
    constexpr std::string_view suffix = ".exp_avg";
    if (t.name.size() > suffix.size() && t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      const std::string name = t.name.substr(0, t.name.size() - suffix.size());
      os.names.push_back(name);
      os.exp_avg.push_back(f32_tensor(t, of.path()));
      os.exp_avg_sq.push_back(f32_tensor(of.get(name + ".exp_avg_sq"), of.path()));
    }
  }
  opt->import_state(os, of.path());
  io::SafetensorsFile rf(path_join(dir, "rng_state.safetensors"));
  const int saved_world = static_cast<int>(rf.tensors().size());
  // A rank the saved job did not have takes rank 0's generator (every rank starts from the same seed).
  const int from_rank = comm->rank() < saved_world ? comm->rank() : 0;
  const io::TensorView& g = rf.get(fmt::format("rank{}.lora_dropout", from_rank));
  at::Tensor gs = at::empty({static_cast<int64_t>(g.nbytes)}, at::kByte);
  std::memcpy(gs.data_ptr(), g.data, g.nbytes);
  // A CPU generator's state and a GPU's differ: a checkpoint written on another kind of device (model.device) resumes
  // exactly unless LoRA dropout draws from it.
  const bool same_kind = gs.numel() == dropout.get_state().numel();
  LLMFT_CHECK(same_kind || mode != "lora" || c.lora.dropout == 0, Status::kInvalidArgument,
              "{}: rank{}.lora_dropout holds a generator state of {} bytes and this run's {} generator takes {}: the "
              "checkpoint was written on another kind of device (model.device) and lora.dropout {} draws from it; "
              "resume it on that kind of device", rf.path(), from_rank, gs.numel(), model::describe(device),
              dropout.get_state().numel(), c.lora.dropout);
  if (same_kind) dropout.set_state(gs);
  for (const auto& t : rf.tensors()) restored.rng.emplace_back(t.data, t.data + t.nbytes);

  loader->restore({restored.rows});
  st = std::move(restored);
  if (leader) {  // metrics.jsonl of this run is the history it continues, then what it adds
    metrics.reset();
    std::remove(run->staged("metrics.jsonl").c_str());
    metrics = std::make_unique<job::MetricsSink>(run->staged("metrics.jsonl"));
    metrics->replay(st.log_history);
    metrics->set_tensorboard(tensorboard.get());
    metrics->set_katib(c.log.katib);
  }
}

// ---------------------------------------------------------------------------------------------------------------

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

std::unique_ptr<Trainer> Trainer::create(const Config& config, const StopRequest* stop) {
  TrainerOptions o;
  o.stop = stop;
  return create(config, o);
}

std::unique_ptr<Trainer> Trainer::create(const Config& config, const TrainerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->host.sink = options.log_sink;
  impl->host.level = options.log_level;
  impl->host.threads = 0;  // known once the world is: build() sets it
  impl->host.settle(false);
  {
    job::CallScope scope(impl->host);
    impl->build(config, options.stop);
  }
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

std::string Trainer::last_metrics() const {
  return impl_->st.log_history.empty() ? std::string() : impl_->st.log_history.back();
}

int64_t Trainer::total_steps() const { return impl_->steps; }
int64_t Trainer::trainable_parameters() const { return impl_->model().trainable_parameters(); }
int64_t Trainer::all_parameters() const { return impl_->model().all_parameters(); }
int Trainer::rank() const { return impl_->comm->rank(); }
int Trainer::world_size() const { return impl_->comm->size(); }
bool Trainer::done() const { return impl_->stopped || impl_->st.step >= impl_->steps; }
const TrainState& Trainer::state() const { return impl_->st; }
const std::string& Trainer::resumed_from() const { return impl_->resumed_from; }
void Trainer::request_stop(int reason) { impl_->own_stop.store(reason == 0 ? 1 : reason); }

StepStats Trainer::step() {
  Impl& t = *impl_;
  job::CallScope scope(t.host);
  LLMFT_CHECK(!done(), Status::kInvalidArgument, "the trainer is done ({} of {} steps{})", t.st.step, t.steps,
              t.stopped ? ", stopped" : "");
  c10::InferenceMode guard;
  const Config& c = t.c;
  const auto start = Clock::now();
  t.opt->begin_step();
  double sums[4] = {0, 0, 0, 0};  // loss sum, targets, tokens, stop requested (this rank)
  for (int64_t micro = 0; micro < c.train.grad_accum; ++micro) {
    model::Batch b = to_batch(t.loader->next());
    t.opt->set_last_micro_batch(micro + 1 == c.train.grad_accum);
    sums[0] += t.model().forward_backward(b, t.opt.get(), c.lora.dropout > 0 ? &t.dropout : nullptr);
    sums[1] += static_cast<double>(b.num_targets);
    sums[2] += static_cast<double>(b.ids.numel());
  }
  sums[3] = (t.host_stop && t.host_stop->load() != 0) || t.own_stop.load() != 0 ? 1.0 : 0.0;
  at::Tensor global = at::tensor({sums[0], sums[1], sums[2], sums[3]}, at::kDouble);
  comm::all_reduce_host(*t.comm, global);  // every rank sees the same sums, so all of them stop after the same step
  const double loss = global[0].item<double>() / std::max(1.0, global[1].item<double>());
  const double lr = t.sched->lr_at(t.st.step);
  optim::StepResult r = t.opt->finish_step(lr, c.train.max_grad_norm, global[1].item<double>());
  if (!std::isfinite(loss) || r.skipped) {
    // Nothing non-finite was applied to the weights (the optimizer skips such a step) and nothing is saved. The
    // weights were checked finite when loaded and token ids are within the vocabulary, so at the first step the
    // model's own numbers overflow; later, the updates diverged.
    const std::string what = !std::isfinite(loss) ? fmt::format("the loss is {}", loss)
                                                   : fmt::format("the gradient norm is {}", r.grad_norm);
    LLMFT_FAIL(Status::kInvalidArgument, "step {}: {}, not finite; {}", t.st.step + 1, what,
               t.st.step == 0 ? fmt::format("at the first step, so the weights of {} overflow in {} on this data: try "
                                            "model.dtype=float32 or check the model",
                                            c.model.path.empty() ? "the embedded model" : c.model.path, c.model.dtype)
                              : fmt::format("after {} finite steps the updates diverged: lower train.lr (peak {}) or "
                                            "clip harder with train.max_grad_norm (now {}); no weights were written",
                                            t.st.step, t.lr_peak, c.train.max_grad_norm));
  }
  if (t.st.step == 0 || t.summary.optimizer_state_bytes == 0) {
    const optim::MemoryReport mem = t.opt->memory();
    if (t.st.step == 0 || !t.resumed_from.empty())
      log_message(LogLevel::kInfo,
                  fmt::format("rank {}: ZeRO stage {} holds {:.2f} MB of optimizer state, {:.2f} MB of parameters "
                              "and {:.2f} MB of gradients between steps",
                              t.comm->rank(), c.dist.zero_stage, mem.optimizer_state_bytes / 1e6,
                              mem.parameter_bytes / 1e6, mem.gradient_bytes / 1e6));
    t.summary.optimizer_state_bytes = mem.optimizer_state_bytes;
    t.summary.parameter_bytes = mem.parameter_bytes;
    t.summary.gradient_bytes = mem.gradient_bytes;
  }

  TrainState& st = t.st;
  ++st.step;
  st.rows = t.loader->state().rows;
  const auto step_tokens = static_cast<int64_t>(global[2].item<double>());
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  st.tokens += step_tokens;
  st.seconds += secs;
  st.interval_loss += loss;
  ++st.interval_steps;
  st.interval_tokens += step_tokens;
  st.interval_seconds += secs;
  if (st.step % std::max<int64_t>(1, c.log.every) == 0 || st.step == t.steps || global[3].item<double>() > 0) {
    const double mean = st.interval_loss / static_cast<double>(st.interval_steps);
    if (!st.first_logged) {
      st.first_loss = mean;
      st.first_logged = true;
    }
    const double tps = static_cast<double>(st.interval_tokens) / std::max(1e-9, st.interval_seconds);
    t.log_record({{"loss", mean}, {"grad_norm", r.grad_norm}, {"learning_rate", lr}, {"epoch", t.loader->epoch()}},
                 {{"step", static_cast<double>(st.step)}, {"tokens_per_second", tps}},
                 fmt::format(" | step {} | {:.0f} tokens/s", st.step, tps));
    st.interval_loss = 0;
    st.interval_steps = 0;
    st.interval_tokens = 0;
    st.interval_seconds = 0;
  }
  if (c.train.eval_every > 0 && st.step % c.train.eval_every == 0 && st.step < t.steps && !t.td.prepared.eval.empty())
    t.evaluate_and_log();
  StepStats out;
  out.step = st.step;
  out.loss = loss;
  out.grad_norm = r.grad_norm;
  out.learning_rate = lr;
  out.epoch = t.loader->epoch();
  out.tokens = step_tokens;
  out.stop_requested = global[3].item<double>() > 0;
  out.total_steps = t.steps;
  t.stopped = out.stop_requested;
  return out;
}

EvalStats Trainer::evaluate() {
  job::CallScope scope(impl_->host);
  c10::InferenceMode guard;
  Eval e = llmft::evaluate(impl_->model(), impl_->td.prepared.eval, impl_->tokens_per_eval_batch(), impl_->store.get());
  return {e.loss, e.accuracy};
}

std::string Trainer::save(const std::string& root_in) {
  Impl& t = *impl_;
  job::CallScope scope(t.host);
  c10::InferenceMode guard;
  const std::string root = root_in.empty() ? t.checkpoint_root() : root_in;
  // Every rank contributes: the optimizer's moments and the trained weights (gathered from ZeRO shards), and each
  // rank's generator; rank 0 writes.
  optim::ShardedOptimizer::State os = t.opt->export_state();
  at::Tensor mine = t.dropout.get_state().contiguous();  // (bytes) on the CPU, whatever the generator's device
  at::Tensor all = at::empty({mine.numel() * t.comm->size()}, at::kByte);
  comm::all_gather_host(*t.comm, all, mine);
  std::vector<std::vector<uint8_t>> rng(static_cast<size_t>(t.comm->size()));
  for (int r = 0; r < t.comm->size(); ++r) {
    const auto* p = all.data_ptr<uint8_t>() + r * mine.numel();
    rng[static_cast<size_t>(r)].assign(p, p + mine.numel());
  }
  t.st.rng = rng;
  t.store->gather(t.mode == "lora");
  std::string error;
  job::CheckpointWrite w;
  if (t.leader) {
    try {
      w = job::write_checkpoint(root, t.st.step, [&](const std::string& dir, WriteMode wm) {
        t.write_checkpoint_files(dir, wm, os, rng);
      });
      job::prune_checkpoints(root, t.c.checkpoint.keep);
    } catch (const std::exception& e) {
      error = e.what();
    }
  }
  t.store->release_all();
  // Every rank learns whether rank 0's write succeeded, so all of them stop or go on together.
  at::Tensor failed = at::tensor({error.empty() ? 0.0 : 1.0}, at::kDouble);
  comm::all_reduce_host(*t.comm, failed);
  if (!error.empty()) LLMFT_FAIL(Status::kIo, "checkpoint of step {} not written: {}", t.st.step, error);
  LLMFT_CHECK(failed.item<double>() == 0, Status::kIo, "rank {}: rank 0 could not write the checkpoint of step {} under {} "
              "(its error says why)", t.comm->rank(), t.st.step, root);
  const std::string dir = path_join(root, fmt::format("checkpoint-{}", t.st.step));
  if (t.leader)
    log_info("checkpoint: {} ({:.1f} MB in {:.2f} s{})", dir, static_cast<double>(w.bytes) / 1e6, w.seconds,
             w.renamed ? "" : ", written in place: this file system cannot rename folders");
  t.last_checkpoint = dir;
  return dir;
}

void Trainer::restore(const std::string& dir) {
  job::CallScope scope(impl_->host);
  impl_->restore(dir);
}

TrainSummary Trainer::finish() {
  Impl& t = *impl_;
  job::CallScope scope(t.host);
  c10::InferenceMode guard;
  const Config& c = t.c;
  TrainSummary summary = t.summary;
  summary.steps = t.st.step;
  summary.first_loss = t.st.first_loss;
  summary.tokens = t.st.tokens;
  summary.seconds = t.st.seconds;
  summary.tokens_per_second = static_cast<double>(t.st.tokens) / std::max(1e-9, t.st.seconds);
  summary.eval_loss_before = t.st.eval_loss_before;
  summary.eval_accuracy_before = t.st.eval_accuracy_before;
  summary.resumed_from = t.resumed_from;
  summary.checkpoint_dir = t.last_checkpoint;
  {
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    summary.peak_rss_bytes = static_cast<int64_t>(ru.ru_maxrss) * 1024;  // the whole process: the host's too
    summary.device = model::describe(t.device);
    summary.peak_device_bytes = model::peak_allocated_bytes(t.device);
    if (t.device.is_cpu())
      log_info("memory: peak resident {:.1f} MB for a plan of {:.1f} MB (the rest is the runtime, the data and the host)",
               static_cast<double>(summary.peak_rss_bytes) / 1e6, summary.planned_bytes / 1e6);
    else
      log_info("memory: peak {:.1f} MB on {} for a plan of {:.1f} MB; peak resident {:.1f} MB on the host",
               static_cast<double>(summary.peak_device_bytes) / 1e6, summary.device, summary.planned_bytes / 1e6,
               static_cast<double>(summary.peak_rss_bytes) / 1e6);
  }
  for (auto it = t.st.log_history.rbegin(); it != t.st.log_history.rend(); ++it) {
    const auto j = nlohmann::json::parse(*it);
    if (j.contains("loss")) {
      summary.last_loss = j["loss"].is_number() ? j["loss"].get<double>() : NAN;
      break;
    }
  }
  if (!t.td.prepared.eval.empty()) {
    EvalStats e = t.evaluate_and_log();
    summary.eval_loss_after = e.loss;
    summary.eval_accuracy_after = e.accuracy;
  }
  t.samples.before = t.st.samples_before;
  t.samples.before.resize(t.samples.records.size());
  t.samples.after = t.generate_samples();
  summary.samples = static_cast<int64_t>(t.samples.records.size());
  for (size_t i = 0; i < t.samples.records.size(); ++i) {
    const std::string ref = trim(data::Templater::reference(t.samples.records[i]));
    summary.samples_right_before += !ref.empty() && t.samples.before[i] == ref;
    summary.samples_right_after += !ref.empty() && t.samples.after[i] == ref;
  }
  // Saving: ZeRO-3 gathers what is saved (a LoRA adapter: the adapter tensors only); rank 0 writes.
  t.store->gather(t.mode == "lora");
  if (t.leader) {
    write_samples(t.run->staged("samples.txt"), t.samples);
    if (t.mode == "lora") {
      summary.adapter_dir = path_join(c.output.dir, "adapter");
      std::vector<at::Tensor> keep;
      io::write_peft_adapter(summary.adapter_dir, t.model().options().lora, t.lm.base_name,
                             job::views_of(t.model(), true, at::kFloat, keep));
      job::write_adapter_note(summary.adapter_dir, c);
    } else {
      summary.model_dir = path_join(c.output.dir, "model");
      save_model_dir(t.model(), t.lm.dir ? t.lm.dir->config_json() : t.model().config().to_json(), t.tok_path,
                     summary.model_dir, file_dtype(t.model().config().torch_dtype));
    }
    nlohmann::ordered_json js;
    js["steps"] = summary.steps;
    js["tokens"] = summary.tokens;
    js["train_seconds"] = summary.seconds;
    js["tokens_per_second"] = summary.tokens_per_second;
    js["first_loss"] = summary.first_loss;
    js["last_loss"] = summary.last_loss;
    js["eval_loss_before"] = summary.eval_loss_before;
    js["eval_loss_after"] = summary.eval_loss_after;
    js["eval_accuracy_before"] = summary.eval_accuracy_before;
    js["eval_accuracy_after"] = summary.eval_accuracy_after;
    js["world_size"] = summary.world_size;
    js["memory"] = {{"planned_bytes", summary.planned_bytes}, {"peak_rss_bytes", summary.peak_rss_bytes},
                    {"device", summary.device}, {"peak_device_bytes", summary.peak_device_bytes}};
    js["resumed_from"] = summary.resumed_from;
    js["output"] = t.mode == "lora" ? summary.adapter_dir : summary.model_dir;
    js["versions"] = {{"llmft", LLMFT_VERSION_STRING}, {"libtorch", TORCH_VERSION}};
    nlohmann::ordered_json ids = nlohmann::ordered_json::object();
    for (const auto& [what, id] : t.identities()) ids[what] = id;
    js["identities"] = ids;
    write_file_atomic(t.run->staged("training_summary.json"), js.dump(2) + "\n");
  }
  t.store->release_all();
  t.run->commit();     // the weights are saved: the run's files take the place of the previous run's
  t.comm->barrier();   // every rank leaves once the files are written (rank 0 may serve the store the others use)
  for (size_t i = 0; i < t.samples.records.size(); ++i)
    log_info("sample {}: {}\n  before: {}\n  after:  {}", i + 1, utf8::one_line(data::Templater::question(t.samples.records[i])),
             utf8::one_line(t.samples.before[i]), utf8::one_line(t.samples.after[i]));
  return summary;
}

// The job: create, step until done (a checkpoint every checkpoint.every steps, and one when asked to stop), finish.
std::string Trainer::run(const StepCallback& on_step) {
  job::CallScope scope(impl_->host);
  const Config& c = impl_->c;
  while (!done()) {
    const StepStats s = step();
    if (s.stop_requested) {  // every rank finished this step: save it and return
      const auto start = Clock::now();
      const std::string dir = save();
      const double took = std::chrono::duration<double>(Clock::now() - start).count();
      if (took > c.checkpoint.grace_s)
        log_message(LogLevel::kWarn, fmt::format("the checkpoint after the stop took {:.1f} s, more than "
                                                 "checkpoint.grace_s ({:.0f} s): give the job more time to stop "
                                                 "(Kubernetes: terminationGracePeriodSeconds)", took, c.checkpoint.grace_s));
      return dir;
    }
    // The last step is saved too: a job restarted after it finished (a pod restarted by its controller) continues
    // from there with no step left and writes the same outputs again.
    if (c.checkpoint.every > 0 && (s.step % c.checkpoint.every == 0 || done())) save();
    if (on_step && on_step(s)) request_stop();  // seen by every rank in the next step's reduction
  }
  return "";
}

TrainSummary train(const Config& c, const StopRequest* stop, const StepCallback& on_step) {
  std::unique_ptr<Trainer> t = Trainer::create(c, stop);
  try {
    const std::string stopped_at = t->run(on_step);
    if (!stopped_at.empty()) {
      TrainSummary summary;
      summary.steps = t->state().step;
      summary.stopped = true;
      summary.output_dir = c.output.dir;
      summary.resumed_from = t->resumed_from();
      summary.checkpoint_dir = stopped_at;
      return summary;
    }
    TrainSummary summary = t->finish();
    if (c.export_.after_train && !summary.adapter_dir.empty() && t->impl_->leader) {
      Config e = c;
      e.export_.adapter = summary.adapter_dir;
      e.export_.overwrite = e.export_.overwrite || e.export_.out.empty();  // <output.dir>/merged is this run's own
      summary.merged_dir = export_merged(e);
      log_info("merged: {}", summary.merged_dir);
    }
    return summary;
  } catch (const std::exception& e) {
    t->impl_->run->record_failure(e.what());
    throw;
  }
}

}  // namespace llmft
