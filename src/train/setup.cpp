#include "train/setup.hpp"

#include <ATen/Parallel.h>

#include "train/call_scope.hpp"

#include "train/resolve.hpp"

#include <algorithm>
#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "util/check.hpp"
#include "util/log.hpp"
#include "util/file.hpp"
#include "util/sha256.hpp"

namespace llmft::job {

std::string resolve_tokenizer_path(const Config& c) {
  if (!c.tokenizer.path.empty()) return c.tokenizer.path;
  if (!c.model.path.empty()) return c.model.path;
  LLMFT_FAIL(Status::kInvalidArgument,
             "no tokenizer: the embedded model needs tokenizer.path (a tokenizer.json, tokenizer.model or a folder); "
             "the llmft program fills in its default Llama 3.1 tokenizer");
}

io::ModelConfig embedded_model_config(const Config& c, const Tokenizer& tok) {
  nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}},
                      {"vocab_size", tok.vocab_size()},
                      {"hidden_size", c.model.hidden_size},
                      {"intermediate_size", c.model.intermediate_size},
                      {"num_hidden_layers", c.model.num_layers},
                      {"num_attention_heads", c.model.num_heads},
                      {"num_key_value_heads", c.model.num_kv_heads},
                      {"max_position_embeddings", 8192},
                      {"rms_norm_eps", 1e-5},
                      {"rope_theta", 500000.0},
                      {"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                                        {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}}},
                      {"tie_word_embeddings", true},
                      {"torch_dtype", "float32"}};
  if (tok.bos_id() >= 0) j["bos_token_id"] = tok.bos_id();
  if (tok.eos_id() >= 0) j["eos_token_id"] = tok.eos_id();
  return io::ModelConfig::from_json(j, "the embedded model (model.* keys)");
}

WeightSource::WeightSource(const io::ModelDir& dir, model::WeightFormat keep) : dir_(dir), keep_(keep) {
  const nlohmann::json& cj = dir.config_json();
  const std::string origin = path_join(dir.path(), "config.json");
  const nlohmann::json* q = cj.contains("quantization_config") && cj["quantization_config"].is_object()
                                ? &cj["quantization_config"] : nullptr;
  if (q != nullptr && q->value("quant_method", std::string()) == "bitsandbytes") {
    // transformers' BitsAndBytesConfig: 4-bit NF4 only (LLM.int8 and FP4 are other formats).
    LLMFT_CHECK(q->value("load_in_4bit", false) && q->value("bnb_4bit_quant_type", std::string("fp4")) == "nf4",
                Status::kUnsupported,
                "{}: quantization_config is bitsandbytes {}: llmft reads 4-bit NF4 (load_in_4bit, bnb_4bit_quant_type "
                "\"nf4\"); load the unquantised model instead", origin,
                q->value("load_in_8bit", false) ? "8-bit (LLM.int8)" : "\"" + q->value("bnb_4bit_quant_type", std::string("fp4")) + "\"");
    format_ = model::WeightFormat::kNf4;
    return;
  }
  fp8_ = io::fp8_block_config(cj, origin);
  if (fp8_) format_ = model::WeightFormat::kFp8Block;
}

const io::TensorView* WeightSource::find(const std::string& name) {
  const io::TensorView* t = dir_.find(name);
  if (t == nullptr) return t;
  const bool fp8 = t->dtype == io::DType::kF8E4M3;
  const bool nf4 = t->dtype == io::DType::kU8 && format_ == model::WeightFormat::kNf4;
  if (!fp8 && !nf4) return t;
  if ((fp8 && keep_ == model::WeightFormat::kFp8Block) || (nf4 && keep_ == model::WeightFormat::kNf4)) return t;
  LLMFT_CHECK(!fp8 || fp8_.has_value(), Status::kFormat,
              "{}: tensor \"{}\" is F8_E4M3 but config.json has no quantization_config saying how it is scaled",
              dir_.path(), name);
  auto lookup = [this](const std::string& n) { return dir_.find(n); };
  std::vector<const io::TensorView*> used;
  model::StoredWeight w = fp8 ? model::read_fp8_block(*t, lookup, fp8_->block_rows, fp8_->block_cols, dir_.path(), &used)
                              : model::read_bnb_nf4(*t, lookup, dir_.path(), &used);
  auto& [values, view] = dequantized_[name];
  at::Tensor dense = w.dequantize(at::kFloat).contiguous();
  values.assign(dense.data_ptr<float>(), dense.data_ptr<float>() + dense.numel());
  companions_[name] = used;
  view.name = name;
  view.dtype = io::DType::kF32;
  view.shape = w.shape;
  view.data = reinterpret_cast<const uint8_t*>(values.data());
  view.nbytes = values.size() * sizeof(float);
  return &view;
}

