#include "connection.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "decide_script.h"
#include "sentinel.h"

namespace sluice::redis_plugin {
namespace {

constexpr int64_t kMinBackoffMs = 10;
constexpr size_t kReadChunk = 64 * 1024;

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

timeval to_timeval(int64_t ms) {
  timeval tv;
  tv.tv_sec = static_cast<time_t>(ms / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  return tv;
}

struct ReplyDeleter {
  void operator()(redisReply* r) const {
    if (r != nullptr) freeReplyObject(r);
  }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

ReplyPtr command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return ReplyPtr(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data())));
}

// Errors that mean this server cannot serve writes now; another connection attempt may reach
// one that can (failover, restart).
bool is_unavailable_error(std::string_view msg) {
  return msg.starts_with("READONLY") || msg.starts_with("LOADING") ||
         msg.starts_with("MASTERDOWN") || msg.starts_with("BUSY") || msg.starts_with("OOM") ||
         msg.starts_with("NOAUTH") || msg.starts_with("CLUSTERDOWN");
}

// The major version in INFO's "redis_version:7.0.15", or 0 if there is none.
int redis_major_version(std::string_view info) {
  constexpr std::string_view kField = "redis_version:";
  const size_t at = info.find(kField);
  if (at == std::string_view::npos) return 0;
  int major = 0;
  for (size_t i = at + kField.size(); i < info.size() && info[i] >= '0' && info[i] <= '9'; ++i) {
    major = major * 10 + (info[i] - '0');
    if (major > 1000) return 0;
  }
  return major;
}

}  // namespace

Connection::Connection(Shared& shared, int index) : shared_(shared), index_(index) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (shared_.config.mode == Mode::kSingle) {  // Sentinel mode: unknown until asked
    host_ = shared_.config.host;
    port_ = shared_.config.port;
    socket_path_ = shared_.config.socket_path;
  }
}

Connection::Connection(Shared& shared, int index, HostPort node) : shared_(shared), index_(index) {
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  host_ = std::move(node.host);
  port_ = node.port;
}

std::string Connection::where() const {
  std::lock_guard lock(mu_);
  if (shared_.config.mode == Mode::kSingle) return shared_.config.endpoint();
  const std::string node = HostPort{host_, port_}.name();
  if (shared_.config.mode == Mode::kCluster) return node;
  return shared_.config.endpoint() + (port_ != 0 ? " (last at " + node + ")" : "");
}

