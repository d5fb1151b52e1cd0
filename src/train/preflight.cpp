#include "train/preflight.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <regex>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/hf_config.hpp"
#include "lora/lora.hpp"
#include "model/device.hpp"
#include "util/check.hpp"
#include "util/file.hpp"
#include "comm/world.hpp"
#include "train/plan.hpp"
#include "train/resolve.hpp"

namespace llmft::job {

namespace {

struct Place {
  std::string key, path;  // the configuration key that names it, and where it is
};

// The inputs a job reads: the model directory, the tokenizer, the dataset files or folders, dataset_info.json.
std::vector<Place> inputs_of(const Config& c) {
  std::vector<Place> in;
  if (!c.model.path.empty()) in.push_back({"model.path", c.model.path});
  if (!c.tokenizer.path.empty())
    in.push_back({"tokenizer.path", is_directory(c.tokenizer.path) ? c.tokenizer.path : path_dirname(c.tokenizer.path)});
  std::stringstream ss(c.data.path);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) in.push_back({"data.path", item});
  if (!c.data.dataset_info.empty()) in.push_back({"data.dataset_info", path_dirname(c.data.dataset_info)});
  return in;
}

// `written` (what `what` is, under the key `key`) must be neither an input nor hold one (a folder llmft fills is
// replaced file by file).
void not_an_input(const std::vector<Place>& inputs, const std::string& key, const std::string& written,
                  const std::string& what) {
  for (const auto& in : inputs) {
    LLMFT_CHECK(!same_location(written, in.path) && !is_within(in.path, written), Status::kInvalidArgument,
                "{}: {} would be written to {}, which {} {} ({}): choose another {}", key, what, written,
                same_location(written, in.path) ? "is" : "holds", in.key, in.path, key);
  }
}

void check_model_dir(const std::string& path, const char* key) {
  LLMFT_CHECK(file_exists(path), Status::kNotFound, "{} {}: no such directory", key, path);
  LLMFT_CHECK(is_directory(path), Status::kInvalidArgument,
              "{} {} is a file; expected a Hugging Face model directory (config.json and *.safetensors)", key, path);
  LLMFT_CHECK(file_exists(path_join(path, "config.json")), Status::kNotFound,
              "{} {} has no config.json: expected a Hugging Face model directory (config.json and *.safetensors)", key,
              path);
}

void check_settings_fit(const Config& c, const io::ModelConfig& m, const std::string& origin) {
  int64_t positions = m.max_position_embeddings;
  if (!m.rope_scaling.type.empty()) {
    const int64_t base = m.rope_scaling.original_max_position_embeddings > 0 ? m.rope_scaling.original_max_position_embeddings
                                                                               : m.max_position_embeddings;
    positions = std::max(positions, static_cast<int64_t>(m.rope_scaling.factor * static_cast<double>(base)));
  }
  LLMFT_CHECK(c.data.seq_len <= positions, Status::kInvalidArgument,
              "data.seq_len {} is longer than {} can place: {} positions (max_position_embeddings{}); lower data.seq_len",
              c.data.seq_len, origin, positions, m.rope_scaling.type.empty() ? "" : " with its rope scaling");
  if (training_mode(c) != "lora") return;
  lora::LoraSpec spec;
  spec.r = c.lora.r;
  spec.target_modules = c.lora.target_modules;
  for (const auto& t : spec.resolved_targets()) {
    if (t == "experts" && !m.moe()) continue;  // all-linear's experts, in a model without them
    const auto [in, out] = linear_dims(m, t);
    LLMFT_CHECK(c.lora.r <= std::min(in, out), Status::kInvalidArgument,
                "lora.r {} is larger than {}'s {} matrix ({} x {}): a rank above {} adds parameters and nothing else; "
                "lower lora.r", c.lora.r, origin, t, out, in, std::min(in, out));
  }
}

std::string gb(double bytes) { return fmt::format("{:.1f} GB", bytes / 1e9); }

// The plan of this rank (the launcher's world, each machine's memory shared by its local ranks) must fit.
// On a GPU (model.device) the budget is that GPU's memory.
void check_memory(const Config& c, const io::ModelConfig& m, const std::string& origin, const std::string& job) {
  const comm::World w = comm::resolve_world(dist_options(c.dist));
  const at::Device device = model_device(c, w.local_rank);
  const double gpu = static_cast<double>(model::device_memory_bytes(device));
  const double machine = machine_memory_bytes();
  if (gpu <= 0 && machine <= 0) return;
  const MemoryPlan p =
      gpu > 0 ? plan_for(c, m, origin, job, w.size, gpu, fmt::format("the memory of {}", model::describe(device)))
              : plan_for(c, m, origin, job, w.size, machine / w.local_size,
                         w.local_size == 1 ? "this machine's memory"
                                           : fmt::format("this machine's memory shared by {} ranks", w.local_size));
  if (p.fits()) return;
  std::string what = job == "train"
      ? fmt::format("training {} would need about {} a rank (weights {}, gradients {}, optimizer state {}, activations {} "
                    "for train.micro_batch_size {} x data.seq_len {})",
                    origin, gb(p.total()), gb(p.weights), gb(p.gradients), gb(p.optimizer), gb(p.activations),
                    c.train.micro_batch_size, c.data.seq_len)
      : fmt::format("generating with {} would need about {} a rank (weights {}, KV cache {}, activations {} for "
                    "generate.batch_size {} x data.seq_len {} + generate.max_new_tokens {})",
                    origin, gb(p.total()), gb(p.weights), gb(p.kv_cache), gb(p.activations), c.generate.batch_size,
                    c.data.seq_len, c.generate.max_new_tokens);
  std::string alternatives;
  for (const auto& a : p.alternatives) alternatives += "; " + a;
  LLMFT_FAIL(Status::kOutOfMemory, "{} and a rank has {} ({}){}{}", what, gb(p.available), p.available_source,
             p.alternatives.empty() ? (p.limit.empty() ? "; lower the batch or the sequence length" : "; " + p.limit)
                                    : ". What would fit",
             alternatives);
}

// Weight files of a checkpoint directory.
std::vector<std::string> weight_files(const std::string& dir) {
  std::vector<std::string> out;
  if (!is_directory(dir)) return out;
  for (const std::string& name : list_directory(dir)) {
    const bool weights = name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0;
    const bool index = name.find(".index.json") != std::string::npos;
    const bool pickle = name.size() > 4 && name.compare(name.size() - 4, 4, ".bin") == 0;
    if (weights || index || pickle) out.push_back(name);
  }
  return out;
}

void preflight_export(const Config& c) {
  const std::string adapter = c.export_.adapter.empty() ? path_join(c.output.dir, "adapter") : c.export_.adapter;
  LLMFT_CHECK(is_directory(adapter), Status::kNotFound, "export.adapter {}: no such adapter directory{}", adapter,
              c.export_.adapter.empty() ? " (the default, <output.dir>/adapter)" : "");
  std::string base = c.model.path;
  if (base.empty() && file_exists(path_join(adapter, "adapter_config.json"))) {
    try {
      base = nlohmann::json::parse(read_file(path_join(adapter, "adapter_config.json"))).value("base_model_name_or_path", "");
    } catch (const nlohmann::json::exception&) {  // read_peft_adapter names what is wrong with the file
    }
  }
  if (!base.empty()) check_model_dir(base, c.model.path.empty() ? "the adapter's base_model_name_or_path" : "model.path");
  const std::string out = c.export_.out.empty() ? path_join(c.output.dir, "merged") : c.export_.out;
  std::vector<Place> inputs = {{"export.adapter", adapter}};
  if (!base.empty()) inputs.push_back({"model.path", base});
  not_an_input(inputs, "export.out", out, "the merged checkpoint");
  require_writable_dir(out, "export.out");
  const std::vector<std::string> old = weight_files(out);
  std::string names;
  for (const auto& n : old) names += (names.empty() ? "" : ", ") + n;
  LLMFT_CHECK(old.empty() || c.export_.overwrite, Status::kInvalidArgument,
              "export.out {} already holds a checkpoint's weight files ({}); loaders would mix them with the new ones: "
              "choose an empty directory, or replace them with export.overwrite=true",
              out, names);
}

}  // namespace