void WeightSource::done(const io::TensorView& t) {
  const std::string name = t.name;  // t may be the dequantised view erased below
  if (const io::TensorView* f = dir_.find(name)) dir_.release(*f);
  if (dequantized_.erase(name) > 0) {
    for (const io::TensorView* c : companions_[name]) dir_.release(*c);
    companions_.erase(name);
  }
}

LoadedModel load_model(const Config& c, const Tokenizer& tok, const std::string& mode, int64_t align,
                       comm::Communicator* tp, bool defer_base, at::Device device) {
  model::DecoderOptions opt;
  opt.device = device;
  LLMFT_CHECK(c.model.dtype == "float32" || c.model.dtype == "bfloat16", Status::kInvalidArgument,
              "model.dtype \"{}\" is not float32 or bfloat16", c.model.dtype);
  opt.dtype = c.model.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  opt.checkpoint_layers = c.train.activation_checkpointing;
  LLMFT_CHECK(mode == "lora" || mode == "full" || mode == "none", Status::kInvalidArgument,
              "train.mode \"{}\" is not lora or full", mode);
  opt.mode = mode == "lora" ? model::TrainMode::kLora : mode == "full" ? model::TrainMode::kFull : model::TrainMode::kNone;
  opt.lora.r = c.lora.r;
  opt.lora.alpha = c.lora.alpha;
  opt.lora.dropout = c.lora.dropout;
  opt.lora.use_rslora = c.lora.use_rslora;
  opt.lora.target_modules = c.lora.target_modules;
  opt.align = align;
  opt.tp = tp;
  LLMFT_CHECK(c.model.quantize == "none" || c.model.quantize == "nf4" || c.model.quantize == "fp8",
              Status::kInvalidArgument, "model.quantize \"{}\" is not none, nf4 or fp8", c.model.quantize);
  opt.quantize.format = c.model.quantize == "nf4"   ? model::WeightFormat::kNf4
                        : c.model.quantize == "fp8" ? model::WeightFormat::kFp8Block
                                                    : model::WeightFormat::kDense;
  if (opt.mode == model::TrainMode::kLora) opt.lora.resolved_targets();  // reject bad modules before allocating
  LoadedModel out;
  if (c.model.path.empty()) {
    out.decoder = std::make_unique<model::Decoder>(embedded_model_config(c, tok), opt);
    out.decoder->init_random(static_cast<uint64_t>(c.train.seed));
  } else {
    out.dir = std::make_unique<io::ModelDir>(c.model.path);
    const auto& mc = out.dir->config();
    LLMFT_CHECK(static_cast<int64_t>(tok.vocab_size()) <= mc.vocab_size, Status::kInvalidArgument,
                "the tokenizer ({}) has {} tokens but {} has vocab_size {}", tok.origin(), tok.vocab_size(),
                c.model.path, mc.vocab_size);
    opt.materialize_base = !defer_base;
    out.weights = std::make_unique<WeightSource>(*out.dir, opt.quantize.format);
    if (opt.quantize.format == model::WeightFormat::kFp8Block && out.weights->fp8()) {
      // An FP8 checkpoint keeps its own blocks, and what it left unconverted stays dense.
      opt.quantize.fp8_block_rows = out.weights->fp8()->block_rows;
      opt.quantize.fp8_block_cols = out.weights->fp8()->block_cols;
      opt.quantize.keep_dense = true;
    }
    out.decoder = std::make_unique<model::Decoder>(mc, opt);
    if (!defer_base) out.decoder->load_base(out.weights->lookup(), c.model.path, out.weights->release());
    else out.decoder->load_stored(out.weights->lookup(), c.model.path, out.weights->release());
    out.base_name = c.model.path;
  }
  if (opt.mode == model::TrainMode::kLora) out.decoder->init_lora(static_cast<uint64_t>(c.train.seed) + 1);
  return out;
}

