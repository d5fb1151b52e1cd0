// Uses the installed library's public API only: load a tokenizer.json given on the command line and encode.
#include <cstdio>

#include <llmft/config.hpp>
#include <llmft/error.hpp>
#include <llmft/tokenizer.hpp>

int main(int argc, char** argv) {
  try {
    llmft::Config c = llmft::load_config("", {"train.lr=1e-4"});
    auto tok = llmft::Tokenizer::from_json(
        R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
    auto ids = tok.encode("abab", false);
    std::printf("lr=%g ids=%zu first=%d\n", c.train.lr, ids.size(), ids.empty() ? -1 : ids[0]);
    return ids == std::vector<int32_t>{2, 2} ? 0 : 1;
  } catch (const llmft::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
