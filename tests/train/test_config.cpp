// Configuration: YAML and overrides bind to typed keys; unknown keys and wrong types are errors naming the key (and
// the file and line); the reference lists every key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <set>
#include <thread>

#include "llmft/config.hpp"
#include "llmft/error.hpp"
#include "test_support.hpp"
#include "train/setup.hpp"
#include "util/file.hpp"

using namespace llmft;

namespace {
void expect_error(const std::string& yaml, const std::vector<std::string>& overrides, std::initializer_list<const char*> fragments) {
  std::string path = test::temp_dir("cfg") + "/c.yaml";
  write_file_atomic(path, yaml);
  try {
    load_config(path, overrides);
    ADD_FAILURE() << "accepted";
  } catch (const Error& e) {
    for (const char* f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << f << " not in " << e.what();
  }
}
}  // namespace

TEST(Config, YamlAndOverrides) {
  std::string path = test::temp_dir("cfg") + "/c.yaml";
  write_file_atomic(path, "model:\n  path: /m\ntrain:\n  lr: 1.0e-4\n  grad_accum: 4\nlora:\n  target_modules: [q_proj, v_proj]\n");
  Config c = load_config(path, {"train.lr=3e-5", "lora.target_modules=all-linear", "data.train_on_inputs=true"});
  EXPECT_EQ(c.model.path, "/m");
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-5);
  EXPECT_EQ(c.train.grad_accum, 4);
  EXPECT_EQ(c.lora.target_modules, std::vector<std::string>{"all-linear"});
  EXPECT_TRUE(c.data.train_on_inputs);
  Config d = load_config("", {"lora.target_modules=q_proj,k_proj"});
  EXPECT_EQ(d.lora.target_modules, (std::vector<std::string>{"q_proj", "k_proj"}));
  // config_to_yaml round-trips.
  std::string again = test::temp_dir("cfg") + "/again.yaml";
  write_file_atomic(again, config_to_yaml(c));
  Config e = load_config(again);
  EXPECT_EQ(config_to_yaml(e), config_to_yaml(c));
}

TEST(Config, ErrorsNameTheKeyAndLine) {
  expect_error("train:\n  lr: 1e-4\n  learning_rate: 2\n", {}, {"train.learning_rate", "c.yaml:3"});
  expect_error("train:\n  grad_acum: 2\n", {}, {"train.grad_acum", "did you mean train.grad_accum"});
  expect_error("train:\n  max_steps: ten\n", {}, {"train.max_steps", "an integer", "ten", "c.yaml:2"});
  expect_error("lora:\n  r: [1, 2]\n", {}, {"lora.r", "an integer"});
  expect_error("train: 5\n", {}, {"\"train\"", "is a section"});
  expect_error("", {"train.nope=1"}, {"train.nope", "command line"});
  expect_error("", {"train.lr"}, {"not of the form"});
  expect_error("", {"data.train_on_inputs=maybe"}, {"data.train_on_inputs", "true or false"});
  expect_error("a: [unclosed\n", {}, {"c.yaml", "not valid YAML"});
}

TEST(Config, ReferenceListsEveryKey) {
  auto keys = config_keys();
  EXPECT_GT(keys.size(), 40u);
  for (const char* k : {"model.path", "data.path", "data.format", "data.seq_len", "lora.r", "lora.alpha", "lora.dropout",
                        "lora.target_modules", "train.max_steps", "train.epochs", "train.lr", "train.micro_batch_size",
                        "train.grad_accum", "train.seed", "train.warmup_steps", "output.dir", "log.every"}) {
    bool found = false;
    for (const auto& key : keys) found = found || key.key == k;
    EXPECT_TRUE(found) << k;
  }
}

// train.threads 0: OMP_NUM_THREADS when set (what torchrun sets), else the CPUs this process may use, shared among
// the node's processes; never below one.
TEST(Threads, ConfiguredThenOmpNumThreadsThenUsableCpus) {
  const char* saved = std::getenv("OMP_NUM_THREADS");
  const std::string keep = saved ? saved : "";
  EXPECT_EQ(llmft::job::cpu_threads(3, 8), 3);
  setenv("OMP_NUM_THREADS", "5", 1);
  EXPECT_EQ(llmft::job::cpu_threads(0, 4), 5);
  unsetenv("OMP_NUM_THREADS");
  const int cpus = llmft::job::usable_cpus();
  EXPECT_GE(cpus, 1);
  EXPECT_LE(cpus, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  EXPECT_EQ(llmft::job::cpu_threads(0, 1), cpus);
  EXPECT_EQ(llmft::job::cpu_threads(0, 1000), 1);
  if (saved) setenv("OMP_NUM_THREADS", keep.c_str(), 1);
}

// Every configuration key a message suggests ("... data.template=alpaca ...") exists in the schema: a suggestion
// that names a key the program refuses is worse than none.
TEST(Config, EveryKeyAMessageSuggestsExists) {
  std::set<std::string> keys;
  for (const auto& k : config_keys()) keys.insert(k.key);
  const std::regex literal(R"re("(?:[^"\\]|\\.)*")re");
  const std::regex suggestion(R"(\b(model|tokenizer|data|lora|train|dist|output|log|generate|export)\.([a-z_]+)=)");
  size_t checked = 0;
  for (const char* dir : {"src/train", "src/data", "src/tokenizer", "src/io", "src/model", "src/comm", "src/optim", "src/lora",
                          "examples/llmft"}) {
    const std::string path = path_join(test::source_dir(), dir);
    for (const auto& entry : std::filesystem::directory_iterator(path)) {
      if (entry.path().extension() != ".cpp" && entry.path().extension() != ".hpp") continue;
      const std::string text = read_file(entry.path().string());
      for (std::sregex_iterator it(text.begin(), text.end(), literal), end; it != end; ++it) {
        const std::string lit = it->str();
        for (std::sregex_iterator m(lit.begin(), lit.end(), suggestion); m != end; ++m) {
          const std::string key = (*m)[1].str() + "." + (*m)[2].str();
          EXPECT_TRUE(keys.count(key)) << entry.path().string() << ": a message suggests " << key << ", which is not a key";
          ++checked;
        }
      }
    }
  }
  EXPECT_GT(checked, 3u);
}
