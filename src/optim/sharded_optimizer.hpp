// AdamW over the model's flat per-unit buffers, with ZeRO sharding across a data-parallel group.
//
// A ZeRO stage is a sharding plan over those buffers (the parameters themselves live in a model::ParamStore, below
// the optimizer, which shards them at stage 3; the optimizer owns gradients and Adam's moments and updates the
// trainable slices the store hands it):
//   stage 0  nothing sharded: gradients all-reduced, every rank updates every parameter;
//   stage 1  optimizer states sharded: each rank updates its slice of every buffer, then parameters are all-gathered;
//   stage 2  gradients sharded too: each unit's gradients are reduce-scattered right after its backward, so a rank
//            keeps only its slice;
//   stage 3  parameters sharded too: a unit's parameters are all-gathered just before its forward and its backward
//            and freed after.
// A rank's slice of a buffer is a contiguous (offset, numel) range; buffers are padded so slices are equal.
//
// The optimizer is the decoder's ParamProvider: it sees when each unit is used and when its gradients are final,
// and starts the unit's gradient communication then (asynchronously, overlapping the rest of the backward pass).
// Gradients are of the SUM of token losses; finish_step divides by the global number of target tokens, so the loss
// is a token-weighted mean over every micro-batch of every rank, whatever the split.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "comm/communicator.hpp"
#include "model/decoder.hpp"
#include "model/param_store.hpp"

namespace llmft::optim {

struct ShardingPlan {
  bool shard_optimizer = false, shard_grads = false, shard_params = false;
  static ShardingPlan for_stage(int stage);  // throws Error(kInvalidArgument) for a stage outside 0..3
};

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  // The update: ATen's fused AdamW kernel (torch.optim.AdamW(fused=True)), one vectorised pass a unit on the CPU and
  // one launch on a GPU; it replaced a scalar loop on the CPU (a 156M-parameter optimizer step 577 -> 190 ms on one
  // thread, bench/README.md). false: the same update as five tensor operations, the reference the tests hold the
  // kernel to.
  bool fused = true;
};

struct StepResult {
  double grad_norm = 0;  // global L2 norm of the mean-loss gradient, before clipping
  bool clipped = false;
  bool skipped = false;  // the norm was not finite: no parameter was updated (NaN never reaches the weights)
};

struct MemoryReport {
  int64_t optimizer_state_bytes = 0;  // Adam moments held by this rank
  int64_t parameter_bytes = 0;        // parameter storage held by this rank between steps (master + compute + frozen,
                                      // and stored NF4 / FP8 weights, which every rank holds whole)
  int64_t gradient_bytes = 0;         // gradient storage held between steps
};

using ShardFill = model::ShardFill;

class ShardedOptimizer : public model::ParamProvider {
 public:
  // Over `store`, whose parameters are sharded exactly when zero_stage is 3 (checked).
  ShardedOptimizer(model::Decoder& model, model::ParamStore& store, comm::Communicator& comm, int zero_stage,
                   AdamWOptions options);
  // With a store of its own (sharded at stage 3; `fill` reads a slice of a buffer the model did not allocate).
  ShardedOptimizer(model::Decoder& model, comm::Communicator& comm, int zero_stage, AdamWOptions options,
                   const ShardFill& fill = nullptr);
  ~ShardedOptimizer() override;
  model::ParamStore& store() { return store_; }

  // Call before the first micro-batch of an optimizer step; `last` marks the last micro-batch (its gradients are
  // communicated; earlier ones only accumulate, unless gradients are sharded).
  void begin_step();
  void set_last_micro_batch(bool last) { last_micro_ = last; }

  // Synchronizes gradients, divides them by `global_targets`, clips to max_grad_norm (<= 0: no clipping), applies
  // AdamW with `lr` and gathers parameters as the plan requires.
  StepResult finish_step(double lr, double max_grad_norm, double global_targets);

  // ParamProvider: the store's gathers (ZeRO-3), and the unit's gradient buffer and communication.
  void acquire(model::Unit& u, model::Pass pass) override;
  void release(model::Unit& u) override;
  void grads_ready(model::Unit& u) override;

  // The optimizer's state as plain data, in a layout that does not depend on the world size: per trainable parameter
  // (by its Hugging Face / PEFT name) the full Adam moments, unpadded, plus the number of steps taken. Collective at
  // ZeRO stages >= 1 (the moments are all-gathered from the shards); every rank gets the whole state.
  struct State {
    int64_t steps = 0;
    std::vector<std::string> names;
    std::vector<at::Tensor> exp_avg, exp_avg_sq;  // fp32, each of its parameter's shape
  };
  State export_state();
  // Takes this rank's slice of every moment from `s` (any world size wrote it). Throws naming a parameter that is
  // missing or of another size.
  void import_state(const State& s, const std::string& origin);

  MemoryReport memory() const;
  const ShardingPlan& plan() const { return plan_; }
  int64_t steps() const { return step_; }

  // Optimizer state of this rank (checkpoints): per unit, the moments of its slice (or whole buffer).
  struct UnitState {
    int64_t offset = 0, numel = 0;  // the slice this rank updates
    at::Tensor m, v;                // fp32 moments of that slice
    at::Tensor grad_shard;          // accumulated gradient slice (gradients sharded)
    std::vector<std::shared_ptr<comm::Work>> pending;
    // Gradients sharded: a reduce-scatter in flight, its output and the full gradient it reads (freed when done).
    std::shared_ptr<comm::Work> scatter;
    at::Tensor scatter_out, scatter_in;
  };
  std::vector<UnitState>& state() { return states_; }

 private:
  // Full gradients are not pooled: each unit's stays alive until its asynchronous reduce-scatter completes, so a pool
  // would hold one largest-unit buffer per unit.
  void init();
  size_t index_of(const model::Unit& u) const;
  void finish_scatter(UnitState& s);
  void adamw(model::Unit& u, UnitState& s, const at::Tensor& param, const at::Tensor& grad, double lr);

  model::Decoder& model_;
  std::unique_ptr<model::ParamStore> own_store_;  // the second constructor's
  model::ParamStore& store_;
  comm::Communicator& comm_;
  ShardingPlan plan_;
  AdamWOptions opt_;
  std::vector<UnitState> states_;
  bool last_micro_ = true;
  int64_t step_ = 0;
};

}  // namespace llmft::optim