MergeBase merge_base(const Config& c, const std::string& base_dir, const std::string& adapter_dir) {
  MergeBase b;
  const std::string cfg = path_join(base_dir, "config.json");
  if (file_exists(cfg)) {
    const nlohmann::json j = nlohmann::json::parse(read_file(cfg), nullptr, false);
    b.checkpoint_quantised = j.is_object() && j.contains("quantization_config") && !j["quantization_config"].is_null();
  }
  std::string recorded = "none";
  const std::string note = path_join(adapter_dir, "llmft_adapter.json");
  if (file_exists(note)) {
    const nlohmann::json j = nlohmann::json::parse(read_file(note), nullptr, false);
    LLMFT_CHECK(j.is_object() && j.value("model.quantize", std::string("none")).size() > 0, Status::kFormat,
                "{}: not a JSON object with \"model.quantize\"", note);
    recorded = j.value("model.quantize", std::string("none"));
  }
  b.quantize = c.model.quantize;
  if (b.quantize == "none") {
    b.quantize = recorded;
  } else {
    LLMFT_CHECK(recorded == "none" || recorded == b.quantize, Status::kInvalidArgument,
                "model.quantize {}, but {} says the adapter trained with model.quantize {}: give that one (or none)",
                b.quantize, note, recorded);
  }
  return b;
}

