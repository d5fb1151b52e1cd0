// Weight and config files: safetensors reading validates everything before use (the public samples in
// ../shared/data, and truncated, oversized and hostile files we craft), writing is readable and 8-byte aligned,
// config.json errors name the key, unsupported architectures and values are rejected by name.
#include <gtest/gtest.h>

#include <cstring>

#include "io/checkpoint.hpp"
#include "io/dtype_convert.hpp"
#include "io/hf_config.hpp"
#include "io/safetensors.hpp"
#include "llmft/error.hpp"
#include "model_support.hpp"
#include "util/file.hpp"

using namespace llmft;

namespace {

std::string with_header(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

// Loading `bytes` as a safetensors file fails with kFormat and a message containing `fragment`.
void expect_bad(const std::string& bytes, const std::string& fragment) {
  std::string path = test::temp_dir("st") + "/bad.safetensors";
  write_file_atomic(path, bytes);
  try {
    io::SafetensorsFile f(path);
    ADD_FAILURE() << "accepted: " << fragment;
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kFormat) << e.what();
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "message must name the file: " << e.what();
  }
}

}  // namespace

TEST(Safetensors, ReadsThePublicSamples) {
  LLMFT_REQUIRE_DATA("safetensors_samples/overall.safetensors");
  io::SafetensorsFile all(test::data_path("safetensors_samples/overall.safetensors"));
  EXPECT_EQ(all.tensors().size(), 9u);
  EXPECT_EQ(all.metadata().at("test"), "a");
  for (const char* one : {"B", "H", "I", "b", "d", "e", "f", "h", "i"}) {
    io::SafetensorsFile f(test::data_path(std::string("safetensors_samples/") + one + ".safetensors"));
    ASSERT_EQ(f.tensors().size(), 1u) << one;
    const auto& t = f.tensors()[0];
    EXPECT_EQ(t.shape, std::vector<int64_t>{6}) << one;
    // The same tensor in overall.safetensors holds the same bytes.
    const auto& o = all.get(one);
    ASSERT_EQ(o.nbytes, t.nbytes);
    EXPECT_EQ(std::memcmp(o.data, t.data, t.nbytes), 0) << one;
  }
  auto f32 = io::to_f32(all.get("f"));
  auto f16 = io::to_f32(all.get("e"));
  EXPECT_EQ(f32.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(f32[i], f16[i]) << "the sample's F16 and F32 hold the same values";
}

TEST(Safetensors, RejectsMalformedFiles) {
  const std::string ok_header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string data(8, '\1');
  // Sanity: the unmodified file loads.
  std::string good = test::temp_dir("st") + "/good.safetensors";
  write_file_atomic(good, with_header(ok_header, data));
  EXPECT_EQ(io::SafetensorsFile(good).get("a").numel(), 2);

  expect_bad("abc", "too short");
  expect_bad(with_header(ok_header, data).substr(0, 20), "runs past the end");  // truncated inside the header
  expect_bad(with_header(ok_header, data).substr(0, 8 + ok_header.size() + 3), "run past the 3 bytes");  // truncated data
  std::string huge(8, '\0');
  huge[7] = 0x10;  // a header length of 2^60
  expect_bad(huge + "{}", "exceeds");
  expect_bad(with_header("[1,2]", ""), "does not start with");
  expect_bad(with_header("{\"a\":", ""), "not valid JSON");
  expect_bad(with_header(R"({"a":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", data), "unknown dtype");
  expect_bad(with_header(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data), "non-negative");
  expect_bad(with_header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data), "needs 12 bytes");
  expect_bad(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", data), "end before");
  expect_bad(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data),
             "overlaps");
  expect_bad(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", data), "unused bytes");
  expect_bad(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", data), "belong to none");
  expect_bad(with_header(R"({"__metadata__":{"k":1},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", data),
             "__metadata__");
  expect_bad(with_header(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", data),
             "too large");
  expect_bad(with_header(R"({"a":{"dtype":"F32","shape":[2]}})", data), "needs dtype, shape and data_offsets");
}

TEST(Safetensors, WritesAlignedFilesThatReadBack) {
  std::vector<float> a = {1, 2, 3}, b = {4, 5, 6, 7, 8, 9};
  std::vector<io::TensorView> views(2);
  views[0] = {"x.weight", io::DType::kF32, {3}, reinterpret_cast<const uint8_t*>(a.data()), 12};
  views[1] = {"y.weight", io::DType::kF32, {2, 3}, reinterpret_cast<const uint8_t*>(b.data()), 24};
  std::string dir = test::temp_dir("stw");
  io::write_safetensors(dir + "/t.safetensors", views, {{"format", "pt"}});
  std::string bytes = read_file(dir + "/t.safetensors");
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(bytes[i]);
  EXPECT_EQ(n % 8, 0u);
  io::SafetensorsFile f(dir + "/t.safetensors");
  EXPECT_EQ(io::to_f32(f.get("y.weight")), b);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  // Sharded writing splits above the limit and indexes every tensor.
  io::write_model_weights(dir + "/sharded", views, 16);
  auto index = nlohmann::json::parse(read_file(dir + "/sharded/model.safetensors.index.json"));
  EXPECT_EQ(index["metadata"]["total_size"], 36);
  EXPECT_EQ(index["weight_map"]["x.weight"], "model-00001-of-00002.safetensors");
  EXPECT_EQ(index["weight_map"]["y.weight"], "model-00002-of-00002.safetensors");
}

TEST(Safetensors, HalfAndBfloatConversionsRoundToNearestEven) {
  EXPECT_EQ(io::f32_to_bf16(1.0f), 0x3F80);
  EXPECT_EQ(io::bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(io::f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(io::f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(io::f32_to_f16(1e6f), 0x7C00);  // overflow -> inf
  EXPECT_EQ(io::f16_to_f32(0x0001), 5.9604645e-08f);  // smallest subnormal
  for (float v : {0.1f, -3.14159f, 1e-3f, 123.456f, 6.1e-5f}) {
    at::Tensor t = at::tensor({v});
    EXPECT_EQ(io::f32_to_bf16(v), t.to(at::kBFloat16).view(at::kShort).item<int16_t>() & 0xFFFF) << v;
    EXPECT_EQ(io::f32_to_f16(v), t.to(at::kHalf).view(at::kShort).item<int16_t>() & 0xFFFF) << v;
  }
}

TEST(HfConfig, ErrorsNameTheKey) {
  auto expect = [](const char* json, Status status, const char* fragment) {
    try {
      io::ModelConfig::from_json(nlohmann::json::parse(json), "m/config.json");
      ADD_FAILURE() << "accepted " << json;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), status) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("m/config.json"), std::string::npos) << e.what();
    }
  };
  const char* base = R"("vocab_size": 10, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2)";
  expect(R"({"architectures": ["GPT2LMHeadModel"], "vocab_size": 10})", Status::kUnsupported, "GPT2LMHeadModel");
  expect(R"({"vocab_size": 10})", Status::kFormat, "architectures");
  expect((std::string(R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 8})")).c_str(), Status::kFormat, "vocab_size");
  expect((std::string(R"({"architectures": ["LlamaForCausalLM"], )") + base + R"(, "hidden_act": "gelu"})").c_str(),
         Status::kUnsupported, "gelu");
  expect((std::string(R"({"architectures": ["LlamaForCausalLM"], )") + base + R"(, "num_key_value_heads": 3})").c_str(),
         Status::kFormat, "num_key_value_heads");
  expect((std::string(R"({"architectures": ["LlamaForCausalLM"], )") + base + R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4}})").c_str(),
         Status::kUnsupported, "yarn");
  expect((std::string(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": "ten", "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2})")).c_str(),
         Status::kFormat, "vocab_size");
  expect((std::string(R"({"architectures": ["Qwen2ForCausalLM"], )") + base + R"(, "use_sliding_window": true})").c_str(),
         Status::kUnsupported, "use_sliding_window");
  auto ok = io::ModelConfig::from_json(nlohmann::json::parse(std::string(R"({"architectures": ["Qwen3ForCausalLM"], )") + base + R"(, "head_dim": 16})"), "x");
  EXPECT_TRUE(ok.qk_norm);
  EXPECT_EQ(ok.q_dim(), 32);
}

TEST(HfConfig, ModelDirectoryErrors) {
  std::string dir = test::temp_dir("mdir");
  EXPECT_THROW(io::ModelDir(dir + "/nope"), Error);
  try {
    io::ModelDir d(dir);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
  write_file_atomic(dir + "/config.json", R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10, "hidden_size": 8,
    "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2})");
  write_file_atomic(dir + "/pytorch_model.bin", "pickle");
  try {
    io::ModelDir d(dir);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("safetensors only"), std::string::npos) << e.what();
  }
}

// Rotary parameters in every form config.json takes, read as transformers 5 reads them (RotaryEmbeddingConfigMixin):
// rope_scaling (transformers 4) when non-empty, else rope_parameters (what transformers 5 writes), flat or per layer
// type; their rope_theta, else the top-level one. (tests/hf runs real transformers-written configs end to end.)
TEST(HfConfig, RotaryParametersAsTransformersReadsThem) {
  auto parse = [](const std::string& extra) {
    return io::ModelConfig::from_json(nlohmann::json::parse(R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 32,
      "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2)" + extra + "}"),
                                      "config.json");
  };
  EXPECT_EQ(parse("").rope_theta, 10000.0);
  EXPECT_EQ(parse(R"(, "rope_theta": 500000.0)").rope_theta, 500000.0);
  // transformers 5: theta inside rope_parameters, the top-level one absent.
  io::ModelConfig v5 = parse(R"(, "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0})");
  EXPECT_EQ(v5.rope_theta, 1000000.0);
  EXPECT_EQ(v5.rope_scaling.type, "");
  io::ModelConfig l3 = parse(R"(, "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
    "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})");
  EXPECT_EQ(l3.rope_theta, 500000.0);
  EXPECT_EQ(l3.rope_scaling.type, "llama3");
  EXPECT_EQ(l3.rope_scaling.factor, 32.0);
  // rope_parameters without its own theta takes the top-level one.
  EXPECT_EQ(parse(R"(, "rope_theta": 250000.0, "rope_parameters": {"rope_type": "default"})").rope_theta, 250000.0);
  // Both forms: rope_scaling wins, as in transformers, and the top-level theta goes with it.
  io::ModelConfig both = parse(R"(, "rope_theta": 500000.0, "rope_scaling": {"rope_type": "linear", "factor": 2.0},
    "rope_parameters": {"rope_type": "default", "rope_theta": 7.0})");
  EXPECT_EQ(both.rope_scaling.type, "linear");
  EXPECT_EQ(both.rope_theta, 500000.0);
  // An empty rope_scaling does not count.
  EXPECT_EQ(parse(R"(, "rope_scaling": {}, "rope_parameters": {"rope_theta": 3.0})").rope_theta, 3.0);
  // Per layer type: one set of parameters for all, or a clear refusal.
  EXPECT_EQ(parse(R"(, "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 9.0}})").rope_theta, 9.0);
  EXPECT_THROW(parse(R"(, "rope_parameters": {"full_attention": {"rope_theta": 9.0}, "sliding_attention": {"rope_theta": 8.0}})"),
               Error);
  try {
    parse(R"(, "partial_rotary_factor": 0.5)");
    ADD_FAILURE() << "accepted a partial rotary factor";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), Status::kUnsupported);
    EXPECT_NE(std::string(e.what()).find("partial_rotary_factor"), std::string::npos) << e.what();
  }
}

