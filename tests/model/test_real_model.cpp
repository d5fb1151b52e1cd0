// The real pretrained model in ../shared/data (stories260K, Llama architecture, HF format): greedy generation
// reproduces the sample in its README; a LoRA fine-tune on Alpaca lowers the held-out loss; training is bitwise
// deterministic; the saved PEFT adapter merged into its base gives a checkpoint (sharded above the limit) whose
// logits equal base + adapter.
#include <gtest/gtest.h>

#include <regex>
#include <set>

#include "io/checkpoint.hpp"
#include "llmft/config.hpp"
#include "llmft/tokenizer.hpp"
#include "llmft/train.hpp"
#include "model/decoder.hpp"
#include "model_support.hpp"
#include "util/file.hpp"

using namespace llmft;

namespace {

const char* kModel = "models/stories260K-hf";

std::unique_ptr<model::Decoder> load(const io::ModelDir& dir, model::TrainMode mode, const lora::LoraSpec& spec = {}) {
  model::DecoderOptions opt;
  opt.mode = mode;
  opt.lora = spec;
  auto m = std::make_unique<model::Decoder>(dir.config(), opt);
  m->load_base([&](const std::string& n) { return dir.find(n); }, dir.path());
  return m;
}

Config alpaca_lora_config(const std::string& out) {
  Config c = load_config("", {"model.path=" + test::data_path(kModel), "data.path=" + test::data_path("datasets/alpaca/alpaca_5000.json"),
                              "data.seq_len=192", "data.eval_count=64", "train.mode=lora", "lora.r=8", "lora.alpha=16",
                              "lora.target_modules=all-linear", "lora.dropout=0.1", "train.lr=5e-3", "train.max_steps=40",
                              "train.warmup_steps=4", "train.micro_batch_size=4", "train.grad_accum=2", "log.every=10",
                              "generate.num_samples=1", "generate.max_new_tokens=8", "output.dir=" + out});
  return c;
}

}  // namespace

TEST(Stories260K, GreedyGenerationMatchesTheReadme) {
  LLMFT_REQUIRE_DATA(std::string(kModel) + "/model.safetensors");
  LLMFT_REQUIRE_DATA("models/tinyllamas/stories260K.README.md");
  io::ModelDir dir(test::data_path(kModel));
  auto m = load(dir, model::TrainMode::kNone);
  auto tok = Tokenizer::from_file(dir.path());
  // The README's greedy sample: the block after "-t 0.0".
  std::string readme = read_file(test::data_path("models/tinyllamas/stories260K.README.md"));
  size_t at = readme.find("-t 0.0\n");
  ASSERT_NE(at, std::string::npos);
  size_t b = readme.find('\n', at) + 1, e = readme.find("\n```", b);
  std::string expected = readme.substr(b, e - b);
  ASSERT_GT(expected.size(), 500u);
  model::GenerateOptions g;
  g.max_new_tokens = 256;
  g.stop_ids = {tok.bos_id()};  // run.c stops at BOS
  auto ids = m->generate({tok.bos_id()}, g);
  EXPECT_EQ((std::vector<int32_t>(ids.begin(), ids.begin() + 10)),
            (std::vector<int32_t>{403, 407, 261, 378, 432, 383, 286, 261, 376, 298}));
  std::string text = tok.decode(ids, true);
  EXPECT_EQ(text.substr(0, expected.size()), expected);
}

