#include "io/meta_checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <memory>

#include "io/checkpoint.hpp"
#include "io/torch_checkpoint.hpp"
#include "util/check.hpp"
#include "util/file.hpp"

namespace llmft::io {

namespace {

struct Shards {
  std::vector<std::unique_ptr<TorchCheckpointFile>> files;

  // The tensor `name` of every file, each 2-D (or 1-D when `one_d`), with one dtype.
  std::vector<const TensorView*> all(const std::string& name, size_t dims) const {
    std::vector<const TensorView*> out;
    for (const auto& f : files) {
      LLMFT_CHECK(f->contains(name), Status::kFormat, "{}: no tensor {} (every model-parallel file has each weight)",
                  f->path(), name);
      const TensorView& t = f->get(name);
      LLMFT_CHECK(t.shape.size() == dims, Status::kFormat, "{}: {} has {} dimensions, not {}", f->path(), name,
                  t.shape.size(), dims);
      LLMFT_CHECK(t.dtype == files[0]->get(name).dtype, Status::kFormat, "{}: {} is {}, the first file's is {}",
                  f->path(), name, dtype_name(t.dtype), dtype_name(files[0]->get(name).dtype));
      out.push_back(&t);
    }
    return out;
  }
};

// The parts joined along `axis` (0: rows, 1: columns) of row-major 2-D views; with heads > 0 the rows then go from
// Meta's interleaved rotary pairs to Hugging Face's halves, per head (transformers' permute()).
LazyTensor join(const std::string& name, const std::vector<const TensorView*>& parts, int axis, int64_t heads,
                const std::string& meta_name) {
  const size_t item = dtype_size(parts[0]->dtype);
  int64_t rows = 0, cols = 0;
  for (const TensorView* p : parts) {
    if (axis == 0) {
      LLMFT_CHECK(cols == 0 || p->shape[1] == cols, Status::kFormat, "{}: model-parallel slices of {} columns differ",
                  meta_name, p->shape[1]);
      rows += p->shape[0];
      cols = p->shape[1];
    } else {
      LLMFT_CHECK(rows == 0 || p->shape[0] == rows, Status::kFormat, "{}: model-parallel slices of {} rows differ",
                  meta_name, p->shape[0]);
      rows = p->shape[0];
      cols += p->shape[1];
    }
  }
  if (heads > 0)
    LLMFT_CHECK(rows % (2 * heads) == 0, Status::kFormat, "{}: {} rows do not split into {} heads of rotary pairs",
                meta_name, rows, heads);
  LazyTensor t;
  t.name = name;
  t.dtype = parts[0]->dtype;
  t.shape = {rows, cols};
  t.nbytes = static_cast<size_t>(rows * cols) * item;
  t.fill = [parts, axis, heads, rows, cols, item](uint8_t* out) {
    std::vector<uint8_t> joined;
    uint8_t* dst = out;
    if (heads > 0) {
      joined.resize(static_cast<size_t>(rows * cols) * item);
      dst = joined.data();
    }
    const size_t row_bytes = static_cast<size_t>(cols) * item;
    if (axis == 0) {
      size_t at = 0;
      for (const TensorView* p : parts) {
        std::memcpy(dst + at, p->data, p->nbytes);
        at += p->nbytes;
      }
    } else {
      size_t col_at = 0;
      for (const TensorView* p : parts) {
        const size_t part_row = static_cast<size_t>(p->shape[1]) * item;
        for (int64_t r = 0; r < rows; ++r)
          std::memcpy(dst + static_cast<size_t>(r) * row_bytes + col_at, p->data + static_cast<size_t>(r) * part_row,
                      part_row);
        col_at += part_row;
      }
    }
    if (heads > 0) {
      const int64_t head_dim = rows / heads, half = head_dim / 2;
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < half; ++i)
          for (int64_t j = 0; j < 2; ++j)
            std::memcpy(out + static_cast<size_t>(h * head_dim + j * half + i) * row_bytes,
                        dst + static_cast<size_t>(h * head_dim + 2 * i + j) * row_bytes, row_bytes);
    }
  };
  return t;
}

LazyTensor replicated(const std::string& name, const TensorView* t) {
  LazyTensor out;
  out.name = name;
  out.dtype = t->dtype;
  out.shape = t->shape;
  out.nbytes = t->nbytes;
  out.data = t->data;
  return out;
}

const char* hf_dtype(DType d) {
  switch (d) {
    case DType::kBF16: return "bfloat16";
    case DType::kF16: return "float16";
    case DType::kF32: return "float32";
    default: return "float32";
  }
}

}  // namespace

