// Helpers for the distributed tests: free TCP ports, and running a world of `llmft` processes the way a launcher
// does (one process per rank, RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT in each environment).
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "comm/factory.hpp"
#include "test_support.hpp"
#include "util/file.hpp"

namespace llmft::test {

// A port the kernel just handed out (free at that moment).
inline int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

struct Proc {
  pid_t pid = -1;
  std::string log;
};

// Starts `argv` with extra environment variables; stdout and stderr go to `log`.
inline Proc spawn(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
                  const std::string& log) {
  Proc p;
  p.log = log;
  std::fflush(nullptr);  // or the child would inherit, and print again, what is buffered
  p.pid = fork();
  if (p.pid == 0) {
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    FILE* f = freopen(log.c_str(), "w", stdout);
    (void)f;
    dup2(fileno(stdout), fileno(stderr));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return p;
}

// Waits for the process up to `timeout`; returns its exit status (128 + signal when killed), or -1 on timeout
// (then it is killed).
inline int wait_for(Proc& p, std::chrono::seconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = waitpid(p.pid, &status, WNOHANG);
    if (r == p.pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (std::chrono::steady_clock::now() > end) {
      kill(p.pid, SIGKILL);
      waitpid(p.pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Starts `llmft <command>` (train unless told) as a world of `n` ranks on this machine (rank r logs to
// <log_prefix>.rank<r>.log), one math thread each.
inline std::vector<Proc> start_world(int n, const std::vector<std::string>& args, const std::string& log_prefix,
                                     const std::string& command = "train") {
  const int port = free_port();
  std::vector<Proc> procs;
  for (int r = 0; r < n; ++r) {
    std::vector<std::string> argv = {llmft_bin(), command};
    argv.insert(argv.end(), args.begin(), args.end());
    procs.push_back(spawn(argv,
                          {{"RANK", std::to_string(r)}, {"WORLD_SIZE", std::to_string(n)},
                           {"LOCAL_RANK", std::to_string(r)}, {"LOCAL_WORLD_SIZE", std::to_string(n)},
                           {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)},
                           {"OMP_NUM_THREADS", "1"}},
                          log_prefix + ".rank" + std::to_string(r) + ".log"));
  }
  return procs;
}

// Runs `llmft <command>` as a world of `n` ranks on this machine; returns each rank's exit status.
inline std::vector<int> run_world(int n, const std::vector<std::string>& args, const std::string& log_prefix,
                                  std::chrono::seconds timeout = std::chrono::seconds(600),
                                  const std::string& command = "train") {
  std::vector<Proc> procs = start_world(n, args, log_prefix, command);
  std::vector<int> codes;
  for (auto& p : procs) codes.push_back(wait_for(p, timeout));
  return codes;
}

// Waits until the process's log shows `| step k |` (or the process has ended).
inline void wait_for_step(const Proc& p, int64_t k) {
  const std::string mark = "| step " + std::to_string(k) + " |";
  for (int i = 0; i < 6000; ++i) {
    if (file_exists(p.log) && read_file(p.log).find(mark) != std::string::npos) return;
    if (::waitpid(p.pid, nullptr, WNOHANG) != 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// The records of <out>/metrics.jsonl without their timing field: what a resumed run must repeat bit for bit.
inline std::vector<nlohmann::json> metric_records(const std::string& out) {
  std::vector<nlohmann::json> v;
  std::ifstream f(path_join(out, "metrics.jsonl"));
  for (std::string line; std::getline(f, line);) {
    nlohmann::json j = nlohmann::json::parse(line);
    j.erase("tokens_per_second");
    v.push_back(j);
  }
  return v;
}

// The training losses a run logged to <out>/metrics.jsonl (or, while it runs, <out>/in_progress/metrics.jsonl), in
// order.
inline std::vector<double> logged_losses(const std::string& out) {
  std::vector<double> v;
  std::ifstream f(file_exists(out + "/metrics.jsonl") ? out + "/metrics.jsonl" : out + "/in_progress/metrics.jsonl");
  for (std::string line; std::getline(f, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) v.push_back(j["loss"].get<double>());
  }
  return v;
}

// Runs fn(rank, comm) on `n` threads, one communicator each; returns the errors (empty when none).
inline std::vector<std::string> on_world(int n, double timeout_s,
                                  const std::function<void(int, comm::Communicator&)>& fn) {
  const int port = test::free_port();
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r) {
    threads.emplace_back([&, r] {
      try {
        comm::DistOptions d;
        d.backend = comm::Backend::kGloo;
        d.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
        d.rendezvous_timeout = std::chrono::seconds(60);
        comm::World w;
        w.rank = r;
        w.size = n;
        w.master_port = port;
        auto c = comm::make_communicator(d, w);
        fn(r, *c);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  return errors;
}


}  // namespace llmft::test
