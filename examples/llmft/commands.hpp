// The llmft program's subcommands; each returns the process exit status.
#pragma once

#include <string>
#include <vector>

namespace llmft_cli {

int cmd_tokenize(const std::vector<std::string>& args);
int cmd_train(const std::vector<std::string>& args);
int cmd_generate(const std::vector<std::string>& args);
int cmd_export(const std::vector<std::string>& args);
int cmd_config(const std::vector<std::string>& args);
int cmd_prep(const std::vector<std::string>& args);
int cmd_world(const std::vector<std::string>& args);
int cmd_plan(const std::vector<std::string>& args);
int cmd_convert(const std::vector<std::string>& args);

// The tokenizer of the embedded default (the library looks up none): $LLMFT_TOKENIZER, else the npm Llama 3.1 one.
std::string default_tokenizer();

}  // namespace llmft_cli
