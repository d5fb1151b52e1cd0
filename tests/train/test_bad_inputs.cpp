// Bad input, as a new user gives it: every case of tests/data/bad_inputs.json runs the llmft program on a mistake
// (configuration, model files, adapters, data, tokenizers, output locations, distributed mismatches, signals) and
// must end with the expected exit status, a message naming the culprit (every fragment listed), and nothing that
// existed before changed (every file of the case's folder compared before and after, but for the paths a case
// expects to change). The list lives in the data file, so it grows with every bug.
//
// Case fields: name; setup (steps run in the case's folder W, below); run (arguments of llmft; ${W} the case's
// folder, ${D} ../shared/data, ${FIX} a shared folder holding an adapter trained on stories260K); ranks (several
// processes of one distributed job instead of run: a list of argument lists); exit (expected status, default 1);
// expect (fragments the output must contain, all of them: the culprit); may_change (paths under W that may change);
// signal ({"name": "INT" | "TERM", "after": text in the output to wait for}); needs (files of ../shared/data).
// Setup steps: {"copy": SRC, "to": P} (a file or folder; SRC may use ${D} and ${FIX}), {"text": P, "content": S},
// {"json": P, "value": V}, {"bytes": P, "hex": H}, {"random": P, "size": N}, {"dir": P}, {"symlink": P, "to": T},
// {"edit_json": P, "set": {k: v}, "remove": [k]}, {"truncate": P, "size": N}, {"drop_tensor": P, "name": N},
// {"reshape_tensor": P, "name": N, "shape": [...]}, {"nan_tensor": P, "name": N}, {"add_tensor": P, "name": N,
// "shape": [...]}.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "llmft/config.hpp"
#include "llmft/train.hpp"
#include "model/model_support.hpp"
#include "test_support.hpp"
#include "util/file.hpp"

using namespace llmft;
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

std::string cases_path() { return path_join(test::source_dir(), "tests/data/bad_inputs.json"); }

std::vector<Json> load_cases() {
  try {
    const Json doc = Json::parse(read_file(cases_path()));
    return doc.at("cases").get<std::vector<Json>>();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "cannot read %s: %s\n", cases_path().c_str(), e.what());
    return {};
  }
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
  return s;
}

// A folder shared by the cases (and by concurrent test processes, through a lock): an adapter llmft trained on
// stories260K for two steps (run/adapter), and data prepared with its tokenizer (prepared/).
std::string fixture() {
  static const std::string dir = [] {
    const std::string d = path_join(test::build_dir(), "bad-inputs-fixture");
    make_dirs(d);
    struct Lock {
      int fd;
      explicit Lock(const std::string& path) : fd(::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644)) { ::flock(fd, LOCK_EX); }
      ~Lock() { ::close(fd); }  // closing releases the lock, on errors too
    } lock(path_join(d, ".lock"));
    const std::string stories = test::data_path("models/stories260K-hf");
    if (!file_exists(path_join(d, "run/adapter/adapter_model.safetensors")))
      train(load_config("", {"model.path=" + stories, "train.mode=lora", "data.synthetic_records=24", "data.seq_len=128",
                             "data.eval_count=2", "train.max_steps=2", "train.lr=1e-2", "generate.num_samples=0",
                             "lora.r=4", "lora.alpha=8", "output.dir=" + path_join(d, "run")}));
    if (!file_exists(path_join(d, "prepared/manifest.json")))
      prepare(load_config("", {"tokenizer.path=" + stories + "/tokenizer.json", "data.synthetic_records=24",
                               "data.seq_len=128", "output.dir=" + path_join(d, "prepared")}));
    return d;
  }();
  return dir;
}

struct Vars {
  std::string work, data, fix;
  std::string operator()(std::string s) const {
    s = replace_all(s, "${W}", work);
    s = replace_all(s, "${D}", data);
    if (s.find("${FIX}") != std::string::npos) s = replace_all(s, "${FIX}", fix.empty() ? fixture() : fix);
    return s;
  }
};

