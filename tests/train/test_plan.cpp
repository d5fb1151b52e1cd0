// Memory plans (llmft::plan_memory, `llmft plan`): the per-rank parts follow the formulas for a Llama-2-70B-shaped
// model on 8 ranks of 80 GB; a plan that does not fit says what would; `llmft generate` and `llmft train` refuse a
// model that cannot fit before reading a weight (the directories here hold a config.json and nothing else).
#include <gtest/gtest.h>


#include "llmft/config.hpp"
#include "llmft/error.hpp"
#include "llmft/train.hpp"
#include "test_support.hpp"
#include "util/file.hpp"

using namespace llmft;

namespace {

const char* kLlama70b = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 8192, "intermediate_size": 28672,
  "num_attention_heads": 64, "num_hidden_layers": 80, "num_key_value_heads": 8, "vocab_size": 32000,
  "rms_norm_eps": 1e-05, "max_position_embeddings": 4096, "tie_word_embeddings": false, "torch_dtype": "float16"})";
// Llama 3.1 405B's shape: 810 GB of bf16 weights, more than any machine this suite runs on.
const char* kLlama405b = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 16384, "intermediate_size": 53248,
  "num_attention_heads": 128, "num_hidden_layers": 126, "num_key_value_heads": 8, "vocab_size": 128256,
  "rms_norm_eps": 1e-05, "max_position_embeddings": 131072, "tie_word_embeddings": false, "torch_dtype": "bfloat16"})";

std::string model_dir(const std::string& name, const char* config) {
  const std::string dir = test::temp_dir(name);
  write_file_atomic(dir + "/config.json", config);
  return dir;
}

std::string run(const std::string& args, int* status) {
  const test::ProgramResult r = test::run_llmft(args);
  *status = r.status;
  return r.out;
}

// Llama-2-70B in bf16 with `seq_len`-token sequences, planned from its config.json alone.
Config llama70b(const std::string& name, int64_t seq_len) {
  Config c;
  c.model.path = model_dir(name, kLlama70b);
  c.model.dtype = "bfloat16";
  c.data.seq_len = seq_len;
  return c;
}

}  // namespace

TEST(Plan, GenerationOf70BOn8RanksFollowsTheFormulas) {
  Config c = llama70b("plan-70b", 2048);
  c.generate.max_new_tokens = 256;
  c.generate.batch_size = 16;
  PlanRequest r;
  r.job = "generate";
  r.ranks = 8;
  r.memory_gb = 80;
  const MemoryPlan p = plan_memory(c, r);
  EXPECT_EQ(p.parameters, 68976648192);  // Llama-2-70B's count
  EXPECT_EQ(p.tensor_parallel, 8);
  // Weights: an eighth of every layer's linears and of the two vocabulary matrices, the norms whole, in bf16.
  const double C = 8192, F = 28672, L = 80, Q = 8192, KV = 1024, V = 32000;
  const double weights = 2 * (L * ((C * (Q + 2 * KV) + Q * C + 3 * C * F) / 8 + 2 * C) + (V / 8) * C * 2 + C);
  EXPECT_DOUBLE_EQ(p.weights, weights);
  EXPECT_NEAR(p.weights / 1e9, 137.95 / 8, 0.05);
  // KV cache: keys and values of 1 of 8 key/value heads (head_dim 128), 80 layers, 16 x (2048 + 256) positions.
  EXPECT_DOUBLE_EQ(p.kv_cache, 2.0 * 80 * 16 * 2304 * 1 * 128 * 2);
  EXPECT_TRUE(p.fits()) << p.table();
  EXPECT_NE(p.table().find("weights split 8 ways (tensor parallelism)"), std::string::npos) << p.table();

  r.ranks = 1;  // one 80 GB GPU cannot hold 138 GB of weights
  const MemoryPlan one = plan_memory(c, r);
  EXPECT_FALSE(one.fits());
  ASSERT_FALSE(one.alternatives.empty());
  EXPECT_EQ(one.alternatives.front().rfind("4 ranks (tensor parallelism)", 0), 0u) << one.table();
  r.ranks = 3;  // 64 heads and 8 key/value heads do not split 3 ways
  try {
    plan_memory(c, r);
    FAIL() << "planned a split that tensor parallelism cannot make";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be split across 3 ranks"), std::string::npos) << e.what();
  }
}

