// The Gloo communicator, with the ranks of a world as threads of this process (each with its own TCPStore client
// and process group): every collective against its definition, at sizes that do and do not split evenly; a rank
// that stalls makes the others time out with the operation, its sequence number and the stalled rank named.
#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "comm/factory.hpp"
#include "dist_support.hpp"
#include "llmft/error.hpp"

using namespace llmft;


TEST(Gloo, CollectivesMatchTheirDefinitions) {
  for (int n : {2, 3}) {
    const auto errors = test::on_world(n, 60, [n](int r, comm::Communicator& c) {
      c10::InferenceMode guard;  // as the trainer runs them
      EXPECT_EQ(c.rank(), r);
      EXPECT_EQ(c.size(), n);
      // all_reduce: sum, max, min of rank-dependent values.
      at::Tensor x = at::arange(10, at::kFloat) * (r + 1);
      c.all_reduce(x)->wait();
      EXPECT_TRUE(at::equal(x, at::arange(10, at::kFloat) * (n * (n + 1) / 2)));
      at::Tensor m = at::full({3}, static_cast<double>(r), at::kDouble);
      comm::AllReduceOptions mx;
      mx.op = comm::ReduceOp::kMax;
      c.all_reduce(m, mx)->wait();
      EXPECT_EQ(m[0].item<double>(), n - 1);
      // reduce_scatter: rank j gets the sum of chunk j.
      const int64_t chunk = 7;
      at::Tensor in = at::arange(chunk * n, at::kFloat) + 100 * r;
      at::Tensor out = at::empty({chunk}, at::kFloat);
      c.reduce_scatter(out, in)->wait();
      at::Tensor want = at::arange(chunk * r, chunk * (r + 1), at::kFloat) * n + 100.0 * (n * (n - 1) / 2);
      EXPECT_TRUE(at::allclose(out, want)) << out << want;
      // all_gather: every rank's slice in rank order.
      at::Tensor mine = at::full({5}, static_cast<double>(r), at::kFloat);
      at::Tensor all = at::empty({5 * n}, at::kFloat);
      c.all_gather(all, mine)->wait();
      for (int j = 0; j < n; ++j) EXPECT_EQ(all[j * 5 + 4].item<float>(), static_cast<float>(j));
      // broadcast from the last rank.
      at::Tensor b = at::full({4}, static_cast<double>(r), at::kLong);
      comm::BroadcastOptions bo;
      bo.root = n - 1;
      c.broadcast(b, bo)->wait();
      EXPECT_EQ(b[3].item<int64_t>(), n - 1);
      // Asynchronous: several in flight, waited in order.
      std::vector<at::Tensor> ts;
      std::vector<std::shared_ptr<comm::Work>> works;
      for (int k = 0; k < 4; ++k) {
        ts.push_back(at::full({1000}, static_cast<double>(k), at::kFloat));
        works.push_back(c.all_reduce(ts.back()));
      }
      for (int k = 0; k < 4; ++k) {
        works[static_cast<size_t>(k)]->wait();
        EXPECT_EQ(ts[static_cast<size_t>(k)][999].item<float>(), static_cast<float>(k * n));
      }
      c.barrier();
    });
    for (int r = 0; r < n; ++r) EXPECT_EQ(errors[static_cast<size_t>(r)], "") << "rank " << r;
  }
}

TEST(Gloo, AStalledRankIsNamedWhenTheOthersTimeOut) {
  const auto errors = test::on_world(3, 3, [](int r, comm::Communicator& c) {
    at::Tensor x = at::ones({16}, at::kFloat);
    c.all_reduce(x)->wait();  // operation #1: everyone
    if (r == 2) {
      std::this_thread::sleep_for(std::chrono::seconds(9));  // stalls: never joins operation #2 in time
      return;
    }
    c.all_reduce(x)->wait();  // operation #2
  });
  for (int r : {0, 1}) {
    const std::string& e = errors[static_cast<size_t>(r)];
    EXPECT_NE(e.find("rank " + std::to_string(r) + ": all_reduce #2"), std::string::npos) << e;
    EXPECT_NE(e.find("timed out"), std::string::npos) << e;
    EXPECT_NE(e.find("missing rank(s): 2 (alive but stalled at operation #1)"), std::string::npos) << e;
  }
}

TEST(Gloo, AnUnreachableMasterIsAClearErrorAfterTheRendezvousTimeout) {
  comm::DistOptions d;
  d.backend = comm::Backend::kGloo;
  d.rendezvous_timeout = std::chrono::seconds(2);
  comm::World w;
  w.rank = 1;
  w.size = 2;
  w.master_port = test::free_port();  // nobody serves it
  const auto t0 = std::chrono::steady_clock::now();
  try {
    comm::make_communicator(d, w);
    ADD_FAILURE() << "connected to nothing";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kTimeout);
    EXPECT_NE(std::string(e.what()).find("rendezvous store at 127.0.0.1:" + std::to_string(w.master_port)),
              std::string::npos)
        << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 15);
}

// The backend follows the device: Gloo reduces CPU tensors and NCCL GPU ones, so a mismatch is refused before any
// rendezvous, naming both settings.
TEST(Gloo, ABackendThatDoesNotFitTheDeviceIsRefusedByName) {
  comm::World w;
  w.rank = 0;
  w.size = 2;
  w.master_port = test::free_port();
  for (auto [backend, gpu, want] : {std::tuple{comm::Backend::kGloo, 0, "dist.backend=gloo with model.device cuda:0"},
                                    std::tuple{comm::Backend::kNccl, -1, "dist.backend=nccl with model.device cpu"}}) {
    comm::DistOptions d;
    d.backend = backend;
    try {
      comm::make_communicator(d, w, gpu);
      ADD_FAILURE() << "formed " << want;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kInvalidArgument);
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
  }
}
