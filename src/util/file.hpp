// Files: whole-file reads, read-only memory maps, and writes that never leave a half-written file behind
// (write to a temporary name in the same folder, fsync, rename, fsync the folder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace llmft {

// Reads a whole file; throws Error(kNotFound / kIo) naming the path.
std::string read_file(const std::string& path);

bool file_exists(const std::string& path);
bool is_directory(const std::string& path);
void make_dirs(const std::string& path);  // mkdir -p; throws kIo naming the path

// kAtomic: a file is written under a temporary name and renamed into place, so `path` has its old content or all of
// the new one. kInPlace: written at `path` itself, for file systems that cannot rename (object-store mounts), where
// the caller commits a set of files another way (a manifest written last); an unfinished file is removed.
enum class WriteMode { kAtomic, kInPlace };

// Writes `data` to `path` (fsynced) as `mode` says.
void write_file_atomic(const std::string& path, std::string_view data, WriteMode mode = WriteMode::kAtomic);

// Streams a large file to a temporary name beside `path`; commit() fsyncs and renames it into place. Destroyed
// without commit() (an error, a full disk), it removes the temporary file: the old `path`, if any, is untouched.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path, WriteMode mode = WriteMode::kAtomic);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;
  void write(const void* data, size_t n);  // throws Error(kIo) naming the file (ENOSPC included)
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();
  uint64_t bytes_written() const { return written_; }

 private:
  std::string path_, tmp_;
  WriteMode mode_;
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
  // The pages holding [p, p + n) (inside this mapping) leave the process's resident set: the kernel's page cache
  // keeps them for other readers, and a later read here faults them back in. A loader calls it once it has copied a
  // tensor out, so a process's memory stays near what it keeps.
  void release(const uint8_t* p, size_t n) const;

 private:
  void reset();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Where a path leads: the canonical form of its deepest existing ancestor (symbolic links, ".", ".." and repeated or
// trailing slashes resolved) with the rest of the path appended, normalised. Two spellings of one place give one
// string.
std::string resolve_path(const std::string& path);
// Whether two paths name the same place: the same file or directory (device and inode, which also sees through bind
// mounts) when both exist, else the same resolved path.
bool same_location(const std::string& a, const std::string& b);
// Whether `path` is `dir` or lies under it (by identity of each ancestor of the resolved path).
bool is_within(const std::string& path, const std::string& dir);
// Throws Error(kIo / kInvalidArgument) naming `what` and the path unless `dir` exists as a directory (created if
// needed, with its parents) and a file can be created in it.
void require_writable_dir(const std::string& dir, const std::string& what);

// Removes a file, or a directory and everything under it (symbolic links are removed, not followed); a path that
// does not exist is no error. Throws Error(kIo) naming what could not be removed.
void remove_tree(const std::string& path);

// The names in a directory (not "." and ".."), sorted; throws Error(kNotFound / kIo) naming it.
std::vector<std::string> list_directory(const std::string& dir);

std::string path_join(std::string_view a, std::string_view b);
std::string path_dirname(std::string_view p);
std::string path_basename(std::string_view p);

}  // namespace llmft
