// NF4 weights (model/stored_weight.hpp), judged by bitsandbytes on its CPU backend (tests/train/nf4_reference.py):
// the levels and the dynamic map are bitsandbytes' values; quantising stores the bytes, absmaxes, nested absmaxes
// and offset bitsandbytes stores, and dequantising gives its values bit for bit (fp32 and bf16, double-quantised and
// not, partial blocks); a model transformers saved in 4 bits loads as stored, equals llmft's own quantisation of the
// unquantised model byte for byte, and gives transformers' logits; products and gradients through a stored weight,
// tile by tile, equal those of its dequantised dense weight; QLoRA's gradients equal LoRA's on the dequantised base.
#include <gtest/gtest.h>

#include <c10/core/InferenceMode.h>

#include <cstring>

#include "io/checkpoint.hpp"
#include "io/dtype_convert.hpp"
#include "llmft/error.hpp"
#include "llmft/train.hpp"
#include "model/decoder.hpp"
#include "model/stored_weight.hpp"
#include "test_support.hpp"
#include "train/preflight.hpp"
#include "train/setup.hpp"
#include "util/file.hpp"

using namespace llmft;

namespace {

const std::string& reference_dir() { return test::reference_output("tests/train/nf4_reference.py", "nf4"); }

at::Tensor tensor_of(const io::TensorView& t) {
  at::ScalarType s = t.dtype == io::DType::kF32 ? at::kFloat : t.dtype == io::DType::kBF16 ? at::kBFloat16 : at::kByte;
  return at::from_blob(const_cast<uint8_t*>(t.data), t.shape, s).clone();
}

bool same_bits(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || a.numel() != b.numel()) return false;
  at::Tensor x = a.contiguous(), y = b.contiguous();
  return std::memcmp(x.data_ptr(), y.data_ptr(), static_cast<size_t>(x.numel()) * x.element_size()) == 0;
}

using test::error_of;

const std::vector<int32_t> kIds = {5, 17, 3, 44, 8, 29, 0, 90, 61, 2};

std::unique_ptr<model::Decoder> load(const std::string& dir, model::WeightFormat format,
                                     model::TrainMode mode = model::TrainMode::kNone) {
  io::ModelDir md(dir);
  model::DecoderOptions o;
  o.mode = mode;
  o.quantize.format = format;
  o.lora.target_modules = {"all-linear"};
  auto m = std::make_unique<model::Decoder>(md.config(), o);
  job::WeightSource w(md, format);
  m->load_base(w.lookup(), dir, w.release());
  return m;
}

at::Tensor logits(model::Decoder& m) {
  c10::InferenceMode guard;
  return m.forward_logits(model::make_batch({kIds}, {std::vector<uint8_t>(kIds.size(), 1)}));
}

}  // namespace

TEST(Nf4, LevelsAndDynamicMapAreBitsandbytes) {
  io::SafetensorsFile maps(reference_dir() + "/maps.safetensors");
  EXPECT_TRUE(same_bits(model::nf4_levels(), tensor_of(maps.get("nf4"))));
  EXPECT_TRUE(same_bits(model::dynamic_map(), tensor_of(maps.get("dynamic"))));
}

TEST(Nf4, QuantisingStoresWhatBitsandbytesStoresAndDequantisesBitForBit) {
  io::SafetensorsFile q(reference_dir() + "/quant.safetensors");
  for (const std::string k : {"f32", "odd", "bf16", "wide"}) {
    const at::Tensor w = tensor_of(q.get(k));
    for (const bool nested : {true, false}) {
      const std::string p = k + (nested ? "" : "_plain");
      SCOPED_TRACE(p);
      const model::StoredWeight s = model::quantize_nf4(p, w, 64, nested);
      EXPECT_TRUE(same_bits(s.data, tensor_of(q.get(p + ".packed"))));
      EXPECT_TRUE(same_bits(s.absmax, tensor_of(q.get(p + ".absmax"))));
      if (nested) {
        EXPECT_TRUE(same_bits(s.nested_absmax, tensor_of(q.get(p + ".nested_absmax"))));
        EXPECT_EQ(s.offset, tensor_of(q.get(p + ".offset")).item<float>());
      }
      const at::Tensor want = tensor_of(q.get(p + ".dequantized"));
      const at::Tensor got = s.dequantize(w.scalar_type());
      EXPECT_TRUE(same_bits(got, want)) << (got.to(at::kFloat) - want.to(at::kFloat)).abs().max().item<double>();
    }
  }
}

