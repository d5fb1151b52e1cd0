// Learning-rate schedules as transformers' get_scheduler defines them: linear warmup from 0, then linear decay to
// 0, cosine decay (half a cycle) to 0, or constant. lr(k) is the rate of optimizer step k (0-based).
#pragma once

#include <cstdint>
#include <string>

namespace llmft::optim {

struct Schedule {
  std::string kind = "cosine";  // "cosine", "linear", "constant"
  double lr = 2e-4;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double lr_at(int64_t step) const;
};

// Throws Error(kInvalidArgument) naming the setting.
void validate(const Schedule& s);

}  // namespace llmft::optim
