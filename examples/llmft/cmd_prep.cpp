// llmft prep: tokenizes, templates, splits and packs a dataset into token shards (for llmft train data.path=DIR),
// with a progress line (records/s, ETA) and a summary of what was read, skipped, truncated and packed.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "commands.hpp"
#include "llmft/config.hpp"
#include "llmft/error.hpp"
#include "llmft/log.hpp"
#include "llmft/train.hpp"

namespace llmft_cli {

namespace {

const char* kPrepHelp =
    "usage: llmft prep [--config FILE] [key.sub=value ...]\n"
    "  Prepares data.path (format data.format, template data.template, rows of data.seq_len) with the tokenizer of\n"
    "  tokenizer.path or model.path into token shards in output.dir. Train on them with data.path=<output.dir>.\n";

std::string commas(int64_t n) {
  std::string d = std::to_string(n), out;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i && (d.size() - i) % 3 == 0) out += ',';
    out += d[i];
  }
  return out;
}

}  // namespace

int cmd_prep(const std::vector<std::string>& args) {
  std::string file;
  std::vector<std::string> overrides;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--help" || args[i] == "-h") {
      std::fputs(kPrepHelp, stdout);
      return 0;
    } else if (args[i] == "--config" && i + 1 < args.size()) {
      file = args[++i];
    } else if (args[i].find('=') != std::string::npos) {
      overrides.push_back(args[i]);
    } else {
      throw llmft::Error(llmft::Status::kInvalidArgument, "unexpected argument \"" + args[i] + "\"\n" + kPrepHelp);
    }
  }
  llmft::Config c = llmft::load_config(file, overrides);
  if (c.tokenizer.path.empty() && c.model.path.empty()) c.tokenizer.path = default_tokenizer();
  auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](int64_t records, int64_t bytes, int64_t total) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double rate = s > 0 ? records / s : 0;
    double eta = bytes > 0 && total > bytes ? s * static_cast<double>(total - bytes) / static_cast<double>(bytes) : 0;
    const int width = 30;
    int filled = total > 0 ? static_cast<int>(width * static_cast<double>(bytes) / static_cast<double>(total)) : width;
    std::fprintf(stderr, "\r[%s%s] %s records, %.0f records/s, %.1f MB/s, ETA %.0fs   ",
                 std::string(static_cast<size_t>(filled), '#').c_str(), std::string(static_cast<size_t>(width - filled), ' ').c_str(),
                 commas(records).c_str(), rate, s > 0 ? static_cast<double>(bytes) / 1e6 / s : 0.0, eta);
  };
  llmft::PrepareSummary s = llmft::prepare(c, progress);
  std::fprintf(stderr, "\n");
  std::printf("prepared %s\n", s.dir.c_str());
  std::printf("  records read   %s (%.0f records/s, %.1f MB/s)\n", commas(s.records).c_str(), s.records_per_second,
              s.megabytes_per_second);
  std::printf("  used           %s\n", commas(s.used).c_str());
  std::printf("  skipped        %s\n", commas(s.skipped).c_str());
  for (const auto& [reason, n] : s.skipped_by_reason) std::printf("    %-20s %s\n", reason.c_str(), commas(n).c_str());
  for (const auto& p : s.problems) std::printf("    e.g. %s\n", p.c_str());
  std::printf("  truncated      %s (longer than data.seq_len, cut to it)\n", commas(s.truncated).c_str());
  std::printf("  dropped        %s (longer than data.seq_len; %s)\n", commas(s.dropped).c_str(),
              c.data.overlong == "drop" ? "data.overlong=drop" : "cut to it, nothing trained would be left");
  std::printf("  tokens         %s (%s trained)\n", commas(s.tokens).c_str(), commas(s.trained_tokens).c_str());
  std::printf("  train rows     %s of %lld tokens; packing utilisation %.2f%% (one example per row: %s rows, %.2f%%)\n",
              commas(s.train_rows).c_str(), static_cast<long long>(c.data.seq_len), 100 * s.utilisation,
              commas(s.padded_rows).c_str(), 100 * s.padded_utilisation);
  std::printf("  held-out rows  %s\n", commas(s.eval_rows).c_str());
  return 0;
}

}  // namespace llmft_cli