TEST(Nf4, TilesAndProductsEqualTheDequantisedWeight) {
  c10::InferenceMode guard;
  at::manual_seed(3);
  const at::Tensor w = at::randn({300, 200}) * 0.1;
  for (const model::StoredWeight& s : {model::quantize_nf4("nf4", w), model::quantize_nf4("odd", w.narrow(1, 0, 37)),
                                       model::quantize_fp8_block("fp8", w, 128, 128),
                                       model::quantize_fp8_block("fp8-odd", w.narrow(1, 0, 37), 16, 8)}) {
    SCOPED_TRACE(s.name);
    const at::Tensor whole = s.dequantize(at::kFloat);
    for (auto [start, n] : {std::pair<int64_t, int64_t>{0, 300}, {3, 7}, {128, 129}, {299, 1}})
      EXPECT_TRUE(at::equal(s.dequantize_rows(start, n, at::kFloat), whole.narrow(0, start, n))) << start << "+" << n;
    // Tiles of 7 rows (and not whole blocks) give the products of the whole dense weight.
    const at::Tensor x = at::randn({5, s.cols()}), dy = at::randn({5, s.rows()});
    // (dx sums the tiles' partial products: fp32 rounding of a different order.)
    EXPECT_TRUE(at::allclose(model::stored_matmul_t(x, s, 7 * s.cols()), at::mm(x, whole.t()), 1e-5, 1e-6));
    EXPECT_TRUE(at::allclose(model::stored_matmul(dy, s, 7 * s.cols()), at::mm(dy, whole), 1e-5, 1e-5));
  }
  // The 4-bit form of a weight is about a quarter of bf16 (with double quantisation: 4.127 bits a value).
  const model::StoredWeight s = model::quantize_nf4("w", at::randn({4096, 1024}));
  EXPECT_NEAR(static_cast<double>(s.bytes()) * 8 / static_cast<double>(s.numel()), 4.127, 0.01);
}

TEST(Nf4, ACheckpointTransformersSavedIn4BitsLoadsAsStoredWithItsLogits) {
  io::SafetensorsFile ref(reference_dir() + "/logits.safetensors");
  const at::Tensor want = tensor_of(ref.get("logits"));
  auto stored = load(reference_dir() + "/bnb", model::WeightFormat::kNf4);
  auto quantised = load(reference_dir() + "/base", model::WeightFormat::kNf4);
  // The same bytes whether bitsandbytes or llmft quantised the float32 model: the 4-bit values and the nested
  // absmaxes exactly. Of the 8-bit codes of the absmaxes, bitsandbytes' compiled CPU kernel may take the other of two
  // neighbouring codes for a value within about 1e-5 of their midpoint, where llmft takes the nearest (as
  // bitsandbytes' Python kernel does): such a code is one step apart, and under 1% of them are.
  int64_t codes = 0, moved = 0;
  for (size_t u = 0; u < stored->units().size(); ++u) {
    const auto& a = stored->units()[u].stored;
    const auto& b = quantised->units()[u].stored;
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      SCOPED_TRACE(a[i].name);
      EXPECT_EQ(a[i].format, model::WeightFormat::kNf4);
      EXPECT_TRUE(same_bits(a[i].data, b[i].data));
      EXPECT_TRUE(same_bits(a[i].nested_absmax, b[i].nested_absmax));
      EXPECT_EQ(a[i].offset, b[i].offset);
      const at::Tensor step = b[i].absmax.to(at::kInt) - a[i].absmax.to(at::kInt);
      EXPECT_LE(step.abs().max().item<int>(), 1);
      codes += step.numel();
      moved += step.ne(0).sum().item<int64_t>();
    }
  }
  EXPECT_LE(moved * 100, codes) << moved << " of " << codes << " absmax codes differ";
  // The checkpoint's own bytes give transformers' logits to fp32 rounding; llmft's quantisation (a few absmax codes
  // apart; one step of the coarse top of the dynamic map moves a block's scale by up to 1.5%) to 5e-3.
  const at::Tensor got = logits(*stored);
  EXPECT_TRUE(at::allclose(got, want, 1e-5, 1e-5)) << (got - want).abs().max().item<double>();
  const at::Tensor own = logits(*quantised);
  EXPECT_TRUE(at::allclose(own, want, 5e-3, 5e-3)) << (own - want).abs().max().item<double>();
  // Without model.quantize the 4-bit checkpoint is dequantised into ordinary weights: the same logits.
  auto dense = load(reference_dir() + "/bnb", model::WeightFormat::kDense);
  EXPECT_TRUE(dense->units()[1].stored.empty());
  EXPECT_TRUE(at::allclose(logits(*dense), want, 1e-5, 1e-5));
}

