#include "io/checkpoint.hpp"

#include <cstring>

#include <algorithm>
#include <cstdio>
#include <regex>
#include <set>

#include "io/dtype_convert.hpp"
#include "util/check.hpp"
#include "util/file.hpp"

namespace llmft::io {

namespace {
nlohmann::json read_json(const std::string& path) {
  std::string text = read_file(path);
  try {
    return nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: not valid JSON: {}", path, plain_error(e));
  }
}
}  // namespace

ModelDir::ModelDir(const std::string& path) : path_(path) {
  LLMFT_CHECK(is_directory(path), Status::kNotFound, "model directory {} does not exist", path);
  std::string cfg = path_join(path, "config.json");
  LLMFT_CHECK(file_exists(cfg), Status::kNotFound, "{} has no config.json", path);
  config_json_ = read_json(cfg);
  config_ = ModelConfig::from_json(config_json_, cfg);
  std::vector<std::string> files;
  std::string single = path_join(path, "model.safetensors"), index = path_join(path, "model.safetensors.index.json");
  if (file_exists(index)) {
    nlohmann::json j = read_json(index);
    LLMFT_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), Status::kFormat,
                "{}: missing \"weight_map\" object", index);
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      LLMFT_CHECK(it.value().is_string(), Status::kFormat, "{}: weight_map[\"{}\"] is not a file name", index, it.key());
      std::string f = it.value().get<std::string>();
      LLMFT_CHECK(f.find('/') == std::string::npos, Status::kFormat, "{}: shard name \"{}\" must be a plain file name",
                  index, f);
      if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
    }
  } else if (file_exists(single)) {
    files.push_back("model.safetensors");
  } else {
    LLMFT_CHECK(!file_exists(path_join(path, "pytorch_model.bin")), Status::kUnsupported,
                "{} holds pytorch_model.bin: llmft reads safetensors only (pickle files can run code); convert it first",
                path);
    LLMFT_FAIL(Status::kNotFound, "{} has neither model.safetensors nor model.safetensors.index.json", path);
  }
  for (const auto& f : files) {
    std::string p = path_join(path, f);
    LLMFT_CHECK(file_exists(p), Status::kNotFound, "{}: shard {} is listed in the index but missing", path, f);
    files_.push_back(std::make_unique<SafetensorsFile>(p));
    const auto& ts = files_.back()->tensors();
    for (size_t t = 0; t < ts.size(); ++t) index_[ts[t].name] = {files_.size() - 1, t};
  }
}

const TensorView* ModelDir::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &files_[it->second.first]->tensors()[it->second.second];
}

void ModelDir::release(const TensorView& t) const {
  auto it = index_.find(t.name);
  if (it != index_.end()) files_[it->second.first]->release(t);
}

std::vector<std::string> ModelDir::tensor_names() const {
  std::vector<std::string> out;
  for (const auto& [n, _] : index_) out.push_back(n);
  return out;
}

void write_model_weights(const std::string& dir, const std::vector<TensorView>& tensors, uint64_t max_shard_bytes,
                         const std::map<std::string, std::string>& metadata, WriteMode mode) {
  std::vector<LazyTensor> lazy;
  lazy.reserve(tensors.size());
  for (const auto& t : tensors) lazy.push_back({t.name, t.dtype, t.shape, t.nbytes, nullptr, t.data});
  write_model_weights(dir, lazy, max_shard_bytes, metadata, mode);
}

