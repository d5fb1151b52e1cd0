#include "comm/factory.hpp"

#include "llmft/log.hpp"
#include "util/check.hpp"

namespace llmft::comm {

CommOptions comm_options(const DistSection& d) {
  LLMFT_CHECK(d.timeout_s > 0 && d.rendezvous_timeout_s > 0, Status::kInvalidArgument,
              "dist.timeout_s and dist.rendezvous_timeout_s must be positive");
  CommOptions o;
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(d.timeout_s * 1000));
  o.rendezvous_timeout = std::chrono::milliseconds(static_cast<int64_t>(d.rendezvous_timeout_s * 1000));
  return o;
}

std::unique_ptr<Communicator> make_communicator(const DistSection& d, const World& w, bool gpu) {
  const std::string& b = d.backend;
  LLMFT_CHECK(b == "auto" || b == "single" || b == "gloo" || b == "nccl", Status::kInvalidArgument,
              "dist.backend \"{}\" is not auto, single, gloo or nccl", b);
  if (b == "single" || (b == "auto" && w.size == 1)) {
    LLMFT_CHECK(w.size == 1, Status::kInvalidArgument,
                "dist.backend=single in a world of {} processes (RANK {} of WORLD_SIZE {})", w.size, w.rank, w.size);
    return make_single_process();
  }
  const CommOptions o = comm_options(d);
  const bool nccl = b == "nccl" || (b == "auto" && gpu);
  log_message(LogLevel::kInfo,
              fmt::format("[llmft] rank {} of {} (node {} of {}, local rank {} of {}; from {}): {} rendezvous at {}:{}",
                          w.rank, w.size, w.node_rank, w.nodes, w.local_rank, w.local_size, w.source,
                          nccl ? "NCCL" : "Gloo", w.master_addr, w.master_port));
  return nccl ? make_nccl(w, o) : make_gloo(w, o);
}

}  // namespace llmft::comm

#ifndef LLMFT_HAVE_NCCL
namespace llmft::comm {

std::unique_ptr<Communicator> make_nccl(const World&, const CommOptions&) {
  LLMFT_FAIL(Status::kUnsupported, "this llmft was built without NCCL (CUDA toolkit or NCCL not found at build time)");
}

bool nccl_available() { return false; }

}  // namespace llmft::comm
#endif
