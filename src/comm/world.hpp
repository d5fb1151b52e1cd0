// Where this process stands in a data-parallel job, resolved once from the launcher's environment and the dist.*
// configuration (which wins where set):
//   torchrun / Kubeflow PyTorchJob  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, GROUP_WORLD_SIZE,
//                                   MASTER_ADDR, MASTER_PORT; PyTorchJob's PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK,
//                                   PET_MASTER_ADDR, PET_MASTER_PORT; TORCHELASTIC_USE_AGENT_STORE (torchrun's
//                                   agent already serves the store: every rank connects to it as a client)
//   Kubernetes Indexed Job          JOB_COMPLETION_INDEX is the node rank; nodes and processes per node come from
//                                   dist.nnodes / dist.nproc_per_node; LOCAL_RANK (default 0) the process on the node
// rank = node_rank * nproc_per_node + local_rank when RANK is not given. Inconsistent values are an error naming the
// variables.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "comm/options.hpp"

namespace llmft::comm {

struct World {
  int rank = 0, size = 1;
  int local_rank = 0, local_size = 1;
  int node_rank = 0, nodes = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;   // torchrun's agent hosts the store (ranks connect as clients under store_prefix)
  std::string store_prefix;   // "/worker/attempt_<n>" under torchrun, as torch.distributed uses it
  std::string source;         // which launcher the values came from, for logs
};

using Getenv = std::function<const char*(const char*)>;
World resolve_world(const DistOptions& d, const Getenv& getenv);
World resolve_world(const DistOptions& d);  // from the process environment

}  // namespace llmft::comm
