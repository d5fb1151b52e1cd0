// Collectives on small CPU tensors over any backend (communicator.hpp): through the communicator's device.
#include "comm/communicator.hpp"

namespace llmft::comm {

namespace {
// `t` where the communicator's collectives take it (itself on the CPU backends).
at::Tensor staged(const Communicator& comm, const at::Tensor& t) {
  return comm.device().is_cpu() ? t : t.to(comm.device());
}
}  // namespace

void all_reduce_host(Communicator& comm, at::Tensor& t, const AllReduceOptions& opts) {
  at::Tensor d = staged(comm, t);
  comm.all_reduce(d, opts)->wait();
  if (!d.is_same(t)) t.copy_(d);
}

void broadcast_host(Communicator& comm, at::Tensor& t, const BroadcastOptions& opts) {
  at::Tensor d = staged(comm, t);
  comm.broadcast(d, opts)->wait();
  if (!d.is_same(t)) t.copy_(d);
}

void all_gather_host(Communicator& comm, at::Tensor& out, const at::Tensor& in, const AllGatherOptions& opts) {
  at::Tensor o = staged(comm, out);
  comm.all_gather(o, staged(comm, in), opts)->wait();
  if (!o.is_same(out)) out.copy_(o);
}

}  // namespace llmft::comm
