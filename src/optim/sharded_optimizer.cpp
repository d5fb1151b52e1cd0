#include "optim/sharded_optimizer.hpp"

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <unordered_map>

#include "util/check.hpp"

namespace llmft::optim {

ShardingPlan ShardingPlan::for_stage(int stage) {
  LLMFT_CHECK(stage >= 0 && stage <= 3, Status::kInvalidArgument, "dist.zero_stage must be 0, 1, 2 or 3, got {}", stage);
  ShardingPlan p;
  p.shard_optimizer = stage >= 1;
  p.shard_grads = stage >= 2;
  p.shard_params = stage >= 3;
  return p;
}

ShardedOptimizer::ShardedOptimizer(model::Decoder& model, comm::Communicator& comm, int zero_stage, AdamWOptions options,
                                   const ShardFill& fill)
    : model_(model), comm_(comm), plan_(ShardingPlan::for_stage(zero_stage)), opt_(options) {
  c10::InferenceMode guard;
  const int64_t world = comm.size(), rank = comm.rank();
  const at::ScalarType master = model.options().dtype == at::kDouble ? at::kDouble : at::kFloat;
  // This rank's slice of a buffer: from the buffer, or (never built whole) from `fill`.
  auto slice_of = [&](model::Unit& u, bool trainable, int64_t offset, int64_t numel, at::ScalarType dtype) {
    const at::Tensor& flat = trainable ? u.trainable.flat : u.frozen.flat;
    if (flat.defined()) return flat.narrow(0, offset, numel).clone();
    LLMFT_CHECK(fill != nullptr && plan_.shard_params, Status::kInternal,
                "unit {}: its {} weights were not loaded and ZeRO stage {} does not load them by slice", u.name,
                trainable ? "trained" : "frozen", zero_stage);
    at::Tensor out = at::empty({numel}, dtype);
    fill(u, trainable, offset, out);
    return out;
  };
  for (model::Unit& u : model_.units()) {
    UnitState s;
    const int64_t P = u.trainable.padded_numel(), Pf = u.frozen.padded_numel();
    LLMFT_CHECK(plan_.shard_params || ((u.frozen.empty() || u.frozen.flat.defined()) &&
                                       (u.trainable.empty() || u.trainable.flat.defined())),
                Status::kInternal, "unit {}: weights not loaded, and ZeRO stage {} loads none by slice", u.name, zero_stage);
    LLMFT_CHECK(P % world == 0 && Pf % world == 0, Status::kInternal,
                "unit {}: buffers of {} / {} elements cannot be split into {} equal slices (decoder align)", u.name, P, Pf,
                world);
    s.offset = plan_.shard_optimizer ? rank * (P / world) : 0;
    s.numel = plan_.shard_optimizer ? P / world : P;
    if (P > 0) {
      s.m = at::zeros({s.numel}, master);
      s.v = at::zeros({s.numel}, master);
    }
    if (plan_.shard_grads && P > 0) {
      s.grad_shard = at::zeros({s.numel}, master);
      u.grad = at::Tensor();  // full gradients exist only while the unit's backward runs
    }
    if (plan_.shard_params) {
      if (P > 0) s.master_shard = slice_of(u, true, s.offset, s.numel, master);
      if (Pf > 0) s.frozen_shard = slice_of(u, false, rank * (Pf / world), Pf / world, model.options().dtype);
      u.trainable.flat = at::Tensor();
      u.frozen.flat = at::Tensor();
      u.compute = at::Tensor();
    }
    states_.push_back(std::move(s));
    frozen_pool_.numel = std::max(frozen_pool_.numel, Pf);
    compute_pool_.numel = std::max(compute_pool_.numel, P);
  }
  frozen_pool_.dtype = compute_pool_.dtype = model.options().dtype;
}

ShardedOptimizer::~ShardedOptimizer() = default;

at::Tensor ShardedOptimizer::Pool::take(int64_t n) {
  LLMFT_ASSERT(n <= numel);
  for (const at::Tensor& b : buffers)
    if (b.storage().use_count() == 1) return b.narrow(0, 0, n);  // no view of it is alive
  buffers.push_back(at::empty({numel}, dtype));
  return buffers.back().narrow(0, 0, n);
}

size_t ShardedOptimizer::index_of(const model::Unit& u) const {
  const auto& units = model_.units();
  size_t i = static_cast<size_t>(&u - units.data());
  LLMFT_ASSERT(i < units.size());
  return i;
}

void ShardedOptimizer::begin_step() { last_micro_ = true; }

void ShardedOptimizer::acquire(model::Unit& u, model::Pass pass) {
  UnitState& s = states_[index_of(u)];
  const at::ScalarType dtype = model_.options().dtype;
  if (plan_.shard_params) {
    if (!u.frozen.empty() && !u.frozen.flat.defined()) {
      u.frozen.flat = frozen_pool_.take(u.frozen.padded_numel());
      comm_.all_gather(u.frozen.flat, s.frozen_shard)->wait();
    }
    if (!u.trainable.empty() && !u.compute.defined()) {
      at::Tensor shard = s.master_shard.scalar_type() == dtype ? s.master_shard : s.master_shard.to(dtype);
      u.compute = compute_pool_.take(u.trainable.padded_numel());
      comm_.all_gather(u.compute, shard)->wait();
    }
  }
  if (pass == model::Pass::kBackward) finish_scatter(s);  // the previous micro-batch's reduce-scatter of this unit
  if (pass == model::Pass::kBackward && !u.trainable.empty() && !u.grad.defined())
    u.grad = at::zeros({u.trainable.padded_numel()}, at::TensorOptions().dtype(s.m.scalar_type()));
}

void ShardedOptimizer::release(model::Unit& u) {
  if (!plan_.shard_params) return;
  u.frozen.flat = at::Tensor();
  u.trainable.flat = at::Tensor();
  u.compute = at::Tensor();
}

void ShardedOptimizer::grads_ready(model::Unit& u) {
  if (u.trainable.empty()) return;
  UnitState& s = states_[index_of(u)];
  if (plan_.shard_grads) {
    // Reduce-scatter this micro-batch's gradient asynchronously (it overlaps the backward of the units before this
    // one); its slice is added to the accumulator, and the full buffer freed, when it completes.
    s.scatter_in = u.grad;
    s.scatter_out = at::empty({s.numel}, s.grad_shard.options());
    s.scatter = comm_.reduce_scatter(s.scatter_out, s.scatter_in);
    u.grad = at::Tensor();
  } else if (last_micro_) {
    s.pending.push_back(comm_.all_reduce(u.grad));
  }
}

void ShardedOptimizer::finish_scatter(UnitState& s) {
  if (!s.scatter) return;
  s.scatter->wait();
  s.grad_shard.add_(s.scatter_out);
  s.scatter.reset();
  s.scatter_out = at::Tensor();
  s.scatter_in = at::Tensor();
}

void ShardedOptimizer::gather_parameters(bool trainable_only) {
  if (!plan_.shard_params) return;
  c10::InferenceMode guard;
  const at::ScalarType dtype = model_.options().dtype;
  for (size_t i = 0; i < states_.size(); ++i) {
    model::Unit& u = model_.units()[i];
    UnitState& s = states_[i];
    if (!u.trainable.empty() && !u.trainable.flat.defined()) {
      u.trainable.flat = at::empty({u.trainable.padded_numel()}, s.master_shard.options());
      comm_.all_gather(u.trainable.flat, s.master_shard)->wait();
      u.compute = dtype == u.trainable.flat.scalar_type() ? u.trainable.flat : u.trainable.flat.to(dtype);
    }
    if (!trainable_only && !u.frozen.empty() && !u.frozen.flat.defined()) {
      u.frozen.flat = at::empty({u.frozen.padded_numel()}, s.frozen_shard.options());
      comm_.all_gather(u.frozen.flat, s.frozen_shard)->wait();
    }
  }
}

void ShardedOptimizer::release_parameters() {
  if (!plan_.shard_params) return;
  for (model::Unit& u : model_.units()) {
    u.trainable.flat = at::Tensor();
    u.frozen.flat = at::Tensor();
    u.compute = at::Tensor();
  }
}

void ShardedOptimizer::adamw(model::Unit& u, UnitState& s, const at::Tensor& param, const at::Tensor& grad, double lr) {
  const double b1 = opt_.beta1, b2 = opt_.beta2;
  // Decoupled weight decay on the slots that take it (not norms, not biases), as transformers groups them.
  if (opt_.weight_decay > 0) {
    for (const auto& slot : u.trainable.slots()) {
      if (!slot.decay) continue;
      int64_t b = std::max(slot.offset, s.offset), e = std::min(slot.offset + slot.numel, s.offset + s.numel);
      if (b < e) param.narrow(0, b - s.offset, e - b).mul_(1.0 - lr * opt_.weight_decay);
    }
  }
  const double t = static_cast<double>(step_ + 1);
  const double bc1 = 1.0 - std::pow(b1, t), bc2 = 1.0 - std::pow(b2, t);
  if (param.device().is_cpu() && param.scalar_type() == at::kFloat && grad.scalar_type() == at::kFloat &&
      param.is_contiguous() && grad.is_contiguous()) {
    // One pass over (param, grad, m, v) instead of eight tensor ops: the same arithmetic as torch.optim.AdamW.
    float* p = param.data_ptr<float>();
    const float* g = grad.data_ptr<float>();
    float* m = s.m.data_ptr<float>();
    float* v = s.v.data_ptr<float>();
    const float fb1 = static_cast<float>(b1), fb2 = static_cast<float>(b2), om1 = static_cast<float>(1.0 - b1),
                om2 = static_cast<float>(1.0 - b2), step_size = static_cast<float>(lr / bc1),
                inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2)), eps = static_cast<float>(opt_.eps);
    const int64_t n = param.numel();
    for (int64_t i = 0; i < n; ++i) {
      m[i] = m[i] * fb1 + g[i] * om1;
      v[i] = v[i] * fb2 + g[i] * g[i] * om2;
      p[i] -= step_size * m[i] / (std::sqrt(v[i]) * inv_sqrt_bc2 + eps);
    }
    return;
  }
  s.m.mul_(b1).add_(grad, 1.0 - b1);
  s.v.mul_(b2).addcmul_(grad, grad, 1.0 - b2);
  at::Tensor denom = (s.v.sqrt() / std::sqrt(bc2)).add_(opt_.eps);
  param.addcdiv_(s.m, denom, -lr / bc1);
}