void write_model_weights(const std::string& dir, const std::vector<LazyTensor>& tensors, uint64_t max_shard_bytes,
                         const std::map<std::string, std::string>& metadata, WriteMode mode) {
  make_dirs(dir);
  std::vector<std::vector<const LazyTensor*>> shards(1);
  uint64_t in_shard = 0, total = 0;
  for (const auto& t : tensors) {
    if (in_shard > 0 && in_shard + t.nbytes > max_shard_bytes) {
      shards.emplace_back();
      in_shard = 0;
    }
    shards.back().push_back(&t);
    in_shard += t.nbytes;
    total += t.nbytes;
  }
  // One shard's tensors in memory at a time.
  auto write_shard = [&](const std::string& path, const std::vector<const LazyTensor*>& shard) {
    std::vector<std::vector<uint8_t>> buffers(shard.size());
    std::vector<TensorView> views(shard.size());
    for (size_t k = 0; k < shard.size(); ++k) {
      const uint8_t* bytes = shard[k]->data;
      if (bytes == nullptr && shard[k]->nbytes > 0) {
        buffers[k].resize(shard[k]->nbytes);
        shard[k]->fill(buffers[k].data());
        bytes = buffers[k].data();
      }
      views[k] = {shard[k]->name, shard[k]->dtype, shard[k]->shape, bytes, shard[k]->nbytes};
    }
    write_safetensors(path, views, metadata, mode);
  };
  const std::vector<std::string> before = list_directory(dir);
  // The weight files of an earlier checkpoint here that the new set does not name go, after the new set is in
  // place: a loader never reads stale shards beside the new index (or an old model.safetensors beside new shards).
  auto remove_stale = [&](const std::set<std::string>& written) {
    for (const auto& name : before) {
      const bool weights = name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0;
      const bool index = name.find(".safetensors.index.json") != std::string::npos ||
                         name == "pytorch_model.bin.index.json";
      const bool pickle = name.rfind("pytorch_model", 0) == 0 && name.size() > 4 && name.compare(name.size() - 4, 4, ".bin") == 0;
      if ((weights || index || pickle) && !written.count(name)) std::remove(path_join(dir, name).c_str());
    }
    fsync_dir(dir);
  };
  if (shards.size() == 1) {
    write_shard(path_join(dir, "model.safetensors"), shards[0]);
    remove_stale({"model.safetensors"});
    return;
  }
  std::set<std::string> written = {"model.safetensors.index.json"};
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = nlohmann::ordered_json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    std::string name = fmt::format("model-{:05d}-of-{:05d}.safetensors", i + 1, shards.size());
    write_shard(path_join(dir, name), shards[i]);
    written.insert(name);
    for (const auto* t : shards[i]) index["weight_map"][t->name] = name;
  }
  write_file_atomic(path_join(dir, "model.safetensors.index.json"), index.dump(2) + "\n", mode);
  remove_stale(written);
}

nlohmann::json peft_adapter_config(const lora::LoraSpec& spec, const std::string& base_model) {
  nlohmann::ordered_json j;
  j["alpha_pattern"] = nlohmann::json::object();
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = base_model;
  j["bias"] = "none";
  j["fan_in_fan_out"] = false;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["lora_alpha"] = spec.alpha;
  j["lora_dropout"] = spec.dropout;
  j["modules_to_save"] = nullptr;
  j["peft_type"] = "LORA";
  j["r"] = spec.r;
  j["rank_pattern"] = nlohmann::json::object();
  j["revision"] = nullptr;
  // The experts by the names PEFT (with transformers 5) converts from, and vLLM loads: every expert's gate_proj,
  // up_proj and down_proj.
  std::vector<std::string> targets;
  for (const std::string& t : spec.resolved_targets()) {
    const std::vector<std::string> names = t == "experts" ? std::vector<std::string>{"gate_proj", "up_proj", "down_proj"}
                                                          : std::vector<std::string>{t};
    for (const std::string& n : names)
      if (std::find(targets.begin(), targets.end(), n) == targets.end()) targets.push_back(n);
  }
  j["target_modules"] = targets;
  j["task_type"] = "CAUSAL_LM";
  j["use_dora"] = false;
  j["use_rslora"] = spec.use_rslora;
  return j;
}

void write_peft_adapter(const std::string& dir, const lora::LoraSpec& spec, const std::string& base_model,
                        const std::vector<TensorView>& tensors, WriteMode mode) {
  make_dirs(dir);
  std::vector<TensorView> named;
  for (auto t : tensors) {
    t.name = kPeftPrefix + t.name;
    named.push_back(t);
  }
  write_safetensors(path_join(dir, "adapter_model.safetensors"), named, {{"format", "pt"}}, mode);
  write_file_atomic(path_join(dir, "adapter_config.json"), peft_adapter_config(spec, base_model).dump(2) + "\n", mode);
}

const TensorView* PeftAdapter::find(const std::string& name) const {
  std::string peft = kPeftPrefix + name;
  if (weights->contains(peft)) return &weights->get(peft);
  // Some writers keep the adapter name: ...lora_A.default.weight
  size_t at = peft.rfind(".weight");
  if (at != std::string::npos) {
    std::string with_name = peft.substr(0, at) + ".default.weight";
    if (weights->contains(with_name)) return &weights->get(with_name);
  }
  return nullptr;
}