TEST(Plan, TrainingShardsWithTheZeroStage) {
  Config c = llama70b("plan-70b-train", 1024);
  c.train.micro_batch_size = 1;
  PlanRequest r;
  r.ranks = 8;
  r.memory_gb = 80;
  c.dist.zero_stage = 0;
  const MemoryPlan z0 = plan_memory(c, r);
  c.dist.zero_stage = 3;
  const MemoryPlan z3 = plan_memory(c, r);
  EXPECT_EQ(z3.zero_stage, 3);
  // ZeRO-3 holds an eighth of the weights plus one gathered layer; stage 0 all of them.
  EXPECT_GT(z0.weights, 137e9);
  EXPECT_LT(z3.weights, z0.weights / 8 + 2e9);
  EXPECT_NEAR(z3.optimizer, z0.optimizer / 8, 1);
  EXPECT_FALSE(z0.fits());
  EXPECT_TRUE(z3.fits()) << z3.table();
  // At stage 0, the plan names the stage that fits.
  bool names_stage = false;
  for (const auto& a : z0.alternatives) names_stage = names_stage || a.rfind("dist.zero_stage=3", 0) == 0;
  EXPECT_TRUE(names_stage) << z0.table();
}

TEST(Plan, AStoredBaseTakesItsBytesOnEveryRank) {
  // model.quantize: the layers' linears take 0.516 bytes a value in NF4 (4 bits, an 8-bit absmax code per 64, an
  // fp32 absmax per 256 codes) or 1.0002 in FP8, instead of 2 in bf16, and are not sharded by ZeRO-3.
  Config c = llama70b("plan-70b-qlora", 1024);
  PlanRequest r;
  r.ranks = 8;
  r.memory_gb = 80;
  const double C = 8192, F = 28672, L = 80, Q = 8192, KV = 1024;
  const double lin = L * (C * (Q + 2 * KV) + Q * C + 3 * C * F);
  for (int stage : {0, 3}) {
    SCOPED_TRACE(stage);
    c.dist.zero_stage = stage;
    c.model.quantize = "none";
    const MemoryPlan dense = plan_memory(c, r);
    for (const auto& [q, bytes] : {std::pair<std::string, double>{"nf4", 0.5 + 1.0 / 64 + 4.0 / (64 * 256)},
                                   {"fp8", 1.0 + 4.0 / (128 * 128)}}) {
      c.model.quantize = q;
      const MemoryPlan p = plan_memory(c, r);
      const double sharded = stage == 3 ? lin * 2 / 8 : lin * 2;
      EXPECT_NEAR(p.weights, dense.weights - sharded + lin * bytes, 1e3) << q;
    }
  }
  // LoRA at stage 0, one 1024-token row a micro-batch, does not fit 80 GB in bf16; NF4 is named as what fits.
  c.dist.zero_stage = 0;
  c.train.micro_batch_size = 1;
  c.model.quantize = "none";
  const MemoryPlan p = plan_memory(c, r);
  EXPECT_FALSE(p.fits());
  bool names_nf4 = false;
  for (const auto& a : p.alternatives) names_nf4 = names_nf4 || a.rfind("model.quantize=nf4 (QLoRA)", 0) == 0;
  EXPECT_TRUE(names_nf4) << p.table();
}

TEST(Plan, CommandPrintsThePlanAndRefusesWhatDoesNotFit) {
  const std::string dir = model_dir("plan-cli", kLlama70b);
  int status = 0;
  std::string out = run("plan --job generate --ranks 8 --memory-gb 80 model.path=" + dir +
                            " model.dtype=bfloat16 data.seq_len=2048 generate.max_new_tokens=256",
                        &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("KV cache"), std::string::npos) << out;
  EXPECT_NE(out.find("fits"), std::string::npos) << out;
  out = run("plan --job generate --ranks 1 --memory-gb 80 model.path=" + dir + " model.dtype=bfloat16", &status);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("does not fit; what would:"), std::string::npos) << out;
  EXPECT_NE(out.find("- 2 ranks (tensor parallelism)"), std::string::npos) << out;
}

TEST(Plan, JobsRefuseAModelThatCannotFitBeforeReadingWeights) {
  // A config.json and no weight file: the refusal comes from the plan, before any weight is looked for.
  const std::string dir = model_dir("plan-405b", kLlama405b);
  int status = 0;
  std::string out = run("generate model.path=" + dir + " model.dtype=bfloat16 data.template=none --prompt hello", &status);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("generating with " + dir + " would need about"), std::string::npos) << out;
  // 8 key/value heads: 8 ranks at most, still 100 GB a rank.
  EXPECT_NE(out.find("split across the most ranks its heads allow (8), it needs"), std::string::npos) << out;
  const std::string work = test::temp_dir("plan-405b-train");
  out = run("train model.path=" + dir + " model.dtype=bfloat16 tokenizer.path=" + dir + "/config.json output.dir=" + work,
            &status);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(out.find("training " + dir + " would need about"), std::string::npos) << out;
}
