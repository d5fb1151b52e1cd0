#include "train/metrics.hpp"

#include <sys/resource.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

#include "train/tensorboard.hpp"
#include "util/check.hpp"
#include "util/log.hpp"

namespace llmft::job {

MetricsSink::MetricsSink(const std::string& path) : path_(path) {
  if (path.empty()) return;
  file_ = std::fopen(path.c_str(), "a");
  LLMFT_CHECK(file_ != nullptr, Status::kIo, "cannot open {}: {}", path, std::strerror(errno));
}

MetricsSink::~MetricsSink() {
  if (file_) std::fclose(file_);
}

namespace {
std::string py_float(const std::string& name, double v) {
  // The Trainer rounds loss to 4 decimals and epoch to 2; the rest print as Python repr.
  if (name == "loss" || name == "eval_loss") v = std::round(v * 1e4) / 1e4;
  if (name == "epoch") v = std::round(v * 100) / 100;
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == std::floor(v) && std::abs(v) < 1e15) return fmt::format("{:.1f}", v);
  return fmt::format("{}", v);
}
}  // namespace

std::string MetricsSink::record(const Fields& fields, const Fields& extra, const std::string& suffix) {
  std::string line = "{", json = "{";
  for (size_t i = 0; i < fields.size(); ++i) {
    const auto& [name, v] = fields[i];
    line += fmt::format("{}'{}': {}", i ? ", " : "", name, py_float(name, v));
  }
  Fields all = fields;
  all.insert(all.end(), extra.begin(), extra.end());
  for (size_t i = 0; i < all.size(); ++i) {
    const auto& [name, v] = all[i];
    json += fmt::format("{}\"{}\": {}", i ? ", " : "", name, std::isfinite(v) ? fmt::format("{}", v) : "null");
  }
  line += "}";
  json += "}";
  log_info("{}{}", line, suffix);
  if (katib_) {
    std::string k;
    for (const auto& [name, v] : extra)
      if (name == "step") k = fmt::format("step={}", static_cast<int64_t>(v));
    for (const auto& [name, v] : all)
      if (name != "step" && std::isfinite(v)) k += fmt::format("{}{}={}", k.empty() ? "" : " ", name, v);
    log_info("{}", k);
  }
  replay({json});
  if (tb_) {
    std::vector<std::pair<std::string, double>> scalars;
    int64_t step = 0;
    bool training = false, eval = false;
    for (const auto& field : all) {
      training = training || field.first == "loss";
      eval = eval || field.first.rfind("eval_", 0) == 0;
    }
    for (const auto& [name, v] : all) {
      if (name == "step") {
        step = static_cast<int64_t>(v);
        continue;
      }
      if (eval && name == "epoch") continue;  // train/epoch comes with the training records
      scalars.emplace_back(name.rfind("eval_", 0) == 0 ? "eval/" + name.substr(5) : "train/" + name, v);
    }
    if (training) {  // the process's peak memory so far (Linux: ru_maxrss in KiB); TensorBoard only
      rusage u{};
      if (getrusage(RUSAGE_SELF, &u) == 0) scalars.emplace_back("train/peak_rss_mb", static_cast<double>(u.ru_maxrss) / 1024.0);
    }
    tb_->scalars(scalars, step, std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count());
  }
  return json;
}

void MetricsSink::replay(const std::vector<std::string>& json_lines) {
  if (!file_) return;
  for (const auto& j : json_lines)
    LLMFT_CHECK(std::fputs(j.c_str(), file_) >= 0 && std::fputc('\n', file_) != EOF, Status::kIo, "cannot write {}: {}",
                path_, std::strerror(errno));
  LLMFT_CHECK(std::fflush(file_) == 0, Status::kIo, "cannot write {}: {}", path_, std::strerror(errno));
}

}  // namespace llmft::job
