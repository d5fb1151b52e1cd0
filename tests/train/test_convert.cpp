// `llmft convert`: Meta's original Llama checkpoints into Hugging Face directories, judged by transformers' own
// converter (convert_llama_weights_to_hf.py of transformers 4.46.3, run by tests/train/meta_reference.py on the
// installed transformers). Three checkpoints in Meta's model-parallel layout (bf16, torch.save): GQA over 2 files,
// multi-head attention in 1 file, a Llama 1 checkpoint over 4 files. Every tensor of llmft's output equals the
// converter's bit for bit, config.json agrees on every field a model is built from, transformers loads llmft's
// directory (model and tokenizer) with the reference's logits, and a sharded output (index + shards) loads the same.
#include <gtest/gtest.h>

#include <cstring>

#include "io/checkpoint.hpp"
#include "io/meta_checkpoint.hpp"
#include "llmft/error.hpp"
#include "llmft/train.hpp"
#include "test_support.hpp"

using namespace llmft;

namespace {

struct Made {
  std::string dir;
  bool ok = false;
};

const Made& made() {
  static Made m = [] {
    Made r;
    r.dir = test::temp_dir("meta-convert");
    const std::string cmd = "OMP_NUM_THREADS=1 '" + test::python() + "' '" +
                            path_join(test::source_dir(), "tests/train/meta_reference.py") + "' make '" + r.dir + "' '" +
                            test::data_path("models/tinyllamas/tok512.model") + "' > '" + r.dir + "/make.log' 2>&1";
    r.ok = std::system(cmd.c_str()) == 0;
    if (!r.ok) ADD_FAILURE() << "the reference conversion failed (scripts/deps.sh test installs it): " << cmd << "\n"
                             << read_file(r.dir + "/make.log");
    return r;
  }();
  return m;
}

void expect_same_weights(const std::string& got_dir, const std::string& want_dir) {
  io::ModelDir got(got_dir), want(want_dir);
  EXPECT_EQ(got.tensor_names(), want.tensor_names());
  for (const auto& name : want.tensor_names()) {
    const io::TensorView* g = got.find(name);
    const io::TensorView* w = want.find(name);
    ASSERT_NE(g, nullptr) << name;
    EXPECT_EQ(io::dtype_name(g->dtype), std::string(io::dtype_name(w->dtype))) << name;
    EXPECT_EQ(g->shape, w->shape) << name;
    ASSERT_EQ(g->nbytes, w->nbytes) << name;
    EXPECT_EQ(std::memcmp(g->data, w->data, g->nbytes), 0) << name << " differs from transformers' conversion";
  }
  for (const char* key : {"hidden_size", "intermediate_size", "num_attention_heads", "num_hidden_layers",
                          "num_key_value_heads", "vocab_size", "max_position_embeddings", "rms_norm_eps",
                          "tie_word_embeddings", "bos_token_id", "eos_token_id"})
    EXPECT_EQ(got.config_json().at(key), want.config_json().at(key)) << key;
  EXPECT_EQ(got.config().rope_theta, want.config().rope_theta);
}

void expect_transformers_loads(const std::string& out, const std::string& reference) {
  const std::string cmd = "OMP_NUM_THREADS=1 '" + test::python() + "' '" +
                          path_join(test::source_dir(), "tests/train/meta_reference.py") + "' check '" + out + "' '" +
                          reference + "' > '" + out + ".check.log' 2>&1";
  EXPECT_EQ(std::system(cmd.c_str()), 0) << read_file(out + ".check.log");
}

}  // namespace

TEST(Convert, MetaCheckpointsEqualTransformersConversion) {
  LLMFT_REQUIRE_DATA("models/tinyllamas/tok512.model");
  ASSERT_TRUE(made().ok);
  for (const auto& [name, version, files] : std::vector<std::tuple<std::string, std::string, int>>{
           {"gqa_two_files", "2", 2}, {"mha_one_file", "2", 1}, {"llama1_four_files", "1", 4}}) {
    SCOPED_TRACE(name);
    const std::string meta = made().dir + "/" + name + "/meta", out = made().dir + "/" + name + "/llmft";
    const ConvertSummary s = convert_meta_llama(meta, out, version);
    EXPECT_EQ(s.model_parallel_files, files);
    EXPECT_TRUE(s.tokenizer);
    expect_same_weights(out, made().dir + "/" + name + "/reference");
    expect_transformers_loads(out, made().dir + "/" + name + "/reference");
  }
}

TEST(Convert, ShardedOutputOneShardAtATime) {
  LLMFT_REQUIRE_DATA("models/tinyllamas/tok512.model");
  ASSERT_TRUE(made().ok);
  const std::string meta = made().dir + "/gqa_two_files/meta", out = made().dir + "/gqa_sharded";
  io::MetaConvertOptions o;
  o.max_shard_bytes = 40'000;  // a few tensors per shard
  io::convert_meta_llama(meta, out, o);
  EXPECT_TRUE(file_exists(out + "/model.safetensors.index.json"));
  EXPECT_FALSE(file_exists(out + "/model.safetensors"));
  expect_same_weights(out, made().dir + "/gqa_two_files/reference");
}

TEST(Convert, BadCheckpointsAreNamedErrors) {
  LLMFT_REQUIRE_DATA("models/tinyllamas/tok512.model");
  ASSERT_TRUE(made().ok);
  const std::string dir = test::temp_dir("meta-bad");
  auto error = [&](const std::string& meta) {
    try {
      convert_meta_llama(meta, dir + "/out");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  // No params.json.
  EXPECT_NE(error(dir).find("no params.json"), std::string::npos);
  // One of two model-parallel files missing: the weights no longer match params.json.
  const std::string half = dir + "/half";
  make_dirs(half);
  const std::string src = made().dir + "/gqa_two_files/meta";
  write_file_atomic(half + "/params.json", read_file(src + "/params.json"));
  write_file_atomic(half + "/consolidated.00.pth", read_file(src + "/consolidated.00.pth"));
  EXPECT_NE(error(half).find("do not match params.json"), std::string::npos) << error(half);
  // A Llama 3 checkpoint is refused by name (its tokenizer.model is tiktoken's).
  write_file_atomic(half + "/params.json", R"({"dim": 64, "n_layers": 2, "n_heads": 8, "n_kv_heads": 4,
    "vocab_size": 128256, "multiple_of": 32, "norm_eps": 1e-5, "rope_theta": 500000.0, "use_scaled_rope": true})");
  EXPECT_NE(error(half).find("Llama 3"), std::string::npos) << error(half);
  // Writing into the checkpoint's own folder is refused.
  try {
    convert_meta_llama(src, src);
    ADD_FAILURE() << "converted into its own folder";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checkpoint's own folder"), std::string::npos) << e.what();
  }
}
