// Helpers shared by the tests: where the third-party data lives, and visible skipping when it is absent.
#pragma once

#include <gtest/gtest.h>

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sys/wait.h>
#include <functional>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "llmft/error.hpp"
#include "llmft/tokenizer.hpp"
#include "util/file.hpp"

namespace llmft::test {

#ifndef LLMFT_TEST_DATA_DEFAULT
#define LLMFT_TEST_DATA_DEFAULT "../shared/data"
#endif
#ifndef LLMFT_SOURCE_DIR_DEFAULT
#define LLMFT_SOURCE_DIR_DEFAULT "."
#endif
#ifndef LLMFT_PYTHON_DEFAULT
#define LLMFT_PYTHON_DEFAULT "python3"
#endif
#ifndef LLMFT_BUILD_DIR_DEFAULT
#define LLMFT_BUILD_DIR_DEFAULT "build"
#endif

inline std::string env_or(const char* name, const char* fallback) {
  const char* env = std::getenv(name);
  return env && *env ? std::string(env) : std::string(fallback);
}

// ../shared/data (as configured), or $LLMFT_TEST_DATA.
inline std::string data_dir() { return env_or("LLMFT_TEST_DATA", LLMFT_TEST_DATA_DEFAULT); }

inline std::string data_path(const std::string& rel) { return path_join(data_dir(), rel); }

inline std::string source_dir() { return env_or("LLMFT_SOURCE_DIR", LLMFT_SOURCE_DIR_DEFAULT); }
inline std::string build_dir() { return env_or("LLMFT_BUILD_DIR", LLMFT_BUILD_DIR_DEFAULT); }

// The Python of the project's environment (scripts/deps.sh test): torch, transformers, PEFT, vLLM, jinja2.
inline std::string python() { return env_or("LLMFT_PYTHON", LLMFT_PYTHON_DEFAULT); }

// Runs a reference script of the source tree (`script`, relative to it) with the test venv's Python and `dir` as its
// argument; a failure is a test failure naming the command.
inline bool run_python_script(const std::string& script, const std::string& dir) {
  std::string cmd = "OMP_NUM_THREADS=1 '" + python() + "' '" + path_join(source_dir(), script) + "' '" + dir + "'";
  int rc = std::system(cmd.c_str());
  if (rc != 0) ADD_FAILURE() << "the reference failed (scripts/deps.sh test installs it): " << cmd;
  return rc == 0;
}

// The llmft program of this build, and one run of it: its exit status and its stdout and stderr together.
inline std::string llmft_bin() { return path_join(build_dir(), "bin/llmft"); }
struct ProgramResult {
  int status;
  std::string out;
};
inline ProgramResult run_llmft(const std::string& args) {
  const std::string cmd = llmft_bin() + " " + args + " 2>&1";
  ProgramResult r{0, ""};
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) r.out.append(buf, n);
  r.status = WEXITSTATUS(pclose(p));
  return r;
}

inline std::string oracle_dir() {
  const char* env = std::getenv("LLMFT_ORACLE_DIR");
  return env && *env ? std::string(env) : path_join(source_dir(), "tests/oracle");
}

// A fresh scratch folder for one test, under $TMPDIR.
// The folders temp_dir made, removed when the test program exits: all of them when every test passed, none when one
// failed (they are what a failure report points at) or LLMFT_KEEP_TEST_DIRS is set. Only the process that made
// them removes them (a forked child that exits normally must not).
struct TempDirs {
  std::mutex mu;
  std::vector<std::string> paths;
  const pid_t owner = ::getpid();
  ~TempDirs() {
    const char* keep = std::getenv("LLMFT_KEEP_TEST_DIRS");
    if (::getpid() != owner || (keep && *keep) || ::testing::UnitTest::GetInstance()->Failed()) return;
    // llmft's own remove_tree: std::filesystem resolves to a copy inside libtorch.so that crashes at exit.
    for (const auto& p : paths) {
      try {
        remove_tree(p);
      } catch (...) {
      }
    }
  }
};
inline TempDirs& temp_dirs() {
  static TempDirs dirs;
  return dirs;
}

inline std::string temp_dir(const std::string& name) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = path_join(base && *base ? base : "/tmp", "llmft-" + name + "-XXXXXX");
  if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed for " + templ);
  TempDirs& dirs = temp_dirs();
  std::lock_guard<std::mutex> lk(dirs.mu);
  dirs.paths.push_back(templ);
  return templ;
}

// The folder a reference script (run as `script <folder>`, path relative to the source tree) filled, made once per
// test program; a failing script fails the test that first asked.
inline const std::string& reference_output(const std::string& script, const std::string& name) {
  static std::mutex mu;
  static std::map<std::string, std::string> made;
  std::lock_guard<std::mutex> lk(mu);
  auto it = made.find(script);
  if (it == made.end()) {
    it = made.emplace(script, temp_dir(name)).first;
    run_python_script(script, it->second);
  }
  return it->second;
}

// The message of the llmft::Error a call throws, or "" when it returns.
inline std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// The trained tokens of an encoded example (anything with `ids` and `trained`), decoded one contiguous run at a
// time, runs joined with '|'.
template <typename Encoded>
std::string trained_text(const Tokenizer& tok, const Encoded& e) {
  std::string out;
  std::vector<int32_t> run;
  for (size_t i = 0; i <= e.ids.size(); ++i) {
    if (i < e.ids.size() && e.trained[i]) {
      run.push_back(e.ids[i]);
      continue;
    }
    if (!run.empty()) {
      out += (out.empty() ? "" : "|") + tok.decode(run, false);
      run.clear();
    }
  }
  return out;
}

}  // namespace llmft::test

// Skips the current test, visibly, when a file from ../shared/data is missing.
#define LLMFT_REQUIRE_DATA(rel)                                                                     \
  do {                                                                                              \
    if (!::llmft::file_exists(::llmft::test::data_path(rel)))                                       \
      GTEST_SKIP() << "SKIPPED: test data " << ::llmft::test::data_path(rel) << " is not present"; \
  } while (0)