// An adapter's tensors decide what it adapts; names outside the decoder's linear modules are refused by name.
TEST(PeftAdapter, TensorNamesDecideTheTargetsAndForeignOnesAreRefused) {
  auto adapter_with = [](const std::vector<std::string>& names, const std::string& targets) {
    std::string dir = test::temp_dir("adapter");
    write_file_atomic(dir + "/adapter_config.json",
                      R"({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": )" + targets + "}");
    std::map<std::string, at::Tensor> t;
    for (const auto& n : names) t[n] = at::zeros({2, 2});
    test::save_tensors(dir + "/adapter_model.safetensors", t);
    return dir;
  };
  const std::string p = "base_model.model.model.layers.0.";
  // PEFT's full module names (what it saves after expanding all-linear); the adapter name "default" is accepted.
  io::PeftAdapter a = io::read_peft_adapter(adapter_with(
      {p + "self_attn.v_proj.lora_A.weight", p + "self_attn.v_proj.lora_B.weight", p + "mlp.down_proj.lora_A.default.weight",
       p + "mlp.down_proj.lora_B.default.weight"},
      R"(["model.layers.0.self_attn.v_proj", "model.layers.0.mlp.down_proj"])"));
  EXPECT_EQ(a.spec.target_modules, (std::vector<std::string>{"v_proj", "down_proj"}));
  for (const auto& [names, why] : std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{p + "mlp.q_proj.lora_A.weight"}, "mlp.q_proj"},
           {{p + "self_attn.q_proj.lora_A.other.weight"}, "lora_A.other"},
           {{"base_model.model.lm_head.lora_A.weight"}, "lm_head"},
           {{p + "self_attn.q_proj.lora_magnitude_vector"}, "lora_magnitude_vector"}}) {
    try {
      io::read_peft_adapter(adapter_with(names, R"(["q_proj"])"));
      ADD_FAILURE() << "accepted " << why;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), Status::kUnsupported) << e.what();
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(io::read_peft_adapter(adapter_with({p + "self_attn.q_proj.lora_A.weight"}, R"(["embed_tokens"])")), Error);
}