TEST(Nf4, QloraGradientsEqualLoraOnTheDequantisedBase) {
  // The dense twin: the 4-bit model's weights dequantised into a plain directory.
  auto q = load(reference_dir() + "/base", model::WeightFormat::kNf4, model::TrainMode::kLora);
  const std::string dir = test::temp_dir("nf4-twin");
  {
    std::vector<at::Tensor> keep;
    std::vector<io::TensorView> views;
    q->for_each_parameter([&](const model::ParamSlot& s, const at::Tensor& t, bool trainable) {
      if (trainable) return;
      keep.push_back(t.to(at::kFloat).contiguous());
      io::TensorView v;
      v.name = s.name;
      v.dtype = io::DType::kF32;
      v.shape = s.shape;
      v.data = static_cast<const uint8_t*>(keep.back().data_ptr());
      v.nbytes = static_cast<size_t>(keep.back().numel()) * 4;
      views.push_back(v);
    });
    io::write_safetensors(dir + "/model.safetensors", views);
    write_file_atomic(dir + "/config.json", read_file(reference_dir() + "/base/config.json"));
  }
  auto d = load(dir, model::WeightFormat::kDense, model::TrainMode::kLora);
  for (auto* m : {q.get(), d.get()}) {
    m->init_lora(7);
    for (auto& u : m->units())  // B away from zero, so every gradient flows
      if (!u.trainable.empty()) u.trainable.flat.normal_(0, 0.05, at::make_generator<at::CPUGeneratorImpl>(11));
    m->refresh_compute();
  }
  std::vector<std::vector<uint8_t>> mask = {std::vector<uint8_t>(kIds.size(), 1)};
  const double lq = q->forward_backward(model::make_batch({kIds}, mask));
  const double ld = d->forward_backward(model::make_batch({kIds}, mask));
  EXPECT_NEAR(lq, ld, 1e-4 * std::abs(ld));
  for (size_t u = 0; u < q->units().size(); ++u) {
    if (q->units()[u].trainable.empty()) continue;
    const at::Tensor& a = q->units()[u].grad;
    const at::Tensor& b = d->units()[u].grad;
    EXPECT_TRUE(at::allclose(a, b, 1e-4, 1e-5)) << q->units()[u].name << " " << (a - b).abs().max().item<double>();
  }
  // 7 linears a layer are stored, none in the flat buffers.
  EXPECT_EQ(q->units()[1].stored.size(), 7u);
  EXPECT_EQ(q->units()[1].frozen.find("model.layers.0.self_attn.q_proj.weight"), -1);
  EXPECT_EQ(q->all_parameters(), d->all_parameters());
}

