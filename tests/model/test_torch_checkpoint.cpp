// torch.save files read without running their pickle (src/io/torch_checkpoint.hpp), judged by PyTorch itself:
// tests/model/torch_checkpoint_reference.py saves state dicts with torch.save (dtypes f32 / bf16 / f16 / f64 / i64 /
// bool, 0-d and empty tensors, views into a shared storage with offsets, nested dicts, a Parameter, Meta's Llama key
// layout, an archive with ZIP64 records) and the same tensors with safetensors.torch; llmft must read exactly those
// bytes, shapes and dtypes. A pickle that would call os.system, deflated entries, a truncated file and a
// non-contiguous view are refused by name, and the hostile pickle never runs.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "io/safetensors.hpp"
#include "io/torch_checkpoint.hpp"
#include "llmft/error.hpp"
#include "model_support.hpp"

using namespace llmft;

namespace {

struct Cases {
  std::string dir;
  bool ok = false;
};

const Cases& cases() {
  static Cases c = [] {
    Cases r;
    r.dir = test::temp_dir("torch-ckpt");
    r.ok = test::run_python_script("tests/model/torch_checkpoint_reference.py", r.dir);
    return r;
  }();
  return c;
}

void expect_same_as_safetensors(const std::string& name) {
  const Cases& c = cases();
  ASSERT_TRUE(c.ok);
  io::TorchCheckpointFile pth(c.dir + "/" + name + ".pth");
  io::SafetensorsFile want(c.dir + "/" + name + ".safetensors");
  ASSERT_EQ(pth.tensors().size(), want.tensors().size()) << name;
  for (const auto& w : want.tensors()) {
    ASSERT_TRUE(pth.contains(w.name)) << name << ": " << w.name;
    const io::TensorView& g = pth.get(w.name);
    EXPECT_EQ(io::dtype_name(g.dtype), std::string(io::dtype_name(w.dtype))) << w.name;
    EXPECT_EQ(g.shape, w.shape) << w.name;
    ASSERT_EQ(g.nbytes, w.nbytes) << w.name;
    EXPECT_TRUE(g.nbytes == 0 || std::memcmp(g.data, w.data, g.nbytes) == 0) << name << ": " << w.name << " differs";
  }
}

std::string error_of(const std::string& name) {
  try {
    io::TorchCheckpointFile f(cases().dir + "/" + name + ".pth");
  } catch (const Error& e) {
    std::printf("[ %s ] %s\n", name.c_str(), e.what());
    return e.what();
  }
  return "";
}

}  // namespace

TEST(TorchCheckpoint, EveryDtypeZeroDimAndEmptyTensorsAsTorchSavedThem) { expect_same_as_safetensors("plain"); }

TEST(TorchCheckpoint, ViewsIntoOneStorageWithOffsets) { expect_same_as_safetensors("views"); }

TEST(TorchCheckpoint, NestedDictsFlattenAndParametersAreTensors) {
  expect_same_as_safetensors("nested");  // the ints and strings beside the tensors are skipped
}

TEST(TorchCheckpoint, MetaLlamaShardLayout) { expect_same_as_safetensors("meta"); }

TEST(TorchCheckpoint, Zip64ArchiveLikeA70BShard) { expect_same_as_safetensors("zip64"); }

TEST(TorchCheckpoint, AHostilePickleIsRefusedAndNeverRuns) {
  ASSERT_TRUE(cases().ok);
  const std::string e = error_of("evil");
  EXPECT_NE(e.find("system"), std::string::npos) << e;
  EXPECT_NE(e.find("refused"), std::string::npos) << e;
  EXPECT_NE(e.find("evil.pth"), std::string::npos) << e;
  EXPECT_FALSE(file_exists(cases().dir + "/pwned"));
}

TEST(TorchCheckpoint, UnsupportedOrDamagedFilesAreNamedErrors) {
  ASSERT_TRUE(cases().ok);
  std::string e = error_of("compressed");
  EXPECT_NE(e.find("compressed"), std::string::npos) << e;
  e = error_of("truncated");
  EXPECT_NE(e.find("truncated.pth"), std::string::npos) << e;
  e = error_of("noncontiguous");
  EXPECT_NE(e.find("not contiguous"), std::string::npos) << e;
  e = error_of("bare");  // a bare tensor, not a dict of them
  EXPECT_NE(e.find("no dict of tensors"), std::string::npos) << e;
  EXPECT_THROW(io::TorchCheckpointFile(cases().dir + "/plain.safetensors"), Error);  // not a zip archive
  // A ZIP64 locator pointing far past the end of a file shorter than a ZIP64 end record (found by the fuzzer; it
  // read out of bounds; also tests/fuzz/seeds/torch_checkpoint/zip64_locator_past_a_short_file.pth).
  const std::string short_zip64 = read_file(test::source_dir() + "/tests/fuzz/seeds/torch_checkpoint/"
                                                                 "zip64_locator_past_a_short_file.pth");
  write_file_atomic(cases().dir + "/short_zip64.pth", short_zip64);
  e = error_of("short_zip64");
  EXPECT_NE(e.find("ZIP64"), std::string::npos) << e;
}