StepResult ShardedOptimizer::finish_step(double lr, double max_grad_norm, double global_targets) {
  c10::InferenceMode guard;
  auto& units = model_.units();
  for (auto& s : states_) {
    for (auto& w : s.pending) w->wait();
    s.pending.clear();
    finish_scatter(s);
  }
  // The gradient this rank holds for each unit: its slice (gradients sharded) or the whole buffer.
  std::vector<at::Tensor> grads(units.size());
  double sq = 0;
  const double inv = global_targets > 0 ? 1.0 / global_targets : 0.0;
  for (size_t i = 0; i < units.size(); ++i) {
    if (units[i].trainable.empty()) continue;
    grads[i] = plan_.shard_grads ? states_[i].grad_shard : units[i].grad;
    grads[i].mul_(inv);
    const double n = grads[i].norm().item<double>();  // a reduction: no (numel)-sized temporary
    sq += n * n;
  }
  if (plan_.shard_grads) {
    at::Tensor t = at::tensor({sq}, at::kDouble);
    comm_.all_reduce(t)->wait();
    sq = t.item<double>();
  }
  StepResult r;
  r.grad_norm = std::sqrt(sq);
  if (!std::isfinite(r.grad_norm)) {  // every rank sees the same global norm: none updates, the caller decides
    for (auto& g : grads)
      if (g.defined()) g.zero_();
    r.skipped = true;
    return r;
  }
  double coef = max_grad_norm > 0 ? max_grad_norm / (r.grad_norm + 1e-6) : 1.0;
  r.clipped = coef < 1.0;
  for (size_t i = 0; i < units.size(); ++i) {
    model::Unit& u = units[i];
    if (u.trainable.empty()) continue;
    UnitState& s = states_[i];
    if (r.clipped) grads[i].mul_(coef);
    at::Tensor g = plan_.shard_grads || !plan_.shard_optimizer ? grads[i] : grads[i].narrow(0, s.offset, s.numel);
    at::Tensor p = plan_.shard_params ? s.master_shard : u.trainable.flat.narrow(0, s.offset, s.numel);
    adamw(u, s, p, g, lr);
    grads[i].zero_();
    if (plan_.shard_optimizer && !plan_.shard_params) {
      at::Tensor mine = p.clone();
      comm_.all_gather(u.trainable.flat, mine)->wait();
    }
  }
  if (!plan_.shard_params) model_.refresh_compute();
  ++step_;
  return r;
}

