#include "train/tensorboard.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

#include "util/check.hpp"
#include "util/crc32c.hpp"
#include "util/file.hpp"

namespace llmft::job {

namespace {

// Protocol buffer wire format, as much of it as Event and Summary need.
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void key(std::string& out, int field, int wire_type) { varint(out, static_cast<uint64_t>(field << 3 | wire_type)); }
template <typename T>
void fixed(std::string& out, T v) {  // little-endian, as x86 and ARM store it
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
void bytes(std::string& out, int field, const std::string& s) {
  key(out, field, 2);
  varint(out, s.size());
  out += s;
}

// Event { double wall_time = 1; int64 step = 2; oneof { string file_version = 3; Summary summary = 5; } }
std::string event(double wall_time, int64_t step) {
  std::string e;
  key(e, 1, 1);
  fixed(e, wall_time);
  key(e, 2, 0);
  varint(e, static_cast<uint64_t>(step));
  return e;
}

std::string host_name() {
  char h[256] = {0};
  return gethostname(h, sizeof h - 1) == 0 && h[0] ? std::string(h) : std::string("localhost");
}

}  // namespace

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  make_dirs(dir);
  static std::atomic<int> counter{0};
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  path_ = path_join(dir, fmt::format("events.out.tfevents.{}.{}.{}.{}",
                                     std::chrono::duration_cast<std::chrono::seconds>(now).count(), host_name(),
                                     static_cast<long>(getpid()), counter++));
  file_ = std::fopen(path_.c_str(), "wb");
  LLMFT_CHECK(file_ != nullptr, Status::kIo, "cannot create the TensorBoard event file {}: {}", path_,
              std::strerror(errno));
  std::string e = event(std::chrono::duration<double>(now).count(), 0);
  bytes(e, 3, "brain.Event:2");
  write_event(e);
}

TensorBoardWriter::~TensorBoardWriter() {
  if (file_) std::fclose(file_);
}

void TensorBoardWriter::scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step,
                                double wall_time) {
  if (!started_) {  // Event.session_log (7) = SessionLog { status (1) = START (1) }
    std::string session;
    key(session, 1, 0);
    varint(session, 1);
    std::string e = event(wall_time, step);
    bytes(e, 7, session);
    write_event(e);
    started_ = true;
  }
  std::string summary;  // Summary { repeated Value value = 1; }  Value { string tag = 1; float simple_value = 2; }
  for (const auto& [tag, v] : values) {
    std::string value;
    bytes(value, 1, tag);
    key(value, 2, 5);
    fixed(value, static_cast<float>(v));
    bytes(summary, 1, value);
  }
  std::string e = event(wall_time, step);
  bytes(e, 5, summary);
  write_event(e);
}

void TensorBoardWriter::write_event(const std::string& e) {
  std::string record;
  const uint64_t n = e.size();
  fixed(record, n);
  fixed(record, masked_crc32c(record.data(), 8));
  record += e;
  fixed(record, masked_crc32c(e.data(), e.size()));
  LLMFT_CHECK(std::fwrite(record.data(), 1, record.size(), file_) == record.size() && std::fflush(file_) == 0,
              Status::kIo, "cannot write the TensorBoard event file {}: {}", path_, std::strerror(errno));
}

}  // namespace llmft::job
