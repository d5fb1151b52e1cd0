// Reading dataset files into records. A dataset is a file, a directory (every .json / .jsonl / .json.gz /
// .jsonl.gz in it, in name order) or several of those separated by commas. A file holds a JSON array of records or
// JSON lines (one record per line), optionally gzip-compressed.
//
// Bad input never stops a read: a malformed record, a line that is not an object, an empty file, a gzip stream cut
// short, invalid UTF-8 — each is counted by reason, and the first few are kept with file and line. With strict on,
// the first one is an Error instead. Records before a truncation are kept.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <climits>
#include <string_view>
#include <vector>

namespace llmft::data {

// Where in a dataset something is: file number (in dataset order), then line.
struct Position {
  int64_t file = 0, line = 0;
  bool operator<(const Position& o) const { return file != o.file ? file < o.file : line < o.line; }
};

// Counts of what went wrong, by reason, with the earliest few occurrences (by position) spelled out.
class Problems {
 public:
  static constexpr size_t kExamples = 8;
  void add(const std::string& reason, Position at, const std::string& where, const std::string& detail);
  int64_t total() const;
  const std::map<std::string, int64_t>& by_reason() const { return by_reason_; }
  std::vector<std::string> examples() const;
  // The earliest problem, as "<where>: <detail>" (empty when there is none).
  std::string first() const { return examples_.empty() ? std::string() : examples_.front().second; }
  Position first_position() const { return examples_.empty() ? Position{INT64_MAX, 0} : examples_.front().first; }

 private:
  std::map<std::string, int64_t> by_reason_;
  std::vector<std::pair<Position, std::string>> examples_;  // sorted, at most kExamples
};

// One record as it appears in its file.
struct RawRecord {
  std::string_view json;           // the record's text (valid while the reader's buffer lives)
  const std::string* file = nullptr;
  int64_t line = 0;                // 1-based line where the record starts
  int64_t index = 0;               // 0-based position in the file
  int64_t file_index = 0;          // the file's number in the dataset
};

// The files a dataset path names, sorted; throws Error(kNotFound) naming a missing path.
std::vector<std::string> list_dataset_files(const std::string& spec);

// Reads file number `file_index` into `text` (which the records' views point into: keep it alive) and calls
// on_record for every record, in order. Problems: "malformed JSON" (an array whose structure breaks: the rest of
// the file is skipped), "empty file", "truncated gzip", "unreadable file".
void read_records(const std::string& file, int64_t file_index, std::string& text, Problems& problems,
                  const std::function<void(const RawRecord&)>& on_record);

// The file's bytes, gunzipped when its name ends in .gz; a stream cut short returns what decoded and reports it.
std::string read_maybe_gzip(const std::string& file, int64_t file_index, Problems& problems, bool* cut_short = nullptr);

}  // namespace llmft::data
