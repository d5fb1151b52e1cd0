// The NCCL backend: the NCCL API directly, one communicator per process on the GPU the model computes on (its local
// rank's by default); the unique id is made by rank 0 and exchanged through the TCPStore rendezvous. Collectives run
// on a stream of their own that first waits for the work already queued on ATen's current stream of that GPU; a Work
// holds the tensors and an event, and wait() polls the event against the deadline and NCCL's asynchronous error. A
// timeout aborts the communicator (so no rank hangs inside NCCL) and raises Error(kTimeout) naming the operation, its
// sequence number and the missing ranks. The calling thread's current GPU is set only for the length of a call.
//
// Built only with a CUDA libtorch, CUDA and NCCL (cmake/LlmftDependencies.cmake, src/CMakeLists.txt).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <optional>
#include <thread>

#include "comm/communicator.hpp"
#include "comm/factory.hpp"
#include "comm/store.hpp"
#include "util/check.hpp"

namespace llmft::comm {

namespace {

void cuda_check(cudaError_t e, const char* what) {
  LLMFT_CHECK(e == cudaSuccess, Status::kComm, "{}: {}", what, cudaGetErrorString(e));
}

// This thread's current GPU is set to the communicator's for a call and restored after it by c10's guard, which
// restores without creating a context on the previous device (a rank never touches GPU 0 unless it is its own).

ncclDataType_t nccl_type(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return ncclFloat32;
    case at::kDouble: return ncclFloat64;
    case at::kHalf: return ncclFloat16;
    case at::kBFloat16: return ncclBfloat16;
    case at::kLong: return ncclInt64;
    case at::kInt: return ncclInt32;
    case at::kByte: return ncclUint8;
    default: LLMFT_FAIL(Status::kUnsupported, "NCCL: tensors of {} are not supported", c10::toString(t.scalar_type()));
  }
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return ncclSum;
    case ReduceOp::kMax: return ncclMax;
    case ReduceOp::kMin: return ncclMin;
  }
  return ncclSum;
}

class NcclCommunicator;

class NcclWork : public Work {
 public:
  NcclWork(NcclCommunicator* owner, cudaEvent_t done, std::vector<at::Tensor> keep, const char* op, int64_t seq,
           int64_t bytes, std::chrono::milliseconds timeout)
      : owner_(owner), done_(done), keep_(std::move(keep)), op_(op), seq_(seq), bytes_(bytes), timeout_(timeout),
        start_(std::chrono::steady_clock::now()) {}
  ~NcclWork() override { cudaEventDestroy(done_); }
  void wait() override;

 private:
  NcclCommunicator* owner_;
  cudaEvent_t done_;
  std::vector<at::Tensor> keep_;
  const char* op_;
  int64_t seq_, bytes_;
  std::chrono::milliseconds timeout_;
  std::chrono::steady_clock::time_point start_;
  bool finished_ = false;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(const World& w, const CommOptions& o) : world_(w), timeout_(o.timeout) {
    const bool serve = !w.agent_store && w.rank == 0;
    store_ = connect_store(w, o.rendezvous_timeout, o.rendezvous_timeout, serve);
    watch_store_ = connect_store(w, o.rendezvous_timeout, std::chrono::milliseconds(5000), false);
    watch_ = std::make_unique<Watch>(w, watch_store_);
    int devices = 0;
    const cudaError_t e = cudaGetDeviceCount(&devices);
    LLMFT_CHECK(e == cudaSuccess && devices > 0, Status::kUnsupported,
                "rank {}: dist.backend=nccl needs a CUDA device and none is usable ({}): no NVIDIA driver or GPU here? "
                "use dist.backend=gloo on CPU", w.rank, e == cudaSuccess ? "0 devices" : cudaGetErrorString(e));
    device_ = o.cuda_device >= 0 ? o.cuda_device : w.local_rank % devices;
    LLMFT_CHECK(device_ < devices, Status::kInvalidArgument, "rank {}: GPU {} asked for, and this process sees {}",
                w.rank, device_, devices);
    c10::cuda::CUDAGuard scope(static_cast<c10::DeviceIndex>(device_));
    ncclUniqueId id;
    const std::string key = "nccl/unique_id";
    if (w.rank == 0) {
      LLMFT_CHECK(ncclGetUniqueId(&id) == ncclSuccess, Status::kComm, "ncclGetUniqueId failed");
      const auto* p = reinterpret_cast<const uint8_t*>(&id);
      store_->store->set(key, std::vector<uint8_t>(p, p + sizeof id));
    } else {
      std::vector<uint8_t> v;
      try {
        v = store_->store->get(key);  // waits for rank 0, up to the rendezvous timeout
      } catch (const std::exception& e) {
        LLMFT_FAIL(Status::kTimeout, "rank {}: no NCCL id from rank 0 through the store at {}:{}: {}", w.rank,
                   w.master_addr, w.master_port, e.what());
      }
      LLMFT_CHECK(v.size() == sizeof id, Status::kComm, "rank {}: malformed NCCL id in the store", w.rank);
      std::memcpy(&id, v.data(), sizeof id);
    }
    const ncclResult_t r = ncclCommInitRank(&comm_, w.size, id, w.rank);
    LLMFT_CHECK(r == ncclSuccess, Status::kComm, "rank {}: ncclCommInitRank over {} ranks failed: {}{}", w.rank, w.size,
                ncclGetErrorString(r), watch_->diagnose(0));
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  }

