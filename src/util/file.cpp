#include "util/file.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "util/check.hpp"

namespace llmft {

namespace {
std::string errno_text() { return std::strerror(errno); }

Status errno_status() { return errno == ENOENT ? Status::kNotFound : Status::kIo; }

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};
}  // namespace

std::string read_file(const std::string& path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  LLMFT_CHECK(f.fd >= 0, errno_status(), "cannot open {}: {}", path, errno_text());
  struct stat st {};
  LLMFT_CHECK(::fstat(f.fd, &st) == 0, Status::kIo, "cannot stat {}: {}", path, errno_text());
  LLMFT_CHECK(!S_ISDIR(st.st_mode), Status::kInvalidArgument, "{} is a directory, expected a file", path);
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(f.fd, out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    LLMFT_CHECK(n >= 0, Status::kIo, "cannot read {}: {}", path, errno_text());
    if (n == 0) break;  // the file shrank under us
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  // Files that report size 0 (pipes, /proc) are read to the end.
  if (st.st_size == 0) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(f.fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      LLMFT_CHECK(n >= 0, Status::kIo, "cannot read {}: {}", path, errno_text());
      if (n == 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
  }
  return out;
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void make_dirs(const std::string& path) {
  if (path.empty() || is_directory(path)) return;
  std::string parent = path_dirname(path);
  if (!parent.empty() && parent != path) make_dirs(parent);
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    LLMFT_FAIL(Status::kIo, "cannot create directory {}: {}", path, errno_text());
}

void fsync_dir(const std::string& path) {
  Fd f{::open(path.empty() ? "." : path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (f.fd >= 0) ::fsync(f.fd);
}

void write_file_atomic(const std::string& path, std::string_view data, WriteMode mode) {
  AtomicFileWriter w(path, mode);
  w.write(data);
  w.commit();
}

AtomicFileWriter::AtomicFileWriter(std::string path, WriteMode mode) : path_(std::move(path)), mode_(mode) {
  std::random_device rd;
  tmp_ = mode_ == WriteMode::kInPlace ? path_ : fmt::format("{}.tmp.{}.{:x}", path_, ::getpid(), rd());
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  LLMFT_CHECK(fd_ >= 0, Status::kIo, "cannot create {}: {}", tmp_, errno_text());
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    ssize_t k = ::write(fd_, p + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    LLMFT_CHECK(k >= 0, Status::kIo, "cannot write {} ({} bytes written so far): {}", path_, written_ + done,
                errno_text());
    done += static_cast<size_t>(k);
  }
  written_ += n;
}

void AtomicFileWriter::commit() {
  LLMFT_CHECK(::fsync(fd_) == 0, Status::kIo, "cannot fsync {}: {}", tmp_, errno_text());
  LLMFT_CHECK(::close(fd_) == 0, Status::kIo, "cannot close {}: {}", tmp_, errno_text());
  fd_ = -1;
  if (mode_ == WriteMode::kAtomic)
    LLMFT_CHECK(::rename(tmp_.c_str(), path_.c_str()) == 0, Status::kIo, "cannot rename {} to {}: {}", tmp_, path_,
                errno_text());
  committed_ = true;
  fsync_dir(path_dirname(path_));
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  Fd f{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  LLMFT_CHECK(f.fd >= 0, errno_status(), "cannot open {}: {}", path, errno_text());
  struct stat st {};
  LLMFT_CHECK(::fstat(f.fd, &st) == 0, Status::kIo, "cannot stat {}: {}", path, errno_text());
  LLMFT_CHECK(S_ISREG(st.st_mode), Status::kInvalidArgument, "{} is not a regular file", path);
  size_ = static_cast<size_t>(st.st_size);
  if (size_ == 0) return;
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
  LLMFT_CHECK(p != MAP_FAILED, Status::kIo, "cannot mmap {} ({} bytes): {}", path, size_, errno_text());
  data_ = static_cast<const uint8_t*>(p);
}

MappedFile::~MappedFile() { reset(); }

void MappedFile::release(const uint8_t* p, size_t n) const {
  if (n == 0 || data_ == nullptr) return;
  LLMFT_ASSERT(p >= data_ && p + n <= data_ + size_);
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = std::max(reinterpret_cast<uintptr_t>(p) & ~(page - 1), reinterpret_cast<uintptr_t>(data_));
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p + n) + page - 1) & ~(page - 1);
  // Advice only: a failure costs memory, never data (the mapping is read-only and backed by the file).
  (void)::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

void MappedFile::reset() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

MappedFile::MappedFile(MappedFile&& o) noexcept : path_(std::move(o.path_)), data_(o.data_), size_(o.size_) {
  o.data_ = nullptr;
  o.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& o) noexcept {
  if (this != &o) {
    reset();
    path_ = std::move(o.path_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

namespace {
bool identity(const std::string& p, dev_t* dev, ino_t* ino) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) return false;
  *dev = st.st_dev;
  *ino = st.st_ino;
  return true;
}

// "a/./b//c/../d/" -> "a/b/d" (lexically, for the part of a path that does not exist yet).
std::string normalise_tail(const std::string& rest) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i <= rest.size()) {
    size_t j = rest.find('/', i);
    if (j == std::string::npos) j = rest.size();
    std::string part = rest.substr(i, j - i);
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    i = j + 1;
  }
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : "/") + p;
  return out;
}
}  // namespace

std::string resolve_path(const std::string& path) {
  std::string p = path.empty() ? "." : path;
  if (p[0] != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) p = std::string(cwd) + "/" + p;
  }
  // Walk up to the deepest ancestor that exists; resolve it; append the rest. A ".." in the missing part is applied
  // lexically, as the kernel would once those directories exist.
  std::string head = p, tail;
  for (;;) {
    if (char* real = ::realpath(head.c_str(), nullptr)) {
      std::string out(real);
      std::free(real);
      const std::string rest = normalise_tail(tail);
      if (rest.empty()) return out;
      return out == "/" ? "/" + rest : out + "/" + rest;
    }
    const size_t slash = head.find_last_of('/');
    if (slash == std::string::npos || head == "/") return normalise_tail(p);
    tail = head.substr(slash + 1) + (tail.empty() ? "" : "/" + tail);
    head = slash == 0 ? "/" : head.substr(0, slash);
  }
}

bool same_location(const std::string& a, const std::string& b) {
  dev_t da = 0, db = 0;
  ino_t ia = 0, ib = 0;
  if (identity(a, &da, &ia) && identity(b, &db, &ib)) return da == db && ia == ib;
  return resolve_path(a) == resolve_path(b);
}

bool is_within(const std::string& path, const std::string& dir) {
  std::string p = resolve_path(path);
  for (;;) {
    if (same_location(p, dir)) return true;
    if (p == "/" || p.empty()) return false;
    const size_t slash = p.find_last_of('/');
    p = slash == 0 ? "/" : p.substr(0, slash);
  }
}

void require_writable_dir(const std::string& dir, const std::string& what) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) {
    LLMFT_CHECK(S_ISDIR(st.st_mode), Status::kInvalidArgument, "{} {} is a file, not a directory", what, dir);
  } else {
    // The first ancestor that exists must be a directory: a file in the way is named.
    std::string up = path_dirname(resolve_path(dir));
    while (!up.empty() && up != "/" && !file_exists(up)) up = path_dirname(up);
    LLMFT_CHECK(up.empty() || is_directory(up), Status::kInvalidArgument,
                "{} {} cannot be created: {} is a file, not a directory", what, dir, up);
    try {
      make_dirs(dir);
    } catch (const Error& e) {
      LLMFT_FAIL(Status::kIo, "{} {} cannot be created: {}", what, dir, e.what());
    }
  }
  const std::string probe = path_join(dir, ".llmft-write-probe");
  Fd f{::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  LLMFT_CHECK(f.fd >= 0, Status::kIo, "{} {} is not writable: {}", what, dir, errno_text());
  ::unlink(probe.c_str());
}

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    for (const auto& name : list_directory(path)) remove_tree(path_join(path, name));
    LLMFT_CHECK(::rmdir(path.c_str()) == 0, Status::kIo, "cannot remove {}: {}", path, errno_text());
  } else {
    LLMFT_CHECK(::unlink(path.c_str()) == 0 || errno == ENOENT, Status::kIo, "cannot remove {}: {}", path, errno_text());
  }
}

std::vector<std::string> list_directory(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  LLMFT_CHECK(d != nullptr, errno_status(), "cannot list {}: {}", dir, errno_text());
  std::vector<std::string> out;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") out.push_back(name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string path_join(std::string_view a, std::string_view b) {
  if (a.empty() || (!b.empty() && b.front() == '/')) return std::string(b);
  std::string out(a);
  if (out.back() != '/') out.push_back('/');
  out.append(b);
  return out;
}

std::string path_dirname(std::string_view p) {
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  size_t slash = p.rfind('/');
  if (slash == std::string_view::npos) return ".";
  if (slash == 0) return "/";
  return std::string(p.substr(0, slash));
}

std::string path_basename(std::string_view p) {
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  size_t slash = p.rfind('/');
  return std::string(slash == std::string_view::npos ? p : p.substr(slash + 1));
}

}  // namespace llmft
