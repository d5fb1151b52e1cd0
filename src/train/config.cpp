// The configuration schema: one table binds every YAML key to a field of llmft::Config with its type, default and
// help text. Loading walks the YAML tree against it, so unknown keys and wrongly typed values are errors naming the
// key, the file and the line.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <sstream>

#include "llmft/config.hpp"
#include "util/check.hpp"
#include "util/file.hpp"

namespace llmft {

namespace {

struct Field {
  std::string key, type, help;
  std::function<void(Config&, const YAML::Node&, const std::string& where)> set;
  std::function<YAML::Node(const Config&)> get;
};

// The values a key accepts, checked as it is set, so the error names the key and where it was given.
struct Range {
  double lo = -INFINITY, hi = INFINITY;
  bool lo_open = false, hi_open = false;  // exclusive bounds
  const char* meaning = nullptr;          // what the accepted values are, in words
};
constexpr Range kAny{};
constexpr Range kPositive{0, INFINITY, true, false, "> 0"};
constexpr Range kNonNegative{0, INFINITY, false, false, ">= 0"};
constexpr Range kAtLeastOne{1, INFINITY, false, false, ">= 1"};
constexpr Range kFraction{0, 1, false, true, "in [0, 1)"};

template <typename T>
void check_range(const std::string& key, T v, const Range& r, const std::string& where) {
  const double d = static_cast<double>(v);
  const bool ok = !std::isnan(d) && (r.lo_open ? d > r.lo : d >= r.lo) && (r.hi_open ? d < r.hi : d <= r.hi);
  LLMFT_CHECK(ok, Status::kInvalidArgument, "config key {}{}: {} is out of range (must be {})", key, where, v,
              r.meaning ? r.meaning : "a number");
}

size_t edit_distance(const std::string& a, const std::string& b);

template <typename T>
T convert(const YAML::Node& n, const std::string& key, const char* type, const std::string& where) {
  LLMFT_CHECK(n.IsScalar(), Status::kInvalidArgument, "config key {}{}: expected {}, got a {}", key, where, type,
              n.IsSequence() ? "list" : "mapping");
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    LLMFT_FAIL(Status::kInvalidArgument, "config key {}{}: expected {}, got \"{}\"", key, where, type, n.Scalar());
  }
}

// Builders for the four value types.
// `choices` empty: any string; else one of them (an unknown value gets a "did you mean").
template <typename Ref>
Field str_field(const std::string& key, const std::string& help, Ref ref, std::vector<std::string> choices = {}) {
  return {key, "string", help,
          [key, ref, choices](Config& c, const YAML::Node& n, const std::string& w) {
            std::string v = n.IsNull() ? std::string() : convert<std::string>(n, key, "a string", w);
            if (!choices.empty() && std::find(choices.begin(), choices.end(), v) == choices.end()) {
              std::string best, all;
              size_t best_d = 3;
              for (const auto& ch : choices) {
                all += (all.empty() ? "" : ", ") + ch;
                if (size_t d = edit_distance(v, ch); d < best_d) best_d = d, best = ch;
              }
              LLMFT_FAIL(Status::kInvalidArgument, "config key {}{}: \"{}\" is not one of {}{}", key, w, v, all,
                         best.empty() ? std::string() : " (did you mean " + best + "?)");
            }
            ref(c) = v;
          },
          [ref](const Config& c) { return YAML::Node(ref(const_cast<Config&>(c))); }};
}
template <typename Ref>
Field int_field(const std::string& key, const std::string& help, Ref ref, Range range = kAny) {
  return {key, "int", help,
          [key, ref, range](Config& c, const YAML::Node& n, const std::string& w) {
            const int64_t v = convert<int64_t>(n, key, "an integer", w);
            check_range(key, v, range, w);
            ref(c) = v;
          },
          [ref](const Config& c) { return YAML::Node(ref(const_cast<Config&>(c))); }};
}
template <typename Ref>
Field float_field(const std::string& key, const std::string& help, Ref ref, Range range = kAny) {
  return {key, "float", help,
          [key, ref, range](Config& c, const YAML::Node& n, const std::string& w) {
            const double v = convert<double>(n, key, "a number", w);
            LLMFT_CHECK(std::isfinite(v), Status::kInvalidArgument, "config key {}{}: {} is not a finite number", key, w,
                        n.Scalar());
            check_range(key, v, range, w);
            ref(c) = v;
          },
          // The shortest text that reads back as the same double (0.05, not 0.050000000000000003).
          [ref](const Config& c) { return YAML::Node(fmt::format("{}", ref(const_cast<Config&>(c)))); }};
}
template <typename Ref>
Field bool_field(const std::string& key, const std::string& help, Ref ref) {
  return {key, "bool", help,
          [key, ref](Config& c, const YAML::Node& n, const std::string& w) { ref(c) = convert<bool>(n, key, "true or false", w); },
          [ref](const Config& c) { return YAML::Node(ref(const_cast<Config&>(c))); }};
}
template <typename Ref>
Field list_field(const std::string& key, const std::string& help, Ref ref) {
  return {key, "list of strings", help,
          [key, ref](Config& c, const YAML::Node& n, const std::string& w) {
            auto& v = ref(c);
            v.clear();
            if (n.IsNull()) return;
            if (n.IsScalar()) {  // a single value or a comma-separated list
              std::stringstream ss(n.Scalar());
              for (std::string item; std::getline(ss, item, ',');)
                if (!item.empty()) v.push_back(item);
              return;
            }
            LLMFT_CHECK(n.IsSequence(), Status::kInvalidArgument, "config key {}{}: expected a list of strings", key, w);
            for (const auto& e : n) v.push_back(convert<std::string>(e, key, "a string", w));
          },
          [ref](const Config& c) {
            YAML::Node n(YAML::NodeType::Sequence);
            for (const auto& s : ref(const_cast<Config&>(c))) n.push_back(s);
            return n;
          }};
}

#define REF(member) [](Config& c) -> auto& { return c.member; }

const std::vector<Field>& schema() {
  static const std::vector<Field> fields = {
      str_field("model.path", "Hugging Face model directory (config.json + safetensors); empty: the embedded model", REF(model.path)),
      str_field("model.dtype", "compute dtype: float32 or bfloat16", REF(model.dtype), {"float32", "bfloat16"}),
      str_field("model.quantize", "storage of the frozen layer weights (LoRA, generation): none (the compute dtype), nf4 (QLoRA: bitsandbytes' 4-bit NormalFloat, double-quantised; a bitsandbytes NF4 checkpoint is read as stored) or fp8 (E4M3 with 128x128 block scales; an FP8 checkpoint keeps its own bytes). A quantised checkpoint with none is dequantised", REF(model.quantize), {"none", "nf4", "fp8"}),
      str_field("model.device", "where the model computes: auto (the local rank's GPU when CUDA devices are visible, else the CPU), cpu, cuda (GPU LOCAL_RANK modulo the visible ones) or cuda:N. On a GPU, bfloat16 trains with fp32 master weights and variable-length flash attention", REF(model.device)),
      int_field("model.hidden_size", "embedded model: hidden size", REF(model.hidden_size), kAtLeastOne),
      int_field("model.intermediate_size", "embedded model: MLP size", REF(model.intermediate_size), kAtLeastOne),
      int_field("model.num_layers", "embedded model: decoder layers", REF(model.num_layers), kAtLeastOne),
      int_field("model.num_heads", "embedded model: attention heads", REF(model.num_heads), kAtLeastOne),
      int_field("model.num_kv_heads", "embedded model: key/value heads", REF(model.num_kv_heads), kAtLeastOne),
      str_field("tokenizer.path", "tokenizer.json, tokenizer.model or a folder; empty: model.path (the llmft program: else $LLMFT_TOKENIZER or the npm Llama 3.1 tokenizer)", REF(tokenizer.path)),
      str_field("data.path", "dataset: JSON array / JSON lines files (optionally .gz), a folder of them, several separated by commas, or shards from llmft prep; empty: the generated instruction dataset", REF(data.path)),
      str_field("data.format", "alpaca, dolly, sharegpt, messages, prompt_completion or text", REF(data.format), {"alpaca", "dolly", "sharegpt", "messages", "prompt_completion", "text"}),
      list_field("data.columns", "column renames as name=column: prompt, query, response, system, messages, tools, text, completion", REF(data.columns)),
      list_field("data.tags", "chat role renames as name=value: role_tag, content_tag, user_tag, assistant_tag, system_tag, observation_tag, function_tag", REF(data.tags)),
      str_field("data.dataset_info", "a LLaMA-Factory dataset_info.json to read format, columns and tags from", REF(data.dataset_info)),
      str_field("data.dataset", "the dataset_info.json entry to use", REF(data.dataset)),
      str_field("data.template", "auto, alpaca, dolly, chat (the model's chat template) or none", REF(data.template_name), {"auto", "alpaca", "dolly", "chat", "none"}),
      str_field("data.assistant_turns", "chats: train all assistant turns or only the last", REF(data.assistant_turns), {"all", "last"}),
      str_field("data.overlong", "examples longer than seq_len: truncate or drop", REF(data.overlong), {"truncate", "drop"}),
      bool_field("data.packing", "pack examples into rows (largest first, each row filled by the best-fitting subset of what is left); false: one example per row, padded", REF(data.packing)),
      bool_field("data.strict", "the first bad record is an error instead of being counted and reported", REF(data.strict)),
      str_field("data.cache_dir", "where train keeps data it prepared on the fly (default <output.dir>/data-cache)", REF(data.cache_dir)),
      int_field("data.threads", "tokenization threads (0: all cores)", REF(data.threads), kNonNegative),
      int_field("data.seq_len", "tokens per packed row", REF(data.seq_len), Range{2, INFINITY, false, false, ">= 2"}),
      int_field("data.synthetic_records", "records in the generated dataset", REF(data.synthetic_records), Range{2, INFINITY, false, false, ">= 2"}),
      float_field("data.eval_fraction", "held-out share of the records", REF(data.eval_fraction), kFraction),
      int_field("data.eval_count", "held-out records (> 0 overrides eval_fraction)", REF(data.eval_count), Range{-1, INFINITY, false, false, "-1 (use eval_fraction) or >= 0"}),
      bool_field("data.train_on_inputs", "also train on prompt tokens", REF(data.train_on_inputs)),
      int_field("lora.r", "LoRA rank", REF(lora.r), kAtLeastOne),
      float_field("lora.alpha", "LoRA alpha (scaling alpha / r)", REF(lora.alpha), kPositive),
      float_field("lora.dropout", "dropout on the LoRA branch's input", REF(lora.dropout), kFraction),
      list_field("lora.target_modules", "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, experts (every expert's gate/up/down in a mixture-of-experts model) or all-linear", REF(lora.target_modules)),
      bool_field("lora.use_rslora", "scale by alpha / sqrt(r) (rsLoRA)", REF(lora.use_rslora)),
      str_field("train.mode", "lora, full, or auto: full for the embedded (random) model, lora for model.path", REF(train.mode), {"auto", "lora", "full"}),
      int_field("train.max_steps", "optimizer steps (> 0 overrides train.epochs)", REF(train.max_steps), Range{-1, INFINITY, false, false, "-1 (use train.epochs) or >= 0"}),
      float_field("train.epochs", "passes over the training split", REF(train.epochs), kPositive),
      float_field("train.lr", "peak learning rate; 0: auto (3e-3 embedded model, 2e-4 LoRA, 2e-5 full fine-tuning)", REF(train.lr), Range{0, INFINITY, false, false, ">= 0 (0: auto)"}),
      str_field("train.lr_scheduler", "cosine, linear or constant (after linear warmup)", REF(train.lr_scheduler), {"cosine", "linear", "constant"}),
      int_field("train.warmup_steps", "linear warmup steps", REF(train.warmup_steps), kNonNegative),
      int_field("train.micro_batch_size", "rows per micro-batch (per rank)", REF(train.micro_batch_size), kAtLeastOne),
      int_field("train.grad_accum", "micro-batches per optimizer step", REF(train.grad_accum), kAtLeastOne),
      int_field("train.seed", "seed of initialisation, shuffling and dropout", REF(train.seed)),
      float_field("train.weight_decay", "AdamW decoupled weight decay (not on norms and biases)", REF(train.weight_decay), kNonNegative),
      float_field("train.max_grad_norm", "global gradient-norm clipping (<= 0: off)", REF(train.max_grad_norm)),
      float_field("train.adam_beta1", "AdamW beta1", REF(train.adam_beta1), kFraction),
      float_field("train.adam_beta2", "AdamW beta2", REF(train.adam_beta2), kFraction),
      float_field("train.adam_eps", "AdamW epsilon", REF(train.adam_eps), kPositive),
      int_field("train.eval_every", "optimizer steps between evaluations (0: before and after only)", REF(train.eval_every), kNonNegative),
      bool_field("train.activation_checkpointing", "keep only each layer's input in the forward pass and recompute the layer's activations in its backward: one more forward pass, activation memory of one layer instead of all", REF(train.activation_checkpointing)),
      int_field("train.threads", "threads of CPU tensor math, matrix products included; 0: OMP_NUM_THREADS if set, else the cores divided among the node's processes", REF(train.threads), kNonNegative),
      str_field("train.resume", "auto: continue from the newest complete checkpoint in checkpoint.dir if there is one; never: start afresh; or a checkpoint-<step> directory", REF(train.resume)),
      int_field("dist.zero_stage", "ZeRO stage 0-3 for data parallelism: 0 replicates, 1 shards optimizer states, 2 also gradients, 3 also parameters", REF(dist.zero_stage), Range{0, 3, false, false, "0, 1, 2 or 3"}),
      str_field("dist.backend", "auto (nccl on GPU, gloo on CPU, single for a world of one), gloo, nccl or single", REF(dist.backend), {"auto", "gloo", "nccl", "single"}),
      float_field("dist.timeout_s", "deadline of every collective; a dead or stalled peer makes the others stop with an error naming the operation and the missing ranks", REF(dist.timeout_s), kPositive),
      float_field("dist.rendezvous_timeout_s", "how long to wait at start for the master and the other ranks (retried with backoff)", REF(dist.rendezvous_timeout_s), kPositive),
      int_field("dist.nnodes", "nodes; 0: from the environment (WORLD_SIZE / LOCAL_WORLD_SIZE, PET_NNODES)", REF(dist.nnodes), kNonNegative),
      int_field("dist.nproc_per_node", "processes per node; 0: from the environment (LOCAL_WORLD_SIZE, PET_NPROC_PER_NODE), else 1", REF(dist.nproc_per_node), kNonNegative),
      int_field("dist.node_rank", "this node's rank; -1: from the environment (GROUP_RANK, NODE_RANK, PET_NODE_RANK, JOB_COMPLETION_INDEX)", REF(dist.node_rank), Range{-1, INFINITY, false, false, "-1 (from the environment) or >= 0"}),
      str_field("dist.master_addr", "rendezvous host (rank 0's address); empty: MASTER_ADDR, else 127.0.0.1", REF(dist.master_addr)),
      int_field("dist.master_port", "rendezvous port; 0: MASTER_PORT, else 29500", REF(dist.master_port), Range{0, 65535, false, false, "0 (from the environment) or a port 1-65535"}),
      str_field("output.dir", "output directory (adapter/, metrics.jsonl, samples.txt, ...)", REF(output.dir)),
      int_field("checkpoint.every", "optimizer steps between checkpoints (0: only when the job is asked to stop)", REF(checkpoint.every), kNonNegative),
      int_field("checkpoint.keep", "newest checkpoints kept (0: all); older ones are removed once a newer one is complete", REF(checkpoint.keep), kNonNegative),
      str_field("checkpoint.dir", "where checkpoint-<step>/ folders go (any mounted path: PVC, FSx, gcsfuse, Mountpoint for S3); default <output.dir>", REF(checkpoint.dir)),
      float_field("checkpoint.grace_s", "time a stop (SIGTERM) has to finish the step and write the checkpoint; a warning says when it took longer", REF(checkpoint.grace_s), kPositive),
      int_field("log.every", "optimizer steps between log lines", REF(log.every), kAtLeastOne),
      bool_field("log.tensorboard", "also write every logged record as TensorBoard scalars to <output.dir>/runs (train/loss, train/learning_rate, eval/loss, ...)", REF(log.tensorboard)),
      bool_field("log.katib", "also log each record as one line of name=value pairs (step=8 loss=1.2345 ...), the form Katib's default StdOut metrics collector parses", REF(log.katib)),
      list_field("generate.prompts", "instructions to answer before and after training (default: held-out records)", REF(generate.prompts)),
      str_field("generate.prompts_file", "llmft generate: a file of instructions, one per line (.txt), or a .jsonl of strings or of objects with \"prompt\" or \"instruction\"", REF(generate.prompts_file)),
      int_field("generate.batch_size", "llmft generate: prompts decoded together in one batch", REF(generate.batch_size), kAtLeastOne),
      int_field("generate.num_samples", "held-out records sampled when generate.prompts is empty", REF(generate.num_samples), kNonNegative),
      int_field("generate.max_new_tokens", "tokens to generate per prompt", REF(generate.max_new_tokens), kNonNegative),
      float_field("generate.temperature", "sampling temperature (0: greedy)", REF(generate.temperature), kNonNegative),
      float_field("generate.top_p", "nucleus sampling mass", REF(generate.top_p), Range{0, 1, true, false, "in (0, 1]"}),
      str_field("generate.adapter", "llmft generate: PEFT adapter to apply", REF(generate.adapter)),
      str_field("export.adapter", "llmft export: PEFT adapter to merge (default <output.dir>/adapter)", REF(export_.adapter)),
      str_field("export.out", "llmft export: merged checkpoint directory (default <output.dir>/merged)", REF(export_.out)),
      bool_field("export.overwrite", "llmft export: replace the weight files of a checkpoint already in export.out (else refused)", REF(export_.overwrite)),
      bool_field("export.after_train", "llmft train with LoRA: also write the merged model (export.out, default <output.dir>/merged) when training ends", REF(export_.after_train)),
      str_field("export.merge_into", "llmft export with a quantised base (model.quantize, or a bitsandbytes / FP8 checkpoint): dequantized (the weights the adapter trained against + the adapter, bf16) or original (the full-precision weights + the adapter); auto refuses a quantised base. merge_report.json gives the drift between the two", REF(export_.merge_into), {"auto", "dequantized", "original"}),
      str_field("export.original", "llmft export: the full-precision checkpoint of a quantised model.path (for export.merge_into original, and the drift report)", REF(export_.original)),
      float_field("export.max_shard_mb", "shard size limit of the merged checkpoint, MB", REF(export_.max_shard_mb), kPositive),
  };
  return fields;
}

const Field* find_field(const std::string& key) {
  for (const auto& f : schema())
    if (f.key == key) return &f;
  return nullptr;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cur = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] != b[j - 1])});
      prev = cur;
    }
  }
  return row[b.size()];
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& where) {
  std::string best;
  size_t best_d = 4;
  for (const auto& f : schema()) {
    size_t d = edit_distance(key, f.key);
    if (d < best_d) best_d = d, best = f.key;
  }
  LLMFT_FAIL(Status::kInvalidArgument, "unknown config key \"{}\"{}{}", key, where,
             best.empty() ? std::string() : " (did you mean " + best + "?)");
}

