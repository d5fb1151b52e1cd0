// Collective bandwidth of llmft's Gloo communicator against raw c10d (ProcessGroupGloo called directly, on the same
// store and in the same process), for 1 KB to 256 MB of fp32. Run one process per rank (bench/dist.sh does):
//   RANK=r WORLD_SIZE=n MASTER_ADDR=127.0.0.1 MASTER_PORT=p bench_comm [MAX_MB]
// Rank 0 prints one line per operation and size: time per call and bus bandwidth (nccl-tests' definition: all_reduce
// moves 2(n-1)/n of the buffer per rank, reduce_scatter and all_gather (n-1)/n), for llmft and for c10d.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <functional>

#include "comm/factory.hpp"
#include "comm/world.hpp"

using namespace llmft;

namespace {

// Every rank makes the same number of calls (a collective needs all of them): fixed by the size.
double seconds_per_call(const std::function<void()>& call, int calls) {
  call();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) call();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / calls;
}

}  // namespace

int main(int argc, char** argv) {
  const double max_mb = argc > 1 ? std::atof(argv[1]) : 256;
  comm::DistOptions d;
  d.backend = comm::Backend::kGloo;
  const comm::World w = comm::resolve_world(d);
  auto ours = comm::make_communicator(d, w);
  const int n = w.size;
  // Raw c10d on its own TCPStore client (rank 0's llmft store serves it) and its own prefix.
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(w.master_port);
  so.isServer = false;
  so.waitWorkers = false;
  auto store = c10::make_intrusive<c10d::PrefixStore>("raw-c10d", c10::make_intrusive<c10d::TCPStore>(w.master_addr, so));
  auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::milliseconds(300000));
  opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  opts->threads = 2;
  c10d::ProcessGroupGloo raw(store, w.rank, n, opts);

  if (w.rank == 0)
    std::printf("%-15s %10s %12s %12s %12s %12s %7s\n", "op", "bytes", "llmft us", "c10d us", "llmft GB/s", "c10d GB/s",
                "ratio");
  for (int64_t bytes = 1024; bytes <= static_cast<int64_t>(max_mb * (1 << 20)); bytes *= 4) {
    const int64_t count = bytes / 4 / n * n;
    at::Tensor buf = at::rand({count});
    at::Tensor chunk = at::rand({count / n});
    const int calls = static_cast<int>(std::max<int64_t>(3, std::min<int64_t>(300, (int64_t{1} << 28) / bytes)));
    struct Row {
      const char* op;
      double factor;
      std::function<void()> ours, raw;
    };
    std::vector<Row> rows = {
        {"all_reduce", 2.0 * (n - 1) / n, [&] { ours->all_reduce(buf)->wait(); },
         [&] {
           std::vector<at::Tensor> t{buf};
           raw.allreduce(t)->wait();
         }},
        {"reduce_scatter", 1.0 * (n - 1) / n, [&] { ours->reduce_scatter(chunk, buf)->wait(); },
         [&] { raw._reduce_scatter_base(chunk, buf)->wait(); }},
        {"all_gather", 1.0 * (n - 1) / n, [&] { ours->all_gather(buf, chunk)->wait(); },
         [&] {
           std::vector<std::vector<at::Tensor>> out(1);
           for (int r = 0; r < n; ++r) out[0].push_back(at::empty_like(chunk));
           std::vector<at::Tensor> in{chunk};
           raw.allgather(out, in)->wait();
         }},
    };
    for (auto& r : rows) {
      // Both sides take turns with the same size, so that every rank makes the same calls in the same order.
      ours->barrier();
      const double a = seconds_per_call(r.ours, calls);
      ours->barrier();
      const double b = seconds_per_call(r.raw, calls);
      if (w.rank == 0) {
        const double bus_a = count * 4.0 * r.factor / a / 1e9, bus_b = count * 4.0 * r.factor / b / 1e9;
        std::printf("%-15s %10lld %12.1f %12.1f %12.3f %12.3f %6.2fx\n", r.op, static_cast<long long>(count * 4),
                    a * 1e6, b * 1e6, bus_a, bus_b, bus_a / bus_b);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