  ~NcclCommunicator() override {
    std::optional<c10::cuda::CUDAGuard> scope;
    try {
      scope.emplace(static_cast<c10::DeviceIndex>(device_));
    } catch (...) {  // a destructor does not throw: destroy on whatever device is current
    }
    if (comm_ != nullptr) {
      if (failed_) ncclCommAbort(comm_);
      else ncclCommDestroy(comm_);
    }
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  int rank() const override { return world_.rank; }
  int size() const override { return world_.size; }
  std::string backend() const override { return "nccl"; }
  at::Device device() const override { return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device_)); }

  std::shared_ptr<Work> all_reduce(at::Tensor& t, const AllReduceOptions& o) override {
    check(t, "all_reduce");
    const int64_t seq = begin();
    nccl(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), nccl_op(o.op), comm_,
                       stream_),
         "all_reduce", seq);
    return finish({t}, "all_reduce", seq, bytes(t), o.timeout);
  }

  std::shared_ptr<Work> reduce_scatter(at::Tensor& out, const at::Tensor& in, const ReduceScatterOptions& o) override {
    check(in, "reduce_scatter");
    LLMFT_CHECK(in.numel() == out.numel() * world_.size, Status::kInvalidArgument,
                "reduce_scatter: {} elements in for {} out on {} ranks", in.numel(), out.numel(), world_.size);
    const int64_t seq = begin();
    nccl(ncclReduceScatter(in.data_ptr(), out.data_ptr(), static_cast<size_t>(out.numel()), nccl_type(in),
                           nccl_op(o.op), comm_, stream_),
         "reduce_scatter", seq);
    return finish({in, out}, "reduce_scatter", seq, bytes(in), o.timeout);
  }

  std::shared_ptr<Work> all_gather(at::Tensor& out, const at::Tensor& in, const AllGatherOptions& o) override {
    check(in, "all_gather");
    LLMFT_CHECK(out.numel() == in.numel() * world_.size, Status::kInvalidArgument,
                "all_gather: {} elements in for {} out on {} ranks", in.numel(), out.numel(), world_.size);
    const int64_t seq = begin();
    nccl(ncclAllGather(in.data_ptr(), out.data_ptr(), static_cast<size_t>(in.numel()), nccl_type(in), comm_, stream_),
         "all_gather", seq);
    return finish({in, out}, "all_gather", seq, bytes(out), o.timeout);
  }

  std::shared_ptr<Work> broadcast(at::Tensor& t, const BroadcastOptions& o) override {
    check(t, "broadcast");
    const int64_t seq = begin();
    nccl(ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), o.root, comm_, stream_),
         "broadcast", seq);
    return finish({t}, "broadcast", seq, bytes(t), o.timeout);
  }

  void barrier(const BarrierOptions& o) override {
    at::Tensor one = at::ones({1}, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, device_));
    AllReduceOptions ar;
    ar.timeout = o.timeout;
    all_reduce(one, ar)->wait();
  }

  // Polls until `done` completes; on timeout or an asynchronous NCCL error, aborts and throws.
  void wait_for(cudaEvent_t done, const char* op, int64_t seq, int64_t nbytes, std::chrono::milliseconds timeout,
                std::chrono::steady_clock::time_point start) {
    const auto deadline = start + (timeout.count() > 0 ? timeout : timeout_);
    for (;;) {
      const cudaError_t q = cudaEventQuery(done);
      if (q == cudaSuccess) return;
      if (q != cudaErrorNotReady) fail(op, seq, nbytes, start, cudaGetErrorString(q), false);
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess) fail(op, seq, nbytes, start, ncclGetErrorString(async), false);
      if (std::chrono::steady_clock::now() > deadline) fail(op, seq, nbytes, start, "deadline passed", true);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

 private:
  [[noreturn]] void fail(const char* op, int64_t seq, int64_t nbytes, std::chrono::steady_clock::time_point start,
                         const std::string& what, bool timed_out) {
    failed_ = true;
    ncclCommAbort(comm_);  // unblocks the kernels of this rank; the communicator is unusable after this
    comm_ = nullptr;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    throw Error(timed_out ? Status::kTimeout : Status::kComm,
                fmt::format("rank {}: {} #{} ({} bytes) {} after {:.1f} s: {}{}", world_.rank, op, seq, nbytes,
                            timed_out ? "timed out" : "failed", s, what, watch_->diagnose(seq)));
  }
  void check(const at::Tensor& t, const char* op) const {
    LLMFT_CHECK(t.device().is_cuda() && t.is_contiguous(), Status::kInvalidArgument,
                "{}: the NCCL backend takes contiguous CUDA tensors", op);
  }
  static int64_t bytes(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }
  int64_t begin() {
    LLMFT_CHECK(!failed_ && comm_ != nullptr, Status::kComm,
                "rank {}: a collective failed earlier; this communicator is unusable", world_.rank);
    // Order after the work already queued on ATen's current stream of this GPU (where the tensors were produced).
    c10::cuda::CUDAGuard scope(static_cast<c10::DeviceIndex>(device_));
    cudaEvent_t ready;
    cuda_check(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaEventRecord(ready, c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device_)).stream()),
               "cudaEventRecord");
    cuda_check(cudaStreamWaitEvent(stream_, ready, 0), "cudaStreamWaitEvent");
    cudaEventDestroy(ready);
    const int64_t seq = ++seq_;
    watch_->entered(seq);
    return seq;
  }
  void nccl(ncclResult_t r, const char* op, int64_t seq) {
    if (r != ncclSuccess) fail(op, seq, 0, std::chrono::steady_clock::now(), ncclGetErrorString(r), false);
  }
  std::shared_ptr<Work> finish(std::vector<at::Tensor> keep, const char* op, int64_t seq, int64_t nbytes,
                               std::chrono::milliseconds timeout) {
    c10::cuda::CUDAGuard scope(static_cast<c10::DeviceIndex>(device_));
    cudaEvent_t done;
    cuda_check(cudaEventCreateWithFlags(&done, cudaEventDisableTiming), "cudaEventCreate");
    cuda_check(cudaEventRecord(done, stream_), "cudaEventRecord");
    return std::make_shared<NcclWork>(this, done, std::move(keep), op, seq, nbytes, timeout);
  }

  World world_;
  std::chrono::milliseconds timeout_;
  std::shared_ptr<StoreHandle> store_, watch_store_;
  std::unique_ptr<Watch> watch_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
  int64_t seq_ = 0;
  bool failed_ = false;
};

void NcclWork::wait() {
  if (finished_) return;
  owner_->wait_for(done_, op_, seq_, bytes_, timeout_, start_);
  finished_ = true;
  keep_.clear();
}

}  // namespace

std::unique_ptr<Communicator> make_nccl(const World& w, const CommOptions& o) {
  return std::make_unique<NcclCommunicator>(w, o);
}

bool nccl_available() { return true; }

}  // namespace llmft::comm
