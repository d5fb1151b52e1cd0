#include "comm/world.hpp"

#include <cstdlib>
#include <string>

#include "util/check.hpp"

namespace llmft::comm {

namespace {

struct Env {
  const Getenv& get;
  // The first of the names that is set (non-empty), as an integer; -1 when none is.
  int64_t integer(std::initializer_list<const char*> names, std::string* which = nullptr) const {
    for (const char* n : names) {
      const char* v = get(n);
      if (v == nullptr || *v == '\0') continue;
      char* end = nullptr;
      const long long x = std::strtoll(v, &end, 10);
      LLMFT_CHECK(end != v && *end == '\0' && x >= 0 && x < (1 << 24), Status::kInvalidArgument,
                  "environment variable {}=\"{}\" is not a non-negative integer", n, v);
      if (which) *which = n;
      return x;
    }
    return -1;
  }
  std::string text(std::initializer_list<const char*> names) const {
    for (const char* n : names) {
      const char* v = get(n);
      if (v != nullptr && *v != '\0') return v;
    }
    return "";
  }
};

}  // namespace

World resolve_world(const DistOptions& d, const Getenv& getenv) {
  Env env{getenv};
  World w;
  std::string rank_var, size_var, node_var;
  const int64_t rank = env.integer({"RANK"}, &rank_var);
  const int64_t size = env.integer({"WORLD_SIZE"}, &size_var);
  const int64_t local_rank = env.integer({"LOCAL_RANK"});
  int64_t local_size = d.nproc_per_node > 0 ? d.nproc_per_node : env.integer({"LOCAL_WORLD_SIZE"});
  if (local_size < 0) {
    // Kubeflow Trainer v2 sets PET_NPROC_PER_NODE to an integer or to torchrun's auto / gpu / cpu, which tell
    // torchrun how many workers to start. Without torchrun (no LOCAL_WORLD_SIZE) llmft is one process per pod.
    const std::string pet = env.text({"PET_NPROC_PER_NODE"});
    local_size = pet == "auto" || pet == "gpu" || pet == "cpu" || pet == "xpu" ? 1 : env.integer({"PET_NPROC_PER_NODE"});
  }
  // torchrun tells its workers the number of nodes the rendezvous settled on (GROUP_WORLD_SIZE); PET_NNODES is what
  // an operator asked torchrun for, and under an elastic PyTorchJob a range ("1:2") only torchrun can settle.
  int64_t nodes = d.nnodes > 0 ? d.nnodes : env.integer({"GROUP_WORLD_SIZE"});
  if (nodes < 0) {
    const std::string pet_nnodes = env.text({"PET_NNODES"});
    LLMFT_CHECK(pet_nnodes.find(':') == std::string::npos, Status::kInvalidArgument,
                "PET_NNODES={} is an elastic range of nodes, which only torchrun's rendezvous settles: start llmft "
                "as `torchrun --no-python llmft train ...` (torchrun reads the PET_ variables)",
                pet_nnodes);
    nodes = env.integer({"PET_NNODES", "NNODES"});
  }
  int64_t node_rank = d.node_rank >= 0 ? d.node_rank
                                       : env.integer({"GROUP_RANK", "NODE_RANK", "PET_NODE_RANK", "JOB_COMPLETION_INDEX"},
                                                     &node_var);
  if (local_size < 0) local_size = 1;
  // Kubeflow's operators set PET_NPROC_PER_NODE for torchrun, which starts that many workers in the pod (and the
  // PyTorchJob's RANK is then the pod's index, WORLD_SIZE pods x processes). Started directly (no LOCAL_RANK), llmft
  // is the pod's only process, and would wait for ranks that never come.
  if (const std::string pet = env.text({"PET_NPROC_PER_NODE"});
      local_rank < 0 && d.nproc_per_node <= 0 && env.integer({"LOCAL_WORLD_SIZE"}) < 0 && !pet.empty() &&
      pet.find_first_not_of("0123456789") == std::string::npos) {
    LLMFT_CHECK(local_size <= 1, Status::kInvalidArgument,
                "PET_NPROC_PER_NODE={} asks for {} processes in this pod, but llmft was started directly (no "
                "LOCAL_RANK): start it as `torchrun --no-python llmft train ...` (torchrun reads the PET_ variables), "
                "or ask for 1 process per node",
                pet, pet);
  }
  const bool indexed_job = node_var == "JOB_COMPLETION_INDEX";
  if (rank >= 0 || size >= 0) {
    // torchrun, PyTorchJob, or plain variables: RANK and WORLD_SIZE are the truth.
    LLMFT_CHECK(rank >= 0 && size >= 1, Status::kInvalidArgument,
                "RANK and WORLD_SIZE must be set together (RANK={}, WORLD_SIZE={})", rank, size);
    LLMFT_CHECK(rank < size, Status::kInvalidArgument, "RANK={} is not below WORLD_SIZE={}", rank, size);
    w.rank = static_cast<int>(rank);
    w.size = static_cast<int>(size);
    w.local_rank = local_rank >= 0 ? static_cast<int>(local_rank) : static_cast<int>(rank % local_size);
    w.local_size = static_cast<int>(local_size);
    w.node_rank = node_rank >= 0 && !indexed_job ? static_cast<int>(node_rank) : w.rank / w.local_size;
    w.nodes = nodes > 0 ? static_cast<int>(nodes) : (w.size + w.local_size - 1) / w.local_size;
    w.source = env.get("TORCHELASTIC_RUN_ID") ? "torchrun" : env.get("PET_NNODES") ? "PyTorchJob" : "RANK/WORLD_SIZE";
  } else if (node_rank >= 0 || nodes > 0) {
    // An Indexed Job (or node-level variables): rank from the node rank and the process on the node.
    LLMFT_CHECK(nodes >= 1, Status::kInvalidArgument,
                "{} is set but the number of nodes is not: set dist.nnodes (the Indexed Job's completions)",
                node_var.empty() ? "a node rank" : node_var);
    if (node_rank < 0) node_rank = 0;
    LLMFT_CHECK(node_rank < nodes, Status::kInvalidArgument, "node rank {} ({}) is not below dist.nnodes={}", node_rank,
                node_var.empty() ? "dist.node_rank" : node_var, nodes);
    const int64_t lr = local_rank >= 0 ? local_rank : 0;
    LLMFT_CHECK(lr < local_size, Status::kInvalidArgument, "LOCAL_RANK={} is not below the {} processes per node", lr,
                local_size);
    w.node_rank = static_cast<int>(node_rank);
    w.nodes = static_cast<int>(nodes);
    w.local_rank = static_cast<int>(lr);
    w.local_size = static_cast<int>(local_size);
    w.rank = w.node_rank * w.local_size + w.local_rank;
    w.size = w.nodes * w.local_size;
    w.source = indexed_job ? "Indexed Job" : node_var == "PET_NODE_RANK" ? "PET_ variables" : "node rank";
  } else {
    w.source = "single process";
  }
  const std::string addr = !d.master_addr.empty() ? d.master_addr : env.text({"MASTER_ADDR", "PET_MASTER_ADDR"});
  if (!addr.empty()) w.master_addr = addr;
  const int64_t port = d.master_port > 0 ? d.master_port : env.integer({"MASTER_PORT", "PET_MASTER_PORT"});
  if (port > 0) {
    LLMFT_CHECK(port < 65536, Status::kInvalidArgument, "master port {} is not a TCP port", port);
    w.master_port = static_cast<int>(port);
  }
  const std::string agent = env.text({"TORCHELASTIC_USE_AGENT_STORE"});
  w.agent_store = agent == "True" || agent == "true" || agent == "1";
  if (w.agent_store) w.store_prefix = "/worker/attempt_" + (env.text({"TORCHELASTIC_RESTART_COUNT"}).empty()
                                                               ? std::string("0")
                                                               : env.text({"TORCHELASTIC_RESTART_COUNT"}));
  return w;
}

World resolve_world(const DistOptions& d) {
  return resolve_world(d, [](const char* name) { return static_cast<const char*>(std::getenv(name)); });
}

}  // namespace llmft::comm