Connection::~Connection() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  if (wake_fd_ >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  disconnect(SLUICE_ERR_UNAVAILABLE, "redis plugin: the storage is closing.");
  std::deque<std::unique_ptr<Request>> left;
  {
    std::lock_guard lock(mu_);
    left.swap(queue_);
  }
  for (auto& r : left) {
    shared_.errors.fetch_add(1, std::memory_order_relaxed);
    shared_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    r->complete(SLUICE_ERR_UNAVAILABLE, "redis plugin: the storage is closing.");
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

void Connection::follow_master(const HostPort& master) {
  {
    std::lock_guard lock(mu_);
    if (!up_ || (master.host == host_ && master.port == port_)) return;
    switch_to_ = master.name();
  }
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

bool Connection::up_elsewhere(const HostPort& master) const {
  std::lock_guard lock(mu_);
  return up_ && !(master.host == host_ && master.port == port_);
}

bool Connection::start(std::string& error) {
  if (wake_fd_ < 0) {
    error = std::string("redis plugin: cannot create an eventfd: ") + std::strerror(errno) + ".";
    return false;
  }
  bool fatal = false;
  std::string why;
  if (connect(why, fatal)) {
    ever_connected_ = true;
    set_up(true, "");
  } else if (fatal) {
    error = "redis plugin: Redis at " + where() + " " + why + ".";
    return false;
  } else {
    shared_.log(2, "redis plugin: Redis at " + where() + " " + why +
                       "; decisions follow the policy's storage-failure behaviour until it "
                       "answers, retrying in the background.");
    set_up(false, why);
  }
  thread_ = std::thread([this] { run(); });
  return true;
}

bool Connection::enqueue(std::unique_ptr<Request>& request) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (!up_ || stopping_) return false;
    queue_.push_back(std::move(request));
    wake = !wake_pending_ &&
           (!saturated_ || queue_.size() >= static_cast<size_t>(shared_.config.coalesce));
    wake_pending_ = wake_pending_ || wake;
  }
  if (wake) {
    const uint64_t one = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }
  return true;
}

std::string Connection::down_reason() const {
  std::lock_guard lock(mu_);
  return reason_;
}

void Connection::set_up(bool up, const std::string& reason) {
  std::deque<std::unique_ptr<Request>> refused;
  {
    std::lock_guard lock(mu_);
    up_ = up;
    saturated_ = false;
    if (!up) {
      reason_ = reason;
      refused.swap(queue_);
    }
  }
  breaker_.store(up ? Breaker::kClosed : Breaker::kOpen, std::memory_order_relaxed);
  if (refused.empty()) return;
  const std::string message =
      "redis plugin: Redis at " + where() + " is unavailable (circuit open: " + reason + ").";
  for (auto& r : refused) shared_.fail(std::move(r), SLUICE_ERR_UNAVAILABLE, message);
}

bool Connection::connect(std::string& error, bool& fatal) {
  const Config& c = shared_.config;
  fatal = false;
  if (c.mode == Mode::kSentinel) {
    HostPort master;
    if (!ask_sentinels(c, sentinel_turn_, master, error, fatal)) return false;
    std::lock_guard lock(mu_);
    host_ = master.host;
    port_ = master.port;
  }
  const timeval connect_tv = to_timeval(c.connect_timeout_ms);
  redisContext* ctx = socket_path_.empty()
                          ? redisConnectWithTimeout(host_.c_str(), port_, connect_tv)
                          : redisConnectUnixWithTimeout(socket_path_.c_str(), connect_tv);
  if (ctx == nullptr) {
    error = "cannot be reached: out of memory";
    return false;
  }
  if (ctx->err != 0) {
    error = std::string("cannot be reached: ") + ctx->errstr;
    redisFree(ctx);
    return false;
  }
  redisSetTimeout(ctx, to_timeval(c.command_timeout_ms));
  auto run = [&](const std::vector<std::string>& args, const char* what) -> ReplyPtr {
    ReplyPtr reply = command(ctx, args);
    if (!reply) {
      error = std::string("did not answer ") + what + ": " + ctx->errstr;
      return nullptr;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
      const std::string_view msg(reply->str, reply->len);
      error = std::string("refused ") + what + ": " + std::string(msg);
      fatal = !is_unavailable_error(msg) || msg.starts_with("NOAUTH");
      return nullptr;
    }
    return reply;
  };
  bool ok = true;
  if (!c.password.empty()) {
    ok = c.user.empty() ? run({"AUTH", c.password}, "AUTH") != nullptr
                        : run({"AUTH", c.user, c.password}, "AUTH") != nullptr;
  }
  if (ok && c.db != 0) ok = run({"SELECT", std::to_string(c.db)}, "SELECT") != nullptr;
  if (ok && c.mode == Mode::kSentinel) {
    // Sentinels name the new master a moment before it knows; a demoted one may still be
    // named. Writing to anything but a master would only meet READONLY.
    ReplyPtr role = run({"ROLE"}, "ROLE");
    ok = role != nullptr;
    if (ok && (role->type != REDIS_REPLY_ARRAY || role->elements == 0 ||
               role->element[0]->type != REDIS_REPLY_STRING ||
               std::string_view(role->element[0]->str, role->element[0]->len) != "master")) {
      error = "is not a master yet (the Sentinels are switching)";
      ok = false;
    }
  }
  if (ok) {
    // The script needs SET ... KEEPTTL (Redis 6.0). Users whose ACL refuses INFO skip the
    // check rather than the plugin.
    ReplyPtr info = command(ctx, {"INFO", "server"});
    if (info && info->type == REDIS_REPLY_STRING) {
      const int major = redis_major_version(std::string_view(info->str, info->len));
      if (major > 0 && major < 6) {
        error = "runs Redis " + std::to_string(major) + ".x; the plugin needs Redis 6.0 or later";
        fatal = true;
        ok = false;
      }
    }
  }
  if (ok) {
    ReplyPtr sha = run({"SCRIPT", "LOAD", std::string(kDecideScript)}, "SCRIPT LOAD");
    ok = sha != nullptr;
    if (ok && sha->type != REDIS_REPLY_STRING) {
      error = "answered SCRIPT LOAD with something other than a SHA1";
      fatal = true;
      ok = false;
    }
    if (ok) sha_.assign(sha->str, sha->len);
  }
  if (ok) {
    const int flags = fcntl(ctx->fd, F_GETFL, 0);
    if (flags < 0 || fcntl(ctx->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
      error = std::string("cannot make the socket non-blocking: ") + std::strerror(errno);
      ok = false;
    }
  }
  if (!ok) {
    redisFree(ctx);
    return false;
  }
  ctx_ = ctx;
  reader_ = redisReaderCreate();
  wbuf_.clear();
  woff_ = 0;
  return true;
}

void Connection::fail(Call& call, sluice_status status, const std::string& message) {
  for (auto& r : call.requests) shared_.fail(std::move(r), status, message);
  call.requests.clear();
}

void Connection::disconnect(sluice_status status, const std::string& why) {
  if (ctx_ != nullptr) {
    redisFree(ctx_);
    ctx_ = nullptr;
  }
  if (reader_ != nullptr) {
    redisReaderFree(reader_);
    reader_ = nullptr;
  }
  wbuf_.clear();
  woff_ = 0;
  std::deque<Call> calls;
  calls.swap(in_flight_);
  set_up(false, why);
  const std::string message = "redis plugin: " + why + ".";
  for (auto& call : calls) fail(call, status, message);
  if (shared_.router != nullptr) shared_.router->node_down();
}

void Connection::send_call(Call call) {
  if (call.asking) {
    wbuf_ += "*1\r\n$6\r\nASKING\r\n";
    call.asking_reply = true;
  }
  if (call.requests.front()->record != Request::RecordOp::kNone) {
    wbuf_ += call.requests.front()->command;  // a call holds one record operation
  } else {
    encode_call(shared_.config, call.requests, call.eval, sha_, kDecideScript, wbuf_);
    shared_.script_calls.fetch_add(1, std::memory_order_relaxed);
  }
  call.deadline_ms = INT64_MAX;
  for (const auto& r : call.requests) call.deadline_ms = std::min(call.deadline_ms, r->deadline_ms);
  in_flight_.push_back(std::move(call));
}

void Connection::send_queued() {
  const size_t per_call = static_cast<size_t>(shared_.config.coalesce);
  const size_t depth = static_cast<size_t>(shared_.config.pipeline);
  std::deque<std::unique_ptr<Request>> queued;
  {
    std::lock_guard lock(mu_);
    wake_pending_ = false;
    // Below `pipeline` calls in flight everything goes; beyond it only full calls do, so
    // nothing waits longer than one reply, and a call's fixed cost is always shared widely.
    const size_t free_calls = in_flight_.size() < depth ? depth - in_flight_.size() : 0;
    const size_t calls = std::max(free_calls, queue_.size() / per_call);
    const size_t n = std::min(queue_.size(), calls * per_call);
    if (n == queue_.size()) {
      queued.swap(queue_);
    } else {
      for (size_t i = 0; i < n; ++i) {
        queued.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    saturated_ = in_flight_.size() + (n + per_call - 1) / per_call >= depth;
  }
  for (auto& call : make_calls(queued)) send_call(std::move(call));
}

std::vector<Connection::Call> Connection::make_calls(
    std::deque<std::unique_ptr<Request>>& queued) const {
  const size_t per_call = static_cast<size_t>(shared_.config.coalesce);
  std::vector<Call> calls;
  auto is_record = [](const std::unique_ptr<Request>& r) {
    return r->record != Request::RecordOp::kNone;
  };
  if (shared_.config.mode != Mode::kCluster) {
    while (!queued.empty()) {
      Call& call = calls.emplace_back();
      // A record operation is a command of its own; batches fold into script calls.
      if (is_record(queued.front())) {
        call.requests.push_back(std::move(queued.front()));
        queued.pop_front();
        continue;
      }
      for (size_t j = 0; j < per_call && !queued.empty() && !is_record(queued.front()); ++j) {
        call.requests.push_back(std::move(queued.front()));
        queued.pop_front();
      }
    }
    return calls;
  }
  // A script call must stay within one slot: requests coalesce with those of their slot.
  std::vector<std::pair<uint16_t, size_t>> open;  // slot, call; few slots per wake-up
  for (auto& r : queued) {
    if (r->asking || is_record(r)) {  // ASKING holds for one command: a call of its own
      Call& call = calls.emplace_back();
      call.asking = r->asking;
      r->asking = false;
      call.requests.push_back(std::move(r));
      continue;
    }
    auto it = std::find_if(open.begin(), open.end(), [&](const auto& o) {
      return o.first == r->slot && calls[o.second].requests.size() < per_call;
    });
    if (it == open.end()) {
      open.emplace_back(r->slot, calls.size());
      calls.emplace_back();
      it = open.end() - 1;
    }
    calls[it->second].requests.push_back(std::move(r));
  }
  queued.clear();
  return calls;
}

int64_t Connection::expire_queued(int64_t now_ms) {
  std::vector<std::unique_ptr<Request>> late;
  int64_t next = INT64_MAX;
  {
    std::lock_guard lock(mu_);
    // Deadlines grow with submission order, give or take a millisecond: the front decides.
    while (!queue_.empty() && queue_.front()->deadline_ms <= now_ms) {
      late.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    if (!queue_.empty()) next = queue_.front()->deadline_ms;
  }
  if (!late.empty()) {
    Call call;
    call.requests = std::move(late);
    fail(call, SLUICE_ERR_TIMEOUT,
         "redis plugin: Redis did not answer within " +
             std::to_string(shared_.config.command_timeout_ms) + " ms.");
  }
  return next;
}

bool Connection::write_some(std::string& error) {
  while (woff_ < wbuf_.size()) {
    const ssize_t n = ::send(ctx_->fd, wbuf_.data() + woff_, wbuf_.size() - woff_, MSG_NOSIGNAL);
    if (n > 0) {
      woff_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    error = std::string("writing to Redis failed: ") + std::strerror(errno);
    return false;
  }
  wbuf_.clear();
  woff_ = 0;
  return true;
}

bool Connection::read_some(std::string& error) {
  char buf[kReadChunk];
  for (;;) {
    const ssize_t n = ::recv(ctx_->fd, buf, sizeof buf, 0);
    if (n == 0) {
      error = "Redis closed the connection";
      return false;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
      error = std::string("reading from Redis failed: ") + std::strerror(errno);
      return false;
    }
    if (redisReaderFeed(reader_, buf, static_cast<size_t>(n)) != REDIS_OK) {
      error = "Redis sent a reply that cannot be parsed";
      return false;
    }
    for (;;) {
      void* raw = nullptr;
      if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
        error = "Redis sent a reply that cannot be parsed";
        return false;
      }
      if (raw == nullptr) break;
      ReplyPtr reply(static_cast<redisReply*>(raw));
      if (in_flight_.empty()) {
        error = "Redis sent a reply nobody asked for";
        return false;
      }
      if (in_flight_.front().asking_reply) {  // +OK to ASKING; the call's own reply follows
        in_flight_.front().asking_reply = false;
        continue;
      }
      on_reply(*reply);
      if (ctx_ == nullptr) return true;  // on_reply reset the connection
    }
    if (static_cast<size_t>(n) < sizeof buf) return true;
  }
}

void Connection::on_reply(const redisReply& reply) {
  Call call = std::move(in_flight_.front());
  in_flight_.pop_front();
  const bool record = call.requests.front()->record != Request::RecordOp::kNone;
  if (reply.type == REDIS_REPLY_ERROR) {
    const std::string_view msg(reply.str, reply.len);
    if (msg.starts_with("NOSCRIPT") && !call.eval && !record) {
      // Redis restarted or flushed its scripts: this call carries the script itself, which
      // also caches it again for the calls behind it.
      shared_.script_reloads.fetch_add(1, std::memory_order_relaxed);
      call.eval = true;
      send_call(std::move(call));
      return;
    }
    if (shared_.router != nullptr &&
        (msg.starts_with("MOVED ") || msg.starts_with("ASK ") || msg.starts_with("TRYAGAIN") ||
         msg.starts_with("CLUSTERDOWN"))) {
      // The slot lives elsewhere now, is migrating, or the cluster is failing over: the router
      // sends the call's requests on (they stay in flight).
      HostPort from;
      {
        std::lock_guard lock(mu_);
        from = HostPort{host_, port_};
      }
      for (auto& r : call.requests) shared_.router->reroute(std::move(r), msg, from);
      return;
    }
    if (is_unavailable_error(msg)) {
      fail(call, SLUICE_ERR_UNAVAILABLE,
           "redis plugin: Redis at " + where() + " cannot serve: " + std::string(msg) + ".");
      // A replica after a failover, or a server still loading: reconnect rather than insist.
      disconnect(SLUICE_ERR_UNAVAILABLE, "Redis answered " + std::string(msg.substr(0, 40)));
      return;
    }
    fail(call, SLUICE_ERR_INTERNAL,
         std::string(record ? "redis plugin: Redis refused a record command: "
                            : "redis plugin: the decision script failed: ") +
             std::string(msg) + ".");
    return;
  }
  if (record) return on_record_reply(std::move(call.requests.front()), reply);
  size_t items = 0;
  for (const auto& r : call.requests) items += r->count;
  if (reply.type != REDIS_REPLY_STRING || reply.len != kReplyItemSize * items) {
    fail(call, SLUICE_ERR_INTERNAL,
         "redis plugin: the decision script answered with an unexpected shape.");
    return;
  }
  const char* at = reply.str;
  for (auto& r : call.requests) {
    bool well_formed = true;
    for (size_t i = 0; i < r->count; ++i) {
      well_formed = decode_result(at, r->results[i]) && well_formed;
      at += kReplyItemSize;
    }
    shared_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    if (well_formed) {
      r->complete(SLUICE_OK, nullptr);
    } else {
      shared_.errors.fetch_add(1, std::memory_order_relaxed);
      r->complete(SLUICE_ERR_INTERNAL, "redis plugin: the decision script answered a non-integer.");
    }
  }
}

void Connection::on_record_reply(std::unique_ptr<Request> request, const redisReply& reply) {
  if (request->record == Request::RecordOp::kPut) {
    if (reply.type != REDIS_REPLY_STATUS) {
      return shared_.fail(std::move(request), SLUICE_ERR_INTERNAL,
                          "redis plugin: Redis answered a record's SET with something other "
                          "than OK.");
    }
    shared_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    return request->complete_record(nullptr, 0);
  }
  const char* value = nullptr;
  size_t len = 0;
  if (reply.type == REDIS_REPLY_NIL) {
    shared_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    return request->complete_record(nullptr, 0);
  }
  if (reply.type != REDIS_REPLY_STRING ||
      !decode_record(reply.str, reply.len, request->record_now_ms, value, len)) {
    return shared_.fail(std::move(request), SLUICE_ERR_CORRUPT,
                        "redis plugin: a record's key holds something sluice did not write.");
  }
  shared_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  request->complete_record(value, len);
}

void Connection::wait_for_wake(int64_t timeout_ms) {
  pollfd p{wake_fd_, POLLIN, 0};
  ::poll(&p, 1, static_cast<int>(std::clamp<int64_t>(timeout_ms, 0, 60000)));
  uint64_t v;
  [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &v, sizeof v);
}

void Connection::run() {
  const Config& c = shared_.config;
  int64_t backoff = kMinBackoffMs;
  int64_t next_attempt = steady_ms() + (ctx_ == nullptr ? backoff : 0);
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stopping_) break;
    }
    if (ctx_ == nullptr) {
      const int64_t now = steady_ms();
      if (now < next_attempt) {
        wait_for_wake(next_attempt - now);
        continue;
      }
      breaker_.store(Breaker::kHalfOpen, std::memory_order_relaxed);
      std::string why;
      bool fatal = false;
      if (connect(why, fatal)) {
        backoff = kMinBackoffMs;
        if (ever_connected_) shared_.reconnects.fetch_add(1, std::memory_order_relaxed);
        ever_connected_ = true;
        set_up(true, "");
        shared_.log(
            1, "redis plugin: connection " + std::to_string(index_) + " to " + where() + " is up.");
      } else {
        breaker_.store(Breaker::kOpen, std::memory_order_relaxed);
        ++sentinel_turn_;  // Sentinel mode: ask another Sentinel first next time
        {
          std::lock_guard lock(mu_);
          reason_ = why;
        }
        backoff = std::min(backoff * 2, c.reconnect_max_ms);
        next_attempt = steady_ms() + backoff;
      }
      continue;
    }

    send_queued();
    std::string error;
    if (!write_some(error)) {
      shared_.log(2, "redis plugin: " + error + "; reconnecting.");
      disconnect(SLUICE_ERR_UNAVAILABLE, error);
      next_attempt = steady_ms();
      continue;
    }
    pollfd fds[2] = {{ctx_->fd, static_cast<short>(POLLIN | (wbuf_.empty() ? 0 : POLLOUT)), 0},
                     {wake_fd_, POLLIN, 0}};
    int64_t deadline = expire_queued(steady_ms());
    if (!in_flight_.empty()) deadline = std::min(deadline, in_flight_.front().deadline_ms);
    int timeout = -1;
    if (deadline != INT64_MAX) {
      timeout = static_cast<int>(std::clamp<int64_t>(deadline - steady_ms() + 1, 0, 60000));
    }
    const int ready = ::poll(fds, 2, timeout);
    if (ready < 0 && errno != EINTR) {
      disconnect(SLUICE_ERR_UNAVAILABLE, std::string("poll failed: ") + std::strerror(errno));
      continue;
    }
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &v, sizeof v);
      std::string moved_to;
      {
        std::lock_guard lock(mu_);
        moved_to.swap(switch_to_);
      }
      if (!moved_to.empty()) {
        const std::string why = "the Sentinels switched the master to " + moved_to;
        shared_.log(2, "redis plugin: " + why + "; reconnecting.");
        disconnect(SLUICE_ERR_UNAVAILABLE, why);
        next_attempt = steady_ms();
        continue;
      }
    }
    if (fds[0].revents & (POLLIN | POLLERR | POLLHUP)) {
      if (!read_some(error)) {
        shared_.log(2, "redis plugin: " + error + "; reconnecting.");
        disconnect(SLUICE_ERR_UNAVAILABLE, error);
        next_attempt = steady_ms();
        continue;
      }
      if (ctx_ == nullptr) {
        next_attempt = steady_ms() + backoff;
        continue;
      }
    }
    if (!in_flight_.empty() && in_flight_.front().deadline_ms <= steady_ms()) {
      const std::string why =
          "Redis did not answer within " + std::to_string(c.command_timeout_ms) + " ms";
      shared_.log(2, "redis plugin: " + why + "; resetting the connection.");
      disconnect(SLUICE_ERR_TIMEOUT, why);
      next_attempt = steady_ms();
    }
  }
  disconnect(SLUICE_ERR_UNAVAILABLE, "the storage is closing");
}

}  // namespace sluice::redis_plugin