PeftAdapter read_peft_adapter(const std::string& dir) {
  std::string cfg_path = path_join(dir, "adapter_config.json");
  LLMFT_CHECK(file_exists(cfg_path), Status::kNotFound, "{} has no adapter_config.json", dir);
  nlohmann::json j = read_json(cfg_path);
  auto str = [&](const char* k, const std::string& d) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : d; };
  LLMFT_CHECK(str("peft_type", "") == "LORA", Status::kUnsupported, "{}: peft_type \"{}\" is not supported (LORA)",
              cfg_path, str("peft_type", ""));
  LLMFT_CHECK(str("bias", "none") == "none", Status::kUnsupported, "{}: bias \"{}\" is not supported (none)", cfg_path,
              str("bias", ""));
  for (const char* k : {"use_dora", "fan_in_fan_out"})
    LLMFT_CHECK(!j.value(k, false), Status::kUnsupported, "{}: {} = true is not supported", cfg_path, k);
  for (const char* k : {"modules_to_save", "layers_to_transform"})
    LLMFT_CHECK(!j.contains(k) || j[k].is_null() || (j[k].is_array() && j[k].empty()), Status::kUnsupported,
                "{}: {} is not supported", cfg_path, k);
  for (const char* k : {"rank_pattern", "alpha_pattern"})
    LLMFT_CHECK(!j.contains(k) || j[k].is_null() || j[k].empty(), Status::kUnsupported,
                "{}: a non-empty {} is not supported", cfg_path, k);
  PeftAdapter a;
  LLMFT_CHECK(j.contains("r") && j["r"].is_number_integer(), Status::kFormat, "{}: \"r\" must be an integer", cfg_path);
  a.spec.r = j["r"].get<int64_t>();
  LLMFT_CHECK(a.spec.r > 0, Status::kFormat, "{}: \"r\" must be positive, got {}", cfg_path, a.spec.r);
  LLMFT_CHECK(j.contains("lora_alpha") && j["lora_alpha"].is_number(), Status::kFormat, "{}: \"lora_alpha\" must be a number",
              cfg_path);
  a.spec.alpha = j["lora_alpha"].get<double>();
  LLMFT_CHECK(a.spec.alpha > 0, Status::kFormat, "{}: \"lora_alpha\" must be positive, got {}", cfg_path, a.spec.alpha);
  LLMFT_CHECK(!j.contains("lora_dropout") || j["lora_dropout"].is_null() || j["lora_dropout"].is_number(),
              Status::kFormat, "{}: \"lora_dropout\" must be a number", cfg_path);
  a.spec.dropout = j.value("lora_dropout", 0.0);
  LLMFT_CHECK(a.spec.dropout >= 0 && a.spec.dropout < 1, Status::kFormat, "{}: \"lora_dropout\" must be in [0, 1), got {}",
              cfg_path, a.spec.dropout);
  a.spec.use_rslora = j.value("use_rslora", false);
  for (const char* k : {"target_parameters", "trainable_token_indices"})
    LLMFT_CHECK(!j.contains(k) || j[k].is_null() || j[k].empty(), Status::kUnsupported, "{}: {} is not supported",
                cfg_path, k);
  LLMFT_CHECK(!j.value("lora_bias", false), Status::kUnsupported, "{}: lora_bias = true is not supported", cfg_path);
  // target_modules as PEFT writes it: short names (q_proj), "all-linear", full module names
  // (model.layers.3.self_attn.q_proj: what PEFT saves after expanding all-linear), or one regular expression over
  // full names. Each named module must be one of the decoder's linear modules.
  LLMFT_CHECK(j.contains("target_modules"), Status::kFormat, "{}: \"target_modules\" is missing", cfg_path);
  const auto& tm = j["target_modules"];
  LLMFT_CHECK(tm.is_string() || tm.is_array(), Status::kFormat, "{}: \"target_modules\" must be a list or a string",
              cfg_path);
  if (tm.is_array()) {
    for (const auto& t : tm) {
      LLMFT_CHECK(t.is_string(), Status::kFormat, "{}: target_modules entries must be strings, got {}", cfg_path, t.dump());
      std::string name = t.get<std::string>();
      const std::string leaf = name.substr(name.rfind('.') == std::string::npos ? 0 : name.rfind('.') + 1);
      const auto& ours = lora::all_linear_modules();
      LLMFT_CHECK(name == "all-linear" || leaf == "experts" || std::find(ours.begin(), ours.end(), leaf) != ours.end(),
                  Status::kUnsupported,
                  "{}: target module \"{}\" is not supported (the decoder's linear modules: q_proj, k_proj, v_proj, "
                  "o_proj, gate_proj, up_proj, down_proj; experts)", cfg_path, name);
    }
  }
  a.base_model_name_or_path = str("base_model_name_or_path", "");
  std::string w = path_join(dir, "adapter_model.safetensors");
  LLMFT_CHECK(file_exists(w), Status::kNotFound, "{} has no adapter_model.safetensors", dir);
  a.weights = std::make_unique<SafetensorsFile>(w);
  // What the adapter applies is what its tensors name, as for PEFT's loader: the module types of its lora_A / lora_B
  // tensors (load_lora then requires them in every layer); a mixture's per-expert tensors are the type "experts".
  std::set<std::string> types;
  static const std::regex kLora(
      R"(base_model\.model\.model\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj)|mlp\.experts\.\d+\.(gate_proj|up_proj|down_proj))\.lora_[AB](\.default)?\.weight)");
  for (const auto& t : a.weights->tensors()) {
    std::smatch m;
    LLMFT_CHECK(std::regex_match(t.name, m, kLora), Status::kUnsupported,
                "{}: tensor \"{}\" is not a LoRA matrix of a decoder layer's linear module (q/k/v/o_proj under "
                "self_attn, gate/up/down_proj under mlp or under mlp.experts.<e>; adapter name default)", w, t.name);
    types.insert(m[2].matched ? m[2].str() : m[3].matched ? m[3].str() : std::string("experts"));
  }
  LLMFT_CHECK(!types.empty(), Status::kFormat, "{} holds no LoRA tensors", w);
  a.spec.target_modules.clear();
  for (const auto& m : lora::all_linear_modules())
    if (types.count(m)) a.spec.target_modules.push_back(m);
  if (types.count("experts")) a.spec.target_modules.push_back("experts");
  return a;
}

