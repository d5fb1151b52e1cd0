// The home of a model's weights across a data-parallel group: where each unit's buffers live between uses, and how
// they are sharded. Below the optimizer: the optimizer owns gradients and Adam's moments and updates the trainable
// slices the store hands it; the store owns the frozen weights (dense in the units' flat buffers, or stored in NF4 /
// FP8 in Unit::stored, which are never sharded) and the fp32 master weights.
//
// Not sharded (ZeRO stages 0-2): every rank holds every unit's buffers whole, as the decoder allocated them.
// Sharded (ZeRO-3): each rank keeps a 1/N slice of each unit's frozen and trainable buffers; acquire() all-gathers a
// unit's frozen weights and the compute-dtype copy of its trainable ones just before the unit runs, release() frees
// them after; gather() builds every unit whole (evaluation outside the training pass, saving, loading) until
// release_all(). A slice is a contiguous (offset, numel) range; buffers are padded so slices are equal.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include <ATen/ATen.h>

#include "comm/communicator.hpp"
#include "model/decoder.hpp"

namespace llmft::model {

// ZeRO-3 loading: fills `out` with elements [offset, offset + out.numel()) of unit u's frozen or trainable buffer
// (Decoder::load_base_shard reads just those bytes of the checkpoint).
using ShardFill = std::function<void(Unit& u, bool trainable, int64_t offset, at::Tensor& out)>;

class ParamStore : public ParamProvider {
 public:
  // shard: ZeRO-3. A unit's buffer that the model did not allocate (DecoderOptions::materialize_base false) is never
  // built whole: this rank's slice comes from `fill`.
  ParamStore(Decoder& model, comm::Communicator& comm, bool shard, const ShardFill& fill = nullptr);

  bool sharded() const { return shard_; }
  // The range of unit u's trainable buffer that this rank updates when the optimizer state is sharded N ways (or
  // all of it): (rank * P / N, P / N).
  int64_t slice_offset(const Unit& u) const;
  int64_t slice_numel(const Unit& u) const;
  // Unit u's fp32 master weights in [offset, offset + numel): the ZeRO-3 slice this rank keeps, or a view of the
  // whole buffer. The optimizer updates it in place, then calls trainable_updated.
  at::Tensor trainable_range(Unit& u, int64_t offset, int64_t numel);
  // After an update of every rank's slice [slice_offset, + slice_numel) (optimizer state sharded, parameters not):
  // all-gathers the slices into every rank's whole buffer. Collective.
  void gather_trainable_slices(Unit& u);
  // After an optimizer step: the compute-dtype copies follow the master weights (not sharded; ZeRO-3 makes them at
  // each acquire).
  void trainable_updated();

  // ParamProvider (ZeRO-3: gathers and frees the unit's weights; otherwise nothing).
  void acquire(Unit& u, Pass pass) override;
  void release(Unit& u) override;

  // ZeRO-3: all-gathers the full parameters of every unit (only the trainable ones when trainable_only: a LoRA
  // adapter's save gathers adapter tensors and nothing else); release_all() frees them again. Collective; no-ops
  // when not sharded.
  void gather(bool trainable_only);
  void release_all();
  // After the caller wrote new values into the full buffers (made by gather, or the buffers themselves when not
  // sharded): keep this rank's slices of them and refresh the compute copies.
  void changed();
  // ZeRO-3: refills this rank's slices from `fill` (a checkpoint read slice by slice), without building any unit
  // whole. Not collective. Throws kInternal when not sharded.
  void reload(const ShardFill& fill);

  // Parameter bytes this rank holds between steps (masters, compute copies, frozen weights; stored weights).
  int64_t bytes() const;

 private:
  // Buffers a unit's gathered parameters (ZeRO-3) live in while it runs: taken from a few buffers of the largest
  // unit's size (one or two are in use at a time: a layer, or the head with a tied embedding), reused unit after unit
  // and step after step rather than allocated each time (which fragments the heap of a host that keeps freed memory,
  // as the llmft program does).
  struct Pool {
    int64_t numel = 0;
    at::ScalarType dtype = at::kFloat;
    at::Device device = at::kCPU;
    std::vector<at::Tensor> buffers;
    at::Tensor take(int64_t n);  // a view of n elements of a buffer no unit holds (a new buffer when all are held)
  };
  struct Shards {
    at::Tensor master;  // fp32 slice of the trainable buffer
    at::Tensor frozen;  // compute-dtype slice of the frozen buffer
  };
  size_t index_of(const Unit& u) const;
  int64_t frozen_offset(const Unit& u) const;

  Decoder& model_;
  comm::Communicator& comm_;
  bool shard_;
  std::vector<Shards> shards_;  // per unit (ZeRO-3)
  Pool frozen_pool_, compute_pool_;
};

}  // namespace llmft::model
