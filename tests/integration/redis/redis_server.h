// A throwaway redis-server on a temporary Unix socket, for tests that need to kill and
// restart it. No persistence, no TCP port.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace sluice::testing {

class RedisServer {
 public:
  // `socket_path` empty: a fresh path under /tmp. `extra_args` go to redis-server as they are
  // (e.g. {"--requirepass", "secret"}).
  explicit RedisServer(std::string socket_path = "", std::vector<std::string> extra_args = {});
  ~RedisServer();  // stops the server and removes its files
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Spawns redis-server and waits (up to 5 s) until it answers PING. False if it does not.
  bool start();
  // SIGKILL, as a crash would; waits for the process.
  void kill();
  // SIGSTOP / SIGCONT: a server that hangs without closing its connections.
  void pause();
  void resume();
  bool running() const { return pid_ > 0; }

  const std::string& socket_path() const { return socket_; }
  std::string url() const { return "unix://" + socket_; }

  // Runs one command over a short-lived connection; returns the reply rendered as text
  // ("(nil)", an integer, a string, "ERR ...", or elements joined by '\n').
  std::string command(const std::string& line) const;
  // The same with the arguments as they are (binary values, spaces).
  std::string command(const std::vector<std::string>& args) const;

 private:
  std::string socket_;
  std::string dir_;
  std::vector<std::string> extra_args_;
  pid_t pid_ = -1;
};

}  // namespace sluice::testing
