// The rendezvous store every multi-process backend starts from (libtorch's c10d TCPStore at MASTER_ADDR:MASTER_PORT),
// and the watch that turns a failed collective into a diagnosis.
//
// connect_store: rank 0 serves the store (unless torchrun's agent already does, then every rank is a client under
// the agent's key prefix); the others connect, retrying with exponential backoff while the master is not reachable
// yet (pods start in any order), for at most the rendezvous timeout.
//
// Watch: a thread publishes, every second, this rank's progress (the sequence number of the last collective it
// entered) and a timestamp under llmft/alive/<rank>. When a collective fails or times out, diagnose() reads every
// rank's record and names the ranks that are not there: those still at an earlier operation (stalled) and those
// whose records stopped changing (dead), or says that the store itself is gone (its host died).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "comm/world.hpp"

namespace llmft::comm {

struct StoreHandle {
  c10::intrusive_ptr<c10d::Store> store;
};

// Connects (or, on rank 0, serves and connects). Throws Error(kTimeout) naming the address and the attempts made.
std::shared_ptr<StoreHandle> connect_store(const World& w, std::chrono::milliseconds total,
                                           std::chrono::milliseconds op_timeout, bool serve);

// The local address on the route to `host` (what peers on other nodes can reach this process at).
std::string local_address_towards(const std::string& host, int port);

class Watch {
 public:
  Watch(const World& w, std::shared_ptr<StoreHandle> store);
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;

  void entered(int64_t seq) { seq_.store(seq, std::memory_order_relaxed); }
  // The rest of the message for a failure at operation `seq`: which ranks are missing and why.
  std::string diagnose(int64_t seq);

 private:
  void publish();
  void loop();

  World world_;
  std::shared_ptr<StoreHandle> store_;
  std::atomic<int64_t> seq_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::string store_error_;
  std::thread thread_;
};

}  // namespace llmft::comm
