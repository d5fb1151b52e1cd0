// A fixed pool of worker threads with a blocking parallel_for. Work items are claimed with an atomic counter, so
// uneven items balance themselves; the first exception thrown by any item is rethrown in the caller.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace llmft {

class ThreadPool {
 public:
  // threads == 0 means std::thread::hardware_concurrency(). The calling thread also works, so a pool of
  // n threads starts n - 1 workers.
  explicit ThreadPool(size_t threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  size_t size() const { return workers_.size() + 1; }

  // Calls fn(i) for every i in [0, n), spread over the pool; returns when all are done. Callers on several
  // threads take turns.
  void parallel_for(size_t n, const std::function<void(size_t)>& fn);

  // A process-wide pool of `threads` threads (0: all cores), created on first use and kept, so its workers'
  // thread-local state (the tokenizer's word caches) survives between calls.
  static ThreadPool& shared(size_t threads);

 private:
  void worker_loop();
  void run_items();

  std::vector<std::thread> workers_;
  std::mutex call_mu_;  // one parallel_for at a time
  std::mutex mu_;
  std::condition_variable cv_work_, cv_done_;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t n_ = 0;
  size_t next_ = 0;
  size_t active_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace llmft