void copy_any(const std::string& from, const std::string& to) {
  make_dirs(path_dirname(to));
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

std::map<std::string, at::Tensor> read_tensors(const std::string& path) {
  io::SafetensorsFile f(path);
  std::map<std::string, at::Tensor> out;
  for (const auto& t : f.tensors()) out[t.name] = test::to_tensor(t);
  return out;
}

void setup_step(const Json& s, const Vars& v) {
  auto p = [&](const char* key) { return path_join(v.work, v(s.at(key).get<std::string>())); };
  if (s.contains("copy")) {
    copy_any(v(s.at("copy").get<std::string>()), p("to"));
  } else if (s.contains("text")) {
    make_dirs(path_dirname(p("text")));
    write_file_atomic(p("text"), v(s.at("content").get<std::string>()));
  } else if (s.contains("json")) {
    make_dirs(path_dirname(p("json")));
    write_file_atomic(p("json"), v(s.at("value").dump(1)));
  } else if (s.contains("bytes")) {
    std::string hex = s.at("hex"), bytes;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) bytes.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
    make_dirs(path_dirname(p("bytes")));
    write_file_atomic(p("bytes"), bytes);
  } else if (s.contains("random")) {
    std::mt19937 rng(7);
    std::string bytes(s.at("size").get<size_t>(), '\0');
    for (auto& b : bytes) b = static_cast<char>(rng());
    make_dirs(path_dirname(p("random")));
    write_file_atomic(p("random"), bytes);
  } else if (s.contains("dir")) {
    make_dirs(p("dir"));
  } else if (s.contains("symlink")) {
    make_dirs(path_dirname(p("symlink")));
    fs::create_symlink(v(s.at("to").get<std::string>()), p("symlink"));
  } else if (s.contains("edit_json")) {
    Json j = Json::parse(read_file(p("edit_json")));
    if (s.contains("set"))
      for (auto it = s.at("set").begin(); it != s.at("set").end(); ++it)
        j[it.key()] = it.value().is_string() ? Json(v(it.value().get<std::string>())) : it.value();
    if (s.contains("remove"))
      for (const auto& k : s.at("remove")) j.erase(k.get<std::string>());
    write_file_atomic(p("edit_json"), j.dump(1));
  } else if (s.contains("truncate")) {
    fs::resize_file(p("truncate"), s.at("size").get<uintmax_t>());
  } else if (s.contains("drop_tensor") || s.contains("reshape_tensor") || s.contains("nan_tensor") ||
             s.contains("add_tensor")) {
    const char* op = s.contains("drop_tensor") ? "drop_tensor" : s.contains("reshape_tensor") ? "reshape_tensor"
                     : s.contains("nan_tensor") ? "nan_tensor" : "add_tensor";
    const std::string file = p(op), name = s.at("name");
    auto t = read_tensors(file);
    if (std::string(op) == "drop_tensor") t.erase(name);
    if (std::string(op) == "reshape_tensor") t[name] = at::zeros(s.at("shape").get<std::vector<int64_t>>());
    if (std::string(op) == "nan_tensor") t.at(name).view(-1)[0] = std::nan("");
    if (std::string(op) == "add_tensor") t[name] = at::zeros(s.at("shape").get<std::vector<int64_t>>());
    test::save_tensors(file, t);
  } else {
    throw std::runtime_error("unknown setup step " + s.dump());
  }
}

// Every file under `root` and its content, but the symbolic links' targets outside it.
std::map<std::string, std::string> snapshot(const std::string& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied);
       it != fs::recursive_directory_iterator(); ++it) {
    if (it->is_symlink()) {
      out[it->path().string()] = "-> " + fs::read_symlink(it->path()).string();
      it.disable_recursion_pending();
    } else if (it->is_regular_file()) {
      out[it->path().string()] = read_file(it->path().string());
    }
  }
  return out;
}

struct Outcome {
  int status = -1;  // exit status, or 128 + signal
  std::string output;
};

