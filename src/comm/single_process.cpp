// The world-of-one backend: every collective is an identity (reduce_scatter and all_gather copy).
#include "comm/communicator.hpp"
#include "util/check.hpp"

namespace llmft::comm {

namespace {

class Done : public Work {
 public:
  void wait() override {}
};

class SingleProcess : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backend() const override { return "single"; }
  std::shared_ptr<Work> all_reduce(at::Tensor&, const AllReduceOptions&) override { return completed_work(); }
  std::shared_ptr<Work> reduce_scatter(at::Tensor& out, const at::Tensor& in, const ReduceScatterOptions&) override {
    LLMFT_CHECK(out.numel() == in.numel(), Status::kInvalidArgument, "reduce_scatter: {} elements in, {} out", in.numel(),
                out.numel());
    if (!out.is_same(in)) out.copy_(in);
    return completed_work();
  }
  std::shared_ptr<Work> all_gather(at::Tensor& out, const at::Tensor& in, const AllGatherOptions&) override {
    LLMFT_CHECK(out.numel() == in.numel(), Status::kInvalidArgument, "all_gather: {} elements in, {} out", in.numel(),
                out.numel());
    if (!out.is_same(in)) out.copy_(in);
    return completed_work();
  }
  std::shared_ptr<Work> broadcast(at::Tensor&, const BroadcastOptions&) override { return completed_work(); }
  void barrier(const BarrierOptions&) override {}
};

}  // namespace

std::shared_ptr<Work> completed_work() {
  static auto done = std::make_shared<Done>();
  return done;
}

std::unique_ptr<Communicator> make_single_process() { return std::make_unique<SingleProcess>(); }

}  // namespace llmft::comm