ShardedOptimizer::State ShardedOptimizer::export_state() {
  c10::InferenceMode guard;
  State out;
  out.steps = step_;
  auto& units = model_.units();
  for (size_t i = 0; i < units.size(); ++i) {
    const model::Unit& u = units[i];
    if (u.trainable.empty()) continue;
    const UnitState& s = states_[i];
    at::Tensor m = s.m, v = s.v;
    if (plan_.shard_optimizer) {  // the full (padded) moments from every rank's slice
      m = at::empty({u.trainable.padded_numel()}, s.m.options());
      v = at::empty({u.trainable.padded_numel()}, s.v.options());
      comm_.all_gather(m, s.m)->wait();
      comm_.all_gather(v, s.v)->wait();
    }
    for (size_t k = 0; k < u.trainable.slots().size(); ++k) {
      const model::ParamSlot& slot = u.trainable.slots()[k];
      out.names.push_back(slot.name);
      out.exp_avg.push_back(u.trainable.view(k, m).clone());
      out.exp_avg_sq.push_back(u.trainable.view(k, v).clone());
    }
  }
  return out;
}

void ShardedOptimizer::import_state(const State& st, const std::string& origin) {
  c10::InferenceMode guard;
  std::unordered_map<std::string, size_t> index;
  for (size_t i = 0; i < st.names.size(); ++i) index[st.names[i]] = i;
  auto& units = model_.units();
  for (size_t i = 0; i < units.size(); ++i) {
    const model::Unit& u = units[i];
    if (u.trainable.empty()) continue;
    UnitState& s = states_[i];
    at::Tensor m = at::zeros({u.trainable.padded_numel()}, s.m.options()), v = at::zeros_like(m);
    for (size_t k = 0; k < u.trainable.slots().size(); ++k) {
      const model::ParamSlot& slot = u.trainable.slots()[k];
      auto it = index.find(slot.name);
      LLMFT_CHECK(it != index.end(), Status::kFormat, "{}: no optimizer state for {}", origin, slot.name);
      const at::Tensor &a = st.exp_avg[it->second], &b = st.exp_avg_sq[it->second];
      LLMFT_CHECK(a.numel() == slot.numel && b.numel() == slot.numel, Status::kFormat,
                  "{}: the optimizer state of {} has {} / {} values, the parameter {}", origin, slot.name, a.numel(),
                  b.numel(), slot.numel);
      u.trainable.view(k, m).copy_(a.reshape(slot.shape));
      u.trainable.view(k, v).copy_(b.reshape(slot.shape));
    }
    s.m.copy_(m.narrow(0, s.offset, s.numel));
    s.v.copy_(v.narrow(0, s.offset, s.numel));
  }
  step_ = st.steps;
}

