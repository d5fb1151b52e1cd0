// The Gloo backend: libtorch's c10d ProcessGroupGloo over a TCPStore rendezvous, on CPU tensors.
//
// Collectives run asynchronously on the process group's worker threads; Work::wait() returns when this rank's part
// is done. reduce_scatter is an all-to-all of the chunks followed by a local sum (the same (N-1)/N of the buffer on
// the wire as a ring reduce-scatter): 1.1-2.3x faster than c10d's own Gloo _reduce_scatter_base in libtorch 2.11 at
// world size 2 from 1 KB to 64 MB (bench/dist.sh). all_gather gathers into views of the output. Every operation carries its deadline; a failure or timeout becomes Error(kComm /
// kTimeout) naming the operation, its sequence number and the ranks that are missing (comm/store.hpp's Watch).
#include "comm/communicator.hpp"
#include "comm/factory.hpp"

#ifdef LLMFT_HAVE_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <atomic>
#include <functional>
#include <thread>

#include "comm/store.hpp"
#include "llmft/log.hpp"
#endif

#include "util/check.hpp"

namespace llmft::comm {

#ifdef LLMFT_HAVE_GLOO

namespace {

c10d::ReduceOp to_c10d(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return c10d::ReduceOp(c10d::ReduceOp::SUM);
    case ReduceOp::kMax: return c10d::ReduceOp(c10d::ReduceOp::MAX);
    case ReduceOp::kMin: return c10d::ReduceOp(c10d::ReduceOp::MIN);
  }
  return c10d::ReduceOp(c10d::ReduceOp::SUM);
}

class GlooCommunicator;

class GlooWork : public Work {
 public:
  GlooWork(GlooCommunicator* owner, std::vector<c10::intrusive_ptr<c10d::Work>> works, const char* op, int64_t seq,
           int64_t bytes, std::chrono::milliseconds timeout, std::function<void()> then)
      : owner_(owner), works_(std::move(works)), op_(op), seq_(seq), bytes_(bytes), timeout_(timeout),
        then_(std::move(then)), start_(std::chrono::steady_clock::now()) {}
  void wait() override;

