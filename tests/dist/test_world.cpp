// Where a process stands, from the variables each launcher sets: torchrun, Kubeflow PyTorchJob (including the PET_
// forms), a Kubernetes Indexed Job, plain variables; dist.* overrides; inconsistent values are errors naming them.
#include <gtest/gtest.h>

#include <map>

#include "comm/world.hpp"
#include "llmft/error.hpp"

using namespace llmft;

namespace {

comm::World world(const std::map<std::string, std::string>& env, comm::DistOptions d = {}) {
  return comm::resolve_world(d, [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

std::string error_of(const std::map<std::string, std::string>& env, comm::DistOptions d = {}) {
  try {
    world(env, d);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(World, NothingSetIsASingleProcess) {
  const auto w = world({});
  EXPECT_EQ(w.rank, 0);
  EXPECT_EQ(w.size, 1);
  EXPECT_EQ(w.master_addr, "127.0.0.1");
  EXPECT_EQ(w.master_port, 29500);
}

TEST(World, Torchrun) {
  // What torchrun --nnodes=2 --nproc_per_node=4 sets for the second process of the second node.
  const auto w = world({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "4"},
                        {"GROUP_RANK", "1"}, {"MASTER_ADDR", "10.0.0.7"}, {"MASTER_PORT", "29400"},
                        {"TORCHELASTIC_RUN_ID", "job"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                        {"TORCHELASTIC_RESTART_COUNT", "2"}});
  EXPECT_EQ(w.rank, 5);
  EXPECT_EQ(w.size, 8);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.local_size, 4);
  EXPECT_EQ(w.node_rank, 1);
  EXPECT_EQ(w.nodes, 2);
  EXPECT_EQ(w.master_addr, "10.0.0.7");
  EXPECT_EQ(w.master_port, 29400);
  EXPECT_TRUE(w.agent_store);
  EXPECT_EQ(w.store_prefix, "/worker/attempt_2");
  EXPECT_EQ(w.source, "torchrun");
}

TEST(World, PyTorchJobWithPetVariables) {
  // A PyTorchJob pod running llmft directly: RANK / WORLD_SIZE / MASTER_* plus PET_ forms for torchrun.
  const auto w = world({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"PET_NNODES", "4"}, {"PET_NPROC_PER_NODE", "1"},
                        {"PET_MASTER_ADDR", "job-master-0"}, {"PET_MASTER_PORT", "23456"}});
  EXPECT_EQ(w.rank, 3);
  EXPECT_EQ(w.size, 4);
  EXPECT_EQ(w.nodes, 4);
  EXPECT_EQ(w.node_rank, 3);
  EXPECT_EQ(w.master_addr, "job-master-0");
  EXPECT_EQ(w.master_port, 23456);
  EXPECT_FALSE(w.agent_store);
  EXPECT_EQ(w.source, "PyTorchJob");
}

TEST(World, TrainJobRunningLlmftDirectly) {
  // Kubeflow Trainer v2 (a TrainJob on a torch ClusterTrainingRuntime) injects only PET_ variables; with
  // PET_NPROC_PER_NODE=auto and no torchrun, each pod is one process.
  for (const char* nproc : {"auto", "gpu", "cpu", "1"}) {
    const auto w = world({{"PET_NNODES", "2"}, {"PET_NPROC_PER_NODE", nproc}, {"PET_NODE_RANK", "1"},
                          {"PET_MASTER_ADDR", "ft-node-0-0.ft"}, {"PET_MASTER_PORT", "29400"}});
    EXPECT_EQ(w.rank, 1) << nproc;
    EXPECT_EQ(w.size, 2) << nproc;
    EXPECT_EQ(w.local_size, 1) << nproc;
    EXPECT_EQ(w.node_rank, 1) << nproc;
    EXPECT_EQ(w.master_addr, "ft-node-0-0.ft") << nproc;
    EXPECT_EQ(w.master_port, 29400) << nproc;
  }
  // Under torchrun, its LOCAL_WORLD_SIZE is the truth whatever PET_NPROC_PER_NODE said.
  const auto t = world({{"RANK", "9"}, {"WORLD_SIZE", "16"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "8"},
                        {"PET_NPROC_PER_NODE", "auto"}, {"PET_NNODES", "2"}, {"MASTER_ADDR", "ft-node-0-0.ft"},
                        {"MASTER_PORT", "29400"}});
  EXPECT_EQ(t.local_size, 8);
  EXPECT_EQ(t.node_rank, 1);
  EXPECT_THROW(world({{"PET_NNODES", "2"}, {"PET_NPROC_PER_NODE", "many"}, {"PET_NODE_RANK", "0"}}), Error);
}

TEST(World, PetProcessesPerNodeWithoutTorchrunIsRefused) {
  // A PyTorchJob with nprocPerNode 8: the operator's RANK is the pod's index and WORLD_SIZE is 2 x 8. Started
  // without torchrun, llmft would wait for 15 peers that never come; it says how to start it instead.
  const auto refused = [](const std::map<std::string, std::string>& env) { return error_of(env); };
  const std::string pj = refused({{"RANK", "1"}, {"WORLD_SIZE", "16"}, {"PET_NNODES", "2"}, {"PET_NODE_RANK", "1"},
                                  {"PET_NPROC_PER_NODE", "8"}, {"MASTER_ADDR", "ft-master-0"}});
  EXPECT_NE(pj.find("PET_NPROC_PER_NODE=8"), std::string::npos) << pj;
  EXPECT_NE(pj.find("torchrun --no-python llmft"), std::string::npos) << pj;
  // The same for a TrainJob whose runtime asks for 8 processes per node.
  EXPECT_NE(refused({{"PET_NNODES", "2"}, {"PET_NODE_RANK", "0"}, {"PET_NPROC_PER_NODE", "8"}}), "");
  // An elastic PyTorchJob's range of nodes is torchrun's to settle.
  const std::string elastic = refused({{"PET_NNODES", "1:2"}, {"PET_NPROC_PER_NODE", "1"}, {"PET_RDZV_BACKEND", "c10d"}});
  EXPECT_NE(elastic.find("PET_NNODES=1:2 is an elastic range"), std::string::npos) << elastic;
  // Under torchrun, GROUP_WORLD_SIZE is the number of nodes the rendezvous settled on, whatever PET_NNODES asked.
  const auto e = world({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                        {"GROUP_RANK", "1"}, {"GROUP_WORLD_SIZE", "2"}, {"PET_NNODES", "1:2"}});
  EXPECT_EQ(e.nodes, 2);
  EXPECT_EQ(e.node_rank, 1);
  // Under torchrun (LOCAL_RANK and LOCAL_WORLD_SIZE set) the same PET_ variables are fine.
  const auto w = world({{"RANK", "9"}, {"WORLD_SIZE", "16"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "8"},
                        {"PET_NNODES", "2"}, {"PET_NPROC_PER_NODE", "8"}, {"PET_NODE_RANK", "1"}});
  EXPECT_EQ(w.rank, 9);
  EXPECT_EQ(w.node_rank, 1);
}

TEST(World, IndexedJob) {
  comm::DistOptions d;
  d.nnodes = 3;
  d.nproc_per_node = 2;
  const auto w = world({{"JOB_COMPLETION_INDEX", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "train-0.train"}}, d);
  EXPECT_EQ(w.node_rank, 2);
  EXPECT_EQ(w.nodes, 3);
  EXPECT_EQ(w.local_rank, 1);
  EXPECT_EQ(w.rank, 5);
  EXPECT_EQ(w.size, 6);
  EXPECT_EQ(w.master_addr, "train-0.train");
  EXPECT_EQ(w.source, "Indexed Job");
}

TEST(World, ConfigurationOverridesTheEnvironment) {
  comm::DistOptions d;
  d.master_addr = "10.1.1.1";
  d.master_port = 1234;
  const auto w = world({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "elsewhere"}, {"MASTER_PORT", "9"}}, d);
  EXPECT_EQ(w.master_addr, "10.1.1.1");
  EXPECT_EQ(w.master_port, 1234);
}

TEST(World, InconsistentValuesAreErrorsNamingThem) {
  EXPECT_NE(error_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("RANK=2 is not below WORLD_SIZE=2"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "1"}}).find("RANK and WORLD_SIZE"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK=\"x\""), std::string::npos);
  EXPECT_NE(error_of({{"JOB_COMPLETION_INDEX", "1"}}).find("dist.nnodes"), std::string::npos);
  comm::DistOptions d;
  d.nnodes = 2;
  EXPECT_NE(error_of({{"JOB_COMPLETION_INDEX", "2"}}, d).find("JOB_COMPLETION_INDEX"), std::string::npos);
  EXPECT_NE(error_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}).find("not a TCP port"),
            std::string::npos);
}
