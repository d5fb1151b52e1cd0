#include "train/checkpoints.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>

#include <nlohmann/json.hpp>

#include "util/check.hpp"

namespace llmft::job {

namespace {

constexpr const char* kManifest = "manifest.json";
constexpr const char* kFormat = "llmft-checkpoint/1";

std::string errno_string() { return std::strerror(errno); }

// Whether directories can be renamed under `root` (an object-store mount may not): tried once per root.
bool can_rename_directories(const std::string& root) {
  static std::mutex mu;
  static std::map<std::string, bool> known;
  const std::string key = resolve_path(root);
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = known.find(key); it != known.end()) return it->second;
  std::random_device rd;
  const std::string a = path_join(root, fmt::format(".llmft-rename-probe.{}.{:x}", ::getpid(), rd()));
  const std::string b = a + ".renamed";
  make_dirs(a);
  const bool ok = ::rename(a.c_str(), b.c_str()) == 0;
  ::rmdir(ok ? b.c_str() : a.c_str());
  known[key] = ok;
  return ok;
}

void fsync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LLMFT_CHECK(fd >= 0, Status::kIo, "cannot open {}: {}", path, errno_string());
  const bool ok = ::fsync(fd) == 0;
  const std::string why = errno_string();
  ::close(fd);
  LLMFT_CHECK(ok, Status::kIo, "cannot fsync {}: {}", path, why);
}

std::string hex32(uint32_t v) { return fmt::format("{:08x}", v); }

}  // namespace

uint32_t file_crc32(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  LLMFT_CHECK(fd >= 0, errno == ENOENT ? Status::kNotFound : Status::kIo, "cannot open {}: {}", path, errno_string());
  std::vector<unsigned char> buf(1 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = errno_string();
      ::close(fd);
      LLMFT_FAIL(Status::kIo, "cannot read {}: {}", path, why);
    }
    if (n == 0) break;
    crc = crc32(crc, buf.data(), static_cast<uInt>(n));
  }
  ::close(fd);
  return static_cast<uint32_t>(crc);
}

int64_t checkpoint_step(const std::string& dir) {
  const std::string name = path_basename(dir);
  constexpr std::string_view prefix = "checkpoint-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return -1;
  int64_t step = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || step > (INT64_MAX - 9) / 10) return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