void check_adapter_fits(const PeftAdapter& a, const std::string& dir, const ModelConfig& m, const std::string& model_origin) {
  static const std::regex kName(
      R"(base_model\.model\.model\.layers\.(\d+)\.(?:self_attn|mlp|mlp\.experts\.(\d+))\.(\w+)\.lora_([AB])(?:\.default)?\.weight)");
  const std::string file = path_join(dir, "adapter_model.safetensors");
  for (const auto& t : a.weights->tensors()) {
    std::smatch mt;
    if (!std::regex_match(t.name, mt, kName)) continue;  // read_peft_adapter refused anything else
    const int64_t layer = std::stoll(mt[1].str());
    LLMFT_CHECK(layer < m.num_hidden_layers, Status::kInvalidArgument,
                "{}: tensor \"{}\" adapts layer {} but {} has {} layers (0-{}): the adapter was made for another model",
                file, t.name, layer, model_origin, m.num_hidden_layers, m.num_hidden_layers - 1);
    const std::string module = mt[3].str();
    const bool expert = mt[2].matched;
    if (expert) {
      const int64_t e = std::stoll(mt[2].str());
      LLMFT_CHECK(m.is_moe_layer(layer) && e < m.num_experts, Status::kInvalidArgument,
                  "{}: tensor \"{}\" adapts expert {} of layer {}, but {} {}: the adapter was made for another model",
                  file, t.name, e, layer, model_origin,
                  m.is_moe_layer(layer) ? fmt::format("has {} experts there", m.num_experts)
                                        : std::string("has no experts in that layer"));
    }
    const int64_t q = m.num_attention_heads * m.head_dim, kv = m.num_key_value_heads * m.head_dim;
    int64_t in = m.hidden_size, out = expert ? m.moe_intermediate_size : m.intermediate_size;
    if (module == "q_proj") out = q;
    else if (module == "k_proj" || module == "v_proj") out = kv;
    else if (module == "o_proj") in = q, out = m.hidden_size;
    else if (module == "down_proj") in = out, out = m.hidden_size;
    const bool is_a = mt[4].str() == "A";
    const std::vector<int64_t> want = is_a ? std::vector<int64_t>{a.spec.r, in} : std::vector<int64_t>{out, a.spec.r};
    const int64_t rank = t.shape.size() == 2 ? t.shape[is_a ? 0 : 1] : -1;
    LLMFT_CHECK(rank == a.spec.r, Status::kFormat,
                "{}: \"r\" is {} but tensor \"{}\" of {} has rank {} (shape [{}])", path_join(dir, "adapter_config.json"),
                a.spec.r, t.name, file, rank, fmt::join(t.shape, ", "));
    LLMFT_CHECK(t.shape == want, Status::kFormat, "{}: tensor \"{}\" has shape [{}], {}'s {} needs [{}]", file, t.name,
                fmt::join(t.shape, ", "), model_origin, module, fmt::join(want, ", "));
    LLMFT_CHECK(all_finite(t), Status::kFormat, "{}: tensor \"{}\" holds values that are not finite (NaN or infinity)",
                file, t.name);
  }
}

}  // namespace llmft::io
