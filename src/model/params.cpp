#include "model/params.hpp"

#include "util/check.hpp"

namespace llmft::model {

void ParamGroup::add(const std::string& name, std::vector<int64_t> shape, bool decay, const Split& split) {
  LLMFT_ASSERT(!final_);
  LLMFT_ASSERT(split.dim < 0 || (split.dim < static_cast<int>(shape.size()) && split.full_shape.size() == shape.size()));
  ParamSlot s;
  s.name = name;
  s.numel = 1;
  for (int64_t d : shape) s.numel *= d;
  s.shape = std::move(shape);
  s.offset = numel_;
  s.decay = decay;
  if (split.dim >= 0) {
    s.split_dim = split.dim;
    s.split_start = split.start;
    s.full_shape = split.full_shape;
  }
  numel_ += s.numel;
  LLMFT_ASSERT(index_.emplace(s.name, static_cast<int>(slots_.size())).second);
  slots_.push_back(std::move(s));
}

void ParamGroup::finalize(int64_t align) {
  LLMFT_ASSERT(align > 0);
  padded_ = (numel_ + align - 1) / align * align;
  final_ = true;
}

void ParamGroup::allocate(const at::TensorOptions& options) {
  LLMFT_ASSERT(final_);
  flat = at::zeros({padded_}, options);
}

int ParamGroup::find(const std::string& name) const {
  auto it = index_.find(name);  // a mixture's layer has thousands of slots: no linear scan per lookup
  return it == index_.end() ? -1 : it->second;
}

at::Tensor ParamGroup::view(size_t i, const at::Tensor& buffer) const {
  const ParamSlot& s = slots_[i];
  return buffer.narrow(0, s.offset, s.numel).view(s.shape);
}

at::Tensor ParamGroup::view(const std::string& name) const {
  int i = find(name);
  return i < 0 ? at::Tensor() : view(static_cast<size_t>(i));
}

std::string with_commas(int64_t n) {
  std::string d = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i && (d.size() - i) % 3 == 0) out += ',';
    out += d[i];
  }
  return n < 0 ? "-" + out : out;
}

}  // namespace llmft::model
