// The collective-communication interface every distributed part of llmft uses, in c10d's three roles: the
// Communicator front (one per process group, chosen once by a factory and passed down), one backend per transport
// (single process; Gloo over TCP on CPU; NCCL on GPU), and Work, an asynchronous handle.
//
// Semantics: collectives are issued in the same order on every rank. A call returns a Work once the operation is
// enqueued; wait() blocks until it completed on this rank, and throws llmft::Error (kTimeout / kComm) naming the
// operation, its sequence number and, where the backend knows them, the ranks that did not take part. Every
// operation has a deadline: its options' timeout, or the communicator's default.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <ATen/ATen.h>

namespace llmft::comm {

enum class ReduceOp { kSum, kMax, kMin };

// Options structs: appended to only. timeout 0 means the communicator's default.
struct AllReduceOptions {
  ReduceOp op = ReduceOp::kSum;
  std::chrono::milliseconds timeout{0};
};
struct ReduceScatterOptions {
  ReduceOp op = ReduceOp::kSum;
  std::chrono::milliseconds timeout{0};
};
struct AllGatherOptions {
  std::chrono::milliseconds timeout{0};
};
struct BroadcastOptions {
  int root = 0;
  std::chrono::milliseconds timeout{0};
};
struct BarrierOptions {
  std::chrono::milliseconds timeout{0};
};

class Work {
 public:
  virtual ~Work() = default;
  // Blocks until done; throws llmft::Error on failure or timeout.
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual std::string backend() const = 0;

  // In place on `t` (contiguous).
  virtual std::shared_ptr<Work> all_reduce(at::Tensor& t, const AllReduceOptions& opts = {}) = 0;
  // `in` holds size() equal contiguous chunks; `out` (one chunk) receives the reduction of chunk rank() of all ranks.
  virtual std::shared_ptr<Work> reduce_scatter(at::Tensor& out, const at::Tensor& in,
                                               const ReduceScatterOptions& opts = {}) = 0;
  // `out` (size() chunks) receives every rank's `in` in rank order.
  virtual std::shared_ptr<Work> all_gather(at::Tensor& out, const at::Tensor& in, const AllGatherOptions& opts = {}) = 0;
  virtual std::shared_ptr<Work> broadcast(at::Tensor& t, const BroadcastOptions& opts = {}) = 0;
  virtual void barrier(const BarrierOptions& opts = {}) = 0;
  // Where the tensors of its collectives must live: the CPU (single process, Gloo) or this rank's GPU (NCCL).
  virtual at::Device device() const { return at::Device(at::kCPU); }
};

// Collectives on small CPU tensors (counts, flags, a norm, sampled tokens) whatever the backend: copied to the
// communicator's device and back when it is not the CPU. Blocking.
void all_reduce_host(Communicator& comm, at::Tensor& t, const AllReduceOptions& opts = {});
void broadcast_host(Communicator& comm, at::Tensor& t, const BroadcastOptions& opts = {});
void all_gather_host(Communicator& comm, at::Tensor& out, const at::Tensor& in, const AllGatherOptions& opts = {});

// A completed Work (what synchronous backends return).
std::shared_ptr<Work> completed_work();

// World of one: collectives are identities.
std::unique_ptr<Communicator> make_single_process();

}  // namespace llmft::comm
