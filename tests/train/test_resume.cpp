// Checkpoints and resume, judged against a run that was never interrupted: the llmft program killed with SIGKILL at
// random steps, stopped with SIGTERM, restarted with the same command, must log the same losses and end with the
// same adapter, byte for byte. Corrupted and unfinished checkpoints are skipped with a warning naming the file; a
// folder that cannot rename (an object-store mount, by an LD_PRELOAD shim) still gets complete checkpoints; a full
// disk while saving is an error naming the path that leaves earlier checkpoints intact; a resumed run that changes
// what must not change is refused naming the key. The Trainer object's step / save / restore are checked in process.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "dist/dist_support.hpp"
#include "llmft/config.hpp"
#include "llmft/trainer.hpp"
#include "model/model_support.hpp"
#include "test_support.hpp"
#include "train/checkpoints.hpp"
#include "util/file.hpp"

namespace llmft {
namespace {

using Json = nlohmann::json;
constexpr const char* kModel = "models/stories260K-hf/model.safetensors";
constexpr int64_t kSteps = 12;

// A LoRA job on stories260K with dropout (so the generator's state matters), a checkpoint every 3 steps and a log
// line at every step.
std::vector<std::string> job_args(const std::string& out, int64_t steps = kSteps) {
  return {"model.path=" + test::data_path("models/stories260K-hf"), "train.mode=lora", "data.synthetic_records=96",
          "data.seq_len=128", fmt::format("train.max_steps={}", steps), "generate.num_samples=1",
          "generate.max_new_tokens=8", "log.every=1", "checkpoint.every=3", "checkpoint.keep=3", "lora.dropout=0.1",
          "train.eval_every=5", "output.dir=" + out};
}

test::Proc start(const std::vector<std::string>& args, const std::string& log,
                 const std::map<std::string, std::string>& env = {}) {
  std::vector<std::string> argv = {test::llmft_bin(), "train"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::map<std::string, std::string> e = {{"OMP_NUM_THREADS", "1"}};
  for (const auto& [k, v] : env) e[k] = v;
  return test::spawn(argv, e, log);
}

int run(const std::vector<std::string>& args, const std::string& log, const std::map<std::string, std::string>& env = {}) {
  test::Proc p = start(args, log, env);
  return test::wait_for(p, std::chrono::seconds(600));
}

std::vector<Json> records(const std::string& out) { return test::metric_records(out); }

struct Reference {
  std::vector<Json> metrics;
  std::string adapter;
};

// The uninterrupted run, once per test binary.
const Reference& reference() {
  static Reference ref = [] {
    const std::string out = test::temp_dir("resume-ref");
    EXPECT_EQ(run(job_args(out), out + ".log"), 0) << read_file(out + ".log");
    return Reference{records(out), read_file(path_join(out, "adapter/adapter_model.safetensors"))};
  }();
  return ref;
}

void expect_same_as_reference(const std::string& out, const std::string& what) {
  const Reference& ref = reference();
  const auto got = records(out);
  ASSERT_EQ(got.size(), ref.metrics.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i], ref.metrics[i]) << what << ": record " << i;
  EXPECT_TRUE(read_file(path_join(out, "adapter/adapter_model.safetensors")) == ref.adapter)
      << what << ": the adapter differs from the uninterrupted run's";
}

TEST(Resume, KilledAtRandomStepsContinuesBitForBit) {
  LLMFT_REQUIRE_DATA(kModel);
  reference();
  std::mt19937 rng(std::random_device{}());
  for (int trial = 0; trial < 3; ++trial) {
    const int64_t k = std::uniform_int_distribution<int64_t>(4, kSteps - 1)(rng);
    SCOPED_TRACE(fmt::format("trial {}: SIGKILL after step {}", trial, k));
    const std::string out = test::temp_dir(fmt::format("resume-kill{}", trial));
    test::Proc p = start(job_args(out), out + ".1.log");
    wait_for_step(p, k);
    ::kill(p.pid, SIGKILL);
    EXPECT_EQ(test::wait_for(p, std::chrono::seconds(60)), 128 + SIGKILL) << "the run ended before the kill";
    ASSERT_EQ(run(job_args(out), out + ".2.log"), 0) << read_file(out + ".2.log");
    expect_same_as_reference(out, fmt::format("killed after step {}", k));
    if (trial == 0) {  // restarted once more after it finished: nothing left to train, the same outputs again
      ASSERT_EQ(run(job_args(out), out + ".3.log"), 0) << read_file(out + ".3.log");
      EXPECT_NE(read_file(out + ".3.log").find(fmt::format("continuing after step {}", kSteps)), std::string::npos);
      expect_same_as_reference(out, "restarted after it finished");
    }
  }
}

TEST(Resume, SigtermWritesACheckpointExitsZeroAndContinuesBitForBit) {
  LLMFT_REQUIRE_DATA(kModel);
  reference();
  const std::string out = test::temp_dir("resume-term");
  std::vector<std::string> args = job_args(out);
  args.push_back("checkpoint.every=0");  // the only checkpoint is the one the signal asks for
  test::Proc p = start(args, out + ".1.log");
  wait_for_step(p, 5);
  ::kill(p.pid, SIGTERM);
  const int status = test::wait_for(p, std::chrono::seconds(120));
  const std::string log = read_file(out + ".1.log");
  ASSERT_EQ(status, 0) << log;
  ASSERT_NE(log.find("stopped by SIGTERM"), std::string::npos) << log;
  std::string ckpt;
  for (const auto& name : list_directory(out))
    if (job::checkpoint_step(name) > 0) ckpt = path_join(out, name);
  ASSERT_FALSE(ckpt.empty()) << "no checkpoint after SIGTERM";
  EXPECT_NO_THROW(job::verify_checkpoint(ckpt));
  EXPECT_FALSE(file_exists(path_join(out, "adapter"))) << "a stopped run is not a finished one";
  ASSERT_EQ(run(args, out + ".2.log"), 0) << read_file(out + ".2.log");
  EXPECT_NE(read_file(out + ".2.log").find("continuing after step"), std::string::npos);
  expect_same_as_reference(out, "stopped by SIGTERM");
}

// Full fine-tuning: the checkpoint is a Hugging Face model folder in fp32 (the master weights); stopped and resumed,
// the job ends with the same model, byte for byte.
TEST(Resume, FullFineTuningStoppedAndResumedEndsWithTheSameModel) {
  LLMFT_REQUIRE_DATA(kModel);
  auto args = [](const std::string& out) {
    std::vector<std::string> a = job_args(out);
    a.push_back("train.mode=full");
    a.push_back("checkpoint.every=0");
    return a;
  };
  const std::string ref = test::temp_dir("resume-full-ref");
  ASSERT_EQ(run(args(ref), ref + ".log"), 0) << read_file(ref + ".log");
  const std::string out = test::temp_dir("resume-full-ft");
  test::Proc p = start(args(out), out + ".1.log");
  wait_for_step(p, 4);
  ::kill(p.pid, SIGTERM);
  ASSERT_EQ(test::wait_for(p, std::chrono::seconds(120)), 0) << read_file(out + ".1.log");
  std::string ckpt;
  for (const auto& name : list_directory(out))
    if (job::checkpoint_step(name) > 0) ckpt = path_join(out, name);
  ASSERT_FALSE(ckpt.empty());
  EXPECT_TRUE(file_exists(path_join(ckpt, "config.json")) && file_exists(path_join(ckpt, "model.safetensors")))
      << "a full fine-tune's checkpoint is a model folder";
  ASSERT_EQ(run(args(out), out + ".2.log"), 0) << read_file(out + ".2.log");
  EXPECT_EQ(records(out), records(ref));
  EXPECT_TRUE(read_file(path_join(out, "model/model.safetensors")) == read_file(path_join(ref, "model/model.safetensors")));
}

// A finished run with checkpoints at steps 6, 9 and 12 (the last step; 3 was removed as the fourth), to corrupt
// copies of.
std::string run_with_checkpoints() {
  static const std::string out = [] {
    const std::string o = test::temp_dir("resume-corrupt-src");
    EXPECT_EQ(run(job_args(o), o + ".log"), 0) << read_file(o + ".log");
    return o;
  }();
  return out;
}

void truncate_file(const std::string& p) {
  const std::string s = read_file(p);
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s.substr(0, s.size() / 2);
}

void flip_byte(const std::string& p) {
  std::string s = read_file(p);
  s[s.size() / 2] = static_cast<char>(s[s.size() / 2] ^ 0x40);
  std::ofstream(p, std::ios::binary | std::ios::trunc) << s;
}

TEST(Resume, CorruptOrUnfinishedCheckpointsAreSkippedNamingTheFile) {
  LLMFT_REQUIRE_DATA(kModel);
  const std::string src = run_with_checkpoints();
  struct Case {
    std::string name, named;  // what is done to checkpoint-9, and what the warning must name
    std::function<void(const std::string& ckpt9)> spoil;
  };
  const std::vector<Case> cases = {
      {"truncated adapter", "adapter_model.safetensors", [](const std::string& d) { truncate_file(path_join(d, "adapter_model.safetensors")); }},
      {"flipped byte in the optimizer state", "optimizer.safetensors", [](const std::string& d) { flip_byte(path_join(d, "optimizer.safetensors")); }},
      {"manifest deleted", "manifest.json", [](const std::string& d) { remove_tree(path_join(d, "manifest.json")); }},
      {"trainer state deleted", "trainer_state.json", [](const std::string& d) { remove_tree(path_join(d, "trainer_state.json")); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string out = test::temp_dir("resume-corrupt");
    for (const std::string step : {"6", "9"}) {
      const std::string from = path_join(src, "checkpoint-" + step), to = path_join(out, "checkpoint-" + step);
      make_dirs(to);
      for (const auto& f : list_directory(from)) write_file_atomic(path_join(to, f), read_file(path_join(from, f)));
    }
    c.spoil(path_join(out, "checkpoint-9"));
    // And an unfinished write of a later one, as a process killed while saving leaves it.
    make_dirs(path_join(out, ".checkpoint-12.partial"));
    write_file_atomic(path_join(out, ".checkpoint-12.partial/adapter_model.safetensors"), "half");
    ASSERT_EQ(run(job_args(out), out + ".log"), 0) << read_file(out + ".log");
    const std::string log = read_file(out + ".log");
    EXPECT_NE(log.find("skipping checkpoint " + path_join(out, "checkpoint-9")), std::string::npos) << log;
    EXPECT_NE(log.find(c.named), std::string::npos) << log;
    EXPECT_NE(log.find(".checkpoint-12.partial is an unfinished checkpoint write"), std::string::npos) << log;
    EXPECT_NE(log.find("continuing after step 6 from " + path_join(out, "checkpoint-6")), std::string::npos) << log;
    expect_same_as_reference(out, c.name);
    EXPECT_FALSE(file_exists(path_join(out, ".checkpoint-12.partial"))) << "the unfinished write is cleared";
  }
}

TEST(Resume, AFolderThatCannotRenameGetsCompleteCheckpoints) {
  LLMFT_REQUIRE_DATA(kModel);
  reference();
  const std::string shim = path_join(test::build_dir(), "testlib/libllmft_no_rename.so");
  ASSERT_TRUE(file_exists(shim)) << shim;
  const std::string out = test::temp_dir("resume-norename"), bucket = path_join(out, "bucket");
  make_dirs(bucket);
  std::vector<std::string> args = job_args(out);
  args.push_back("checkpoint.dir=" + bucket);
  const std::map<std::string, std::string> env = {{"LD_PRELOAD", shim}, {"LLMFT_TEST_NO_RENAME", bucket}};
  test::Proc p = start(args, out + ".1.log", env);
  wait_for_step(p, 8);
  ::kill(p.pid, SIGKILL);
  test::wait_for(p, std::chrono::seconds(60));
  const std::string log1 = read_file(out + ".1.log");
  ASSERT_NE(log1.find("written in place: this file system cannot rename folders"), std::string::npos) << log1;
  // The probe's refused rename is the only one tried there.
  const std::string refused = read_file(path_join(out, "renames-refused.log"));
  EXPECT_EQ(refused.find("checkpoint-"), std::string::npos) << refused;
  for (const auto& name : list_directory(bucket))
    if (job::checkpoint_step(name) > 0) EXPECT_NO_THROW(job::verify_checkpoint(path_join(bucket, name))) << name;
  ASSERT_EQ(run(args, out + ".2.log", env), 0) << read_file(out + ".2.log");
  EXPECT_NE(read_file(out + ".2.log").find("continuing after step"), std::string::npos);
  expect_same_as_reference(out, "checkpoints written in place");
}

TEST(Resume, ADiskFullWhileSavingNamesThePathAndKeepsEarlierCheckpoints) {
  LLMFT_REQUIRE_DATA(kModel);
  const std::string out = test::temp_dir("resume-full");
  // Steps 1-4 with a checkpoint at 3, then a run to 12 that cannot write a file above 200 kB (the adapter is more).
  ASSERT_EQ(run(job_args(out, 4), out + ".1.log"), 0) << read_file(out + ".1.log");
  const std::string ckpt3 = path_join(out, "checkpoint-3");
  ASSERT_NO_THROW(job::verify_checkpoint(ckpt3));
  const std::string before = read_file(path_join(ckpt3, "manifest.json"));
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::signal(SIGXFSZ, SIG_IGN);  // a write past the limit fails with EFBIG, as one on a full disk fails with ENOSPC
    rlimit lim{200000, 200000};
    ::setrlimit(RLIMIT_FSIZE, &lim);
    ::setenv("OMP_NUM_THREADS", "1", 1);
    FILE* f = std::freopen((out + ".2.log").c_str(), "w", stdout);
    (void)f;
    ::dup2(fileno(stdout), fileno(stderr));
    std::vector<std::string> a = {test::llmft_bin(), "train"};
    for (const auto& x : job_args(out)) a.push_back(x);
    std::vector<char*> argv;
    for (auto& x : a) argv.push_back(x.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  const std::string log = read_file(out + ".2.log");
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 1) << log;
  EXPECT_NE(log.find("checkpoint of step 6 not written"), std::string::npos) << log;
  EXPECT_NE(log.find(out), std::string::npos) << "the error names the path:\n" << log;
  EXPECT_EQ(read_file(path_join(ckpt3, "manifest.json")), before);
  EXPECT_NO_THROW(job::verify_checkpoint(ckpt3));
  for (const auto& name : list_directory(out)) {
    EXPECT_NE(name, "checkpoint-6") << "a checkpoint that was not written completely is not left as one";
    EXPECT_EQ(name.find(".partial"), std::string::npos) << name;
  }
  EXPECT_TRUE(file_exists(path_join(out, "run_failed.json")));
}

TEST(Resume, ChangesThatMustNotChangeAreRefusedNamingTheKey) {
  LLMFT_REQUIRE_DATA(kModel);
  const std::string src = run_with_checkpoints();
  const std::string ckpt = path_join(src, "checkpoint-9");
  struct Case {
    std::string override_, expect;
  };
  for (const Case& c : {Case{"lora.r=8", "lora.r was 16 there and is 8 now"},
                        Case{"data.seq_len=96", "data.seq_len was 128 there and is 96 now"},
                        Case{"train.seed=7", "train.seed was 42 there and is 7 now"},
                        Case{"train.micro_batch_size=1", "its global batch was 2 rows per step"}}) {
    SCOPED_TRACE(c.override_);
    const std::string out = test::temp_dir("resume-refuse");
    std::vector<std::string> args = job_args(out);
    args.push_back("train.resume=" + ckpt);
    args.push_back(c.override_);
    ASSERT_EQ(run(args, out + ".log"), 1);
    const std::string log = read_file(out + ".log");
    EXPECT_NE(log.find(c.expect), std::string::npos) << log;
    EXPECT_NE(log.find(ckpt), std::string::npos) << log;
    EXPECT_EQ(log.find("trainable params"), std::string::npos) << "refused before the model is loaded:\n" << log;
  }
}

// The same steps through the C++ API: save after 3, two more steps; a second trainer restored from the checkpoint
// takes the same two steps with the same losses, and its state equals the first one's.
TEST(Resume, TrainerObjectSaveRestoreRepeatsTheSameSteps) {
  LLMFT_REQUIRE_DATA(kModel);
  const std::string out = test::temp_dir("resume-api");
  std::vector<std::string> args = job_args(out);
  args.push_back("train.resume=never");
  Config c = load_config("", args);
  std::vector<double> first;
  std::string ckpt;
  TrainState after_first;
  {
    auto t = Trainer::create(c);
    for (int i = 0; i < 3; ++i) t->step();
    ckpt = t->save();
    EXPECT_EQ(ckpt, path_join(out, "checkpoint-3"));
    for (int i = 0; i < 2; ++i) first.push_back(t->step().loss);
    after_first = t->state();
  }
  Config c2 = c;
  c2.train.resume = ckpt;
  auto t = Trainer::create(c2);
  EXPECT_EQ(t->resumed_from(), ckpt);
  EXPECT_EQ(t->state().step, 3);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(t->step().loss, first[static_cast<size_t>(i)]) << "step " << 4 + i;
  EXPECT_EQ(t->state().rows, after_first.rows);
  EXPECT_EQ(t->state().tokens, after_first.tokens);
  EXPECT_EQ(t->state().log_history.size(), after_first.log_history.size());
  const TrainSummary s = t->finish();
  EXPECT_EQ(s.steps, 5);
}

// At the end: the adapter, training_summary.json, and with export.after_train the merged model, the same bytes as
// `llmft export` of that adapter writes.
TEST(Resume, TheEndWritesASummaryAndTheMergedModelIfAsked) {
  LLMFT_REQUIRE_DATA(kModel);
  const std::string out = test::temp_dir("resume-end");
  std::vector<std::string> args = job_args(out, 3);
  args.push_back("export.after_train=true");
  const TrainSummary s = train(load_config("", args));
  ASSERT_EQ(s.merged_dir, path_join(out, "merged"));
  const Json summary = Json::parse(read_file(path_join(out, "training_summary.json")));
  EXPECT_EQ(summary.at("steps"), 3);
  EXPECT_EQ(summary.at("tokens").get<int64_t>(), s.tokens);
  EXPECT_TRUE(summary.at("identities").contains("the base weights (model.path)"));
  // The plan a rank was given, and the measured peak of the process (the plan and the runtime): the same numbers as
  // the summary the call returns.
  EXPECT_GT(s.planned_bytes, 0.0);
  EXPECT_GT(s.peak_rss_bytes, static_cast<int64_t>(s.planned_bytes));
  EXPECT_EQ(summary.at("memory").at("peak_rss_bytes").get<int64_t>(), s.peak_rss_bytes);
  EXPECT_EQ(summary.at("memory").at("planned_bytes").get<double>(), s.planned_bytes);
  Config e = load_config("", {"model.path=" + test::data_path("models/stories260K-hf"), "export.adapter=" + s.adapter_dir,
                              "export.out=" + path_join(out, "merged-by-export")});
  export_merged(e);
  EXPECT_TRUE(read_file(path_join(out, "merged/model.safetensors")) ==
              read_file(path_join(out, "merged-by-export/model.safetensors")));
}

}  // namespace
}  // namespace llmft
