#include "client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace sluice {

Client::~Client() { close(); }

Client::Client(Client&& other) noexcept { *this = std::move(other); }

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    timeout_ = other.timeout_;
    in_ = std::move(other.in_);
    in_pos_ = other.in_pos_;
    error_ = std::move(other.error_);
  }
  return *this;
}

void Client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  in_.clear();
  in_pos_ = 0;
}

bool Client::fail_(std::string message) {
  error_ = std::move(message);
  return false;
}

bool Client::connect(const std::string& path) {
  close();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return fail_("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return fail_(std::string("socket: ") + std::strerror(errno));
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int e = errno;
    close();
    return fail_("cannot connect to " + path + ": " + std::strerror(e));
  }
  return true;
}

namespace {
// Waits until fd is ready for `events`; false on timeout.
bool wait_ready(int fd, short events, std::chrono::milliseconds timeout) {
  if (timeout.count() == 0) return true;
  pollfd p{fd, events, 0};
  int r;
  do {
    r = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (r < 0 && errno == EINTR);
  return r > 0;
}
}  // namespace

bool Client::send(std::string_view bytes) {
  if (fd_ < 0) return fail_("not connected");
  size_t sent = 0;
  while (sent < bytes.size()) {
    if (!wait_ready(fd_, POLLOUT, timeout_)) return fail_("timed out sending");
    const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_(std::string("send: ") + std::strerror(errno));
    }
    sent += static_cast<size_t>(n);
  }
  return true;
}

bool Client::read(resp::Value& reply) {
  if (fd_ < 0) return fail_("not connected");
  for (;;) {
    const resp::ParseResult r =
        resp::parse_value(std::string_view(in_).substr(in_pos_), resp::Limits{}, reply);
    if (r.status == resp::ParseStatus::kComplete) {
      in_pos_ += r.consumed;
      if (in_pos_ == in_.size()) {
        in_.clear();
        in_pos_ = 0;
      }
      return true;
    }
    if (r.status == resp::ParseStatus::kError) return fail_(std::string(r.error));
    if (in_pos_ > 0) {
      in_.erase(0, in_pos_);
      in_pos_ = 0;
    }
    if (!wait_ready(fd_, POLLIN, timeout_)) return fail_("timed out waiting for a reply");
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_(std::string("recv: ") + std::strerror(errno));
    }
    if (n == 0) return fail_("connection closed by the server");
    in_.append(buf, static_cast<size_t>(n));
  }
}

bool Client::call(std::initializer_list<std::string_view> args, resp::Value& reply) {
  return send(resp::encode_command(args)) && read(reply);
}

bool Client::call(const std::vector<std::string>& args, resp::Value& reply) {
  return send(resp::encode_command(args)) && read(reply);
}

}  // namespace sluice
