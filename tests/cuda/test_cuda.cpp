// The CUDA paths (today the NCCL communicator; kernels later) against the CUDA build of libtorch and the CUDA
// toolkit from PyPI: they are compiled whenever libtorch is a CUDA build, so a build without them fails here, not
// on the GPU machine. Where a GPU is visible the communicator runs an all-reduce on it; elsewhere it must refuse
// with an error that says why. Reports SKIPPED, visibly, only for a CPU-only libtorch (no toolkit to build with).
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include "comm/factory.hpp"
#include "dist/dist_support.hpp"
#include "llmft/error.hpp"

using namespace llmft;

TEST(Cuda, TheNcclCommunicatorIsBuiltAgainstACudaLibtorch) {
#if !LLMFT_TORCH_IS_CUDA
  GTEST_SKIP() << "SKIPPED: this libtorch is a CPU build, so the CUDA paths are not compiled";
#else
  EXPECT_TRUE(comm::nccl_available())
      << "libtorch is a CUDA build but the NCCL communicator was not compiled: no CUDA toolkit or nccl.h at configure "
         "time (scripts/deps.sh build installs both from PyPI)";
#endif
}

TEST(Cuda, NcclAllReducesOnAGpuOrSaysThereIsNone) {
  if (!comm::nccl_available()) GTEST_SKIP() << "SKIPPED: the NCCL communicator is not built (CPU-only libtorch)";
  comm::World w;
  w.master_port = test::free_port();
  comm::CommOptions o;
  o.timeout = std::chrono::milliseconds(30000);
  o.rendezvous_timeout = std::chrono::milliseconds(30000);
  if (!at::hasCUDA()) {
    try {
      comm::make_nccl(w, o);
      FAIL() << "the NCCL communicator formed without a GPU";
    } catch (const Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("CUDA"), std::string::npos) << what;
      std::printf("[ cuda ] no GPU here; the NCCL communicator refuses: %s\n", what.c_str());
    }
    return;
  }
  auto c = comm::make_nccl(w, o);
  at::Tensor t = at::arange(8, at::TensorOptions().dtype(at::kFloat).device(at::kCUDA));
  c->all_reduce(t, {})->wait();
  EXPECT_TRUE(at::equal(t.cpu(), at::arange(8, at::kFloat)));
  std::printf("[ cuda ] NCCL all_reduce of a CUDA tensor on a world of one: ok\n");
}
