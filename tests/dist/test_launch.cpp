// Launchers: torchrun (the project environment's torch) starting llmft with --no_python, and a job of 2 "nodes" x 2 processes
// in two network namespaces joined by a veth pair, started as a Kubernetes Indexed Job starts pods
// (JOB_COMPLETION_INDEX, dist.nnodes, dist.nproc_per_node) and meeting at node 0's address. Both must train to the
// same losses as one process with the same global batch.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>

#include "dist_support.hpp"

using namespace llmft;

namespace {

std::vector<std::string> job_args(const std::string& out, int world) {
  return {"model.hidden_size=32", "model.intermediate_size=64", "model.num_layers=2", "model.num_heads=2",
          "model.num_kv_heads=1", "data.synthetic_records=120", "data.seq_len=64", "data.eval_count=4",
          "train.max_steps=3", "train.micro_batch_size=1", "train.grad_accum=" + std::to_string(4 / world),
          "train.mode=full", "train.lr=0.001", "generate.num_samples=0", "log.every=1", "dist.timeout_s=120",
          "dist.zero_stage=2", "output.dir=" + out};
}

std::vector<double> losses(const std::string& out) { return test::logged_losses(out); }

void expect_same_losses(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-5 * std::abs(want[i])) << "step " << i + 1;
}

std::string read_or_empty(const std::string& p) { return file_exists(p) ? read_file(p) : ""; }

int sh(const std::string& cmd) { return std::system(cmd.c_str()); }

}  // namespace

TEST(Launch, TorchrunNoPython) {
  // torchrun from the project's Python environment (torch 2.11, the launcher our users run).
  const std::string torchrun = path_join(path_dirname(test::python()), "torchrun");
  if (!file_exists(torchrun)) GTEST_FAIL() << "no " << torchrun << ": run scripts/deps.sh test";
  const std::string dir = test::temp_dir("torchrun");
  ASSERT_EQ(test::run_world(1, job_args(dir + "/one", 1), dir + "/one"), std::vector<int>{0});
  std::vector<std::string> argv = {torchrun, "--nproc_per_node=2", "--master_port=" + std::to_string(test::free_port()),
                                   "--no_python", test::llmft_bin(), "train"};
  for (const auto& a : job_args(dir + "/two", 2)) argv.push_back(a);
  test::Proc p = test::spawn(argv, {}, dir + "/torchrun.log");
  const int code = test::wait_for(p, std::chrono::seconds(600));
  const std::string log = read_or_empty(dir + "/torchrun.log");
  ASSERT_EQ(code, 0) << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
  EXPECT_NE(log.find("rank 1 of 2 (node 0 of 1, local rank 1 of 2; from torchrun)"), std::string::npos) << log;
  expect_same_losses(losses(dir + "/two"), losses(dir + "/one"));
}

// Two network namespaces, one per "node", each with the end of a veth pair: the ranks reach each other only over
// those addresses. Needs root (CAP_NET_ADMIN) and `ip netns`; skipped, visibly, elsewhere.
TEST(Launch, TwoNodesOfTwoProcessesInNetworkNamespaces) {
  if (geteuid() != 0 || sh("command -v ip >/dev/null 2>&1") != 0) GTEST_SKIP() << "needs root and iproute2 (ip netns)";
  const std::string tag = std::to_string(getpid() % 100000);
  const std::string a = "llmft-a-" + tag, b = "llmft-b-" + tag, va = "lva" + tag, vb = "lvb" + tag;
  const int subnet = 64 + static_cast<int>(getpid() % 128);
  const std::string addr_a = "10.231." + std::to_string(subnet) + ".1", addr_b = "10.231." + std::to_string(subnet) + ".2";
  // `ip netns add` turns /run/netns into a mount point of its own; when it was none before, it is unmounted again once
  // empty, so a chroot (../shared/tools/fresh-machine.sh) is left removable.
  const bool netns_was_mounted = sh("mountpoint -q /run/netns 2>/dev/null") == 0;
  auto cleanup = [&] {
    sh("ip netns del " + a + " 2>/dev/null; ip netns del " + b + " 2>/dev/null; ip link del " + va + " 2>/dev/null");
    if (!netns_was_mounted)
      sh("[ -z \"$(ls -A /run/netns 2>/dev/null)\" ] && mountpoint -q /run/netns && umount /run/netns 2>/dev/null; true");
  };
  cleanup();
  const std::string setup = "set -e; ip netns add " + a + "; ip netns add " + b + "; ip link add " + va +
                            " type veth peer name " + vb + "; ip link set " + va + " netns " + a + "; ip link set " +
                            vb + " netns " + b + "; ip -n " + a + " addr add " + addr_a + "/24 dev " + va + "; ip -n " +
                            b + " addr add " + addr_b + "/24 dev " + vb + "; for n in " + a + " " + b +
                            "; do ip -n $n link set lo up; done; ip -n " + a + " link set " + va + " up; ip -n " + b +
                            " link set " + vb + " up";
  if (sh(setup + " 2>/dev/null") != 0) {
    cleanup();
    GTEST_SKIP() << "cannot create network namespaces here (no CAP_SYS_ADMIN / CAP_NET_ADMIN)";
  }
  const std::string dir = test::temp_dir("netns");
  ASSERT_EQ(test::run_world(1, job_args(dir + "/one", 1), dir + "/one"), std::vector<int>{0});
  // Node 1 reaches node 0 only through the veth pair: the address is not local to its namespace.
  EXPECT_NE(sh("ip netns exec " + b + " ip -o addr show | grep -q ' " + addr_a + "/'"), 0);
  const int port = 29000 + static_cast<int>(getpid() % 1000);
  std::vector<test::Proc> procs;
  for (int node = 0; node < 2; ++node) {
    for (int local = 0; local < 2; ++local) {
      std::vector<std::string> argv = {"/usr/sbin/ip", "netns", "exec", node == 0 ? a : b, test::llmft_bin(), "train"};
      for (const auto& x : job_args(dir + "/four", 4)) argv.push_back(x);
      argv.push_back("dist.nnodes=2");
      argv.push_back("dist.nproc_per_node=2");
      procs.push_back(test::spawn(argv,
                                  {{"JOB_COMPLETION_INDEX", std::to_string(node)}, {"LOCAL_RANK", std::to_string(local)},
                                   {"MASTER_ADDR", addr_a}, {"MASTER_PORT", std::to_string(port)}},
                                  dir + "/node" + std::to_string(node) + "-" + std::to_string(local) + ".log"));
    }
  }
  std::vector<int> codes;
  for (auto& p : procs) codes.push_back(test::wait_for(p, std::chrono::seconds(600)));
  cleanup();
  const std::string log0 = read_or_empty(dir + "/node0-0.log"), log3 = read_or_empty(dir + "/node1-1.log");
  ASSERT_EQ(codes, std::vector<int>(4, 0)) << log0 << "\n----\n" << log3;
  EXPECT_NE(log3.find("rank 3 of 4 (node 1 of 2, local rank 1 of 2; from Indexed Job): Gloo rendezvous at " + addr_a),
            std::string::npos)
      << log3;
  expect_same_losses(losses(dir + "/four"), losses(dir + "/one"));
}
