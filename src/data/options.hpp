// The data layer's own options, resolved from the job's data.* settings by train/ (train/resolve.hpp) once, before
// any work. Choices are enums; their names (format_name, ...) are what reports and fingerprints print.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace llmft::data {

enum class Format { kAlpaca, kDolly, kShareGpt, kMessages, kPromptCompletion, kText };
enum class TemplateKind { kAuto, kAlpaca, kDolly, kChat, kNone };  // auto: by format
enum class AssistantTurns { kAll, kLast };                           // chats: which assistant turns are trained
enum class Overlong { kTruncate, kDrop };                            // examples longer than seq_len

const char* format_name(Format f);
const char* template_kind_name(TemplateKind t);
const char* assistant_turns_name(AssistantTurns t);
const char* overlong_name(Overlong o);
// Throw Error(kInvalidArgument) naming the data.* key and the choices.
Format parse_format(const std::string& s);
TemplateKind parse_template_kind(const std::string& s);

struct DataOptions {
  std::string path;                  // dataset file(s) or folder, several separated by commas; empty: generated
  Format format = Format::kAlpaca;
  std::vector<std::string> columns;  // column renames, LLaMA-Factory style: "prompt=question", ...
  std::vector<std::string> tags;     // role tag renames: "role_tag=from", "user_tag=human", ...
  std::string dataset_info;          // a LLaMA-Factory dataset_info.json to take format/columns/tags from
  std::string dataset;               // the entry of dataset_info to use
  TemplateKind template_kind = TemplateKind::kAuto;
  AssistantTurns assistant_turns = AssistantTurns::kAll;
  Overlong overlong = Overlong::kTruncate;
  bool packing = true;               // pack examples into rows (false: one example per row)
  bool strict = false;               // the first bad record is an error (else counted and reported)
  int64_t threads = 0;               // tokenization threads (0: all cores)
  int64_t seq_len = 256;
  int64_t synthetic_records = 2400;  // size of the generated dataset
  double eval_fraction = 0.05;
  int64_t eval_count = -1;           // > 0 overrides eval_fraction
  bool train_on_inputs = false;
};

}  // namespace llmft::data
