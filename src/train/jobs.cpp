// llmft::generate and llmft::export_merged: inference with an optional PEFT adapter, and merging an adapter into
// its base checkpoint (W + s * B A per targeted weight, in fp32, stored back in the base tensor's dtype).
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <regex>
#include <set>

#include "comm/factory.hpp"
#include "comm/world.hpp"
#include "data/dataset.hpp"
#include "io/checkpoint.hpp"
#include "io/dtype_convert.hpp"
#include "io/meta_checkpoint.hpp"
#include "llmft/generator.hpp"
#include "lora/lora.hpp"
#include "model/device.hpp"
#include "model/stored_weight.hpp"
#include "llmft/train.hpp"
#include "tokenizer/sentencepiece.hpp"
#include "train/call_scope.hpp"
#include "train/preflight.hpp"
#include "train/resolve.hpp"
#include "train/setup.hpp"
#include "util/check.hpp"
#include "util/file.hpp"
#include "util/log.hpp"

namespace llmft {

namespace {
// Bytes of weights this process holds (its share under tensor parallelism).
int64_t held_bytes(const model::Decoder& m) {
  int64_t n = 0;
  for (const auto& u : m.units())
    for (const auto* g : {&u.frozen, &u.trainable})
      if (g->flat.defined()) n += g->flat.numel() * static_cast<int64_t>(g->flat.element_size());
  return n;
}
}  // namespace

struct Generator::Impl {
  job::HostSettings host;
  Config c;
  std::unique_ptr<io::PeftAdapter> adapter;
  std::unique_ptr<Tokenizer> tok;
  job::LoadedModel lm;
  std::unique_ptr<data::Templater> fmt;
  model::GenerateOptions defaults;
  std::unique_ptr<comm::Communicator> comm;  // the tensor-parallel group under a launcher; null alone

