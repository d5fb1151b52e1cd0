#include "data/records.hpp"

#include <dirent.h>
#include <zlib.h>

#include <algorithm>
#include <sstream>

#include "util/check.hpp"
#include "util/file.hpp"

namespace llmft::data {

void Problems::add(const std::string& reason, Position at, const std::string& where, const std::string& detail) {
  ++by_reason_[reason];
  if (examples_.size() == kExamples && !(at < examples_.back().first)) return;
  auto it = std::upper_bound(examples_.begin(), examples_.end(), at,
                             [](const Position& p, const auto& e) { return p < e.first; });
  examples_.insert(it, {at, where + ": " + detail});
  if (examples_.size() > kExamples) examples_.pop_back();
}

std::vector<std::string> Problems::examples() const {
  std::vector<std::string> out;
  for (const auto& e : examples_) out.push_back(e.second);
  return out;
}

int64_t Problems::total() const {
  int64_t n = 0;
  for (const auto& [_, c] : by_reason_) n += c;
  return n;
}


namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
bool is_dataset_file(const std::string& name) {
  for (const char* ext : {".json", ".jsonl", ".json.gz", ".jsonl.gz"})
    if (ends_with(name, ext)) return true;
  return false;
}
}  // namespace

std::vector<std::string> list_dataset_files(const std::string& spec) {
  std::vector<std::string> out;
  std::stringstream ss(spec);
  for (std::string part; std::getline(ss, part, ',');) {
    if (part.empty()) continue;
    LLMFT_CHECK(file_exists(part), Status::kNotFound, "dataset path {} does not exist", part);
    if (!is_directory(part)) {
      out.push_back(part);
      continue;
    }
    std::vector<std::string> in_dir;
    DIR* d = opendir(part.c_str());
    LLMFT_CHECK(d != nullptr, Status::kIo, "cannot list directory {}", part);
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name[0] != '.' && is_dataset_file(name)) in_dir.push_back(path_join(part, name));
    }
    closedir(d);
    std::sort(in_dir.begin(), in_dir.end());
    LLMFT_CHECK(!in_dir.empty(), Status::kNotFound, "directory {} holds no .json, .jsonl or .gz dataset files", part);
    out.insert(out.end(), in_dir.begin(), in_dir.end());
  }
  LLMFT_CHECK(!out.empty(), Status::kInvalidArgument, "data.path names no dataset file");
  return out;
}

std::string read_maybe_gzip(const std::string& file, int64_t file_index, Problems& problems, bool* cut_short) {
  if (cut_short) *cut_short = false;
  if (!ends_with(file, ".gz")) return read_file(file);
  gzFile gz = gzopen(file.c_str(), "rb");
  LLMFT_CHECK(gz != nullptr, Status::kIo, "cannot open {}", file);
  std::string out;
  char buf[1 << 16];
  for (;;) {
    int n = gzread(gz, buf, sizeof buf);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
    if (n < static_cast<int>(sizeof buf)) {
      int err = 0;
      const char* msg = gzerror(gz, &err);
      if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) {
        // zlib tells a stream cut short ("unexpected end of file") from one that is not deflate data at all.
        const bool truncated = msg && std::string(msg).find("unexpected end") != std::string::npos;
        problems.add(truncated ? "truncated gzip" : "corrupt gzip", {file_index, INT64_MAX}, file,
                     fmt::format("the gzip stream is {} after {} decompressed bytes ({}); the records before it are "
                                 "kept", truncated ? "cut short (or corrupt)" : "corrupt", out.size(),
                                 msg ? msg : "read error"));
        if (cut_short) *cut_short = true;
      }
      break;
    }
  }
  gzclose(gz);
  return out;
}

namespace {

// End of the JSON value that starts at s[i] (an object, array, string or scalar): the index after it, or npos when
// the text ends first. Counts newlines it passes into *lines.
size_t value_end(std::string_view s, size_t i, int64_t* lines) {
  int depth = 0;
  bool in_string = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\n') ++*lines;
    if (in_string) {
      if (c == '\\') {
        ++i;
        if (i < s.size() && s[i] == '\n') ++*lines;
      } else if (c == '"') {
        in_string = false;
        if (depth == 0) return i + 1;
      }
      continue;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '{': case '[': ++depth; break;
      case '}': case ']':
        if (depth == 0) return i;  // the end of the enclosing array: a scalar value ended here
        if (--depth == 0) return i + 1;
        break;
      case ',':
        if (depth == 0) return i;
        break;
      default: break;
    }
  }
  return depth == 0 && !in_string ? s.size() : std::string::npos;
}

size_t skip_space(std::string_view s, size_t i, int64_t* lines) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) {
    if (s[i] == '\n') ++*lines;
    ++i;
  }
  return i;
}

}  // namespace

void read_records(const std::string& file, int64_t fi, std::string& text, Problems& problems,
                  const std::function<void(const RawRecord&)>& on_record) {
  bool cut_short = false;  // a gzip stream that breaks off: its partial last record is part of that one problem
  try {
    text = read_maybe_gzip(file, fi, problems, &cut_short);
  } catch (const Error& e) {
    problems.add("unreadable file", {fi, 0}, file, e.what());
    return;
  }
  std::string_view s(text);
  int64_t line = 1;
  size_t i = skip_space(s, 0, &line);
  if (i == s.size()) {
    problems.add("empty file", {fi, 0}, file, "the file holds no records");
    return;
  }
  int64_t index = 0;
  if (s[i] == '[') {  // a JSON array of records
    i = skip_space(s, i + 1, &line);
    while (i < s.size() && s[i] != ']') {
      int64_t start_line = line;
      size_t end = value_end(s, i, &line);
      if (end == std::string::npos || end == i) {
        if (end == std::string::npos && cut_short) return;
        problems.add("malformed JSON", {fi, start_line}, fmt::format("{}:{}", file, start_line),
                     "the array's structure breaks here; the rest of the file is skipped");
        return;
      }
      on_record({s.substr(i, end - i), &file, start_line, index++, fi});
      i = skip_space(s, end, &line);
      if (i < s.size() && s[i] == ',') i = skip_space(s, i + 1, &line);
      else if (i < s.size() && s[i] != ']') {
        problems.add("malformed JSON", {fi, line}, fmt::format("{}:{}", file, line), "expected ',' or ']' between records");
        return;
      }
    }
    if (i >= s.size() && !cut_short)
      problems.add("malformed JSON", {fi, line}, fmt::format("{}:{}", file, line), "the array is not closed (truncated?)");
    return;
  }
  // JSON lines.
  for (size_t pos = 0; pos < s.size();) {
    size_t nl = s.find('\n', pos);
    std::string_view l = s.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    if (nl == std::string_view::npos && cut_short) break;
    if (l.find_first_not_of(" \t\r") != std::string_view::npos) on_record({l, &file, line, index++, fi});
    if (nl == std::string_view::npos) break;
    pos = nl + 1;
    ++line;
  }
}

}  // namespace llmft::data
