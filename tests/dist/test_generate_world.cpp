// `llmft generate` as a world of processes the way torchrun starts them: with the model split across 2 and 4 ranks
// (tensor parallelism), rank 0 prints exactly what one process prints, greedy and sampled, with and without a LoRA
// adapter, for a batch of prompts read from a .jsonl file; the other ranks print nothing.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include "dist_support.hpp"
#include "io/checkpoint.hpp"
#include "llmft/error.hpp"
#include "llmft/train.hpp"
#include "model/decoder.hpp"

using namespace llmft;

namespace {

// A PEFT adapter for the model with every B non-zero (a trained adapter changes the output; a fresh one does not).
void write_random_adapter(const std::string& model_dir, const std::string& out) {
  c10::InferenceMode guard;
  io::ModelDir dir(model_dir);
  model::DecoderOptions o;
  o.mode = model::TrainMode::kLora;
  o.lora.r = 4;
  o.lora.alpha = 8;
  o.lora.target_modules = {"all-linear"};
  model::Decoder m(dir.config(), o);
  std::vector<io::TensorView> views;
  std::vector<at::Tensor> keep;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(11);
  m.for_each_parameter([&](const model::ParamSlot& s, const at::Tensor&, bool trainable) {
    if (!trainable) return;
    keep.push_back(at::empty(s.shape, at::kFloat).normal_(0.0, 0.3, gen));
    io::TensorView v;
    v.name = s.name;
    v.dtype = io::DType::kF32;
    v.shape = s.shape;
    v.data = static_cast<const uint8_t*>(keep.back().data_ptr());
    v.nbytes = static_cast<size_t>(keep.back().nbytes());
    views.push_back(v);
  });
  io::write_peft_adapter(out, o.lora, model_dir, views);
}

std::string generate_in_world(int n, const std::vector<std::string>& args, const std::string& log_prefix) {
  const auto codes = test::run_world(n, args, log_prefix, std::chrono::seconds(300), "generate");
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(codes[static_cast<size_t>(r)], 0) << read_file(log_prefix + ".rank" + std::to_string(r) + ".log");
    if (r > 0) {
      const std::string log = read_file(log_prefix + ".rank" + std::to_string(r) + ".log");
      EXPECT_EQ(log.find("{\"prompt\""), std::string::npos) << "rank " << r << " printed answers:\n" << log;
    }
  }
  // Rank 0's answers: its JSON lines.
  std::string out;
  const std::string log = read_file(log_prefix + ".rank0.log");
  for (size_t at = 0; at < log.size();) {
    size_t end = log.find('\n', at);
    if (end == std::string::npos) end = log.size();
    if (log.compare(at, 11, "{\"prompt\": ") == 0) out += log.substr(at, end - at) + "\n";
    at = end + 1;
  }
  return out;
}

}  // namespace

TEST(GenerateWorld, RanksSplittingTheModelPrintWhatOneProcessPrints) {
  LLMFT_REQUIRE_DATA("models/stories260K-hf/model.safetensors");
  const std::string model = test::data_path("models/stories260K-hf");
  const std::string dir = test::temp_dir("generate-world");
  write_random_adapter(model, dir + "/adapter");
  write_file_atomic(dir + "/prompts.jsonl",
                    "\"Once upon a time\"\n{\"prompt\": \"The little dog\"}\n\n{\"instruction\": \"Lily and Tom went to\"}\n");
  for (const bool adapter : {false, true}) {
    for (const char* temperature : {"0", "0.8"}) {
      std::vector<std::string> args = {"model.path=" + model, "data.template=none", "generate.max_new_tokens=20",
                                       "generate.temperature=" + std::string(temperature), "generate.top_p=0.9",
                                       "generate.prompts_file=" + dir + "/prompts.jsonl", "generate.batch_size=2",
                                       "--jsonl"};
      if (adapter) args.push_back("generate.adapter=" + dir + "/adapter");
      const std::string tag = std::string(adapter ? "adapter" : "base") + "-t" + temperature;
      const std::string one = generate_in_world(1, args, dir + "/" + tag + "-w1");
      ASSERT_EQ(std::count(one.begin(), one.end(), '\n'), 3) << one;
      for (int n : {2, 4}) {
        const std::string many = generate_in_world(n, args, dir + "/" + tag + "-w" + std::to_string(n));
        EXPECT_EQ(many, one) << tag << ", " << n << " ranks";
        if (n == 4) {
          const std::string log = read_file(dir + "/" + tag + "-w4.rank0.log");
          EXPECT_NE(log.find("split across 4 ranks (tensor parallelism: 2 of 8 attention heads"), std::string::npos) << log;
        }
      }
    }
  }
}

TEST(GenerateWorld, PromptsFileErrorsNameTheFileAndLine) {
  const std::string dir = test::temp_dir("generate-prompts");
  write_file_atomic(dir + "/p.jsonl", "\"fine\"\n{\"text\": \"no prompt key\"}\n");
  try {
    read_prompts_file(dir + "/p.jsonl");
    FAIL() << "accepted an object without a prompt";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("p.jsonl:2: expected a string or an object with \"prompt\""), std::string::npos)
        << e.what();
  }
  write_file_atomic(dir + "/q.jsonl", "\"fine\"\n\n{oops\n");
  try {
    read_prompts_file(dir + "/q.jsonl");
    FAIL() << "accepted a line that is not JSON";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("q.jsonl:3: not a JSON line"), std::string::npos) << e.what();
  }
  write_file_atomic(dir + "/r.txt", "first prompt\r\n\n  \nsecond prompt\n");
  EXPECT_EQ(read_prompts_file(dir + "/r.txt"), (std::vector<std::string>{"first prompt", "second prompt"}));
}

TEST(GenerateWorld, RanksGivenDifferentPromptsRefuseTogether) {
  // A split model needs every rank on the same prompts; a mismatch is named at once, not waited out.
  LLMFT_REQUIRE_DATA("models/stories260K-hf/model.safetensors");
  const std::string dir = test::temp_dir("generate-disagree");
  const int port = test::free_port();
  std::vector<test::Proc> procs;
  for (int r = 0; r < 2; ++r)
    procs.push_back(test::spawn({test::llmft_bin(), "generate", "model.path=" + test::data_path("models/stories260K-hf"),
                                 "data.template=none", "dist.timeout_s=600", "--prompt", r == 0 ? "Once" : "The dog"},
                                {{"RANK", std::to_string(r)}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", std::to_string(r)},
                                 {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"},
                                 {"MASTER_PORT", std::to_string(port)}, {"OMP_NUM_THREADS", "1"}},
                                dir + "/rank" + std::to_string(r) + ".log"));
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(test::wait_for(procs[static_cast<size_t>(r)], std::chrono::seconds(120)), 0);
    const std::string log = read_file(dir + "/rank" + std::to_string(r) + ".log");
    EXPECT_NE(log.find("the ranks were given different prompts or generation settings"), std::string::npos) << log;
  }
}
