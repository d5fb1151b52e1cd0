// LD_PRELOAD shim for tests: a folder that behaves like an object-store mount (Mountpoint for S3) that cannot
// rename. Every rename whose source or target lies under $LLMFT_TEST_NO_RENAME fails with ENOTSUP; each refused
// attempt is appended to $LLMFT_TEST_NO_RENAME/../renames-refused.log, so a test can tell whether anything tried.
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

bool blocked(const char* a, const char* b) {
  const char* dir = std::getenv("LLMFT_TEST_NO_RENAME");
  if (!dir || !*dir) return false;
  const bool hit = (a && std::strstr(a, dir)) || (b && std::strstr(b, dir));
  if (hit) {
    char log[4096];
    std::snprintf(log, sizeof log, "%s/../renames-refused.log", dir);
    const int fd = ::open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      char line[8192];
      const int n = std::snprintf(line, sizeof line, "%s -> %s\n", a ? a : "", b ? b : "");
      if (n > 0) (void)!::write(fd, line, static_cast<size_t>(n));
      ::close(fd);
    }
  }
  return hit;
}

}  // namespace

extern "C" __attribute__((visibility("default"))) int rename(const char* a, const char* b) {
  if (blocked(a, b)) {
    errno = ENOTSUP;
    return -1;
  }
  using Fn = int (*)(const char*, const char*);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "rename"));
  return real(a, b);
}

extern "C" __attribute__((visibility("default"))) int renameat(int da, const char* a, int db, const char* b) {
  if (blocked(a, b)) {
    errno = ENOTSUP;
    return -1;
  }
  using Fn = int (*)(int, const char*, int, const char*);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "renameat"));
  return real(da, a, db, b);
}

extern "C" __attribute__((visibility("default"))) int renameat2(int da, const char* a, int db, const char* b, unsigned flags) {
  if (blocked(a, b)) {
    errno = ENOTSUP;
    return -1;
  }
  using Fn = int (*)(int, const char*, int, const char*, unsigned);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "renameat2"));
  return real(da, a, db, b, flags);
}
