// What a host chose for one Trainer or Generator, in force on the calling thread for the length of each call and
// taken away after it: the log sink and level (util/log.hpp's LogScope), libtorch's intra-op thread count
// (train.threads, else the usable CPUs shared among this node's ranks) and, on a GPU, the thread's current device
// (the object's; the one before is restored without creating a context on it). The library never leaves a setting changed
// behind the host's back: the count the calling thread had is restored when the call returns. (libtorch keeps the
// count per thread for its OpenMP pool, but also remembers the last one set as the default for threads that have not
// run parallel work yet; two objects with different train.threads whose calls overlap on two threads each get
// their own count all the same.)
#pragma once

#include <c10/core/DeviceGuard.h>

#include <optional>

#include "llmft/log.hpp"
#include "util/log.hpp"

namespace llmft::job {

struct HostSettings {
  HostSettings() = default;
  HostSettings(const HostSettings&) = delete;  // context points into it
  HostSettings& operator=(const HostSettings&) = delete;

  LogSink sink;                     // empty: the process-wide sink
  std::optional<LogLevel> level;    // unset: the process-wide level (as it is at each message)
  int threads = 1;                  // libtorch intra-op threads during calls (0: leave as it is)
  int cuda_device = -1;             // the GPU the object computes on (model.device), current during calls; -1: none
  LogContext context;               // built by settle(): what LogScope installs
  bool scoped_log = false;

  // Settles sink and level (quiet: warnings and errors only, for ranks other than 0).
  void settle(bool quiet) {
    scoped_log = static_cast<bool>(sink) || level.has_value() || quiet;
    context.sink = sink ? &sink : nullptr;
    context.level = level;
    context.floor = quiet ? LogLevel::kWarn : LogLevel::kDebug;
  }
};

class CallScope {
 public:
  explicit CallScope(const HostSettings& s);
  ~CallScope();
  CallScope(const CallScope&) = delete;
  CallScope& operator=(const CallScope&) = delete;

 private:
  LogScope log_;
  int saved_threads_;
  std::optional<c10::DeviceGuard> device_;
};

}  // namespace llmft::job