void check_merge_choice(const Config& c, const MergeBase& b, const std::string& base_dir) {
  const std::string& into = c.export_.merge_into;
  const std::string what = b.checkpoint_quantised
                               ? fmt::format("{} is a quantised checkpoint (quantization_config)", base_dir)
                               : fmt::format("the adapter trained on {} quantised to {} (model.quantize)", base_dir,
                                             b.quantize);
  if (!b.quantised()) {
    LLMFT_CHECK(into != "dequantized", Status::kInvalidArgument,
                "export.merge_into dequantized: {} is not quantised and the adapter trained with model.quantize none; "
                "nothing to dequantise", base_dir);
    return;
  }
  LLMFT_CHECK(into != "auto", Status::kInvalidArgument,
              "{}: merging is an explicit choice. export.merge_into=dequantized writes the dequantised weights it "
              "trained against plus the adapter, in bf16; export.merge_into=original merges into the full-precision "
              "weights ({}), which differ from those by the quantisation error. The drift between the two is "
              "reported whenever both are at hand", what,
              b.checkpoint_quantised ? "export.original=<the unquantised checkpoint>" : "the checkpoint itself");
  if (!b.checkpoint_quantised) return;
  LLMFT_CHECK(into != "original" || !c.export_.original.empty(), Status::kInvalidArgument,
              "export.merge_into original: {}; give its full-precision checkpoint as export.original", what);
  if (c.export_.original.empty()) return;
  check_model_dir(c.export_.original, "export.original");
  const nlohmann::json j = nlohmann::json::parse(read_file(path_join(c.export_.original, "config.json")), nullptr, false);
  LLMFT_CHECK(j.is_object() && (!j.contains("quantization_config") || j["quantization_config"].is_null()),
              Status::kInvalidArgument, "export.original {} is quantised too: give the full-precision checkpoint",
              c.export_.original);
}

bool is_layer_linear(const std::string& n) {
  static const std::regex r(
      R"(model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(experts\.\d+\.)?(gate|up|down)_proj)\.weight)");
  return std::regex_match(n, r);
}

void write_adapter_note(const std::string& adapter_dir, const Config& c, WriteMode mode) {
  nlohmann::ordered_json j;
  j["model.quantize"] = c.model.quantize;
  write_file_atomic(path_join(adapter_dir, "llmft_adapter.json"), j.dump(2) + "\n", mode);
}


double machine_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  double bytes = pages > 0 && page > 0 ? static_cast<double>(pages) * static_cast<double>(page) : 0;
  if (std::FILE* f = std::fopen("/sys/fs/cgroup/memory.max", "r")) {  // a container's limit
    char v[32] = {0};
    if (std::fscanf(f, "%31s", v) == 1 && std::string(v) != "max") bytes = std::min(bytes, std::atof(v));
    std::fclose(f);
  }
  return bytes;
}

