// A minimal blocking RESP client over a Unix socket, for sluicectl and the integration tests.
// One request at a time, or a pipeline with send() + read(). Not thread-safe.
#pragma once

#include <chrono>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/resp.h"

namespace sluice {

class Client {
 public:
  Client() = default;
  ~Client();
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Connects to the socket at `path`; false with `error()` set when that fails.
  bool connect(const std::string& path);
  bool connected() const { return fd_ >= 0; }
  void close();
  // Applies to every later send and read; 0 = wait forever.
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

  // Sends one command and reads its reply.
  bool call(std::initializer_list<std::string_view> args, resp::Value& reply);
  bool call(const std::vector<std::string>& args, resp::Value& reply);

  // Raw bytes out (a pipeline, or a deliberately broken frame).
  bool send(std::string_view bytes);
  // The next reply; false on EOF, timeout or a protocol error.
  bool read(resp::Value& reply);

  const std::string& error() const { return error_; }

 private:
  bool fail_(std::string message);
  int fd_ = -1;
  std::chrono::milliseconds timeout_{0};
  std::string in_;
  size_t in_pos_ = 0;
  std::string error_;
};

}  // namespace sluice