TEST(Stories260K, LoraOnAlpacaLowersHeldOutLossDeterministically) {
  LLMFT_REQUIRE_DATA(std::string(kModel) + "/model.safetensors");
  LLMFT_REQUIRE_DATA("datasets/alpaca/alpaca_5000.json");
  std::string out1 = test::temp_dir("lora1"), out2 = test::temp_dir("lora2");
  TrainSummary s1 = train(alpaca_lora_config(out1));
  EXPECT_LT(s1.eval_loss_after, s1.eval_loss_before - 0.3) << "held-out loss did not fall";
  EXPECT_LT(s1.last_loss, s1.first_loss);
  // The same configuration and seed: the same losses and adapter, bit for bit.
  TrainSummary s2 = train(alpaca_lora_config(out2));
  EXPECT_EQ(read_file(out1 + "/metrics.jsonl").substr(0, 2000).find("tokens_per_second") != std::string::npos, true);
  auto losses = [](const std::string& dir) {
    std::string m = read_file(dir + "/metrics.jsonl"), out;
    std::regex re("\"(loss|grad_norm|eval_loss)\": ([-0-9.e]+)");
    for (std::sregex_iterator it(m.begin(), m.end(), re), end; it != end; ++it) out += (*it)[0].str() + ";";
    return out;
  };
  EXPECT_EQ(losses(out1), losses(out2));
  EXPECT_EQ(read_file(out1 + "/adapter/adapter_model.safetensors"), read_file(out2 + "/adapter/adapter_model.safetensors"));
  EXPECT_EQ(s1.eval_loss_after, s2.eval_loss_after);

  // The adapter in PEFT's layout.
  auto cfg = nlohmann::json::parse(read_file(out1 + "/adapter/adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["r"], 8);
  EXPECT_EQ(cfg["lora_alpha"], 16.0);
  EXPECT_EQ(cfg["bias"], "none");
  EXPECT_EQ(cfg["fan_in_fan_out"], false);
  EXPECT_EQ(cfg["use_dora"], false);
  EXPECT_EQ(cfg["use_rslora"], false);
  EXPECT_TRUE(cfg["modules_to_save"].is_null());
  EXPECT_EQ(cfg["base_model_name_or_path"], test::data_path(kModel));
  EXPECT_EQ(cfg["target_modules"].size(), 7u);
  io::SafetensorsFile st(out1 + "/adapter/adapter_model.safetensors");
  const auto& a = st.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  const auto& bq = st.get("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{8, 64}));   // [r, in]
  EXPECT_EQ(bq.shape, (std::vector<int64_t>{64, 8}));  // [out, r]
  EXPECT_EQ(st.get("base_model.model.model.layers.4.mlp.down_proj.lora_A.weight").shape, (std::vector<int64_t>{8, 172}));
  EXPECT_EQ(st.tensors().size(), 5u * 7u * 2u);
  EXPECT_EQ(st.metadata().at("format"), "pt");

  // Merge into the base, sharded at 0.5 MB (the F32 checkpoint is ~1 MB): the merged model's logits equal the base
  // model's with the adapter applied.
  Config c = alpaca_lora_config(out1);
  c.export_.out = out1 + "/merged";
  c.export_.max_shard_mb = 0.5;
  std::string merged = export_merged(c);
  ASSERT_TRUE(file_exists(merged + "/model.safetensors.index.json"));
  EXPECT_TRUE(file_exists(merged + "/tokenizer.json"));
  EXPECT_TRUE(file_exists(merged + "/config.json"));
  auto index = nlohmann::json::parse(read_file(merged + "/model.safetensors.index.json"));
  EXPECT_EQ(index["weight_map"].size(), io::ModelDir(test::data_path(kModel)).tensor_names().size());
  std::set<std::string> shards;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) shards.insert(it.value().get<std::string>());
  EXPECT_GE(shards.size(), 2u);
  for (const auto& f : shards) {
    EXPECT_TRUE(file_exists(merged + "/" + f)) << f;
    EXPECT_LE(read_file(merged + "/" + f).size(), 600000u) << f;
  }
  io::ModelDir base(test::data_path(kModel)), merged_dir(merged);
  io::PeftAdapter adapter = io::read_peft_adapter(out1 + "/adapter");
  auto with_adapter = load(base, model::TrainMode::kLora, adapter.spec);
  with_adapter->load_lora([&](const std::string& n) { return adapter.find(n); }, "adapter");
  auto merged_model = load(merged_dir, model::TrainMode::kNone);
  auto tok = Tokenizer::from_file(base.path());
  auto ids = tok.encode("Below is an instruction. Write a response.\n\n### Response:\nOnce upon a time", true);
  model::Batch b = model::make_batch({ids}, {std::vector<uint8_t>(ids.size(), 1)});
  double err = test::rel_err(merged_model->forward_logits(b), with_adapter->forward_logits(b));
  EXPECT_LE(err, 1e-5);
  double moved = test::rel_err(load(base, model::TrainMode::kNone)->forward_logits(b), with_adapter->forward_logits(b));
  EXPECT_GT(moved, 1e-3) << "the adapter should change the model";
}
