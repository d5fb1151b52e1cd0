// transformers judges llmft's merged exports: a LoRA fine-tune of the real stories260K (llmft::train), merged by
// llmft::export_merged (sharded), loads through AutoModelForCausalLM.from_pretrained with no warning and gives the
// logits of PEFT's merge_and_unload() of the same base + adapter; AutoTokenizer and GenerationConfig load what the
// export wrote, and the tokenizer gives llmft's ids.
#include <gtest/gtest.h>

#include "hf_support.hpp"
#include "io/safetensors.hpp"
#include "llmft/tokenizer.hpp"
#include "model/model_support.hpp"

using namespace llmft;

TEST(MergedExport, TransformersLoadsItAsPeftMergesIt) {
  LLMFT_REQUIRE_DATA(std::string(test::kStories) + "/model.safetensors");
  const std::string base = test::data_path(test::kStories);
  const std::string adapter = test::llmft_lora(base, {"lora.target_modules=all-linear", "lora.r=8", "lora.alpha=16"});
  Config c = load_config("", {"export.adapter=" + adapter, "export.max_shard_mb=0.4",
                              "export.out=" + test::temp_dir("merged") + "/merged"});
  const std::string merged = export_merged(c);
  ASSERT_TRUE(file_exists(merged + "/model.safetensors.index.json")) << "expected a sharded export";

  auto ids = test::probe_ids(512);
  std::string out = path_join(test::temp_dir("merged-judge"), "merged.safetensors");
  ASSERT_TRUE(test::judge("hf_judge.py", {"merged", merged, base, adapter, test::write_ids(ids), out}));
  io::SafetensorsFile r(out);
  io::ModelDir merged_dir(merged);
  auto ours = test::load_decoder(merged_dir, nullptr);
  double worst_hf = 0, worst_ours = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string k = "logits." + std::to_string(i);
    at::Tensor theirs = test::to_tensor(r.get("peft." + k));
    worst_hf = std::max(worst_hf, test::rel_err(test::to_tensor(r.get("ours." + k)), theirs));
    worst_ours = std::max(worst_ours, test::rel_err(test::logits_of(*ours, ids[i]), theirs));
  }
  EXPECT_LE(worst_hf, 1e-5) << "transformers on llmft's merged checkpoint vs PEFT's merge_and_unload";
  EXPECT_LE(worst_ours, 1e-5) << "llmft on its merged checkpoint vs PEFT's merge_and_unload";

  auto info = nlohmann::json::parse(read_file(out + ".json"));
  Tokenizer tok = Tokenizer::from_file(merged);
  EXPECT_EQ(info["ids"].get<std::vector<int32_t>>(),
            tok.encode("Once upon a time, there was a little girl named Lily.", true));
  EXPECT_EQ(info["bos_token_id"], 1);
  EXPECT_EQ(info["eos_token_id"], 2);
  std::printf("[ export ] %s (%s): transformers %.2e, llmft %.2e vs merge_and_unload\n", merged.c_str(),
              info["tokenizer_class"].get<std::string>().c_str(), worst_hf, worst_ours);
}