// Runs llmft with `args` (stdout and stderr to `log`), the environment extended by `env`; with a signal, sends it once
// `after` appears in the log.
pid_t spawn(const std::vector<std::string>& args, const std::vector<std::string>& env, const std::string& log,
            const std::string& cwd) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    for (const auto& e : env) ::putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> argv;
    const std::string bin = path_join(test::build_dir(), "bin/llmft");
    argv.push_back(const_cast<char*>(bin.c_str()));
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_status(pid_t pid) {
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

Outcome run_case(const Json& c, const Vars& v) {
  Outcome out;
  auto expand = [&](const Json& args) {
    std::vector<std::string> a;
    for (const auto& x : args) a.push_back(v(x.get<std::string>()));
    return a;
  };
  // One math thread per process, as the other tests; an output folder of its own unless the case names one.
  const std::vector<std::string> base_env = {"OMP_NUM_THREADS=1"};
  if (c.contains("ranks")) {
    const int n = static_cast<int>(c.at("ranks").size());
    const int port = 20000 + static_cast<int>(::getpid() % 20000);
    std::vector<pid_t> pids;
    for (int r = 0; r < n; ++r) {
      std::vector<std::string> env = base_env;
      for (const std::string& e : {fmt::format("RANK={}", r), fmt::format("WORLD_SIZE={}", n),
                                   fmt::format("LOCAL_RANK={}", r), fmt::format("LOCAL_WORLD_SIZE={}", n),
                                   std::string("MASTER_ADDR=127.0.0.1"), fmt::format("MASTER_PORT={}", port)})
        env.push_back(e);
      pids.push_back(spawn(expand(c.at("ranks")[r]), env, path_join(v.work, fmt::format("rank{}.log", r)), v.work));
    }
    out.status = 0;
    for (int r = 0; r < n; ++r) {
      const int st = wait_status(pids[r]);
      if (st != 0) out.status = st;
      out.output += fmt::format("--- rank {} (status {})\n", r, st) + read_file(path_join(v.work, fmt::format("rank{}.log", r)));
    }
    return out;
  }
  const std::string log = path_join(v.work, "llmft.log");
  const pid_t pid = spawn(expand(c.at("run")), base_env, log, v.work);
  if (c.contains("signal")) {
    const Json& s = c.at("signal");
    const std::string after = s.at("after");
    for (int i = 0; i < 1200 && (!file_exists(log) || read_file(log).find(after) == std::string::npos); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ::kill(pid, s.at("name") == "INT" ? SIGINT : SIGTERM);
  }
  out.status = wait_status(pid);
  out.output = read_file(log);
  return out;
}

class BadInput : public ::testing::TestWithParam<Json> {};

TEST_P(BadInput, IsRefusedByNameAndChangesNothing) {
  const Json& c = GetParam();
  if (c.contains("needs"))
    for (const auto& n : c.at("needs")) LLMFT_REQUIRE_DATA(n.get<std::string>());
  Vars v{test::temp_dir("bad"), test::data_dir(), ""};
  if (c.contains("setup"))
    for (const auto& s : c.at("setup")) setup_step(s, v);
  const auto before = snapshot(v.work);
  const Outcome o = run_case(c, v);
  const int want = c.value("exit", 1);
  EXPECT_EQ(o.status, want) << c.at("name") << " exited " << o.status << ":\n" << o.output;
  size_t named = 0;
  for (const auto& f : c.value("expect", Json::array())) {
    const std::string frag = v(f.get<std::string>());
    if (o.output.find(frag) != std::string::npos) ++named;
    else ADD_FAILURE() << c.at("name") << ": the output does not name \"" << frag << "\":\n" << o.output;
  }
  // Nothing that existed changed, but where the case allows it.
  std::vector<std::string> may_change;
  for (const auto& m : c.value("may_change", Json::array())) may_change.push_back(path_join(v.work, v(m.get<std::string>())));
  const auto after = snapshot(v.work);
  for (const auto& [path, content] : before) {
    bool allowed = false;
    for (const auto& m : may_change) allowed = allowed || path.rfind(m, 0) == 0;
    if (allowed) continue;
    auto it = after.find(path);
    EXPECT_TRUE(it != after.end() && it->second == content) << c.at("name") << ": " << path << " was "
                                                             << (it == after.end() ? "removed" : "changed");
  }
  // Messages for users carry no library internals.
  for (const char* internal : {"[json.exception", "std::", "what():", "terminate called", "Traceback", ".cpp:"})
    EXPECT_EQ(o.output.find(internal), std::string::npos) << c.at("name") << ": the message shows \"" << internal
                                                          << "\":\n" << o.output;
}

INSTANTIATE_TEST_SUITE_P(Cases, BadInput, ::testing::ValuesIn(load_cases()), [](const auto& info) {
  std::string n = info.param.at("name");
  for (auto& ch : n)
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  return n;
});

}  // namespace

// The suite's size, and that every case names at least one culprit.
TEST(BadInputs, AtLeast150CasesEachNamingItsCulprit) {
  const auto cases = load_cases();
  EXPECT_GE(cases.size(), 150u);
  std::set<std::string> names;
  for (const auto& c : cases) {
    EXPECT_TRUE(names.insert(c.at("name").get<std::string>()).second) << "duplicate case name " << c.at("name");
    if (c.value("exit", 1) != 0) EXPECT_FALSE(c.value("expect", Json::array()).empty()) << c.at("name") << " names nothing";
  }
}