 private:
  GlooCommunicator* owner_;
  std::vector<c10::intrusive_ptr<c10d::Work>> works_;
  const char* op_;
  int64_t seq_, bytes_;
  std::chrono::milliseconds timeout_;
  std::function<void()> then_;
  std::chrono::steady_clock::time_point start_;
  bool done_ = false;
};

class GlooCommunicator : public Communicator {
 public:
  GlooCommunicator(const World& w, const CommOptions& o) : world_(w), timeout_(o.timeout) {
    const bool serve = !w.agent_store && w.rank == 0;
    store_ = connect_store(w, o.rendezvous_timeout, o.timeout, serve);
    watch_store_ = connect_store(w, o.rendezvous_timeout, std::chrono::milliseconds(5000), false);
    watch_ = std::make_unique<Watch>(w, watch_store_);
    // The address peers reach this process at: the local end of the route to the master (on one machine, loopback).
    std::string self = local_address_towards(w.master_addr, w.master_port);
    if (self.empty()) self = "127.0.0.1";
    join(o.rendezvous_timeout);
    // Gloo's context timeout bounds its own waits (connecting the mesh, receiving): the collective deadline.
    auto options = c10d::ProcessGroupGloo::Options::create(std::max(o.timeout, std::chrono::milliseconds(30000)));
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(self));
    }
    options->threads = 2;
    try {
      // Connects the full mesh through the store: returns once every rank has joined.
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(
          c10::make_intrusive<c10d::PrefixStore>("gloo", store_handle()), w.rank, w.size, options);
    } catch (const std::exception& e) {
      failed_ = true;
      LLMFT_FAIL(Status::kComm, "rank {}: the Gloo process group of {} ranks did not form within {:.0f} s: {}{}", w.rank,
                 w.size, static_cast<double>(o.rendezvous_timeout.count()) / 1000.0, first_line(e.what()),
                 watch_->diagnose(0));
    }
  }

  ~GlooCommunicator() override {
    // After a failure, tearing the group down can block on peers that are gone: let the process exit instead.
    if (failed_) (void)pg_.release();
  }

  int rank() const override { return world_.rank; }
  int size() const override { return world_.size; }
  std::string backend() const override { return "gloo"; }

  std::shared_ptr<Work> all_reduce(at::Tensor& t, const AllReduceOptions& o) override {
    check_cpu(t, "all_reduce");
    c10d::AllreduceOptions opts;
    opts.reduceOp = to_c10d(o.op);
    opts.timeout = deadline(o.timeout);
    std::vector<at::Tensor> ts{t};
    const int64_t seq = enter();
    return wrap(pg_->allreduce(ts, opts), "all_reduce", seq, bytes(t), opts.timeout);
  }

  std::shared_ptr<Work> reduce_scatter(at::Tensor& out, const at::Tensor& in, const ReduceScatterOptions& o) override {
    check_cpu(in, "reduce_scatter");
    LLMFT_CHECK(in.numel() == out.numel() * world_.size && in.is_contiguous() && out.is_contiguous(),
                Status::kInvalidArgument, "reduce_scatter: {} elements in for {} out on {} ranks", in.numel(),
                out.numel(), world_.size);
    LLMFT_CHECK(o.op == ReduceOp::kSum, Status::kUnsupported, "reduce_scatter: only sum");
    // Chunk j of every rank goes to rank j; then each rank sums the chunks it received.
    at::Tensor received = at::empty_like(in);
    at::Tensor input = in;
    std::vector<int64_t> counts;
    c10d::AllToAllOptions opts;
    opts.timeout = deadline(o.timeout);
    const int64_t seq = enter();
    auto work = pg_->alltoall_base(received, input, counts, counts, opts);
    const int64_t n = world_.size;
    at::Tensor target = out;
    return wrap(work, "reduce_scatter", seq, bytes(in), opts.timeout, [received, target, n]() mutable {
      at::sum_out(target, received.view({n, -1}), 0);
    });
  }

  std::shared_ptr<Work> all_gather(at::Tensor& out, const at::Tensor& in, const AllGatherOptions& o) override {
    check_cpu(in, "all_gather");
    LLMFT_CHECK(out.numel() == in.numel() * world_.size && out.is_contiguous(), Status::kInvalidArgument,
                "all_gather: {} elements in for {} out on {} ranks", in.numel(), out.numel(), world_.size);
    // One broadcast per rank into its slice of `out`. ProcessGroupGloo's allgather copies through temporaries with
    // tensor operations on its worker threads, which inference tensors (the trainer's) refuse there; broadcasts
    // hand Gloo the slices' memory directly. Each rank sends its slice to the N-1 others: the volume of a ring.
    const int64_t n = in.numel();
    out.narrow(0, world_.rank * n, n).copy_(in);
    c10d::BroadcastOptions opts;
    opts.timeout = deadline(o.timeout);
    const int64_t seq = enter();
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (int r = 0; r < world_.size; ++r) {
      std::vector<at::Tensor> ts{out.narrow(0, r * n, n)};
      opts.rootRank = r;
      works.push_back(pg_->broadcast(ts, opts));
    }
    return std::make_shared<GlooWork>(this, std::move(works), "all_gather", seq, bytes(out), opts.timeout, nullptr);
  }

  std::shared_ptr<Work> broadcast(at::Tensor& t, const BroadcastOptions& o) override {
    check_cpu(t, "broadcast");
    c10d::BroadcastOptions opts;
    opts.rootRank = o.root;
    opts.timeout = deadline(o.timeout);
    std::vector<at::Tensor> ts{t};
    const int64_t seq = enter();
    return wrap(pg_->broadcast(ts, opts), "broadcast", seq, bytes(t), opts.timeout);
  }

  void barrier(const BarrierOptions& o) override {
    c10d::BarrierOptions opts;
    opts.timeout = deadline(o.timeout);
    const int64_t seq = enter();
    wrap(pg_->barrier(opts), "barrier", seq, 0, opts.timeout)->wait();
  }

  [[noreturn]] void fail(const char* op, int64_t seq, int64_t nbytes, double seconds, const std::string& what) {
    failed_ = true;
    const bool timed_out = what.find("imed out") != std::string::npos || what.find("imeout") != std::string::npos;
    throw Error(timed_out ? Status::kTimeout : Status::kComm,
                fmt::format("rank {}: {} #{} ({} bytes) {} after {:.1f} s (dist.timeout_s={:.0f}): {}{}", world_.rank, op,
                            seq, nbytes, timed_out ? "timed out" : "failed", seconds,
                            static_cast<double>(timeout_.count()) / 1000.0, first_line(what), watch_->diagnose(seq)));
  }

 private:
  // Every rank checks in through the store before the group forms, so that a slow start (pods scheduled minutes
  // apart) is bounded by the rendezvous timeout, not by the collective one.
  void join(std::chrono::milliseconds total) {
    auto& store = *store_->store;
    store.add("joined", 1);
    const auto start = std::chrono::steady_clock::now();
    for (auto wait = std::chrono::milliseconds(10);; wait = std::min(wait * 2, std::chrono::milliseconds(500))) {
      const int64_t joined = store.add("joined", 0);
      if (joined >= world_.size) return;
      LLMFT_CHECK(std::chrono::steady_clock::now() - start < total, Status::kTimeout,
                  "rank {}: only {} of {} ranks reached the rendezvous at {}:{} within {:.0f} s (dist.rendezvous_timeout_s)",
                  world_.rank, joined, world_.size, world_.master_addr, world_.master_port,
                  static_cast<double>(total.count()) / 1000.0);
      std::this_thread::sleep_for(wait);
    }
  }

  static std::string first_line(std::string s) {
    if (const size_t nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
    return s;
  }
  static int64_t bytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }
  static void check_cpu(const at::Tensor& t, const char* op) {
    LLMFT_CHECK(t.device().is_cpu(), Status::kInvalidArgument, "{}: the Gloo backend takes CPU tensors", op);
  }
  std::chrono::milliseconds deadline(std::chrono::milliseconds t) const { return t.count() > 0 ? t : timeout_; }
  c10::intrusive_ptr<c10d::Store> store_handle() { return store_->store; }
  int64_t enter() {
    LLMFT_CHECK(!failed_, Status::kComm, "rank {}: a collective failed earlier; this communicator is unusable", world_.rank);
    const int64_t seq = ++seq_;
    watch_->entered(seq);
    return seq;
  }
  std::shared_ptr<Work> wrap(c10::intrusive_ptr<c10d::Work> w, const char* op, int64_t seq, int64_t nbytes,
                             std::chrono::milliseconds timeout, std::function<void()> then = nullptr) {
    std::vector<c10::intrusive_ptr<c10d::Work>> works{std::move(w)};
    return std::make_shared<GlooWork>(this, std::move(works), op, seq, nbytes, timeout, std::move(then));
  }

  World world_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<StoreHandle> store_, watch_store_;
  std::unique_ptr<Watch> watch_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
  int64_t seq_ = 0;
  bool failed_ = false;
};

void GlooWork::wait() {
  if (done_) return;
  try {
    // The deadline counts from when the operation was issued. Gloo's own timeouts only cover some of its waits.
    for (auto& w : works_) {
      const auto left = timeout_ - std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::steady_clock::now() - start_);
      if (!w->wait(std::max(left, std::chrono::milliseconds(1)))) throw std::runtime_error("Operation timed out!");
    }
  } catch (const std::exception& e) {
    owner_->fail(op_, seq_, bytes_,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(), e.what());
  }
  done_ = true;
  if (then_) then_();
}

}  // namespace

std::unique_ptr<Communicator> make_gloo(const World& w, const CommOptions& o) {
  return std::make_unique<GlooCommunicator>(w, o);
}

#else

std::unique_ptr<Communicator> make_gloo(const World&, const CommOptions&) {
  LLMFT_FAIL(Status::kUnsupported,
             "this llmft was built without Gloo (libtorch's c10d Gloo headers or libgloo-dev were missing)");
}

#endif

}  // namespace llmft::comm
