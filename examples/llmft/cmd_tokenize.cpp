// llmft tokenize: JSON lines of {"text": ...} in, JSON lines of {"ids": [...]} out; or, with --bench, the encode
// throughput of the input (single thread and a thread pool).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "llmft/error.hpp"
#include "llmft/tokenizer.hpp"

namespace llmft_cli {

namespace {

const char* kHelp =
    "usage: llmft tokenize --tokenizer PATH [--input FILE] [--output FILE] [--add-special-tokens]\n"
    "                      [--bench] [--threads N]\n"
    "  --tokenizer PATH        tokenizer.json, or a model folder holding one\n"
    "  --input FILE            JSON lines with a \"text\" field (default: standard input)\n"
    "  --output FILE           where to write {\"ids\": [...]} lines (default: standard output)\n"
    "  --add-special-tokens    let the post-processor add its tokens (e.g. BOS)\n"
    "  --bench                 encode the input repeatedly and print MB/s instead of ids\n"
    "  --threads N             threads for --bench's batch measurement (default: all cores)\n";

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int cmd_tokenize(const std::vector<std::string>& args) {
  std::string tok_path, input, output;
  bool add_special = false, bench = false;
  size_t threads = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw llmft::Error(llmft::Status::kInvalidArgument, a + " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      std::fputs(kHelp, stdout);
      return 0;
    } else if (a == "--tokenizer") {
      tok_path = value();
    } else if (a == "--input") {
      input = value();
    } else if (a == "--output") {
      output = value();
    } else if (a == "--add-special-tokens") {
      add_special = true;
    } else if (a == "--bench") {
      bench = true;
    } else if (a == "--threads") {
      threads = std::stoul(value());
    } else {
      throw llmft::Error(llmft::Status::kInvalidArgument, "unknown option " + a + "\n" + kHelp);
    }
  }
  if (tok_path.empty()) throw llmft::Error(llmft::Status::kInvalidArgument, std::string("--tokenizer is required\n") + kHelp);

  auto t0 = std::chrono::steady_clock::now();
  llmft::Tokenizer tok = llmft::Tokenizer::from_file(tok_path);
  double load_s = seconds_since(t0);

  std::ifstream in_file;
  if (!input.empty()) {
    in_file.open(input);
    if (!in_file) throw llmft::Error(llmft::Status::kNotFound, "cannot open " + input);
  }
  std::istream& in = input.empty() ? std::cin : in_file;
  std::vector<std::string> texts;
  std::string line;
  size_t line_no = 0, bytes = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const std::exception& e) {
      throw llmft::Error(llmft::Status::kFormat, (input.empty() ? "<stdin>" : input) + ":" + std::to_string(line_no) +
                                                     ": not valid JSON: " + llmft::plain_error(e));
    }
    if (!j.is_object() || !j.contains("text") || !j["text"].is_string())
      throw llmft::Error(llmft::Status::kFormat, (input.empty() ? "<stdin>" : input) + ":" + std::to_string(line_no) +
                                                     ": expected an object with a string \"text\"");
    texts.push_back(j["text"].get<std::string>());
    bytes += texts.back().size();
  }

  if (bench) {
    // Repeat until at least a second has passed, single thread, then the batch API on a pool.
    size_t rounds = 0, tokens = 0;
    t0 = std::chrono::steady_clock::now();
    do {
      for (const auto& t : texts) tokens += tok.encode(t, add_special).size();
      ++rounds;
    } while (seconds_since(t0) < 1.0);
    double single = static_cast<double>(bytes * rounds) / 1e6 / seconds_since(t0);
    size_t brounds = 0;
    t0 = std::chrono::steady_clock::now();
    do {
      tok.encode_batch(texts, add_special, threads);
      ++brounds;
    } while (seconds_since(t0) < 1.0);
    double batch = static_cast<double>(bytes * brounds) / 1e6 / seconds_since(t0);
    std::printf("{\"load_ms\": %.1f, \"documents\": %zu, \"bytes\": %zu, \"tokens\": %zu, \"single_thread_MBps\": %.2f, "
                "\"batch_MBps\": %.2f}\n",
                load_s * 1e3, texts.size(), bytes, tokens / rounds, single, batch);
    return 0;
  }

  std::ofstream out_file;
  if (!output.empty()) {
    out_file.open(output);
    if (!out_file) throw llmft::Error(llmft::Status::kIo, "cannot write " + output);
  }
  std::ostream& out = output.empty() ? std::cout : out_file;
  std::string buf;
  for (const auto& t : texts) {
    buf = "{\"ids\": [";
    bool first = true;
    for (int32_t id : tok.encode(t, add_special)) {
      if (!first) buf += ", ";
      buf += std::to_string(id);
      first = false;
    }
    buf += "]}\n";
    out << buf;
  }
  out.flush();
  if (!out) throw llmft::Error(llmft::Status::kIo, "writing " + (output.empty() ? std::string("<stdout>") : output) + " failed");
  return 0;
}

}  // namespace llmft_cli
