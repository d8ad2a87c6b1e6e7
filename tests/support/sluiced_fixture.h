// A real sluiced process for tests: a temporary directory with the policy and both sockets, the
// daemon started from the build tree (its plugin folder searched first), ready once both
// sockets answer, stopped by PID with a signal. Qt-free: the GUI suites wrap it
// (tests/gui/engine_process.h); tests/support/sluiced.py starts sluiced the same way for Python.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "client.h"
#include "sluice/resp.h"

namespace sluice::testing {

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& text);

class Daemon {
 public:
  // Writes `policy_yaml` and starts sluiced on it; check ok() afterwards.
  // `launcher` runs sluiced (e.g. {"/usr/bin/prlimit", "--nofile=1024:1024"}).
  explicit Daemon(const std::string& policy_yaml, std::vector<std::string> extra_args = {},
                  std::vector<std::string> launcher = {});
  // Kills a daemon still running (SIGKILL) and removes the directory.
  ~Daemon();

  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // This build tree's sluiced and plugin folder.
  static std::string binary();
  static std::string plugin_dir();

  // Starts (another) sluiced with this directory's paths and `extra_args`; true once both
  // sockets answer.
  bool start(std::vector<std::string> extra_args = {});
  // Stops a running daemon (SIGTERM) and starts it again with the constructor's arguments,
  // on the same sockets and policy file.
  bool restart();

  // Spawns a process with stdout and stderr appended to `log`; returns its pid (-1 on failure).
  static pid_t spawn(const std::vector<std::string>& args, const std::string& log);

  // Polls both sockets until they accept a connection and the admin socket answers a PING;
  // false when the daemon exits first or `timeout` passes.
  bool wait_ready(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Sends `sig` and waits for the exit (SIGKILL after `timeout`); returns the exit code, or
  // 128 + signal when killed.
  int stop(int sig = SIGTERM, std::chrono::milliseconds timeout = std::chrono::seconds(15));

  void signal(int sig) const;

  // A client connected to the decision socket (or the admin socket), 20 s timeout.
  Client client(bool admin = false) const;

  bool ok() const { return ok_; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  const std::string& policy_path() const { return policy_; }
  std::string audit_path() const { return dir_ + "/audit.log"; }
  const std::string& socket_path() const { return socket_; }
  const std::string& admin_socket_path() const { return admin_socket_; }
  const std::string& log_path() const { return log_; }
  // Everything the daemons started here wrote (stdout and stderr).
  std::string log() const { return read_file(log_); }

  // A waitpid status as an exit code: the code, 128 + signal when killed, -1 otherwise.
  static int decode(int status);

 private:
  std::vector<std::string> launcher_, extra_args_;
  std::string dir_, policy_, socket_, admin_socket_, log_;
  pid_t pid_ = -1;
  int exit_status_ = 0;
  bool ok_ = false;
};

// One command's reply (an error reply is returned as a value too).
resp::Value call(Client& c, std::initializer_list<std::string_view> args);

// Runs this build's sluicectl against `d` with `args`; returns its exit code and fills `output`
// (stdout and stderr).
int sluicectl(const Daemon& d, std::vector<std::string> args, std::string& output);

}  // namespace sluice::testing
