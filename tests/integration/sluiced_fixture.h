// A real sluiced process for integration tests: a temporary directory with the policy and
// both sockets, the daemon started from the build tree, stopped with a signal at the end.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client.h"
#include "sluice/resp.h"

extern char** environ;

namespace sluice::testing {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

class Daemon {
 public:
  // Writes `policy_yaml` and starts sluiced on it; check ok() afterwards.
  // `launcher` runs sluiced (e.g. {"/usr/bin/prlimit", "--nofile=1024:1024"}).
  explicit Daemon(const std::string& policy_yaml, std::vector<std::string> extra_args = {},
                  std::vector<std::string> launcher = {})
      : launcher_(std::move(launcher)) {
    char tmpl[] = "/tmp/sluice-it-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    policy_ = dir_ + "/policy.yaml";
    socket_ = dir_ + "/sluice.sock";
    admin_socket_ = dir_ + "/admin.sock";
    log_ = dir_ + "/sluiced.log";
    write_file(policy_, policy_yaml);
    ok_ = start(std::move(extra_args));
  }

  ~Daemon() {
    if (pid_ > 0) stop(SIGKILL);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  static std::string binary() { return std::string(SLUICE_BINARY_DIR) + "/bin/sluiced"; }

  // Starts (another) sluiced with this directory's paths; true once both sockets answer.
  bool start(std::vector<std::string> extra_args = {}) {
    std::vector<std::string> args = launcher_;
    args.insert(args.end(),
                {binary(), "--policy", policy_, "--socket", socket_, "--admin-socket",
                 admin_socket_, "--threads", "2", "--log-level", "info", "--state-dir", dir_});
    for (auto& a : extra_args) args.push_back(std::move(a));
    pid_ = spawn(args, log_);
    return pid_ > 0 && wait_ready();
  }

  // Spawns a process with stdout and stderr appended to `log`; returns its pid.
  static pid_t spawn(const std::vector<std::string>& args, const std::string& log) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    pid_t pid = -1;
    if (posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&actions);
    return pid;
  }

  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_status_ = status;
        pid_ = -1;
        return false;
      }
      Client a, b;
      if (a.connect(admin_socket_) && b.connect(socket_)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  // Sends `sig` and waits for the exit; returns the exit code, or 128 + signal when killed.
  int stop(int sig = SIGTERM, std::chrono::milliseconds timeout = std::chrono::seconds(15)) {
    if (pid_ <= 0) return decode(exit_status_);
    ::kill(pid_, sig);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
    exit_status_ = status;
    return decode(status);
  }

  void signal(int sig) const { ::kill(pid_, sig); }

  Client client(bool admin = false) const {
    Client c;
    c.set_timeout(std::chrono::seconds(20));
    c.connect(admin ? admin_socket_ : socket_);
    return c;
  }

  bool ok() const { return ok_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  const std::string& policy_path() const { return policy_; }
  std::string audit_path() const { return dir_ + "/audit.log"; }
  const std::string& socket_path() const { return socket_; }
  const std::string& admin_socket_path() const { return admin_socket_; }
  std::string log() const { return read_file(log_); }

  static int decode(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
  }

 private:
  std::vector<std::string> launcher_;
  std::string dir_, policy_, socket_, admin_socket_, log_;
  pid_t pid_ = -1;
  int exit_status_ = 0;
  bool ok_ = false;
};

// One command's reply (an error reply is returned as a value too).
inline resp::Value call(Client& c, std::initializer_list<std::string_view> args) {
  resp::Value v;
  if (!c.call(args, v)) {
    v.type = resp::Value::Type::kError;
    v.str = "CLIENT " + c.error();
  }
  return v;
}

}  // namespace sluice::testing