CheckpointWrite write_checkpoint(const std::string& root, int64_t step,
                                 const std::function<void(const std::string& dir, WriteMode mode)>& fill) {
  const auto start = std::chrono::steady_clock::now();
  make_dirs(root);
  CheckpointWrite out;
  out.dir = path_join(root, fmt::format("checkpoint-{}", step));
  out.renamed = can_rename_directories(root);
  const std::string dir = out.renamed ? path_join(root, fmt::format(".checkpoint-{}.partial", step)) : out.dir;
  // A folder of this step from an earlier, unfinished or superseded, write: take away its manifest first, so at no
  // moment does a mixture of its files and ours pass as a checkpoint.
  if (!out.renamed && file_exists(path_join(dir, kManifest))) {
    LLMFT_CHECK(std::remove(path_join(dir, kManifest).c_str()) == 0, Status::kIo, "cannot remove {}: {}",
                path_join(dir, kManifest), errno_string());
    fsync_dir(dir);
  }
  remove_tree(dir);
  make_dirs(dir);
  const WriteMode mode = out.renamed ? WriteMode::kAtomic : WriteMode::kInPlace;
  try {
    fill(dir, mode);
    nlohmann::ordered_json files = nlohmann::ordered_json::array();
    for (const std::string& name : list_directory(dir)) {
      const std::string p = path_join(dir, name);
      LLMFT_CHECK(!is_directory(p), Status::kInternal, "checkpoint files must be flat: {} is a folder", p);
      fsync_file(p);
      const auto size = static_cast<int64_t>(std::filesystem::file_size(p));
      out.bytes += size;
      files.push_back({{"name", name}, {"size", size}, {"crc32", hex32(file_crc32(p))}});
    }
    nlohmann::ordered_json manifest = {{"format", kFormat}, {"step", step}, {"files", files}};
    write_file_atomic(path_join(dir, kManifest), manifest.dump(1) + "\n", mode);  // the commit marker
    fsync_dir(dir);
    if (out.renamed) {
      remove_tree(out.dir);  // an incomplete folder of this step (a complete one is never rewritten by a run)
      LLMFT_CHECK(::rename(dir.c_str(), out.dir.c_str()) == 0, Status::kIo, "cannot rename {} to {}: {}", dir, out.dir,
                  errno_string());
    }
    fsync_dir(root);
  } catch (...) {
    try {
      remove_tree(dir);  // nothing half-written stays behind (the error is what the caller hears)
    } catch (...) {
    }
    throw;
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

void verify_checkpoint(const std::string& dir) {
  const std::string mpath = path_join(dir, kManifest);
  LLMFT_CHECK(file_exists(mpath), Status::kNotFound, "{} is missing: the checkpoint was not completed", mpath);
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_file(mpath));
  } catch (const nlohmann::json::exception& e) {
    LLMFT_FAIL(Status::kFormat, "{}: not valid JSON: {}", mpath, plain_error(e));
  }
  LLMFT_CHECK(m.is_object() && m.value("format", "") == kFormat && m.contains("files") && m["files"].is_array(),
              Status::kFormat, "{}: not an llmft checkpoint manifest (\"format\": \"{}\")", mpath, kFormat);
  for (const auto& f : m["files"]) {
    const std::string name = f.value("name", "");
    const std::string p = path_join(dir, name);
    LLMFT_CHECK(!name.empty() && name.find('/') == std::string::npos, Status::kFormat, "{}: a file entry without a plain name",
                mpath);
    LLMFT_CHECK(file_exists(p), Status::kNotFound, "{} is missing (listed in {})", p, mpath);
    const auto size = static_cast<int64_t>(std::filesystem::file_size(p));
    LLMFT_CHECK(size == f.value("size", int64_t{-1}), Status::kFormat, "{} has {} bytes, the manifest says {}", p, size,
                f.value("size", int64_t{-1}));
    const std::string crc = hex32(file_crc32(p));
    LLMFT_CHECK(crc == f.value("crc32", ""), Status::kFormat, "{} has crc32 {}, the manifest says {}: the file changed",
                p, crc, f.value("crc32", ""));
  }
}

std::optional<std::string> find_latest_checkpoint(const std::string& root,
                                                  const std::function<void(const std::string&)>& warn) {
  if (!is_directory(root)) return std::nullopt;
  std::vector<std::pair<int64_t, std::string>> found;
  for (const std::string& name : list_directory(root)) {
    const std::string p = path_join(root, name);
    if (name.size() > 8 && name[0] == '.' && name.compare(name.size() - 8, 8, ".partial") == 0 && warn)
      warn(fmt::format("{} is an unfinished checkpoint write (the process stopped while saving); not used", p));
    const int64_t step = checkpoint_step(p);
    if (step >= 0 && is_directory(p)) found.emplace_back(step, p);
  }
  std::sort(found.rbegin(), found.rend());
  for (const auto& [step, dir] : found) {
    try {
      verify_checkpoint(dir);
      return dir;
    } catch (const Error& e) {
      if (warn) warn(fmt::format("skipping checkpoint {}: {}", dir, e.what()));
    }
  }
  return std::nullopt;
}

void prune_checkpoints(const std::string& root, int64_t keep) {
  std::vector<std::pair<int64_t, std::string>> complete;
  for (const std::string& name : list_directory(root)) {
    const std::string p = path_join(root, name);
    const int64_t step = checkpoint_step(p);
    if (step >= 0 && is_directory(p) && file_exists(path_join(p, kManifest))) complete.emplace_back(step, p);
    // An unfinished write of an earlier process (this one finished or removed its own).
    if (name.size() > 8 && name[0] == '.' && name.compare(name.size() - 8, 8, ".partial") == 0) remove_tree(p);
  }
  if (keep <= 0) return;
  std::sort(complete.rbegin(), complete.rend());
  for (size_t i = static_cast<size_t>(keep); i < complete.size(); ++i) {
    // The manifest goes first: a removal cut short leaves a folder that is plainly not a checkpoint.
    std::remove(path_join(complete[i].second, kManifest).c_str());
    remove_tree(complete[i].second);
  }
}

}  // namespace llmft::job