void apply(Config& c, const std::string& key, const YAML::Node& value, const std::string& where) {
  const Field* f = find_field(key);
  if (!f) {
    // A section name given a value, or a typo.
    bool section = false;
    for (const auto& fld : schema()) section = section || fld.key.compare(0, key.size() + 1, key + ".") == 0;
    LLMFT_CHECK(!section, Status::kInvalidArgument, "config key \"{}\"{} is a section: give its keys ({}.*)", key, where, key);
    unknown_key(key, where);
  }
  f->set(c, value, where);
}

// `seen`: the line where each key (or section) of this file was first given. A key given twice, in one section or
// in two sections of the same name (`train:` twice, or `train.lr` beside `train: {lr: ...}`), is an error: YAML
// loaders keep one of them silently.
void walk(Config& c, const YAML::Node& n, const std::string& prefix, const std::string& file,
          std::map<std::string, int>& seen) {
  for (auto it = n.begin(); it != n.end(); ++it) {
    LLMFT_CHECK(it->first.IsScalar(), Status::kInvalidArgument, "{}:{}: a key must be a name", file,
                it->first.Mark().line + 1);
    std::string k = it->first.as<std::string>();
    std::string key = prefix.empty() ? k : prefix + "." + k;
    const int line = it->first.Mark().line + 1;
    std::string where = fmt::format(" ({}:{})", file, line);
    const bool section = it->second.IsMap() && !find_field(key);
    if (!section) {
      auto [at, fresh] = seen.emplace(key, line);
      LLMFT_CHECK(fresh, Status::kInvalidArgument, "config key {} is given twice in {}: lines {} and {}", key, file,
                  at->second, line);
      apply(c, key, it->second, where);
    } else {
      walk(c, it->second, key, file, seen);
    }
  }
}

}  // namespace

