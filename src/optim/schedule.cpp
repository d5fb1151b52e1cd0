#include "optim/schedule.hpp"

#include <algorithm>
#include <cmath>

#include "util/check.hpp"

namespace llmft::optim {

double Schedule::lr_at(int64_t step) const {
  if (step < warmup_steps) return lr * static_cast<double>(step) / static_cast<double>(std::max<int64_t>(1, warmup_steps));
  if (kind == "constant") return lr;
  double progress = static_cast<double>(step - warmup_steps) / static_cast<double>(std::max<int64_t>(1, total_steps - warmup_steps));
  if (kind == "linear") return lr * std::max(0.0, 1.0 - progress);
  return lr * std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * progress)));  // cosine, num_cycles = 0.5
}

void validate(const Schedule& s) {
  LLMFT_CHECK(s.kind == "cosine" || s.kind == "linear" || s.kind == "constant", Status::kInvalidArgument,
              "train.lr_scheduler \"{}\" is not one of cosine, linear, constant", s.kind);
  LLMFT_CHECK(s.lr > 0 && std::isfinite(s.lr), Status::kInvalidArgument, "train.lr must be positive, got {}", s.lr);
  LLMFT_CHECK(s.warmup_steps >= 0, Status::kInvalidArgument, "train.warmup_steps must be >= 0, got {}", s.warmup_steps);
}

}  // namespace llmft::optim