TEST(Nf4, WhatIsNotReadIsRefusedByName) {
  EXPECT_NE(error_of([&] { load(reference_dir() + "/base", model::WeightFormat::kNf4, model::TrainMode::kFull); })
                .find("is frozen: train it with LoRA"),
            std::string::npos);
  const std::string dir = test::temp_dir("nf4-bad");
  nlohmann::json cfg = nlohmann::json::parse(read_file(reference_dir() + "/bnb/config.json"));
  cfg["quantization_config"]["load_in_4bit"] = false;
  cfg["quantization_config"]["load_in_8bit"] = true;
  write_file_atomic(dir + "/config.json", cfg.dump());
  ASSERT_EQ(std::system(("cp '" + reference_dir() + "/bnb/model.safetensors' '" + dir + "/'").c_str()), 0);
  EXPECT_NE(error_of([&] { load(dir, model::WeightFormat::kNf4); }).find("bitsandbytes 8-bit (LLM.int8)"), std::string::npos);
  // A NaN in a weight that is quantised as it loads is named, as in any other weight.
  const std::string nan_dir = test::temp_dir("nf4-nan");
  {
    io::SafetensorsFile base(reference_dir() + "/base/model.safetensors");
    std::vector<io::TensorView> views = base.tensors();
    std::vector<float> poisoned;
    for (auto& v : views)
      if (v.name == "model.layers.1.mlp.up_proj.weight") {
        poisoned.assign(reinterpret_cast<const float*>(v.data), reinterpret_cast<const float*>(v.data) + v.numel());
        poisoned[77] = std::nanf("");
        v.data = reinterpret_cast<const uint8_t*>(poisoned.data());
      }
    io::write_safetensors(nan_dir + "/model.safetensors", views);
  }
  write_file_atomic(nan_dir + "/config.json", read_file(reference_dir() + "/base/config.json"));
  EXPECT_NE(error_of([&] { load(nan_dir, model::WeightFormat::kNf4); })
                .find("tensor \"model.layers.1.mlp.up_proj.weight\" holds values that are not finite"),
            std::string::npos);
}

namespace {
// Reads one tensor of a checkpoint directory as fp32.
at::Tensor weight_of(const std::string& dir, const std::string& name) {
  io::ModelDir md(dir);
  const io::TensorView* t = md.find(name);
  EXPECT_NE(t, nullptr) << name << " in " << dir;
  return t ? at::tensor(io::to_f32(*t)).view(t->shape) : at::Tensor();
}
}  // namespace

