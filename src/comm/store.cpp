#include "comm/store.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <map>
#include <vector>

#include "llmft/log.hpp"
#include "util/check.hpp"

namespace llmft::comm {

namespace {

using Clock = std::chrono::steady_clock;

int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

c10::intrusive_ptr<c10d::Store> with_prefix(const World& w, c10::intrusive_ptr<c10d::Store> s) {
  if (!w.store_prefix.empty()) s = c10::make_intrusive<c10d::PrefixStore>(w.store_prefix, s);
  return c10::make_intrusive<c10d::PrefixStore>("llmft", s);
}

}  // namespace

std::shared_ptr<StoreHandle> connect_store(const World& w, std::chrono::milliseconds total,
                                           std::chrono::milliseconds op_timeout, bool serve) {
  auto h = std::make_shared<StoreHandle>();
  const auto start = Clock::now();
  if (serve) {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(w.master_port);
    o.isServer = true;
    o.numWorkers = c10::nullopt;
    o.waitWorkers = false;
    o.timeout = op_timeout;
    try {
      h->store = with_prefix(w, c10::make_intrusive<c10d::TCPStore>(w.master_addr, o));
    } catch (const std::exception& e) {
      LLMFT_FAIL(Status::kComm, "rank {}: cannot serve the rendezvous store on port {} (MASTER_PORT): {}", w.rank,
                 w.master_port, e.what());
    }
    return h;
  }
  std::string last;
  auto backoff = std::chrono::milliseconds(100);
  for (int attempt = 1;; ++attempt) {
    const auto left = total - std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(w.master_port);
    o.isServer = false;
    o.waitWorkers = false;
    // One connection attempt gets a bounded share of the budget, so that a master that comes up late is found.
    o.timeout = std::max(std::chrono::milliseconds(1000), std::min(left, std::chrono::milliseconds(10000)));
    try {
      auto tcp = c10::make_intrusive<c10d::TCPStore>(w.master_addr, o);
      tcp->setTimeout(op_timeout);
      h->store = with_prefix(w, tcp);
      if (attempt > 1) log_message(LogLevel::kInfo, fmt::format("[llmft] rank {}: reached the rendezvous store at {}:{} "
                                                                "after {} attempts", w.rank, w.master_addr,
                                                                w.master_port, attempt));
      return h;
    } catch (const std::exception& e) {
      last = e.what();
      if (const size_t nl = last.find('\n'); nl != std::string::npos) last.resize(nl);
    }
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    LLMFT_CHECK(now + backoff < total, Status::kTimeout,
                "rank {}: the rendezvous store at {}:{} (MASTER_ADDR:MASTER_PORT) was not reachable within {:.0f} s "
                "({} attempts; last error: {}); is rank 0 running, and is the address right?",
                w.rank, w.master_addr, w.master_port, static_cast<double>(total.count()) / 1000.0, attempt, last);
    if (attempt == 1 || attempt % 5 == 0)
      log_message(LogLevel::kInfo, fmt::format("[llmft] rank {}: waiting for the rendezvous store at {}:{} ({})", w.rank,
                                               w.master_addr, w.master_port, last));
    std::this_thread::sleep_for(backoff);
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
  }
}

std::string local_address_towards(const std::string& host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) != 0 || res == nullptr) return "";
  std::string out;
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd >= 0) {
    // connect() on a datagram socket sends nothing: it only picks the route and with it the source address.
    if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
      sockaddr_in local{};
      socklen_t len = sizeof local;
      char buf[INET_ADDRSTRLEN] = {};
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
          inet_ntop(AF_INET, &local.sin_addr, buf, sizeof buf) != nullptr)
        out = buf;
    }
    close(fd);
  }
  freeaddrinfo(res);
  return out;
}

// ---- Watch ----

Watch::Watch(const World& w, std::shared_ptr<StoreHandle> store) : world_(w), store_(std::move(store)) {
  publish();
  thread_ = std::thread([this] { loop(); });
}

Watch::~Watch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Watch::publish() {
  const std::string value = std::to_string(seq_.load(std::memory_order_relaxed)) + " " + std::to_string(unix_ms());
  try {
    store_->store->set("alive/" + std::to_string(world_.rank), std::vector<uint8_t>(value.begin(), value.end()));
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mu_);
    store_error_ = e.what();
  }
}

void Watch::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, std::chrono::seconds(1));
    if (stop_) break;
    lock.unlock();
    publish();
    lock.lock();
  }
}

std::string Watch::diagnose(int64_t seq) {
  struct Seen {
    int64_t seq = -1, at_ms = -1;
  };
  auto read_all = [&](std::map<int, Seen>& out) -> bool {
    try {
      for (int r = 0; r < world_.size; ++r) {
        if (r == world_.rank) continue;
        const std::string key = "alive/" + std::to_string(r);
        Seen s;
        if (store_->store->check({key})) {
          const auto v = store_->store->get(key);
          const std::string text(v.begin(), v.end());
          const size_t sp = text.find(' ');
          s.seq = std::stoll(text.substr(0, sp));
          s.at_ms = std::stoll(text.substr(sp + 1));
        }
        out[r] = s;
      }
      return true;
    } catch (const std::exception&) {
      return false;
    }
  };
  std::map<int, Seen> first, second;
  if (!read_all(first)) {
    return fmt::format("; the rendezvous store at {}:{} is unreachable too: the process that serves it ({}) is gone",
                       world_.master_addr, world_.master_port, world_.agent_store ? "the torchrun agent" : "rank 0");
  }
  // Records refresh every second: one that does not change within 2.5 s belongs to a dead process.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  const bool store_alive = read_all(second);
  std::vector<std::string> missing;
  const int64_t now = unix_ms();
  for (const auto& [r, a] : first) {
    const Seen b = store_alive ? second[r] : a;
    if (b.at_ms < 0) {
      missing.push_back(fmt::format("{} (never reported)", r));
    } else if (!store_alive || b.at_ms == a.at_ms) {
      missing.push_back(fmt::format("{} (dead: silent for {:.1f} s, last at operation #{})", r,
                                    static_cast<double>(now - b.at_ms) / 1000.0, b.seq));
    } else if (b.seq < seq) {
      missing.push_back(fmt::format("{} (alive but stalled at operation #{})", r, b.seq));
    }
  }
  std::string out;
  if (missing.empty()) {
    out = "; every other rank is alive and has reached this operation";
  } else {
    out = "; missing rank(s): ";
    for (size_t i = 0; i < missing.size(); ++i) out += (i ? ", " : "") + missing[i];
  }
  if (!store_alive)
    out += fmt::format("; the rendezvous store at {}:{} went away while checking", world_.master_addr, world_.master_port);
  return out;
}

}  // namespace llmft::comm
