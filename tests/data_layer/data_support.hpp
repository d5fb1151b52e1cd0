// Helpers for the data-layer tests: a tiny byte-level tokenizer (no files needed), writing small dataset files,
// gzip streams, and a default data section.
#pragma once

#include <zlib.h>

#include <string>

#include <nlohmann/json.hpp>

#include "data/options.hpp"
#include "llmft/tokenizer.hpp"
#include "util/file.hpp"

namespace llmft::test {

// Byte-level BPE with no merges (one token per byte, GPT-2's byte alphabet) and an EOS: enough to template and
// tokenize records.
inline Tokenizer tiny_tokenizer() {
  nlohmann::json j = nlohmann::json::parse(R"({"added_tokens": [{"id": 256, "content": "<eos>", "special": true}],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
    "decoder": {"type": "ByteLevel"}, "model": {"type": "BPE", "vocab": {}, "merges": []}})");
  uint32_t next = 256;  // bytes that are not printable map to U+0100 onwards, in order
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    const uint32_t cp = printable ? static_cast<uint32_t>(b) : next++;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    j["model"]["vocab"][s] = b;
  }
  return Tokenizer::from_json(j.dump(), R"({"eos_token": "<eos>"})", "tiny/tokenizer.json");
}

inline std::string write(const std::string& dir, const std::string& name, const std::string& content) {
  std::string p = dir + "/" + name;
  write_file_atomic(p, content);
  return p;
}

// A real gzip stream (not zlib's own framing): deflateInit2 with 16 + MAX_WBITS.
inline std::string gzip(const std::string& s) {
  std::string out(compressBound(static_cast<uLong>(s.size())) + 64, '\0');
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(s.data()));
  z.avail_in = static_cast<uInt>(s.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

inline llmft::data::DataOptions section(const std::string& path, const std::string& format = "alpaca") {
  data::DataOptions d;
  d.path = path;
  d.format = data::parse_format(format);
  d.eval_count = 1;
  d.seq_len = 4096;
  return d;
}

}  // namespace llmft::test
