// The llmft program's subcommands; each returns the process exit status.
#pragma once

#include <string>
#include <vector>

namespace llmft_cli {

int cmd_tokenize(const std::vector<std::string>& args);

}  // namespace llmft_cli
