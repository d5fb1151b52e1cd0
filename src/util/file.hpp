// Files: whole-file reads, read-only memory maps, and writes that never leave a half-written file behind
// (write to a temporary name in the same folder, fsync, rename, fsync the folder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace llmft {

// Reads a whole file; throws Error(kNotFound / kIo) naming the path.
std::string read_file(const std::string& path);

bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
void make_dirs(const std::string& path);  // mkdir -p; throws kIo naming the path

// Writes `data` to `path` atomically: the file either has its old content or all of the new one.
void write_file_atomic(const std::string& path, std::string_view data);

// Streams a large file to a temporary name beside `path`; commit() fsyncs and renames it into place. Destroyed
// without commit() (an error, a full disk), it removes the temporary file: the old `path`, if any, is untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  void write(const void* data, size_t n);  // throws Error(kIo) naming the file (ENOSPC included)
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();
  uint64_t bytes_written() const { return written_; }

 private:
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

// fsync a directory so a rename inside it survives a crash.
void fsync_dir(const std::string& path);

// A read-only private memory map of a whole file. Empty files map to size 0 with data() == nullptr.
class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::string_view view() const { return {reinterpret_cast<const char*>(data_), size_}; }
  const std::string& path() const { return path_; }

 private:
  void reset();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

std::string path_join(std::string_view a, std::string_view b);
std::string path_dirname(std::string_view p);
std::string path_basename(std::string_view p);

}  // namespace llmft
