// llmft: the command-line host of the llmft library. Each subcommand lives in its own file and uses only the
// library's public API (include/llmft).
#include <malloc.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "commands.hpp"
#include "llmft/error.hpp"
#include "llmft/log.hpp"

namespace {

void usage(FILE* out) {
  std::fprintf(out,
               "usage: llmft <command> [options]\n"
               "\n"
               "commands:\n"
               "  train      fine-tune (LoRA or full) from a YAML config and key.sub=value overrides\n"
               "  generate   answer instructions with a model and an optional adapter\n"
               "  prep       tokenize, template and pack a dataset into token shards for train\n"
               "  export     merge a LoRA adapter into its base model (Hugging Face checkpoint)\n"
               "  convert    Meta's original Llama checkpoint (consolidated.NN.pth) into a Hugging Face directory\n"
               "  tokenize   encode JSON lines {\"text\": ...} into {\"ids\": [...]} (or measure encode speed)\n"
               "  config     list every configuration key with its default (--markdown for a table)\n"
               "  world      print this process's place in a distributed job (rank, nodes, master) and connect to nothing\n"
               "  plan       print a job's memory per rank before loading anything, and what would fit when it does not\n"
               "\n"
               "Run 'llmft <command> --help' for a command's options.\n");
}

// A training step allocates and frees the same large activation buffers over and over; glibc serves blocks above
// its mmap threshold with fresh mappings and trims freed memory back to the kernel, so every step paid page faults
// again (9-14% of a step in perf, bench/README.md). As the host, this program keeps such memory in the heap instead.
void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace

int main(int argc, char** argv) {
  keep_freed_memory_for_reuse();
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (cmd == "train") return llmft_cli::cmd_train(args);
    if (cmd == "generate") return llmft_cli::cmd_generate(args);
    if (cmd == "export") return llmft_cli::cmd_export(args);
    if (cmd == "prep") return llmft_cli::cmd_prep(args);
    if (cmd == "tokenize") return llmft_cli::cmd_tokenize(args);
    if (cmd == "config") return llmft_cli::cmd_config(args);
    if (cmd == "world") return llmft_cli::cmd_world(args);
    if (cmd == "plan") return llmft_cli::cmd_plan(args);
    if (cmd == "convert") return llmft_cli::cmd_convert(args);
    std::fprintf(stderr, "llmft: unknown command '%s'\n\n", cmd.c_str());
    usage(stderr);
    return 2;
  } catch (const llmft::Error& e) {
    // The message may quote a file, URL or environment: tokens in it are shown as hf_*** as in every log line.
    std::fprintf(stderr, "llmft %s: error (%s): %s\n", cmd.c_str(), llmft::status_string(e.status()),
                 llmft::redact_secrets(e.what()).c_str());
    // A bug in llmft: where the check sits helps the report. Otherwise the message is the whole story.
    if (e.status() == llmft::Status::kInternal && !e.where().empty())
      std::fprintf(stderr, "llmft %s: (internal check at %s; please report it)\n", cmd.c_str(), e.where().c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llmft %s: error: %s\n", cmd.c_str(), llmft::redact_secrets(e.what()).c_str());
    return 1;
  }
}
