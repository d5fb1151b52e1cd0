// Helpers shared by the tests: where the third-party data lives, and visible skipping when it is absent.
#pragma once

#include <gtest/gtest.h>

#include <stdlib.h>

#include <cstdlib>
#include <stdexcept>
#include <string>

#include "util/file.hpp"

namespace llmft::test {

// ../shared/data, or $LLMFT_TEST_DATA.
inline std::string data_dir() {
  const char* env = std::getenv("LLMFT_TEST_DATA");
  return env && *env ? std::string(env) : std::string("../shared/data");
}

inline std::string data_path(const std::string& rel) { return path_join(data_dir(), rel); }

inline std::string source_dir() {
  const char* env = std::getenv("LLMFT_SOURCE_DIR");
  return env && *env ? std::string(env) : std::string(".");
}

inline std::string oracle_dir() {
  const char* env = std::getenv("LLMFT_ORACLE_DIR");
  return env && *env ? std::string(env) : path_join(source_dir(), "tests/oracle");
}

// A fresh scratch folder for one test, under $TMPDIR.
inline std::string temp_dir(const std::string& name) {
  const char* base = std::getenv("TMPDIR");
  std::string templ = path_join(base && *base ? base : "/tmp", "llmft-" + name + "-XXXXXX");
  if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed for " + templ);
  return templ;
}

}  // namespace llmft::test

// Skips the current test, visibly, when a file from ../shared/data is missing.
#define LLMFT_REQUIRE_DATA(rel)                                                                     \
  do {                                                                                              \
    if (!::llmft::file_exists(::llmft::test::data_path(rel)))                                       \
      GTEST_SKIP() << "SKIPPED: test data " << ::llmft::test::data_path(rel) << " is not present"; \
  } while (0)