TrainData load_training_data(const Config& c, const Tokenizer& tok, uint64_t seed, bool leader,
                             const std::function<void()>& barrier) {
  TrainData out;
  const data::DataOptions d = data_options(c.data);
  if (!c.data.path.empty() && data::is_prepared(c.data.path)) {
    out.prepared = data::open_prepared(c.data.path, tok);
    out.description = "prepared data in " + c.data.path;
    return out;
  }
  if (c.data.path.empty() && c.data.dataset_info.empty()) {
    out.in_memory = std::make_unique<data::Dataset>(data::build_dataset(d, tok, seed, static_cast<size_t>(c.data.threads)));
    data::Dataset& ds = *out.in_memory;
    out.prepared.train = data::rows_in_memory(ds.train, data::plan_rows(ds.train, c.data.seq_len, c.data.packing));
    out.prepared.eval = ds.eval;
    out.prepared.eval_samples = ds.eval_samples;
    out.prepared.template_name = ds.template_name;
    out.description = fmt::format("the generated dataset ({} records)", ds.report.records);
    return out;
  }
  data::FormatSpec spec;
  data::dataset_files(d, &spec);  // validates paths and format first
  data::Templater t(tok, d, spec.format);
  const std::string fp = data::preparation_fingerprint(d, tok, t, seed);
  std::string cache = c.data.cache_dir.empty() ? path_join(c.output.dir, "data-cache") : c.data.cache_dir;
  std::string dir = path_join(cache, fp.substr(0, 16));
  if (leader && !data::is_prepared(dir)) {
    log_info("preparing {} into {}", c.data.path.empty() ? c.data.dataset : c.data.path, dir);
    data::Dataset ds = data::build_dataset(d, tok, seed, static_cast<size_t>(c.data.threads));
    log_preparation(data::write_prepared(ds, dir, tok, d, {tok.fingerprint(), fp}));
  } else if (leader) {
    log_info("using the data prepared earlier in {}", dir);
  }
  if (barrier) barrier();  // the leader has written the manifest (or failed, and the others time out naming it)
  out.prepared = data::open_prepared(dir, tok, fp);
  out.description = "prepared data in " + dir;
  return out;
}

std::unique_ptr<data::Templater> templater_for(const Config& c, const Tokenizer& tok, const std::string& name) {
  data::DataOptions d = data_options(c.data);
  if (!name.empty()) d.template_kind = data::parse_template_kind(name);
  data::Format f = d.template_kind == data::TemplateKind::kChat    ? data::Format::kMessages
                   : d.template_kind == data::TemplateKind::kDolly ? data::Format::kDolly
                   : d.template_kind == data::TemplateKind::kNone  ? data::Format::kPromptCompletion
                                                                  : data::Format::kAlpaca;
  return std::make_unique<data::Templater>(tok, d, f);
}

void log_preparation(const nlohmann::json& m) {
  const auto& r = m["report"];
  const auto& t = m["train"];
  log_info("data: {} records read, {} used, {} skipped, {} truncated, {} dropped; {} tokens ({} trained)",
           r.value("records", 0), r.value("used", 0), r.value("skipped", 0), r.value("truncated", 0),
           r.value("dropped", 0), r.value("tokens", 0), r.value("trained_tokens", 0));
  for (auto it = r["skipped_by_reason"].begin(); it != r["skipped_by_reason"].end(); ++it)
    log_info("data:   skipped, {}: {}", it.key(), it.value().get<int64_t>());
  for (const auto& p : r["problems"]) log_warn("data: {}", p.get<std::string>());
  log_info("data: {} train rows of {} tokens, packing utilisation {:.2f}% (one example per row: {:.2f}%), {} held-out "
           "rows", t.value("rows", 0), m.value("seq_len", 0), 100 * t.value("utilisation", 0.0),
           100 * t.value("padded_utilisation", 0.0), m["eval"].value("rows", 0));
}

