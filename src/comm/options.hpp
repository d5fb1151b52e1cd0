// The comm layer's own options, resolved from the job's dist.* settings by train/ (train/resolve.hpp) once, before
// any work: which backend, the deadlines, and the launcher values that override the environment.
#pragma once

#include <chrono>
#include <string>

namespace llmft::comm {

enum class Backend { kAuto, kSingle, kGloo, kNccl };  // auto: single for a world of one, NCCL on GPU, else Gloo

struct DistOptions {
  Backend backend = Backend::kAuto;
  std::chrono::milliseconds timeout{300000};              // every collective's deadline
  std::chrono::milliseconds rendezvous_timeout{600000};  // reaching the store and forming the group
  int nnodes = 0;           // 0: from the environment
  int nproc_per_node = 0;   // 0: from the environment (LOCAL_WORLD_SIZE), else 1
  int node_rank = -1;       // -1: from the environment (GROUP_RANK / NODE_RANK / JOB_COMPLETION_INDEX)
  std::string master_addr;  // empty: MASTER_ADDR, else 127.0.0.1
  int master_port = 0;      // 0: MASTER_PORT, else 29500
};

}  // namespace llmft::comm