Config config_from_yaml(std::string_view text, const std::string& origin) {
  Config c;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}:{}: not valid YAML: {}", origin, e.mark.line + 1, e.msg);
  }
  if (!root.IsNull()) {
    LLMFT_CHECK(root.IsMap(), Status::kFormat, "{}: the top level must be a mapping of sections", origin);
    std::map<std::string, int> seen;
    walk(c, root, "", origin, seen);
  }
  return c;
}

void config_set(Config& c, const std::string& key, const std::string& value, const std::string& where) {
  YAML::Node node;
  try {
    node = value.empty() ? YAML::Node(std::string()) : YAML::Load(value);
  } catch (const YAML::Exception& e) {
    LLMFT_FAIL(Status::kInvalidArgument, "{}: value \"{}\" is not valid YAML: {}", key, value, e.msg);
  }
  apply(c, key, node, where.empty() ? std::string() : " (" + where + ")");
}

std::string config_get(const Config& c, const std::string& key) {
  for (const auto& [k, v] : config_values(c))
    if (k == key) return v;
  unknown_key(key, "");
}

Config load_config(const std::string& yaml_path, const std::vector<std::string>& overrides) {
  Config c = yaml_path.empty() ? Config{} : config_from_yaml(read_file(yaml_path), yaml_path);
  for (const auto& o : overrides) {
    size_t eq = o.find('=');
    LLMFT_CHECK(eq != std::string::npos && eq > 0, Status::kInvalidArgument,
                "override \"{}\" is not of the form key.sub=value", o);
    config_set(c, o.substr(0, eq), o.substr(eq + 1), "command line");
  }
  return c;
}

std::vector<ConfigKey> config_keys() {
  Config defaults;
  std::vector<ConfigKey> out;
  for (const auto& f : schema()) {
    YAML::Emitter e;
    e << YAML::Flow << f.get(defaults);
    out.push_back({f.key, f.type, e.c_str(), f.help});
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> config_values(const Config& c) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : schema()) {
    YAML::Emitter e;
    e << YAML::Flow << f.get(c);
    out.emplace_back(f.key, e.c_str());
  }
  return out;
}

std::string config_to_yaml(const Config& c) {
  YAML::Node root;
  for (const auto& f : schema()) {
    size_t dot = f.key.find('.');
    root[f.key.substr(0, dot)][f.key.substr(dot + 1)] = f.get(c);
  }
  YAML::Emitter e;
  e << root;
  return std::string(e.c_str()) + "\n";
}

}  // namespace llmft
