#include "model/param_store.hpp"

#include <c10/core/InferenceMode.h>

#include <algorithm>

#include "util/check.hpp"

namespace llmft::model {

ParamStore::ParamStore(Decoder& model, comm::Communicator& comm, bool shard, const ShardFill& fill)
    : model_(model), comm_(comm), shard_(shard) {
  c10::InferenceMode guard;
  const int64_t world = comm.size();
  const at::ScalarType master = model.options().dtype == at::kDouble ? at::kDouble : at::kFloat;
  // This rank's slice of a buffer: from the buffer, or (never built whole) from `fill`.
  auto slice_of = [&](Unit& u, bool trainable, int64_t offset, int64_t numel, at::ScalarType dtype) {
    const at::Tensor& flat = trainable ? u.trainable.flat : u.frozen.flat;
    if (flat.defined()) return flat.narrow(0, offset, numel).clone();
    LLMFT_CHECK(fill != nullptr, Status::kInternal, "unit {}: its {} weights were not loaded and no slice reader was given",
                u.name, trainable ? "trained" : "frozen");
    at::Tensor out = at::empty({numel}, at::TensorOptions().dtype(dtype).device(model.options().device));
    fill(u, trainable, offset, out);
    return out;
  };
  for (Unit& u : model_.units()) {
    const int64_t P = u.trainable.padded_numel(), Pf = u.frozen.padded_numel();
    LLMFT_CHECK(shard_ || ((u.frozen.empty() || u.frozen.flat.defined()) && (u.trainable.empty() || u.trainable.flat.defined())),
                Status::kInternal, "unit {}: weights not loaded, and only sharded parameters (ZeRO-3) load by slice",
                u.name);
    LLMFT_CHECK(P % world == 0 && Pf % world == 0, Status::kInternal,
                "unit {}: buffers of {} / {} elements cannot be split into {} equal slices (decoder align)", u.name, P, Pf,
                world);
    Shards s;
    if (shard_) {
      if (P > 0) s.master = slice_of(u, true, slice_offset(u), slice_numel(u), master);
      if (Pf > 0) s.frozen = slice_of(u, false, frozen_offset(u), Pf / world, model.options().dtype);
      u.trainable.flat = at::Tensor();
      u.frozen.flat = at::Tensor();
      u.compute = at::Tensor();
    }
    shards_.push_back(std::move(s));
    frozen_pool_.numel = std::max(frozen_pool_.numel, Pf);
    compute_pool_.numel = std::max(compute_pool_.numel, P);
  }
  frozen_pool_.dtype = compute_pool_.dtype = model.options().dtype;
  frozen_pool_.device = compute_pool_.device = model.options().device;
}

at::Tensor ParamStore::Pool::take(int64_t n) {
  LLMFT_ASSERT(n <= numel);
  for (const at::Tensor& b : buffers)
    if (b.storage().use_count() == 1) return b.narrow(0, 0, n);  // no view of it is alive
  buffers.push_back(at::empty({numel}, at::TensorOptions().dtype(dtype).device(device)));
  return buffers.back().narrow(0, 0, n);
}

size_t ParamStore::index_of(const Unit& u) const {
  const auto& units = model_.units();
  size_t i = static_cast<size_t>(&u - units.data());
  LLMFT_ASSERT(i < units.size());
  return i;
}

int64_t ParamStore::slice_offset(const Unit& u) const { return comm_.rank() * slice_numel(u); }
int64_t ParamStore::slice_numel(const Unit& u) const { return u.trainable.padded_numel() / comm_.size(); }
int64_t ParamStore::frozen_offset(const Unit& u) const {
  return comm_.rank() * (u.frozen.padded_numel() / comm_.size());
}

at::Tensor ParamStore::trainable_range(Unit& u, int64_t offset, int64_t numel) {
  if (!shard_) return u.trainable.flat.narrow(0, offset, numel);
  LLMFT_CHECK(offset == slice_offset(u) && numel == slice_numel(u), Status::kInternal,
              "unit {}: [{}, {}) is not this rank's slice of sharded parameters", u.name, offset, offset + numel);
  return shards_[index_of(u)].master;
}

void ParamStore::gather_trainable_slices(Unit& u) {
  if (shard_ || u.trainable.empty()) return;
  at::Tensor mine = u.trainable.flat.narrow(0, slice_offset(u), slice_numel(u)).clone();
  comm_.all_gather(u.trainable.flat, mine)->wait();
}

void ParamStore::trainable_updated() {
  if (!shard_) model_.refresh_compute();
}

void ParamStore::acquire(Unit& u, Pass) {
  if (!shard_) return;
  const Shards& s = shards_[index_of(u)];
  const at::ScalarType dtype = model_.options().dtype;
  if (!u.frozen.empty() && !u.frozen.flat.defined()) {
    u.frozen.flat = frozen_pool_.take(u.frozen.padded_numel());
    comm_.all_gather(u.frozen.flat, s.frozen)->wait();
  }
  if (!u.trainable.empty() && !u.compute.defined()) {
    at::Tensor shard = s.master.scalar_type() == dtype ? s.master : s.master.to(dtype);
    u.compute = compute_pool_.take(u.trainable.padded_numel());
    comm_.all_gather(u.compute, shard)->wait();
  }
}

void ParamStore::release(Unit& u) {
  if (!shard_) return;
  u.frozen.flat = at::Tensor();
  u.trainable.flat = at::Tensor();
  u.compute = at::Tensor();
}

void ParamStore::gather(bool trainable_only) {
  if (!shard_) return;
  c10::InferenceMode guard;
  const at::ScalarType dtype = model_.options().dtype;
  for (size_t i = 0; i < shards_.size(); ++i) {
    Unit& u = model_.units()[i];
    const Shards& s = shards_[i];
    if (!u.trainable.empty() && !u.trainable.flat.defined()) {
      u.trainable.flat = at::empty({u.trainable.padded_numel()}, s.master.options());
      comm_.all_gather(u.trainable.flat, s.master)->wait();
      u.compute = dtype == u.trainable.flat.scalar_type() ? u.trainable.flat : u.trainable.flat.to(dtype);
    }
    if (!trainable_only && !u.frozen.empty() && !u.frozen.flat.defined()) {
      u.frozen.flat = at::empty({u.frozen.padded_numel()}, s.frozen.options());
      comm_.all_gather(u.frozen.flat, s.frozen)->wait();
    }
  }
}

void ParamStore::release_all() {
  if (!shard_) return;
  for (Unit& u : model_.units()) release(u);
}

void ParamStore::changed() {
  c10::InferenceMode guard;
  if (!shard_) {
    model_.refresh_compute();
    return;
  }
  auto& units = model_.units();
  for (size_t i = 0; i < units.size(); ++i) {
    Unit& u = units[i];
    Shards& s = shards_[i];
    if (!u.trainable.empty() && u.trainable.flat.defined())
      s.master.copy_(u.trainable.flat.narrow(0, slice_offset(u), slice_numel(u)));
    if (!u.frozen.empty() && u.frozen.flat.defined())
      s.frozen.copy_(u.frozen.flat.narrow(0, frozen_offset(u), s.frozen.numel()));
  }
}

void ParamStore::reload(const ShardFill& fill) {
  c10::InferenceMode guard;
  LLMFT_CHECK(shard_, Status::kInternal, "ParamStore::reload without sharded parameters (ZeRO-3)");
  auto& units = model_.units();
  for (size_t i = 0; i < units.size(); ++i) {
    Unit& u = units[i];
    Shards& s = shards_[i];
    if (!u.trainable.empty()) fill(u, true, slice_offset(u), s.master);
    if (!u.frozen.empty()) fill(u, false, frozen_offset(u), s.frozen);
  }
}

int64_t ParamStore::bytes() const {
  auto bytes = [](const at::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; };
  int64_t r = 0;
  for (size_t i = 0; i < shards_.size(); ++i) {
    const Unit& u = model_.units()[i];
    const Shards& s = shards_[i];
    for (const StoredWeight& w : u.stored) r += w.bytes();
    if (shard_) {
      r += bytes(s.master) + bytes(s.frozen);
      if (model_.options().dtype != at::kFloat && s.master.defined())
        r += s.master.numel() * 2;  // compute-dtype slice made at each gather
    } else {
      r += bytes(u.trainable.flat) + bytes(u.frozen.flat);
      if (u.compute.defined() && !u.compute.is_same(u.trainable.flat)) r += bytes(u.compute);
    }
  }
  return r;
}

}  // namespace llmft::model