  model::GenerateOptions options(const GenerateParams& p) const {
    model::GenerateOptions o = defaults;
    if (p.max_new_tokens) o.max_new_tokens = *p.max_new_tokens;
    if (p.temperature) o.temperature = *p.temperature;
    if (p.top_p) o.top_p = *p.top_p;
    if (p.seed) o.seed = *p.seed;
    LLMFT_CHECK(o.max_new_tokens >= 0, Status::kInvalidArgument, "max_new_tokens must not be negative (got {})",
                o.max_new_tokens);
    LLMFT_CHECK(o.temperature >= 0 && std::isfinite(o.temperature), Status::kInvalidArgument,
                "temperature must be 0 (greedy) or positive (got {})", o.temperature);
    LLMFT_CHECK(o.top_p > 0 && o.top_p <= 1, Status::kInvalidArgument, "top_p must be in (0, 1] (got {})", o.top_p);
    return o;
  }
};

Generator::Generator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Generator::~Generator() = default;

std::unique_ptr<Generator> Generator::create(const Config& c0, const GeneratorOptions& options) {
  auto g = std::make_unique<Impl>();
  g->host.sink = options.log_sink;
  g->host.level = options.log_level;
  const comm::DistOptions dist = job::dist_options(c0.dist);
  const comm::World world = comm::resolve_world(dist);
  g->host.threads = job::cpu_threads(c0.train.threads, world.local_size);
  g->host.settle(world.rank != 0);  // rank 0 speaks for the job
  job::CallScope scope(g->host);
  job::preflight(c0, job::Job::kGenerate);
  c10::InferenceMode guard;
  const at::Device device = job::model_device(c0, world.local_rank);
  g->host.cuda_device = device.is_cuda() ? device.index() : -1;
  std::optional<c10::DeviceGuard> on_device;  // this call's scope began before the device was known
  if (device.is_cuda()) on_device.emplace(device);
  if (world.size > 1) {
    g->comm = comm::make_communicator(dist, world, device.is_cuda() ? device.index() : -1);
    job::check_ranks_agree(*g->comm, c0);
  }
  Config& c = g->c;
  c = c0;
  if (!c.generate.adapter.empty()) {
    g->adapter = std::make_unique<io::PeftAdapter>(io::read_peft_adapter(c.generate.adapter));
    if (c.model.path.empty()) c.model.path = g->adapter->base_model_name_or_path;
    c.lora.r = g->adapter->spec.r;
    c.lora.alpha = g->adapter->spec.alpha;
    c.lora.use_rslora = g->adapter->spec.use_rslora;
    c.lora.target_modules = g->adapter->spec.target_modules;
    c.lora.dropout = 0;  // inference: no dropout (and none to refuse on expert LoRA)
  }
  LLMFT_CHECK(!c.model.path.empty(), Status::kInvalidArgument,
              "generate needs model.path (a Hugging Face model directory) or generate.adapter");
  g->tok = std::make_unique<Tokenizer>(Tokenizer::from_file(job::resolve_tokenizer_path(c)));
  g->lm = job::load_model(c, *g->tok, g->adapter ? "lora" : "none", 16, g->comm.get(), false, device);
  g->lm.weights.reset();  // the weights are copied: unmap the checkpoint
  g->lm.dir.reset();
  if (g->adapter) {
    const io::PeftAdapter* a = g->adapter.get();
    io::check_adapter_fits(*a, c.generate.adapter, g->lm.decoder->config(), c.model.path);
    g->lm.decoder->load_lora([a](const std::string& n) { return a->find(n); }, c.generate.adapter);
  }
  g->fmt = job::templater_for(c, *g->tok, c.data.template_name == "auto" ? "alpaca" : c.data.template_name);
  g->defaults.max_new_tokens = c.generate.max_new_tokens;
  g->defaults.temperature = c.generate.temperature;
  g->defaults.top_p = c.generate.top_p;
  g->defaults.seed = static_cast<uint64_t>(c.train.seed);
  g->defaults.stop_ids = g->fmt->stop_ids();
  log_info("generate: {} ({} parameters){}, prompts formatted as {}{}", c.model.path,
           model::with_commas(g->lm.decoder->config().num_parameters()),
           g->adapter ? fmt::format(" with the adapter {} (r={})", c.generate.adapter, g->adapter->spec.r) : "",
           g->fmt->name(),
           g->comm ? fmt::format(", split across {} ranks (tensor parallelism: {} of {} attention heads, {} of {} key/value "
                                 "heads and {:.1f} MB of weights a rank)",
                                 g->comm->size(), g->lm.decoder->local_config().num_attention_heads,
                                 g->lm.decoder->config().num_attention_heads,
                                 g->lm.decoder->local_config().num_key_value_heads,
                                 g->lm.decoder->config().num_key_value_heads, held_bytes(*g->lm.decoder) / 1e6)
                   : "");
  return std::unique_ptr<Generator>(new Generator(std::move(g)));
}

std::vector<int32_t> Generator::prompt_ids(const std::string& instruction) const {
  job::CallScope scope(impl_->host);
  data::Sample s;
  s.instruction.instruction = instruction;
  if (impl_->fmt->name() == "chat") {
    s.kind = data::Sample::Kind::kChat;
    s.messages = data::OJson::array({{{"role", "user"}, {"content", instruction}}});
  }
  return impl_->fmt->prompt_ids(s);
}

std::vector<int32_t> Generator::continue_ids(const std::vector<int32_t>& prompt, const GenerateParams& params) {
  return continue_batch({prompt}, params).front();
}

std::vector<std::vector<int32_t>> Generator::continue_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                            const GenerateParams& params) {
  job::CallScope scope(impl_->host);
  c10::InferenceMode guard;
  const model::GenerateOptions o = impl_->options(params);
  const int64_t vocab = impl_->lm.decoder->config().vocab_size;
  for (size_t p = 0; p < prompts.size(); ++p) {
    LLMFT_CHECK(!prompts[p].empty(), Status::kInvalidArgument, "prompt {} has no tokens", p);
    for (size_t i = 0; i < prompts[p].size(); ++i)
      LLMFT_CHECK(prompts[p][i] >= 0 && prompts[p][i] < vocab, Status::kInvalidArgument,
                  "prompt {}: token {} is id {}, outside the model's vocabulary [0, {})", p, i, prompts[p][i], vocab);
  }
  if (impl_->comm) {
    // Every rank must decode the same prompts with the same settings: a different list would leave the ranks issuing
    // different collectives (a hang until the timeout). Compared by a hash, before any work.
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    for (const auto& p : prompts) {
      mix(p.size());
      for (int32_t id : p) mix(static_cast<uint32_t>(id));
    }
    mix(static_cast<uint64_t>(o.max_new_tokens));
    mix(o.seed);
    mix(static_cast<uint64_t>(std::llround(o.temperature * 1e9)));
    mix(static_cast<uint64_t>(std::llround(o.top_p * 1e9)));
    at::Tensor lo = at::tensor({static_cast<int64_t>(h >> 1), static_cast<int64_t>(prompts.size())}, at::kLong);
    at::Tensor hi = lo.clone();
    comm::all_reduce_host(*impl_->comm, lo, {comm::ReduceOp::kMin});
    comm::all_reduce_host(*impl_->comm, hi, {comm::ReduceOp::kMax});
    LLMFT_CHECK(at::equal(lo, hi), Status::kInvalidArgument,
                "rank {}: the ranks were given different prompts or generation settings ({} prompts here); every rank "
                "of a split model must answer the same prompts", impl_->comm->rank(), prompts.size());
  }
  std::vector<std::vector<int32_t>> out;
  const auto batch = static_cast<size_t>(impl_->c.generate.batch_size);
  for (size_t first = 0; first < prompts.size(); first += batch) {
    const std::vector<std::vector<int32_t>> part(prompts.begin() + static_cast<std::ptrdiff_t>(first),
                                                 prompts.begin() + static_cast<std::ptrdiff_t>(std::min(prompts.size(), first + batch)));
    for (auto& ids : impl_->lm.decoder->generate_batch(part, o)) out.push_back(std::move(ids));
  }
  return out;
}