void preflight(const Config& c, Job job) {
  if (job == Job::kExport) return preflight_export(c);
  if (job != Job::kPrep)  // before anything is read: a device that does not exist here
    model_device(c, comm::resolve_world(dist_options(c.dist)).local_rank);
  if (!c.model.path.empty()) check_model_dir(c.model.path, "model.path");
  if (!c.tokenizer.path.empty())
    LLMFT_CHECK(file_exists(c.tokenizer.path), Status::kNotFound, "tokenizer.path {}: no such file or directory",
                c.tokenizer.path);
  if (job == Job::kGenerate) {
    if (!c.generate.prompts_file.empty())
      LLMFT_CHECK(file_exists(c.generate.prompts_file) && !is_directory(c.generate.prompts_file), Status::kNotFound,
                  "generate.prompts_file {}: no such file", c.generate.prompts_file);
    if (!c.generate.adapter.empty())
      LLMFT_CHECK(is_directory(c.generate.adapter), Status::kNotFound, "generate.adapter {}: no such adapter directory",
                  c.generate.adapter);
    // The prompts are not known yet: refuse what cannot hold the weights and one sequence of data.seq_len (a batch's
    // KV cache is sized from its prompts when it runs; llmft plan shows generate.batch_size of them).
    if (!c.model.path.empty()) {
      Config one = c;
      one.generate.batch_size = 1;
      check_memory(one, planned_model(c), c.model.path, "generate");
    }
    return;
  }
  const std::vector<Place> inputs = inputs_of(c);
  require_writable_dir(c.output.dir, "output.dir");
  not_an_input(inputs, "output.dir", c.output.dir, job == Job::kPrep ? "the prepared shards" : "the run's files");
  if (job == Job::kPrep) return;

  const std::string mode = training_mode(c);
  const std::string written = path_join(c.output.dir, mode == "lora" ? "adapter" : "model");
  LLMFT_CHECK(!file_exists(written) || is_directory(written), Status::kInvalidArgument,
              "output.dir: {} is a file where the {} folder goes", written, mode == "lora" ? "adapter" : "model");
  not_an_input(inputs, "output.dir", written, mode == "lora" ? "the adapter" : "the fine-tuned model");
  if (is_directory(written)) require_writable_dir(written, "output.dir");
  if (!c.data.path.empty()) {
    const std::string cache = c.data.cache_dir.empty() ? path_join(c.output.dir, "data-cache") : c.data.cache_dir;
    not_an_input(inputs, c.data.cache_dir.empty() ? "output.dir" : "data.cache_dir", cache, "the prepared-data cache");
    require_writable_dir(cache, c.data.cache_dir.empty() ? "output.dir" : "data.cache_dir");
  }
  if (!c.checkpoint.dir.empty()) {  // else output.dir, checked above
    not_an_input(inputs, "checkpoint.dir", c.checkpoint.dir, "checkpoints");
    require_writable_dir(c.checkpoint.dir, "checkpoint.dir");
  }
  if (c.export_.after_train && mode == "lora") {  // the merge at the end must not be the step that fails
    const std::string out = c.export_.out.empty() ? path_join(c.output.dir, "merged") : c.export_.out;
    not_an_input(inputs, "export.out", out, "the merged checkpoint");
    require_writable_dir(out, "export.out");
    const std::vector<std::string> old = weight_files(out);
    LLMFT_CHECK(old.empty() || c.export_.overwrite || c.export_.out.empty(), Status::kInvalidArgument,
                "export.out {} already holds a checkpoint's weight files; export.after_train would replace them: "
                "choose an empty directory, or say export.overwrite=true", out);
    bool quantised_checkpoint = false;
    if (!c.model.path.empty() && file_exists(path_join(c.model.path, "config.json"))) {
      const nlohmann::json cj = nlohmann::json::parse(read_file(path_join(c.model.path, "config.json")), nullptr, false);
      quantised_checkpoint = cj.is_object() && cj.contains("quantization_config") && !cj["quantization_config"].is_null();
    }
    MergeBase b;
    b.checkpoint_quantised = quantised_checkpoint;
    b.quantize = c.model.quantize;
    check_merge_choice(c, b, c.model.path.empty() ? "the embedded model" : c.model.path);
  }
  if (c.train.resume != "auto" && c.train.resume != "never")
    LLMFT_CHECK(is_directory(c.train.resume), Status::kNotFound,
                "train.resume: {} is not a checkpoint folder (give auto, never, or a checkpoint-<step> folder)",
                c.train.resume);
  const io::ModelConfig m = planned_model(c);
  const std::string origin = c.model.path.empty() ? "the embedded model" : c.model.path;
  check_settings_fit(c, m, origin);
  check_memory(c, m, origin, "train");
}

}  // namespace llmft::job