MetaConvertResult convert_meta_llama(const std::string& meta_dir, const std::string& out_dir,
                                     const MetaConvertOptions& options) {
  const std::string params_path = path_join(meta_dir, "params.json");
  LLMFT_CHECK(file_exists(params_path), Status::kNotFound,
              "{}: no params.json (a folder of Meta's original checkpoint has params.json and consolidated.*.pth)",
              meta_dir);
  nlohmann::json params;
  try {
    params = nlohmann::json::parse(read_file(params_path));
  } catch (const nlohmann::json::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: not JSON ({})", params_path, e.what());
  }
  if (params.contains("model") && params["model"].is_object()) params = params["model"];
  auto integer = [&](const char* key, int64_t fallback, bool required) -> int64_t {
    if (!params.contains(key) || params[key].is_null()) {
      LLMFT_CHECK(!required, Status::kFormat, "{}: no \"{}\"", params_path, key);
      return fallback;
    }
    LLMFT_CHECK(params[key].is_number_integer(), Status::kFormat, "{}: \"{}\" is not an integer", params_path, key);
    return params[key].get<int64_t>();
  };
  const int64_t dim = integer("dim", 0, true), layers = integer("n_layers", 0, true),
                heads = integer("n_heads", 0, true), kv_heads = integer("n_kv_heads", heads, false),
                vocab_param = integer("vocab_size", -1, false);
  LLMFT_CHECK(dim > 0 && layers > 0 && heads > 0 && kv_heads > 0 && dim % heads == 0 && heads % kv_heads == 0,
              Status::kFormat, "{}: dim {}, n_layers {}, n_heads {}, n_kv_heads {} do not describe a Llama",
              params_path, dim, layers, heads, kv_heads);
  const double norm_eps = params.value("norm_eps", 1e-5), rope_theta = params.value("rope_theta", 10000.0);
  LLMFT_CHECK(!params.value("use_scaled_rope", false) && vocab_param != 128256, Status::kUnsupported,
              "{}: a Llama 3 checkpoint (use_scaled_rope / a 128,256-token vocabulary); its tokenizer.model is "
              "tiktoken's, which llmft does not convert: use the Hugging Face repository's files",
              params_path);
  LLMFT_CHECK(options.llama_version == "1" || options.llama_version == "2", Status::kInvalidArgument,
              "Llama version \"{}\": 1 or 2 (Meta's Llama 3 checkpoints are not converted)", options.llama_version);

  std::vector<std::string> names;
  for (const auto& n : list_directory(meta_dir))
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".pth") == 0) names.push_back(n);
  std::sort(names.begin(), names.end());
  LLMFT_CHECK(!names.empty(), Status::kNotFound, "{}: no consolidated.*.pth files", meta_dir);
  Shards s;
  for (const auto& n : names) s.files.push_back(std::make_unique<TorchCheckpointFile>(path_join(meta_dir, n)));
  const int64_t n_files = static_cast<int64_t>(s.files.size());
  LLMFT_CHECK(heads % n_files == 0 && kv_heads % n_files == 0, Status::kFormat,
              "{}: {} model-parallel files do not split {} heads and {} key-value heads evenly", meta_dir, n_files,
              heads, kv_heads);

  std::vector<LazyTensor> out;
  for (int64_t i = 0; i < layers; ++i) {
    const std::string m = fmt::format("layers.{}.", i), h = fmt::format("model.layers.{}.", i);
    const std::string where = fmt::format("{} ({})", meta_dir, m);
    out.push_back(join(h + "self_attn.q_proj.weight", s.all(m + "attention.wq.weight", 2), 0, heads, where + "wq"));
    out.push_back(join(h + "self_attn.k_proj.weight", s.all(m + "attention.wk.weight", 2), 0, kv_heads, where + "wk"));
    out.push_back(join(h + "self_attn.v_proj.weight", s.all(m + "attention.wv.weight", 2), 0, 0, where + "wv"));
    out.push_back(join(h + "self_attn.o_proj.weight", s.all(m + "attention.wo.weight", 2), 1, 0, where + "wo"));
    out.push_back(join(h + "mlp.gate_proj.weight", s.all(m + "feed_forward.w1.weight", 2), 0, 0, where + "w1"));
    out.push_back(join(h + "mlp.down_proj.weight", s.all(m + "feed_forward.w2.weight", 2), 1, 0, where + "w2"));
    out.push_back(join(h + "mlp.up_proj.weight", s.all(m + "feed_forward.w3.weight", 2), 0, 0, where + "w3"));
    out.push_back(replicated(h + "input_layernorm.weight", s.all(m + "attention_norm.weight", 1)[0]));
    out.push_back(replicated(h + "post_attention_layernorm.weight", s.all(m + "ffn_norm.weight", 1)[0]));
  }
  out.push_back(join("model.embed_tokens.weight", s.all("tok_embeddings.weight", 2), 1, 0, meta_dir + " (tok_embeddings)"));
  out.push_back(replicated("model.norm.weight", s.all("norm.weight", 1)[0]));
  out.push_back(join("lm_head.weight", s.all("output.weight", 2), 0, 0, meta_dir + " (output)"));

  const int64_t vocab = out[out.size() - 3].shape[0], hidden = out[4].shape[0];
  LLMFT_CHECK(out[out.size() - 3].shape[1] == dim && out[0].shape[0] == dim && out[1].shape[0] == kv_heads * (dim / heads),
              Status::kFormat, "{}: the weights' shapes do not match params.json (dim {}, {} key-value heads)",
              meta_dir, dim, kv_heads);
  LLMFT_CHECK(vocab_param <= 0 || vocab_param == vocab, Status::kFormat,
              "{}: vocab_size {} but tok_embeddings has {} rows", params_path, vocab_param, vocab);

  MetaConvertResult r;
  r.model_parallel_files = static_cast<int>(n_files);
  r.tensors = static_cast<int64_t>(out.size());
  for (const auto& t : out) r.bytes += t.nbytes;
  int64_t max_positions = options.llama_version == "1" ? 2048 : 4096;
  if (rope_theta > 10000.0) max_positions = 16384;  // Code Llama, as transformers' converter reads it
  ModelConfig& c = r.config;
  c.arch = Arch::kLlama;
  c.architecture = "LlamaForCausalLM";
  c.vocab_size = vocab;
  c.hidden_size = dim;
  c.intermediate_size = hidden;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = dim / heads;
  c.max_position_embeddings = max_positions;
  c.rms_norm_eps = norm_eps;
  c.rope_theta = rope_theta;
  c.tie_word_embeddings = false;
  c.torch_dtype = hf_dtype(out[0].dtype);
  c.bos_token_id = 1;
  c.eos_token_ids = {2};

  make_dirs(out_dir);
  write_model_weights(out_dir, out, options.max_shard_bytes);
  write_file_atomic(path_join(out_dir, "config.json"), c.to_json().dump(2) + "\n");
  nlohmann::ordered_json g;
  g["bos_token_id"] = 1;
  g["eos_token_id"] = 2;
  write_file_atomic(path_join(out_dir, "generation_config.json"), g.dump(2) + "\n");
  return r;
}

}  // namespace llmft::io