std::string Generator::answer(const std::string& instruction, const GenerateParams& params) {
  return answers({instruction}, params).front();
}

std::vector<std::string> Generator::answers(const std::vector<std::string>& instructions, const GenerateParams& params) {
  job::CallScope scope(impl_->host);
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& q : instructions) prompts.push_back(prompt_ids(q));
  std::vector<std::string> out;
  for (const auto& ids : continue_batch(prompts, params)) out.push_back(impl_->tok->decode(ids, true));
  return out;
}

const Tokenizer& Generator::tokenizer() const { return *impl_->tok; }
int Generator::rank() const { return impl_->comm ? impl_->comm->rank() : 0; }
int Generator::world_size() const { return impl_->comm ? impl_->comm->size() : 1; }

std::vector<std::string> read_prompts_file(const std::string& path) {
  const std::string text = read_file(path);
  const bool jsonl = path.size() > 6 && path.compare(path.size() - 6, 6, ".jsonl") == 0;
  std::vector<std::string> out;
  size_t line_no = 0;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    at = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (!jsonl) {
      out.push_back(line);
      continue;
    }
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      LLMFT_FAIL(Status::kFormat, "{}:{}: not a JSON line: {}", path, line_no, e.what());
    }
    if (j.is_string()) {
      out.push_back(j.get<std::string>());
    } else if (j.is_object() && (j.contains("prompt") || j.contains("instruction"))) {
      const auto& v = j.contains("prompt") ? j["prompt"] : j["instruction"];
      LLMFT_CHECK(v.is_string(), Status::kFormat, "{}:{}: \"{}\" is not a string", path, line_no,
                  j.contains("prompt") ? "prompt" : "instruction");
      out.push_back(v.get<std::string>());
    } else {
      LLMFT_FAIL(Status::kFormat, "{}:{}: expected a string or an object with \"prompt\" or \"instruction\"", path, line_no);
    }
  }
  return out;
}