TEST(Nf4, MergingIntoAQuantisedBaseIsAnExplicitChoiceWithItsDrift) {
  const std::string base = reference_dir() + "/base", bnb = reference_dir() + "/bnb";
  const std::string dir = test::temp_dir("nf4-merge");
  // An adapter on every linear of the QLoRA model, B away from zero.
  auto q = load(base, model::WeightFormat::kNf4, model::TrainMode::kLora);
  q->init_lora(3);
  for (auto& u : q->units())
    if (!u.trainable.empty()) u.trainable.flat.normal_(0, 0.05, at::make_generator<at::CPUGeneratorImpl>(5));
  q->refresh_compute();
  {
    std::vector<io::TensorView> views;
    std::vector<at::Tensor> keep;
    q->for_each_parameter([&](const model::ParamSlot& s, const at::Tensor& t, bool trainable) {
      if (!trainable) return;
      keep.push_back(t.contiguous());
      views.push_back({s.name, io::DType::kF32, s.shape, static_cast<const uint8_t*>(keep.back().data_ptr()),
                       static_cast<size_t>(keep.back().numel()) * 4});
    });
    io::write_peft_adapter(dir + "/adapter", q->options().lora, base, views);
  }
  auto run = [&](const std::string& model, const std::string& quantize, const std::string& into, const std::string& out,
                 const std::string& original = "") {
    std::vector<std::string> kv = {"model.path=" + model, "model.quantize=" + quantize, "export.adapter=" + dir + "/adapter",
                                   "export.out=" + dir + "/" + out, "export.merge_into=" + into,
                                   "output.dir=" + dir + "/run"};
    if (!original.empty()) kv.push_back("export.original=" + original);
    return export_merged(load_config("", kv));
  };
  EXPECT_NE(error_of([&] { run(base, "nf4", "auto", "x"); }).find("merging is an explicit choice"), std::string::npos);
  EXPECT_NE(error_of([&] { run(base, "none", "dequantized", "x"); }).find("nothing to dequantise"), std::string::npos);

  // What the model computed with: the dequantised NF4 weight, and the adapter's s B A.
  const std::string name = "model.layers.1.mlp.down_proj.weight";
  const model::StoredWeight* stored = q->units()[2].find_stored(name);
  ASSERT_NE(stored, nullptr);
  const at::Tensor deq = stored->dequantize(at::kFloat);
  const at::Tensor a = q->units()[2].trainable.view("model.layers.1.mlp.down_proj.lora_A.weight");
  const at::Tensor b = q->units()[2].trainable.view("model.layers.1.mlp.down_proj.lora_B.weight");
  const at::Tensor update = at::mm(b, a) * q->options().lora.scaling();
  const at::Tensor full = weight_of(base, name);

  // Into the dequantised weights: deq + s B A in bf16, a plain checkpoint (no quantization_config) whose logits are
  // the QLoRA model's to bf16 rounding.
  const std::string d = run(base, "nf4", "dequantized", "deq");
  EXPECT_TRUE(at::allclose(weight_of(d, name), (deq + update).to(at::kBFloat16).to(at::kFloat), 0, 1e-6));
  const nlohmann::json dcfg = nlohmann::json::parse(read_file(d + "/config.json"));
  EXPECT_FALSE(dcfg.contains("quantization_config"));
  auto merged = load(d, model::WeightFormat::kDense);
  const at::Tensor want = logits(*q), got = logits(*merged);
  EXPECT_LE((got - want).abs().max().item<double>() / want.abs().max().item<double>(), 2e-2);
  // Into the full-precision weights: W + s B A, as stored (fp32 here).
  const std::string o = run(base, "nf4", "original", "orig");
  EXPECT_TRUE(at::allclose(weight_of(o, name), full + update, 1e-6, 1e-6));
  // Both report the drift between the two: ||W - deq|| / ||W|| over the quantised linears, computed here again.
  double dd = 0, nn = 0;
  for (size_t u = 1; u + 1 < q->units().size(); ++u)
    for (const model::StoredWeight& w : q->units()[u].stored) {
      const at::Tensor fw = weight_of(base, w.name).to(at::kDouble), dw = w.dequantize(at::kFloat).to(at::kDouble);
      dd += (fw - dw).pow(2).sum().item<double>();
      nn += fw.pow(2).sum().item<double>();
    }
  for (const std::string& out : {d, o}) {
    const nlohmann::json r = nlohmann::json::parse(read_file(out + "/merge_report.json"));
    EXPECT_NEAR(r["drift"]["relative"].get<double>(), std::sqrt(dd / nn), 1e-6) << out;
    EXPECT_EQ(r["drift"]["tensors"].get<int64_t>(), 14);
    EXPECT_GT(r["drift"]["adapter_update_relative"].get<double>(), 0.0);
  }
  std::printf("[ merge ] NF4 drift %.3f%% of the weights (the adapter's update: %.3f%%)\n", 100 * std::sqrt(dd / nn),
              100 * nlohmann::json::parse(read_file(d + "/merge_report.json"))["drift"]["adapter_update_relative"].get<double>());

  // A checkpoint saved in 4 bits: the original needs its full-precision checkpoint; into the dequantised weights it
  // needs nothing more (and reports no drift without one).
  EXPECT_NE(error_of([&] { run(bnb, "none", "auto", "x"); }).find("is a quantised checkpoint"), std::string::npos);
  EXPECT_NE(error_of([&] { run(bnb, "none", "original", "x"); }).find("give its full-precision checkpoint as export.original"),
            std::string::npos);
  const std::string bd = run(bnb, "none", "dequantized", "bnb-deq");
  EXPECT_TRUE(nlohmann::json::parse(read_file(bd + "/merge_report.json"))["drift"].is_null());
  auto from_bnb = load(bnb, model::WeightFormat::kNf4);
  const at::Tensor bnb_deq = from_bnb->units()[2].find_stored(name)->dequantize(at::kFloat);
  EXPECT_TRUE(at::allclose(weight_of(bd, name), (bnb_deq + update).to(at::kBFloat16).to(at::kFloat), 0, 1e-6));
  const std::string bo = run(bnb, "none", "original", "bnb-orig", base);
  EXPECT_TRUE(at::allclose(weight_of(bo, name), full + update, 1e-6, 1e-6));
  EXPECT_GT(nlohmann::json::parse(read_file(bo + "/merge_report.json"))["drift"]["relative"].get<double>(), 0.0);

  // llmft records model.quantize beside the adapters it saves (llmft_adapter.json): an export that forgets it is
  // still refused, and one that says another format is told which.
  job::write_adapter_note(dir + "/adapter", load_config("", {"model.quantize=nf4"}));
  EXPECT_NE(error_of([&] { run(base, "none", "auto", "y"); }).find("merging is an explicit choice"), std::string::npos);
  EXPECT_NE(error_of([&] { run(base, "fp8", "dequantized", "y"); }).find("trained with model.quantize nf4"),
            std::string::npos);
}
