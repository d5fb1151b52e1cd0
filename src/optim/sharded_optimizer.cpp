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

ShardedOptimizer::ShardedOptimizer(model::Decoder& model, model::ParamStore& store, comm::Communicator& comm,
                                   int zero_stage, AdamWOptions options)
    : model_(model), store_(store), comm_(comm), plan_(ShardingPlan::for_stage(zero_stage)), opt_(options) {
  init();
}

ShardedOptimizer::ShardedOptimizer(model::Decoder& model, comm::Communicator& comm, int zero_stage, AdamWOptions options,
                                   const ShardFill& fill)
    : model_(model),
      own_store_(std::make_unique<model::ParamStore>(model, comm, ShardingPlan::for_stage(zero_stage).shard_params, fill)),
      store_(*own_store_),
      comm_(comm),
      plan_(ShardingPlan::for_stage(zero_stage)),
      opt_(options) {
  init();
}

void ShardedOptimizer::init() {
  c10::InferenceMode guard;
  LLMFT_CHECK(store_.sharded() == plan_.shard_params, Status::kInternal,
              "the parameter store is {}sharded, and the optimizer's ZeRO plan says otherwise", store_.sharded() ? "" : "not ");
  const at::TensorOptions master =
      at::TensorOptions().dtype(model_.options().dtype == at::kDouble ? at::kDouble : at::kFloat).device(model_.options().device);
  for (model::Unit& u : model_.units()) {
    UnitState s;
    const int64_t P = u.trainable.padded_numel();
    s.offset = plan_.shard_optimizer ? store_.slice_offset(u) : 0;
    s.numel = plan_.shard_optimizer ? store_.slice_numel(u) : P;
    if (P > 0) {
      s.m = at::zeros({s.numel}, master);
      s.v = at::zeros({s.numel}, master);
    }
    if (plan_.shard_grads && P > 0) {
      s.grad_shard = at::zeros({s.numel}, master);
      u.grad = at::Tensor();  // full gradients exist only while the unit's backward runs
    }
    states_.push_back(std::move(s));
  }
}

ShardedOptimizer::~ShardedOptimizer() = default;

size_t ShardedOptimizer::index_of(const model::Unit& u) const {
  const auto& units = model_.units();
  size_t i = static_cast<size_t>(&u - units.data());
  LLMFT_ASSERT(i < units.size());
  return i;
}

void ShardedOptimizer::begin_step() { last_micro_ = true; }

void ShardedOptimizer::acquire(model::Unit& u, model::Pass pass) {
  UnitState& s = states_[index_of(u)];
  store_.acquire(u, pass);
  if (pass == model::Pass::kBackward) finish_scatter(s);  // the previous micro-batch's reduce-scatter of this unit
  if (pass == model::Pass::kBackward && !u.trainable.empty() && !u.grad.defined())
    u.grad = at::zeros({u.trainable.padded_numel()}, s.m.options());
}

void ShardedOptimizer::release(model::Unit& u) { store_.release(u); }

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
  const at::ScalarType dt = param.scalar_type();
  if (opt_.fused && (dt == at::kFloat || dt == at::kDouble) && grad.scalar_type() == dt && s.m.scalar_type() == dt) {
    // ATen's fused kernel (torch.optim.AdamW(fused=True)) on any device: one vectorised pass over (param, grad, m, v).
    // It reads the step, already counted, as torch.optim.AdamW counts it before the call; the decay was applied
    // above, per slot.
    at::Tensor step = at::full({}, t, param.options().dtype(at::kFloat));
    at::_fused_adamw_({param}, {grad}, {s.m}, {s.v}, {}, {step}, lr, b1, b2, /*weight_decay=*/0.0, opt_.eps,
                      /*amsgrad=*/false, /*maximize=*/false);
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
  std::vector<at::Tensor> norms;
  double sq = 0;
  const double inv = global_targets > 0 ? 1.0 / global_targets : 0.0;
  for (size_t i = 0; i < units.size(); ++i) {
    if (units[i].trainable.empty()) continue;
    grads[i] = plan_.shard_grads ? states_[i].grad_shard : units[i].grad;
    grads[i].mul_(inv);
    norms.push_back(grads[i].norm());  // a reduction: no (numel)-sized temporary
  }
  // Squared and summed in fp64, read once (one device synchronisation per step).
  if (!norms.empty()) sq = at::stack(norms).to(at::kDouble).square().sum().item<double>();
  if (plan_.shard_grads) {
    at::Tensor t = at::tensor({sq}, at::kDouble);
    comm::all_reduce_host(comm_, t);
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
    adamw(u, s, store_.trainable_range(u, s.offset, s.numel), g, lr);
    grads[i].zero_();
    if (plan_.shard_optimizer) store_.gather_trainable_slices(u);  // stages 1-2: every rank's slice, everywhere
  }
  store_.trainable_updated();
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
      const at::TensorOptions host = at::TensorOptions().device(at::kCPU);  // copies on the CPU, for the writer
      out.exp_avg.push_back(u.trainable.view(k, m).to(host, false, true));
      out.exp_avg_sq.push_back(u.trainable.view(k, v).to(host, false, true));
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

MemoryReport ShardedOptimizer::memory() const {
  MemoryReport r;
  r.parameter_bytes = store_.bytes();
  for (size_t i = 0; i < states_.size(); ++i) {
    const auto& s = states_[i];
    const auto& u = model_.units()[i];
    if (s.m.defined()) r.optimizer_state_bytes += (s.m.numel() + s.v.numel()) * static_cast<int64_t>(s.m.element_size());
    auto bytes = [](const at::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; };
    r.gradient_bytes += plan_.shard_grads ? bytes(s.grad_shard) : bytes(u.grad);
  }
  return r;
}

}  // namespace llmft::optim