std::vector<std::string> configured_prompts(const Config& c) {
  std::vector<std::string> qs = c.generate.prompts;
  if (!c.generate.prompts_file.empty()) {
    const auto more = read_prompts_file(c.generate.prompts_file);
    qs.insert(qs.end(), more.begin(), more.end());
  }
  return qs;
}

std::vector<Generation> generate(const Config& c, const std::vector<std::string>& instructions) {
  const std::vector<std::string> qs = instructions.empty() ? configured_prompts(c) : instructions;
  std::unique_ptr<Generator> g = Generator::create(c);
  std::vector<Generation> out;
  const std::vector<std::string> answers = g->answers(qs);
  for (size_t i = 0; i < qs.size(); ++i) out.push_back({qs[i], answers[i]});
  return out;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The companions a quantised weight is read with (bitsandbytes' NF4 state, FP8 block scales), never written alone.
bool quantisation_companion(const std::string& n) {
  for (const char* s : {".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map", ".quant_state.bitsandbytes__nf4",
                        ".weight_scale_inv"})
    if (ends_with(n, s)) return true;
  return false;
}

// Whether the adapter targets weight `name` (by its module, or "experts" for every expert's weight).
bool targeted(const std::string& name, const std::vector<std::string>& targets) {
  const std::string suffix = ".weight";
  const bool expert = name.find(".mlp.experts.") != std::string::npos;
  for (const auto& t : targets)
    if (t == "experts" ? expert && ends_with(name, suffix) : !expert && ends_with(name, t + suffix)) return true;
  return false;
}

// s * B A of the adapter for targeted weight `name` (out, in), as fp32 values.
std::vector<float> lora_update(const std::string& name, const std::vector<int64_t>& shape, const io::PeftAdapter& adapter,
                               const std::string& adapter_dir, std::set<std::string>* used) {
  const std::string stem = name.substr(0, name.size() - std::string(".weight").size());
  const io::TensorView* a = adapter.find(stem + ".lora_A.weight");
  const io::TensorView* b = adapter.find(stem + ".lora_B.weight");
  LLMFT_CHECK(a && b, Status::kNotFound, "{}: no lora_A/lora_B for {} (targeted by the adapter)", adapter_dir, name);
  LLMFT_CHECK(shape.size() == 2 && a->shape == std::vector<int64_t>({adapter.spec.r, shape[1]}) &&
                  b->shape == std::vector<int64_t>({shape[0], adapter.spec.r}),
              Status::kFormat, "{}: adapter shapes A {} / B {} do not fit {} [{}]", adapter_dir,
              nlohmann::json(a->shape).dump(), nlohmann::json(b->shape).dump(), name, fmt::join(shape, ", "));
  std::vector<float> fa = io::to_f32(*a), fb = io::to_f32(*b);
  std::vector<float> delta(static_cast<size_t>(shape[0] * shape[1]), 0.0f);
  lora::merge_into(delta.data(), fa.data(), fb.data(), shape[0], shape[1], adapter.spec.r, adapter.spec.scaling());
  used->insert(a->name);
  used->insert(b->name);
  return delta;
}

// sum (a - b)^2 and sum a^2.
std::pair<double, double> squared_distance(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, n = 0;
  for (size_t i = 0; i < a.size(); ++i) d += double(a[i] - b[i]) * (a[i] - b[i]), n += double(a[i]) * a[i];
  return {d, n};
}

}  // namespace

std::string export_merged(const Config& c) {
  job::preflight(c, job::Job::kExport);  // export.out is no input, is writable, holds no older checkpoint
  std::string adapter_dir = c.export_.adapter.empty() ? path_join(c.output.dir, "adapter") : c.export_.adapter;
  io::PeftAdapter adapter = io::read_peft_adapter(adapter_dir);
  std::string base_dir = c.model.path.empty() ? adapter.base_model_name_or_path : c.model.path;
  LLMFT_CHECK(!base_dir.empty() && is_directory(base_dir), Status::kNotFound,
              "the adapter's base model \"{}\" is not a local directory: give model.path", base_dir);
  io::ModelDir base(base_dir);
  io::check_adapter_fits(adapter, adapter_dir, base.config(), base_dir);
  std::string out_dir = c.export_.out.empty() ? path_join(c.output.dir, "merged") : c.export_.out;
  const auto targets = adapter.spec.resolved_targets();

  // A quantised base: the checkpoint itself (bitsandbytes NF4, FP8 blocks), or model.quantize, with which the adapter
  // trained against NF4 / FP8 values (of the checkpoint's weights, dequantised first where it stores them otherwise).
  // Merging is then an explicit choice: into the weights it trained against (written in bf16), or into the
  // full-precision ones, which differ from those by the quantisation error the adapter never saw.
  const job::MergeBase mb = job::merge_base(c, base_dir, adapter_dir);
  job::check_merge_choice(c, mb, base_dir);
  const std::string& into = c.export_.merge_into;
  // The full-precision weights: the checkpoint itself unless it is quantised, then export.original when given.
  std::unique_ptr<io::ModelDir> original_dir;
  const io::ModelDir* original = mb.checkpoint_quantised ? nullptr : &base;
  if (mb.checkpoint_quantised && !c.export_.original.empty()) {
    original_dir = std::make_unique<io::ModelDir>(c.export_.original);
    original = original_dir.get();
    LLMFT_CHECK(original->config().architecture == base.config().architecture &&
                    original->config().num_parameters() == base.config().num_parameters(),
                Status::kInvalidArgument,
                "export.original {} is a {} of {} parameters, {} a {} of {}: not the full-precision form of the same model",
                original->path(), original->config().architecture, original->config().num_parameters(), base_dir,
                base.config().architecture, base.config().num_parameters());
  }
  const bool dequantized = mb.quantised() && into == "dequantized";
  job::WeightSource source(base, model::WeightFormat::kDense);  // quantised tensors served dequantised (F32)
  const model::WeightFormat ckpt_format = source.checkpoint_format();
  auto stored_quantised = [&](const std::string& name) {  // in the checkpoint, as U8 (bitsandbytes) or F8 blocks
    const io::TensorView* t = base.find(name);
    return t != nullptr && (t->dtype == io::DType::kU8 || t->dtype == io::DType::kF8E4M3);
  };
  // The weights the model computed with, as the decoder stores them (Decoder::load_stored): the checkpoint's own
  // quantised bytes when they are in the model.quantize format; otherwise the checkpoint's values (dequantised where
  // stored quantised) quantised by model.quantize, except that an FP8 checkpoint keeps its dense tensors dense.
  auto quantises = [&](const std::string& name) {  // whether model.quantize changes this layer linear's values
    if (mb.quantize == "none" || !job::is_layer_linear(name)) return false;
    const bool own = stored_quantised(name);
    if (mb.quantize == "nf4") return !(own && ckpt_format == model::WeightFormat::kNf4);
    return !own && ckpt_format != model::WeightFormat::kFp8Block;  // fp8
  };
  auto changed = [&](const std::string& name) {  // trained against something else than the full-precision values
    return job::is_layer_linear(name) && (stored_quantised(name) || quantises(name));
  };
  model::QuantizeOptions qo;
  auto trained_against = [&](const std::string& name) {
    const io::TensorView* t = source.find(name);
    LLMFT_CHECK(t != nullptr, Status::kNotFound, "{}: the checkpoint has no tensor \"{}\"", base_dir, name);
    std::vector<float> w = io::to_f32(*t);
    std::vector<int64_t> shape = t->shape;
    source.done(*t);  // frees a dequantised copy t points into
    if (quantises(name)) {
      at::Tensor dense = at::from_blob(w.data(), shape, at::kFloat);
      model::StoredWeight q = mb.quantize == "nf4" ? model::quantize_nf4(name, dense, qo.nf4_blocksize, qo.double_quant)
                                                  : model::quantize_fp8_block(name, dense, qo.fp8_block_rows, qo.fp8_block_cols);
      at::Tensor d = q.dequantize(at::kFloat).contiguous();
      w.assign(d.data_ptr<float>(), d.data_ptr<float>() + d.numel());
    }
    return std::make_pair(std::move(w), std::move(shape));
  };
  auto full_precision = [&](const std::string& name, const std::vector<int64_t>& shape) {
    const io::TensorView* o = original->find(name);
    LLMFT_CHECK(o != nullptr, Status::kNotFound, "{}: no tensor \"{}\", which {} has", original->path(), name, base_dir);
    LLMFT_CHECK(o->shape == shape, Status::kFormat, "{}: tensor \"{}\" has shape [{}], {} [{}]", original->path(), name,
                fmt::join(o->shape, ", "), base_dir, fmt::join(shape, ", "));
    return io::to_f32(*o);
  };

  c10::InferenceMode guard;
  const io::ModelDir& written = dequantized ? base : *original;
  std::vector<std::string> names = written.tensor_names();
  std::vector<std::vector<uint8_t>> merged_bytes;  // storage of merged tensors
  merged_bytes.reserve(names.size());
  std::vector<io::TensorView> views;
  std::set<std::string> used;
  int64_t merged = 0;
  // Drift: the full-precision weights against the ones the adapter trained against, over the linears where they
  // differ (relative Frobenius norms), beside the size of the adapter's own update.
  double drift_sq = 0, weight_sq = 0, update_sq = 0, worst = 0;
  std::string worst_name;
  int64_t drift_tensors = 0;
  auto add_drift = [&](const std::string& name, const std::vector<float>& full, const std::vector<float>& against) {
    const auto [d, n] = squared_distance(full, against);
    drift_sq += d, weight_sq += n, ++drift_tensors;
    if (n > 0 && std::sqrt(d / n) > worst) worst = std::sqrt(d / n), worst_name = name;
  };
  for (const auto& name : names) {
    if (quantisation_companion(name)) continue;
    io::TensorView v = *written.find(name);
    const bool differs = mb.quantised() && changed(name);
    const bool target = targeted(name, targets);
    if (dequantized && differs) {  // the weights trained against (+ the adapter), in bf16
      auto [w, shape] = trained_against(name);
      if (original != nullptr) add_drift(name, full_precision(name, shape), w);
      if (target) {
        const std::vector<float> delta = lora_update(name, shape, adapter, adapter_dir, &used);
        for (size_t i = 0; i < w.size(); ++i) w[i] += delta[i], update_sq += double(delta[i]) * delta[i];
        ++merged;
      }
      v.shape = shape;
      v.dtype = io::DType::kBF16;
      merged_bytes.push_back(io::from_f32(w, io::DType::kBF16));
      v.data = merged_bytes.back().data();
      v.nbytes = merged_bytes.back().size();
    } else {  // as stored (+ the adapter), in its own dtype
      LLMFT_CHECK(v.dtype != io::DType::kU8 && v.dtype != io::DType::kF8E4M3, Status::kUnsupported,
                  "{}: tensor \"{}\" is stored quantised ({}) but is no decoder layer's linear weight; llmft cannot "
                  "write it as a plain tensor", written.path(), name, io::dtype_name(v.dtype));
      LLMFT_CHECK(io::all_finite(v), Status::kFormat, "{}: tensor \"{}\" holds values that are not finite (NaN or infinity)",
                  written.path(), name);
      if (target) {
        std::vector<float> w = io::to_f32(v);
        const std::vector<float> delta = lora_update(name, v.shape, adapter, adapter_dir, &used);
        if (differs) {  // merging into the full-precision weights: their drift from what the adapter trained against
          add_drift(name, w, trained_against(name).first);
          for (float x : delta) update_sq += double(x) * x;
        }
        for (size_t i = 0; i < w.size(); ++i) w[i] += delta[i];
        merged_bytes.push_back(io::from_f32(w, v.dtype));
        v.data = merged_bytes.back().data();
        ++merged;
      } else if (differs) {
        add_drift(name, io::to_f32(v), trained_against(name).first);
      }
    }
    views.push_back(v);
  }
  for (const auto& t : adapter.weights->tensors())
    LLMFT_CHECK(used.count(t.name), Status::kFormat, "{}: tensor \"{}\" matches no weight of {}", adapter_dir, t.name,
                written.path());
  make_dirs(out_dir);
  LLMFT_CHECK(c.export_.max_shard_mb > 0, Status::kInvalidArgument, "export.max_shard_mb must be positive");
  io::write_model_weights(out_dir, views, static_cast<uint64_t>(c.export_.max_shard_mb * 1048576.0));
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(read_file(path_join(written.path(), "config.json")));
  if (dequantized) {  // a plain bf16 checkpoint now
    config.erase("quantization_config");
    config[config.contains("dtype") && !config.contains("torch_dtype") ? "dtype" : "torch_dtype"] = "bfloat16";
  }
  write_file_atomic(path_join(out_dir, "config.json"), config.dump(2) + "\n");
  for (const char* f : {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                        "generation_config.json"}) {
    std::string p = path_join(base_dir, f);
    if (file_exists(p)) write_file_atomic(path_join(out_dir, f), read_file(p));
  }
  if (mb.quantised()) {
    nlohmann::ordered_json report;
    report["merge_into"] = into;
    report["checkpoint_quantization"] =
        mb.checkpoint_quantised ? nlohmann::json(base.config_json()["quantization_config"].value("quant_method", std::string("?")))
                                : nlohmann::json();
    report["model.quantize"] = mb.quantize;
    report["base"] = base_dir;
    report["original"] = original ? nlohmann::json(original->path()) : nlohmann::json();
    if (drift_tensors > 0) {
      // ||W_full - W_trained_against|| / ||W_full|| over those linears, and the adapter's ||s B A|| on the same scale.
      report["drift"] = {{"tensors", drift_tensors}, {"relative", std::sqrt(drift_sq / weight_sq)},
                         {"worst_tensor", worst_name}, {"worst_relative", worst},
                         {"adapter_update_relative", std::sqrt(update_sq / weight_sq)}};
      log_info("merge into the {} weights: the full-precision weights differ from the ones the adapter trained "
               "against by {:.3f}% (relative Frobenius norm over {} quantised linears; worst {:.3f}%, {}); the "
               "adapter's own update is {:.3f}% of them", into, 100 * std::sqrt(drift_sq / weight_sq), drift_tensors,
               100 * worst, worst_name, 100 * std::sqrt(update_sq / weight_sq));
    } else {
      report["drift"] = nullptr;
      log_info("merge into the dequantised weights; no full-precision checkpoint (export.original) to measure the "
               "drift against");
    }
    write_file_atomic(path_join(out_dir, "merge_report.json"), report.dump(2) + "\n");
  }
  log_info("merged {} weights of {} with {} into {}", merged, written.path(), adapter_dir, out_dir);
  return out_dir;
}

}  // namespace llmft

