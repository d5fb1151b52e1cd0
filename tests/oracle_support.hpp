// Running the Node oracles (tests/oracle/*.js) from a test: they must be installed (scripts/deps.sh test); a
// missing oracle fails the test, it never skips it.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_support.hpp"

namespace llmft::test {

// Fails the current test (returns false) unless node and the oracle packages are installed.
inline bool oracle_available() {
  std::string mods = path_join(oracle_dir(), "node_modules/tokenizers");
  if (std::system("node --version > /dev/null 2>&1") != 0) {
    ADD_FAILURE() << "node is not installed: run scripts/deps.sh test";
    return false;
  }
  if (!file_exists(mods)) {
    ADD_FAILURE() << "the npm oracles are not installed in " << oracle_dir() << ": run scripts/deps.sh test";
    return false;
  }
  return true;
}

// Runs `node <oracle_dir>/<script> args...`; fails the test on a non-zero exit.
inline bool run_node(const std::string& script, const std::vector<std::string>& args) {
  std::string cmd = "node '" + path_join(oracle_dir(), script) + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  int rc = std::system(cmd.c_str());
  if (rc != 0) ADD_FAILURE() << "oracle command failed (" << rc << "): " << cmd;
  return rc == 0;
}

inline std::vector<nlohmann::json> read_json_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

inline std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

}  // namespace llmft::test