std::vector<io::TensorView> views_of(const model::Decoder& m, bool adapters, at::ScalarType dtype,
                                     std::vector<at::Tensor>& keep) {
  std::vector<io::TensorView> out;
  m.for_each_parameter([&](const model::ParamSlot& s, const at::Tensor& t, bool) {
    bool is_adapter = s.name.find(".lora_") != std::string::npos;
    if (is_adapter != adapters) return;
    at::Tensor c = t.to(at::TensorOptions().device(at::kCPU).dtype(dtype)).contiguous();  // the writer reads host bytes
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

std::string trainable_parameters_line(const model::Decoder& m) {
  int64_t t = m.trainable_parameters(), a = m.all_parameters();
  return fmt::format("trainable params: {} || all params: {} || trainable%: {:.4f}", model::with_commas(t),
                     model::with_commas(a), a ? 100.0 * static_cast<double>(t) / static_cast<double>(a) : 0.0);
}

int usable_cpus() {
  // The CPUs this process may run on (a container's cpuset, taskset), capped by a cgroup v2 quota (a Kubernetes CPU
  // limit): a 2-CPU pod on a 64-core node must not start 64 threads.
  int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  if (std::FILE* f = std::fopen("/sys/fs/cgroup/cpu.max", "r")) {
    char quota[32] = {0};
    long long period = 0;
    if (std::fscanf(f, "%31s %lld", quota, &period) == 2 && std::strcmp(quota, "max") != 0 && period > 0)
      cpus = std::min(cpus, static_cast<int>(std::max(1LL, (std::atoll(quota) + period - 1) / period)));
    std::fclose(f);
  }
  return cpus;
}

CallScope::CallScope(const HostSettings& s)
    : log_(s.scoped_log ? &s.context : nullptr), saved_threads_(at::get_num_threads()) {
  if (s.threads > 0 && s.threads != saved_threads_) at::set_num_threads(s.threads);
  if (s.cuda_device >= 0) device_.emplace(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(s.cuda_device)));
}

CallScope::~CallScope() {
  if (at::get_num_threads() != saved_threads_) at::set_num_threads(saved_threads_);
}

int cpu_threads(int64_t configured, int local_ranks) {
  if (configured > 0) return static_cast<int>(configured);
  if (const char* env = std::getenv("OMP_NUM_THREADS"); env && std::atoi(env) > 0) return std::atoi(env);
  return std::max(1, usable_cpus() / std::max(1, local_ranks));
}

namespace {
// What each rank is about to run: its resolved configuration, key by key (but its own node rank and device), and the size and
// content of what it will read (config.json, weight and tokenizer file sizes, dataset file sizes), as "key=value"
// lines.
std::string run_description(const Config& c) {
  std::string out;
  for (const auto& [key, value] : config_values(c))
    if (key != "dist.node_rank" && key != "model.device") out += key + "=" + value + "\n";  // cuda:N may differ
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

}  // namespace

void check_ranks_agree(comm::Communicator& comm, const Config& c) {
  if (comm.size() == 1) return;
  const std::string mine = run_description(c);
  at::Tensor len = at::tensor({static_cast<int64_t>(mine.size())}, at::kLong);
  comm::all_reduce_host(comm, len, {comm::ReduceOp::kMax});
  const int64_t n = len.item<int64_t>();
  at::Tensor local = at::zeros({n}, at::kByte), all = at::empty({n * comm.size()}, at::kByte);
  std::memcpy(local.data_ptr(), mine.data(), mine.size());
  comm::all_gather_host(comm, all, local);
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

}  // namespace llmft::job