namespace llmft {

PrepareSummary prepare(const Config& c, const PrepareProgress& progress) {
  job::preflight(c, job::Job::kPrep);
  c10::InferenceMode guard;
  Tokenizer tok = Tokenizer::from_file(job::resolve_tokenizer_path(c));
  const auto seed = static_cast<uint64_t>(c.train.seed);
  data::FormatSpec spec;
  const data::DataOptions d = job::data_options(c.data);
  if (!c.data.path.empty() || !c.data.dataset_info.empty()) data::dataset_files(d, &spec);
  data::Templater t(tok, d, c.data.path.empty() && c.data.dataset_info.empty() ? data::Format::kAlpaca : spec.format);
  const std::string fp = data::preparation_fingerprint(d, tok, t, seed);
  data::Dataset ds = data::build_dataset(d, tok, seed, static_cast<size_t>(c.data.threads), progress);
  nlohmann::json m = data::write_prepared(ds, c.output.dir, tok, d, {tok.fingerprint(), fp});
  PrepareSummary s;
  s.dir = c.output.dir;
  const auto& r = ds.report;
  s.records = r.records;
  s.used = r.used;
  s.skipped = r.problems.total();
  for (const auto& [reason, n] : r.problems.by_reason()) s.skipped_by_reason.emplace_back(reason, n);
  s.problems = r.problems.examples();
  s.truncated = r.truncated;
  s.dropped = r.dropped;
  s.tokens = r.tokens;
  s.trained_tokens = r.trained_tokens;
  s.train_rows = m["train"]["rows"].get<int64_t>();
  s.eval_rows = m["eval"]["rows"].get<int64_t>();
  s.padded_rows = m["train"]["padded_rows"].get<int64_t>();
  s.utilisation = m["train"]["utilisation"].get<double>();
  s.padded_utilisation = m["train"]["padded_utilisation"].get<double>();
  s.seconds = r.seconds;
  s.records_per_second = r.seconds > 0 ? static_cast<double>(r.records) / r.seconds : 0;
  s.megabytes_per_second = r.seconds > 0 ? static_cast<double>(r.bytes) / 1e6 / r.seconds : 0;
  return s;
}

WorldInfo describe_world(const Config& c) {
  const comm::World w = comm::resolve_world(job::dist_options(c.dist));
  WorldInfo i;
  i.rank = w.rank;
  i.size = w.size;
  i.local_rank = w.local_rank;
  i.local_size = w.local_size;
  i.node_rank = w.node_rank;
  i.nodes = w.nodes;
  i.master_addr = w.master_addr;
  i.master_port = w.master_port;
  i.source = w.source;
  return i;
}

ConvertSummary convert_meta_llama(const std::string& meta_dir, const std::string& out_dir,
                                  const std::string& llama_version, int64_t max_shard_mb) {
  LLMFT_CHECK(max_shard_mb > 0, Status::kInvalidArgument, "max shard size {} MB is not positive", max_shard_mb);
  LLMFT_CHECK(!same_location(meta_dir, out_dir), Status::kInvalidArgument,
              "the output folder {} is the checkpoint's own folder: write the Hugging Face files elsewhere", out_dir);
  io::MetaConvertOptions o;
  o.llama_version = llama_version;
  o.max_shard_bytes = static_cast<uint64_t>(max_shard_mb) * 1000 * 1000;
  const io::MetaConvertResult r = io::convert_meta_llama(meta_dir, out_dir, o);
  ConvertSummary s;
  s.out_dir = out_dir;
  s.model_parallel_files = r.model_parallel_files;
  s.tensors = r.tensors;
  s.bytes = r.bytes;
  const std::string sp = path_join(meta_dir, "tokenizer.model");
  if (file_exists(sp)) {
    const std::string model = read_file(sp);
    write_file_atomic(path_join(out_dir, "tokenizer.json"), tok::sentencepiece_to_tokenizer_json(model, sp));
    write_file_atomic(path_join(out_dir, "tokenizer.model"), model);
    nlohmann::ordered_json tc;
    tc["tokenizer_class"] = "LlamaTokenizer";
    tc["add_bos_token"] = true;
    tc["add_eos_token"] = false;
    tc["bos_token"] = "<s>";
    tc["eos_token"] = "</s>";
    tc["unk_token"] = "<unk>";
    tc["pad_token"] = nullptr;
    tc["clean_up_tokenization_spaces"] = false;
    tc["legacy"] = false;
    tc["model_max_length"] = r.config.max_position_embeddings;
    write_file_atomic(path_join(out_dir, "tokenizer_config.json"), tc.dump(2) + "\n");
    s.tokenizer = true;
  } else {
    log_message(LogLevel::kWarn, fmt::format("convert: {} has no tokenizer.model; {} has weights and config only",
                                             meta_dir, out_dir));
  }
  return s;
}

}  // namespace llmft
