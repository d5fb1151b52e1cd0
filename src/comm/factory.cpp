#include "comm/factory.hpp"

#include "llmft/log.hpp"
#include "util/check.hpp"

namespace llmft::comm {

CommOptions comm_options(const DistOptions& d) {
  LLMFT_CHECK(d.timeout.count() > 0 && d.rendezvous_timeout.count() > 0, Status::kInvalidArgument,
              "dist.timeout_s and dist.rendezvous_timeout_s must be positive");
  CommOptions o;
  o.timeout = d.timeout;
  o.rendezvous_timeout = d.rendezvous_timeout;
  return o;
}

std::unique_ptr<Communicator> make_communicator(const DistOptions& d, const World& w, int cuda_device) {
  const bool gpu = cuda_device >= 0;
  const Backend b = d.backend;
  if (b == Backend::kSingle || (b == Backend::kAuto && w.size == 1)) {
    LLMFT_CHECK(w.size == 1, Status::kInvalidArgument,
                "dist.backend=single in a world of {} processes (RANK {} of WORLD_SIZE {})", w.size, w.rank, w.size);
    return make_single_process();
  }
  CommOptions o = comm_options(d);
  o.cuda_device = cuda_device;
  const bool nccl = b == Backend::kNccl || (b == Backend::kAuto && gpu);
  LLMFT_CHECK(nccl == gpu, Status::kInvalidArgument,
              "dist.backend={} with model.device {}: {} (rank {} of {})", nccl ? "nccl" : "gloo",
              gpu ? fmt::format("cuda:{}", cuda_device) : std::string("cpu"),
              gpu ? "Gloo reduces CPU tensors and the model's are on the GPU; use dist.backend=nccl or auto"
                  : "NCCL reduces GPU tensors and the model's are on the CPU; use dist.backend=gloo or auto, or "
                    "model.device=cuda",
              w.rank, w.size);
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