void ShardedOptimizer::parameters_changed() {
  c10::InferenceMode guard;
  if (!plan_.shard_params) {
    model_.refresh_compute();
    return;
  }
  const int64_t world = comm_.size(), rank = comm_.rank();
  auto& units = model_.units();
  for (size_t i = 0; i < units.size(); ++i) {
    model::Unit& u = units[i];
    UnitState& s = states_[i];
    if (!u.trainable.empty() && u.trainable.flat.defined()) s.master_shard.copy_(u.trainable.flat.narrow(0, s.offset, s.numel));
    const int64_t Pf = u.frozen.padded_numel();
    if (!u.frozen.empty() && u.frozen.flat.defined()) s.frozen_shard.copy_(u.frozen.flat.narrow(0, rank * (Pf / world), Pf / world));
  }
}

void ShardedOptimizer::reload_parameter_shards(const ShardFill& fill) {
  c10::InferenceMode guard;
  LLMFT_CHECK(plan_.shard_params, Status::kInternal, "reload_parameter_shards below ZeRO stage 3");
  const int64_t world = comm_.size(), rank = comm_.rank();
  auto& units = model_.units();
  for (size_t i = 0; i < units.size(); ++i) {
    model::Unit& u = units[i];
    UnitState& s = states_[i];
    if (!u.trainable.empty()) fill(u, true, s.offset, s.master_shard);
    const int64_t Pf = u.frozen.padded_numel();
    if (!u.frozen.empty()) fill(u, false, rank * (Pf / world), s.frozen_shard);
  }
}

MemoryReport ShardedOptimizer::memory() const {
  MemoryReport r;
  for (size_t i = 0; i < states_.size(); ++i) {
    const auto& s = states_[i];
    const auto& u = model_.units()[i];
    if (s.m.defined()) r.optimizer_state_bytes += (s.m.numel() + s.v.numel()) * static_cast<int64_t>(s.m.element_size());
    auto bytes = [](const at::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; };
    if (plan_.shard_params) {
      r.parameter_bytes += bytes(s.master_shard) + bytes(s.frozen_shard);
      if (model_.options().dtype != at::kFloat && s.master_shard.defined())
        r.parameter_bytes += s.master_shard.numel() * 2;  // compute-dtype slice made at each gather
    } else {
      r.parameter_bytes += bytes(u.trainable.flat) + bytes(u.frozen.flat);
      if (u.compute.defined() && !u.compute.is_same(u.trainable.flat)) r.parameter_bytes += bytes(u.compute);
    }
    r.gradient_bytes += plan_.shard_grads ? bytes(s.grad_shard) : bytes(u.grad);
  }
  return r;
}

}  // namespace llmft::optim
