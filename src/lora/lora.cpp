#include "lora/lora.hpp"

#include <cmath>

#include <Eigen/Core>

#include "util/check.hpp"

namespace llmft::lora {

const std::vector<std::string>& all_linear_modules() {
  static const std::vector<std::string> m = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return m;
}

double LoraSpec::scaling() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

std::vector<std::string> LoraSpec::resolved_targets() const {
  LLMFT_CHECK(r > 0, Status::kInvalidArgument, "lora.r must be positive, got {}", r);
  LLMFT_CHECK(dropout >= 0 && dropout < 1, Status::kInvalidArgument, "lora.dropout must be in [0, 1), got {}", dropout);
  LLMFT_CHECK(!target_modules.empty(), Status::kInvalidArgument, "lora.target_modules is empty");
  std::vector<std::string> out;
  for (const auto& t : target_modules) {
    if (t == "all-linear") {
      out = all_linear_modules();
      out.push_back("experts");
      return out;
    }
    bool known = t == "experts";
    for (const auto& m : all_linear_modules()) known = known || m == t;
    LLMFT_CHECK(known, Status::kInvalidArgument,
                "lora.target_modules: \"{}\" is not a linear module of the decoder (choose from q_proj, k_proj, v_proj, "
                "o_proj, gate_proj, up_proj, down_proj, experts, or all-linear)", t);
    out.push_back(t);
  }
  return out;
}

bool LoraSpec::targets(const std::string& module) const {
  for (const auto& t : resolved_targets())
    if (t == module) return true;
  return false;
}

void kaiming_uniform_a_sqrt5(float* out, int64_t rows, int64_t fan_in, std::mt19937_64& rng) {
  // gain = sqrt(2 / (1 + a^2)) = sqrt(1/3); bound = gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in).
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  std::uniform_real_distribution<double> u(-bound, bound);
  for (int64_t i = 0; i < rows * fan_in; ++i) out[i] = static_cast<float>(u(rng));
}

void merge_into(float* w, const float* a, const float* b, int64_t out, int64_t in, int64_t r, double scaling) {
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  Eigen::Map<Mat> W(w, out, in);
  Eigen::Map<const Mat> A(a, r, in), B(b, out, r);
  W.noalias() += static_cast<float>(scaling) * (B * A);
}

}  // namespace llmft::lora
