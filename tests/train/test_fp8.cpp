// FP8 block checkpoints (io/fp8_block.hpp), judged by PyTorch's float8_e4m3fn conversion
// (tests/train/fp8_reference.py): every one of the 256 E4M3FN bytes decodes to torch's float32 value; a weight with
// F32 and with BF16 block scales dequantises to torch's result bit for bit; a Llama stored as Qwen and DeepSeek store
// FP8 checkpoints loads with exactly the logits of the same model with torch's dequantised weights; what llmft does
// not read is refused by name.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "io/checkpoint.hpp"
#include "io/fp8_block.hpp"
#include "llmft/error.hpp"
#include "model/decoder.hpp"
#include "test_support.hpp"
#include "train/setup.hpp"
#include "util/file.hpp"

using namespace llmft;

namespace {

const std::string& reference_dir() { return test::reference_output("tests/train/fp8_reference.py", "fp8"); }

at::Tensor logits_of(const std::string& dir) {
  c10::InferenceMode guard;
  io::ModelDir md(dir);
  model::DecoderOptions o;
  o.mode = model::TrainMode::kNone;
  model::Decoder m(md.config(), o);
  job::WeightSource w(md);
  m.load_base(w.lookup(), dir, w.release());
  return m.forward_logits(model::make_batch({{5, 17, 3, 44, 8, 299, 0, 120}}, {std::vector<uint8_t>(8, 1)}));
}

using test::error_of;

}  // namespace

TEST(Fp8, EveryE4m3ByteDecodesAsTorchDecodesIt) {
  io::SafetensorsFile t(reference_dir() + "/table.safetensors");
  const auto& bytes = t.get("bytes");
  const auto* want = reinterpret_cast<const float*>(t.get("values").data);
  for (int i = 0; i < 256; ++i) {
    const float got = io::e4m3fn_to_f32(bytes.data[i]);
    if (std::isnan(want[i])) EXPECT_TRUE(std::isnan(got)) << "byte " << i;
    else EXPECT_EQ(std::memcmp(&got, &want[i], sizeof got), 0) << "byte " << i << ": " << got << " vs " << want[i];
  }
}

TEST(Fp8, BlockScaledWeightsDequantiseBitForBit) {
  io::SafetensorsFile t(reference_dir() + "/blocks.safetensors");
  io::Fp8BlockConfig c;  // 128 x 128
  for (const auto& [scale, expected] : {std::pair<std::string, std::string>{"w_scale_inv", "expected_f32"},
                                        {"w_bf16scale_scale_inv", "expected_bf16"}}) {
    const std::vector<float> got = io::dequantize_fp8_block(t.get("w"), t.get(scale), c, "blocks");
    const auto& want = t.get(expected);
    ASSERT_EQ(got.size() * sizeof(float), want.nbytes);
    EXPECT_EQ(std::memcmp(got.data(), want.data, want.nbytes), 0) << scale;
  }
  // A scale of the wrong shape is named with the shape it should have.
  io::Fp8BlockConfig small;
  small.block_rows = small.block_cols = 64;
  EXPECT_NE(error_of([&] { io::dequantize_fp8_block(t.get("w"), t.get("w_scale_inv"), small, "blocks"); })
                .find("in blocks of [64, 64] are [5, 4]"),
            std::string::npos);
}

TEST(Fp8, AnFp8BlockCheckpointLoadsWithTheLogitsOfItsDequantisedWeights) {
  const at::Tensor want = logits_of(reference_dir() + "/ref");
  const at::Tensor got = logits_of(reference_dir() + "/fp8");
  EXPECT_TRUE(at::equal(got, want)) << (got - want).abs().max().item<double>();
}

TEST(Fp8, WhatIsNotReadIsRefusedByName) {
  const std::string dir = test::temp_dir("fp8-bad");
  const std::string cfg = read_file(reference_dir() + "/fp8/config.json");
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = cfg;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  const nlohmann::json bnb = nlohmann::json::parse(with("\"quant_method\": \"fp8\"", "\"quant_method\": \"bitsandbytes\""));
  EXPECT_NE(error_of([&] { io::fp8_block_config(bnb, "cfg"); }).find("quant_method \"bitsandbytes\""), std::string::npos);
  const nlohmann::json ct = nlohmann::json::parse(with("\"quant_method\": \"fp8\"", "\"quant_method\": \"compressed-tensors\""));
  EXPECT_NE(error_of([&] { io::fp8_block_config(ct, "cfg"); }).find("\"compressed-tensors\" (llm-compressor's format"),
            std::string::npos);
  const nlohmann::json e5 = nlohmann::json::parse(with("\"fmt\": \"e4m3\"", "\"fmt\": \"e5m2\""));
  EXPECT_NE(error_of([&] { io::fp8_block_config(e5, "cfg"); }).find("fmt \"e5m2\""), std::string::npos);
  // FP8 weights without a quantization_config: the scales' meaning is unknown.
  make_dirs(dir + "/noconfig");
  nlohmann::json plain = nlohmann::json::parse(cfg);
  plain.erase("quantization_config");
  write_file_atomic(dir + "/noconfig/config.json", plain.dump());
  ASSERT_EQ(std::system(("cp '" + reference_dir() + "/fp8/model.safetensors' '" + dir + "/noconfig/'").c_str()), 0);
  EXPECT_NE(error_of([&] { logits_of(dir + "/noconfig"); })
                .find("\"model.layers.0.self_attn.q_proj.weight\" is F8_E4M3 but config.json has no quantization_config"),
            std::string::npos);
}

TEST(Fp8, KeptInFp8TheCheckpointGivesTheLogitsOfItsDequantisedWeights) {
  // model.quantize fp8 on an FP8 checkpoint: the layers' linears stay E4M3 bytes with their block scales, multiplied
  // a tile at a time; lm_head (modules_to_not_convert) stays dense.
  c10::InferenceMode guard;
  const std::string dir = reference_dir() + "/fp8";
  io::ModelDir md(dir);
  job::WeightSource w(md, model::WeightFormat::kFp8Block);
  ASSERT_TRUE(w.fp8().has_value());
  model::DecoderOptions o;
  o.mode = model::TrainMode::kNone;
  o.quantize.format = model::WeightFormat::kFp8Block;
  o.quantize.fp8_block_rows = w.fp8()->block_rows;
  o.quantize.fp8_block_cols = w.fp8()->block_cols;
  o.quantize.keep_dense = true;
  model::Decoder m(md.config(), o);
  m.load_base(w.lookup(), dir, w.release());
  const model::StoredWeight* q = m.units()[1].find_stored("model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->format, model::WeightFormat::kFp8Block);
  EXPECT_LT(q->bytes(), q->numel() * 2);  // one byte a value and a scale a block
  const at::Tensor want = logits_of(reference_dir() + "/ref");
  const at::Tensor got = m.forward_logits(model::make_batch({{5, 17, 3, 44, 8, 299, 0, 120}}, {std::vector<uint8_t>(8, 1)}));
  EXPECT_TRUE(at::allclose(got, want, 1e-5, 1e-5)) << (got - want).abs().max().item<double>();
}
