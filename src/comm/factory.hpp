// Choosing the backend, once per job: make_communicator resolves the world from the launcher's environment
// (comm/world.hpp) and dist.*, and builds the single-process, Gloo or NCCL communicator the rest of llmft is handed.
#pragma once

#include <chrono>
#include <memory>

#include "comm/communicator.hpp"
#include "comm/world.hpp"

namespace llmft::comm {

struct CommOptions {
  std::chrono::milliseconds timeout{300000};              // every collective's default deadline
  std::chrono::milliseconds rendezvous_timeout{600000};  // reaching the store and forming the group
  int cuda_device = -1;  // NCCL: the GPU this process computes on (-1: its local rank modulo the visible GPUs)
};

CommOptions comm_options(const DistOptions& d);

// Backend::kAuto: single for a world of one, NCCL when the process computes on a GPU (cuda_device >= 0, which NCCL
// then uses), else Gloo. Gloo with a GPU, or NCCL without one, is refused: its collectives would be handed tensors on
// the wrong device.
std::unique_ptr<Communicator> make_communicator(const DistOptions& d, const World& w, int cuda_device = -1);

std::unique_ptr<Communicator> make_gloo(const World& w, const CommOptions& o);
std::unique_ptr<Communicator> make_nccl(const World& w, const CommOptions& o);
bool nccl_available();

}  // namespace llmft::comm
