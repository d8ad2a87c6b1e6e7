// Tools for the abuse and security suites: raw sockets that misbehave on purpose, the
// daemon's resident memory, and a well-behaved client's decision latency.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sluiced_fixture.h"

namespace sluice::testing {

// Memory and latency bounds hold for an optimised build without sanitizers; under ASan
// (redzones, a quarantine of freed memory), TSan or -O0 the same tests check behaviour only.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(NDEBUG)
inline constexpr bool kBoundsApply = false;
#else
inline constexpr bool kBoundsApply = true;
#endif

// A raw Unix-socket connection: -1 when connecting fails.
inline int connect_raw(const std::string& path, bool nonblocking = false) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  if (nonblocking) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

// Blocking send of everything; false when the peer closed first.
inline bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Non-blocking: sends `unit` again and again until the socket would block; returns the bytes
// accepted by the kernel.
inline size_t send_until_full(int fd, std::string_view unit, size_t max_bytes) {
  size_t sent = 0, offset = 0;
  while (sent < max_bytes) {
    const ssize_t n = ::send(fd, unit.data() + offset, unit.size() - offset, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
    offset = (offset + static_cast<size_t>(n)) % unit.size();
  }
  return sent;
}

// Reads until EOF or `timeout`; returns what was read and sets `eof`.
inline std::string read_until_eof(int fd, std::chrono::milliseconds timeout, bool& eof) {
  std::string got;
  eof = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return got;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof = true;  // EOF, or a reset: either way the daemon closed it
      return got;
    }
    if (got.size() < (1u << 20)) got.append(buf, static_cast<size_t>(n));
  }
}

// Every connection of these suites is a descriptor in this process too.
inline void raise_fd_limit() {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
}

// VmRSS of a process in KiB (0 when it is gone).
inline long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

struct Latency {
  double p50_us = 0, p99_us = 0, max_us = 0;
  int errors = 0;
};

// `n` sequential SL.CHECKs from one well-behaved client, each timed from send to reply.
inline Latency decision_latency(const Daemon& d, int n, const std::string& resource,
                                const std::string& subject) {
  Client c = d.client();
  std::vector<double> us;
  us.reserve(static_cast<size_t>(n));
  Latency out;
  const std::vector<std::string> args = {"SL.CHECK", resource, subject};
  for (int i = 0; i < n; ++i) {
    resp::Value v;
    const auto t0 = std::chrono::steady_clock::now();
    const bool ok = c.call(args, v);
    const auto t1 = std::chrono::steady_clock::now();
    if (!ok || v.type != resp::Value::Type::kArray) {
      ++out.errors;
      if (!ok) break;
      continue;
    }
    us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  if (us.empty()) return out;
  std::sort(us.begin(), us.end());
  out.p50_us = us[us.size() / 2];
  out.p99_us = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  out.max_us = us.back();
  return out;
}

// The daemon's own count of open connections (SL.INFO), -1 when it does not answer.
inline long daemon_connections(const Daemon& d) {
  Client c = d.client();
  resp::Value v = call(c, {"SL.INFO"});
  const size_t at = v.str.find("connections:");
  if (at == std::string::npos) return -1;
  return std::stol(v.str.substr(at + 12)) - 1;  // not counting this probe
}

// Polls until the daemon counts `n` connections besides the probe (a closed probe may still
// be counted for a moment: it is closed on another thread); returns the last count.
inline long wait_for_connections(const Daemon& d, long n,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  long seen = daemon_connections(d);
  while (seen != n && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    seen = daemon_connections(d);
  }
  return seen;
}

}  // namespace sluice::testing
