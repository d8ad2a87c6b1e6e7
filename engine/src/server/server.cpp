#include "server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "admin.h"
#include "commands.h"
#include "dispatcher.h"
#include "metrics_http.h"
#include "sluice/mutex.h"
#include "wait_queue.h"

namespace sluice::server {
namespace asio = boost::asio;
using stream_protocol = asio::local::stream_protocol;
using boost::system::error_code;

std::string ServerContext::info_text() const {
  const auto policy = engine->policy();
  return fmt::format(
      "version:{}\r\npolicy_version:{}\r\nstorage:{}\r\nstorage_version:{}\r\nuptime_s:{}\r\n"
      "connections:{}\r\nthreads:{}\r\nactive_leases:{}\r\npid:{}\r\ninstance:{}\r\n",
      SLUICE_VERSION, policy->version(), engine->storage().name(), engine->storage().version(),
      uptime_s(), connections.load(std::memory_order_relaxed), threads, engine->active_leases(),
      ::getpid(), instance_id);
}

std::string ServerContext::new_instance_id() {
  std::random_device random;
  const uint64_t id = (uint64_t{random()} << 32) | random();
  return fmt::format("{:016x}", id);
}

namespace {

class Session;

// A connection turned away at accept (connection cap, admin uid): it gets one error reply,
// then the daemon stops sending and waits (at most a second) for the peer to hang up. Closing
// at once would race the peer's first command: its send would fail on a closed socket before
// it ever read the reply.
class Refusal : public std::enable_shared_from_this<Refusal> {
 public:
  Refusal(stream_protocol::socket socket, std::string reply)
      : socket_(std::move(socket)), reply_(std::move(reply)), timer_(socket_.get_executor()) {}

  void start() {
    auto self = shared_from_this();
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([self](const boost::system::error_code& ec) {
      if (!ec) self->close();
    });
    asio::async_write(socket_, asio::buffer(reply_),
                      [self](const boost::system::error_code& ec, size_t) {
                        if (ec) return self->close();
                        boost::system::error_code ignored;
                        self->socket_.shutdown(stream_protocol::socket::shutdown_send, ignored);
                        self->drain();
                      });
  }

 private:
  void drain() {
    auto self = shared_from_this();
    socket_.async_read_some(asio::buffer(sink_),
                            [self](const boost::system::error_code& ec, size_t) {
                              if (ec) return self->close();  // EOF: the peer has hung up
                              self->drain();
                            });
  }
  void close() {
    boost::system::error_code ignored;
    timer_.cancel();
    socket_.close(ignored);
  }

  stream_protocol::socket socket_;
  std::string reply_;
  asio::steady_timer timer_;
  std::array<char, 512> sink_{};
};

// One io_context and the thread that runs it, plus what its sessions share.
//
// Connection I/O does not go through Asio's per-operation reactor: every worker keeps its
// connections in a level-triggered epoll set of its own, which is registered in the worker's
// io_context as one descriptor. A request then costs one recv and one send, and no re-arming
// system call (Asio re-arms its edge-triggered registration or reads speculatively for every
// operation, which shows at pipeline 1). Asio still runs everything else: the loop itself,
// acceptors, timers, signals, and completions posted back from a plugin's thread.
struct Worker {
  explicit Worker(ServerContext& c) : ctx(c) {
    const int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
    epfd = fd;
    poller.assign(fd);  // the descriptor now belongs to `poller`
  }
  void arm();
  void poll();
  void bury(size_t index);  // moves a closed session out of `sessions`
  // The wait queue's clock runs on the first worker: one timer for the whole daemon, armed for
  // the earliest deadline or retry the queue holds (WaitQueue::run_due).
  void arm_wait(int64_t due_ms);

  ServerContext& ctx;
  // While poll() runs the ready sessions, their replies wait here and go out together after
  // the last one (as Redis writes in beforeSleep): the client then finds many replies ready
  // per wake-up instead of one.
  bool polling = false;
  std::vector<Session*> unflushed;
  std::vector<std::shared_ptr<Session>> sessions;   // owned while open; this thread only
  std::vector<std::shared_ptr<Session>> graveyard;  // closed during a handler, freed after it
  std::vector<std::string_view> argv;               // parse scratch, shared by the sessions
  uint64_t tick = 0;                                // seconds since start, advanced by the sweep
  int epfd = -1;
  asio::io_context ioc{1};
  asio::posix::stream_descriptor poller{ioc};
  asio::steady_timer sweep{ioc};
  asio::steady_timer wait_timer{ioc};
  int64_t wait_armed = WaitQueue::kNever;
  std::thread thread;
  // Set when `thread` has left its loop (Server::run waits for the admin thread with a bound).
  Mutex exit_mu;
  std::condition_variable exit_cv;
  bool exited SLUICE_GUARDED_BY(exit_mu) = false;
};

constexpr size_t kInitialInput = 4096;
constexpr size_t kShrinkAbove = 256u << 10;

// Connection buffers freed by a flood's sessions stay in glibc's arenas (70 % of what 2,000
// connections took, in test_abuse); once the flood has mostly gone, they are handed back to the
// system. One trim per flood, on the thread that closes the session that ends it: a few
// milliseconds, paid once.
constexpr size_t kTrimAfterPeak = 256;

void trim_after_flood(ServerContext& ctx, size_t open) {
  size_t peak = ctx.connection_peak.load(std::memory_order_relaxed);
  if (peak < kTrimAfterPeak || open > peak / 4) return;
  if (!ctx.connection_peak.compare_exchange_strong(peak, open, std::memory_order_relaxed)) return;
  ::malloc_trim(0);
}

// A connection: reads and parses requests, hands them to its Dispatcher, writes the replies.
class Session final : public std::enable_shared_from_this<Session>, public Dispatcher::Owner {
 public:
  Session(Worker& worker, int fd, bool admin, Peer peer)
      : worker_(worker), fd_(fd), admin_(admin), dispatcher_(worker.ctx, admin, peer, out_, *this) {
    last_tick_ = worker_.tick;
  }

  ~Session() {
    if (fd_ >= 0) ::close(fd_);
    // The admin count first (see Impl::on_accept).
    if (admin_) worker_.ctx.admin_connections.fetch_sub(1, std::memory_order_release);
    const size_t open = worker_.ctx.connections.fetch_sub(1, std::memory_order_release) - 1;
    trim_after_flood(worker_.ctx, open);
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Called on the worker's thread once the session is owned by worker_.sessions.
  void start(size_t index) {
    index_ = index;
    const int flags = ::fcntl(fd_, F_GETFL);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = this;
    if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0 ||
        ::epoll_ctl(worker_.epfd, EPOLL_CTL_ADD, fd_, &ev) != 0) {
      spdlog::warn("cannot register a connection: {}", std::strerror(errno));
      return close_();
    }
    events_ = EPOLLIN;
  }

  void on_events(uint32_t events) {
    if (closed_) return;
    if (events & EPOLLOUT) on_writable_();
    if (closed_) return;
    // Throttled, only a hang-up is listened for (update_interest_): what the peer sent is left
    // in the socket until the replies drain, as before; only its waiters are let go.
    if (!(events & EPOLLIN) && (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) && throttled_()) {
      return on_hangup_while_throttled_();
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) on_readable_();
  }

  // Graceful stop: what the peer already sent is still read and answered, then EOF closes.
  void shutdown_read() {
    if (closed_) return;
    if (::shutdown(fd_, SHUT_RD) != 0) close_();
  }

  void close() { close_(); }

  bool release_stale_snapshots() { return !closed_ && dispatcher_.release_stale_snapshots(); }

  void close_if_idle(uint64_t tick, uint64_t timeout_s) {
    if (closed_ || timeout_s == 0 || tick - last_tick_ < timeout_s) return;
    // A half-sent request does not keep a connection alive: idle means no byte arrived for the
    // timeout (a slow-loris client sending a frame a byte at a time would otherwise hold its
    // connection for ever).
    if (dispatcher_.pending() == 0 && pending_output_() == 0) {
      spdlog::debug("closing idle connection admin={} idle_s={}", admin_, tick - last_tick_);
      close_();
    }
  }

  size_t index() const { return index_; }
  void set_index(size_t i) { index_ = i; }

 private:
  const ServerOptions& options_() const { return worker_.ctx.options; }

  size_t pending_output_() const { return out_.size() - out_pos_; }
  bool throttled_() const {
    return pending_output_() >= options_().max_output_bytes ||
           dispatcher_.pending() >= options_().max_inflight;
  }

  // ---- input ------------------------------------------------------------------------------

  void on_readable_() {
    if (read_eof_ || close_after_flush_) return update_interest_();
    if (in_begin_ > 0) {
      std::memmove(in_.get(), in_.get() + in_begin_, in_end_ - in_begin_);
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    if (!in_ || (in_end_ == 0 && in_cap_ > kShrinkAbove)) {
      in_ = std::make_unique<char[]>(kInitialInput);
      in_cap_ = kInitialInput;
    } else if (in_end_ == in_cap_) {
      // A frame larger than the buffer: grow; the parser refuses it at the frame cap.
      const size_t cap = std::min(in_cap_ * 2, options_().limits.max_frame_bytes + 1);
      if (cap <= in_cap_) return close_();
      auto bigger = std::make_unique<char[]>(cap);
      std::memcpy(bigger.get(), in_.get(), in_end_);
      in_ = std::move(bigger);
      in_cap_ = cap;
    }
    const ssize_t n = ::recv(fd_, in_.get() + in_end_, in_cap_ - in_end_, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      spdlog::debug("connection read error: {}", std::strerror(errno));
      return close_();
    }
    if (n == 0) {
      read_eof_ = true;
      // A peer that stopped sending gets its waiting requests answered now, and a closed one
      // no longer holds a place in a queue.
      std::shared_ptr<Session> keep;
      if (dispatcher_.abandon_waits()) keep = std::move(keepalive_);
    } else {
      in_end_ += static_cast<size_t>(n);
      last_tick_ = worker_.tick;
    }
    resume_();
  }

  // Parses and runs every complete frame, writes what is ready, and reads on only as far as
  // the caps allow.
  void resume_() {
    process_();
    if (worker_.polling) {
      if (!deferred_) {
        deferred_ = true;
        worker_.unflushed.push_back(this);
      }
      return;
    }
    finish_();
  }

 public:
  // Writes what resume_() left for the end of the poll loop, then closes or re-arms.
  void finish_() {
    deferred_ = false;
    if (closed_) return;
    flush_();
    maybe_close_();
    if (!closed_) update_interest_();
  }

 private:
  void update_interest_() {
    uint32_t want = 0;
    // Throttled, the session still hears of a peer that hangs up: its waiting requests (WAIT)
    // must leave their queues at once, not at their deadlines.
    if (!read_eof_ && !close_after_flush_) {
      if (!throttled_()) {
        want |= EPOLLIN;
      } else if (!hangup_seen_) {
        want |= EPOLLRDHUP;
      }
    }
    if (pending_output_() > 0 && write_blocked_) want |= EPOLLOUT;
    if (want == events_) return;
    // With nothing wanted the descriptor leaves the set: epoll reports hang-ups even for an
    // empty interest mask, which would spin while replies are still being decided.
    epoll_event ev{};
    ev.events = want;
    ev.data.ptr = this;
    const int op = want == 0 ? EPOLL_CTL_DEL : events_ == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (::epoll_ctl(worker_.epfd, op, fd_, &ev) != 0) return close_();
    events_ = want;
  }

  void process_() {
    process_frames_();
    dispatcher_.submit_staged();
  }

  void process_frames_() {
    auto& argv = worker_.argv;
    while (in_begin_ < in_end_ && !closed_ && !close_after_flush_) {
      if (throttled_()) return;
      const resp::ParseResult r = resp::parse_command(
          std::span<char>(in_.get() + in_begin_, in_end_ - in_begin_), options_().limits, argv);
      if (r.status == resp::ParseStatus::kIncomplete) break;
      if (r.status == resp::ParseStatus::kError) {
        // The stream cannot be resynchronised: answer, then close once replies are out.
        spdlog::debug("closing connection after a malformed frame: {}", r.error);
        dispatcher_.protocol_error(r.error);
        close_after_flush_ = true;
        in_begin_ = in_end_ = 0;
        return;
      }
      in_begin_ += r.consumed;
      if (argv.empty()) continue;
      dispatcher_.execute(argv);
      if (dispatcher_.quit_requested()) close_after_flush_ = true;
    }
    if (in_begin_ == in_end_) in_begin_ = in_end_ = 0;
  }

  // The peer stopped sending (or went) while the session does not read: its waiting requests
  // are answered now; the rest of what it sent is read once the replies drain.
  void on_hangup_while_throttled_() {
    hangup_seen_ = true;
    std::shared_ptr<Session> keep;
    if (dispatcher_.abandon_waits()) keep = std::move(keepalive_);
    resume_();
  }

  // ---- completions on a plugin's thread ---------------------------------------------------

  void hold() override { keepalive_ = shared_from_this(); }

  void wake() override {
    // The session is alive: keepalive_ holds it while any decision is pending.
    asio::post(worker_.ioc, [this] { on_async_done_(); });
  }

  void on_async_done_() {
    std::shared_ptr<Session> keep;
    if (dispatcher_.complete_async()) keep = std::move(keepalive_);
    if (!closed_) resume_();
  }

  // ---- output -----------------------------------------------------------------------------

  void flush_() {
    if (closed_ || write_blocked_ || pending_output_() == 0) return;
    send_();
  }

  // Writes as much as the socket takes; the rest waits for EPOLLOUT.
  void send_() {
    while (out_pos_ < out_.size()) {
      const ssize_t n =
          ::send(fd_, out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          write_blocked_ = true;
          if (out_pos_ >= (64u << 10)) {
            out_.erase(0, out_pos_);
            out_pos_ = 0;
          }
          return;
        }
        spdlog::debug("connection write error: {}", std::strerror(errno));
        return close_();
      }
      out_pos_ += static_cast<size_t>(n);
    }
    out_.clear();
    out_pos_ = 0;
    write_blocked_ = false;
    if (out_.capacity() > kShrinkAbove) std::string().swap(out_);
  }

  void on_writable_() {
    write_blocked_ = false;
    send_();
    if (!closed_) resume_();
  }

  void maybe_close_() {
    if (closed_ || pending_output_() > 0 || dispatcher_.pending() > 0) return;
    if (close_after_flush_ || (read_eof_ && !throttled_())) close_();
  }

  void close_() {
    if (closed_) return;
    closed_ = true;
    if (events_ != 0) ::epoll_ctl(worker_.epfd, EPOLL_CTL_DEL, fd_, nullptr);
    ::close(fd_);
    fd_ = -1;
    worker_.bury(index_);  // the graveyard keeps the session until the handler is over
    if (dispatcher_.abandon_waits()) keepalive_.reset();
  }

  Worker& worker_;
  int fd_;
  const bool admin_;
  size_t index_ = 0;  // in worker_.sessions
  uint64_t last_tick_ = 0;
  uint32_t events_ = 0;  // what fd_ is registered for in worker_.epfd

  std::unique_ptr<char[]> in_;
  size_t in_cap_ = 0, in_begin_ = 0, in_end_ = 0;

  std::string out_;  // replies; out_[out_pos_..] are not yet sent
  size_t out_pos_ = 0;

  Dispatcher dispatcher_;               // after out_, which it appends to
  std::shared_ptr<Session> keepalive_;  // while a decision is pending on a plugin's thread

  bool write_blocked_ = false, read_eof_ = false;
  bool close_after_flush_ = false, closed_ = false;
  bool deferred_ = false;     // in worker_.unflushed
  bool hangup_seen_ = false;  // on_hangup_while_throttled_ ran
};

void Worker::arm() {
  poller.async_wait(asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
    if (ec) return;
    poll();
    arm();
  });
}

void Worker::poll() {
  epoll_event events[256];
  const int n = ::epoll_wait(epfd, events, 256, 0);
  // A session closed in this loop stays alive in the graveyard until the loop is over.
  polling = true;
  for (int i = 0; i < n; ++i)
    static_cast<Session*>(events[i].data.ptr)->on_events(events[i].events);
  polling = false;
  for (Session* s : unflushed) s->finish_();
  unflushed.clear();
}

void Worker::arm_wait(int64_t due_ms) {
  if (due_ms >= wait_armed) return;
  wait_armed = due_ms;
  wait_timer.expires_at(std::chrono::steady_clock::time_point(std::chrono::milliseconds(due_ms)));
  wait_timer.async_wait([this](const error_code& ec) {
    if (ec) return;  // armed again for an earlier time
    wait_armed = WaitQueue::kNever;
    const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::steady_clock::now().time_since_epoch())
                            .count();
    const int64_t next = ctx.waits->run_due(now);
    if (next != WaitQueue::kNever) arm_wait(next);
  });
}

void Worker::bury(size_t index) {
  std::shared_ptr<Session> dead = std::move(sessions[index]);
  if (index + 1 != sessions.size()) {
    sessions[index] = std::move(sessions.back());
    sessions[index]->set_index(index);
  }
  sessions.pop_back();
  if (graveyard.empty()) asio::post(ioc, [this] { graveyard.clear(); });
  graveyard.push_back(std::move(dead));
}

// ---- socket files -------------------------------------------------------------------------

Status prepare_socket_path(const std::string& path) {
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Status::Invalid(fmt::format("socket path {} is longer than the {} bytes Unix allows",
                                       path, sizeof(sockaddr_un{}.sun_path) - 1));
  }
  namespace fs = std::filesystem;
  const fs::path p(path);
  std::error_code fec;
  if (p.has_parent_path()) fs::create_directories(p.parent_path(), fec);
  if (fec) {
    return Status::Unavailable(
        fmt::format("cannot create the directory of {}: {}", path, fec.message()));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return Status::Ok();
  if (!S_ISSOCK(st.st_mode)) {
    return Status::Invalid(
        fmt::format("{} exists and is not a socket; refusing to replace it", path));
  }
  asio::io_context probe_ioc;
  stream_protocol::socket probe(probe_ioc);
  error_code ec;
  probe.connect(stream_protocol::endpoint(path), ec);
  if (!ec) {
    return Status::Unavailable(fmt::format(
        "another process (another sluiced?) is serving {}; stop it or choose another path", path));
  }
  if (::unlink(path.c_str()) != 0) {
    return Status::Unavailable(
        fmt::format("cannot remove the stale socket {}: {}", path, std::strerror(errno)));
  }
  spdlog::info("removed stale socket file {}", path);
  return Status::Ok();
}

Peer peer_of(stream_protocol::socket& s) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  Peer p;
  p.uid = static_cast<uid_t>(-1);
  if (::getsockopt(s.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    p.uid = cred.uid;
    p.pid = cred.pid;
  }
  return p;
}

}  // namespace

// ---- the server -----------------------------------------------------------------------------

struct Server::Impl {
  explicit Impl(ServerContext& c) : ctx(c), control(c), admin_worker(c) {}

  struct Listener {
    Listener(asio::io_context& ioc, std::string p, bool a)
        : acceptor(ioc), path(std::move(p)), admin(a) {}
    stream_protocol::acceptor acceptor;
    asio::steady_timer retry{acceptor.get_executor()};
    std::string path;
    bool admin;
    bool bound = false;
    bool failing = false;  // accept is failing (descriptors exhausted): logged once
    bool full = false;     // at its connection cap: logged once
  };

  ServerContext& ctx;
  // WAIT requests' queues; outlives every session (ctx.waits).
  std::unique_ptr<WaitQueue> waits;
  // Acceptors, signals and the metrics endpoint: never waits on storage, disk or a policy.
  Worker control;
  // Admin sessions and SIGHUP's reload, on a thread of their own: an apply that parses and
  // fsyncs, or an SL.INSPECT that waits on a hung backend, never holds up accepting
  // connections or handling signals.
  Worker admin_worker;
  std::vector<std::unique_ptr<Worker>> workers;
  size_t next_worker = 0;
  std::unique_ptr<Listener> decision, admin;
  std::unique_ptr<MetricsServer> metrics;
  asio::signal_set signals{control.ioc};
  asio::steady_timer shutdown_timer{control.ioc};
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
  std::atomic<bool> stopping{false};
  bool started = false;

  Status listen(Listener& l, mode_t mode) {
    Status s = prepare_socket_path(l.path);
    if (!s.ok()) return s;
    error_code ec;
    // The umask keeps the socket from being reachable with wider permissions even briefly.
    const mode_t old_mask = ::umask(static_cast<mode_t>(~mode & 0777));
    l.acceptor.open(stream_protocol(), ec);
    if (!ec) l.acceptor.bind(stream_protocol::endpoint(l.path), ec);
    ::umask(old_mask);
    if (!ec) l.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec)
      return Status::Unavailable(fmt::format("cannot listen on {}: {}", l.path, ec.message()));
    l.bound = true;
    if (::chmod(l.path.c_str(), mode) != 0) {
      return Status::Unavailable(
          fmt::format("cannot set the mode of {}: {}", l.path, std::strerror(errno)));
    }
    return Status::Ok();
  }

  bool admin_allowed(uid_t uid) const {
    if (uid == ::geteuid() || uid == 0) return true;
    const auto& allow = ctx.options.admin_allow_uids;
    return std::find(allow.begin(), allow.end(), uid) != allow.end();
  }

  void accept(Listener& l) {
    l.acceptor.async_accept([this, &l](const error_code& ec, stream_protocol::socket socket) {
      if (ec == asio::error::operation_aborted || stopping.load()) return;
      if (ec) {
        // Out of descriptors and the like: log once per episode, breathe, accept again.
        if (!l.failing) spdlog::warn("accept on {} failed: {}", l.path, ec.message());
        l.failing = true;
        l.retry.expires_after(std::chrono::milliseconds(100));
        l.retry.async_wait([this, &l](const error_code& tec) {
          if (!tec) accept(l);
        });
        return;
      }
      if (l.failing) spdlog::info("accepting on {} again", l.path);
      l.failing = false;
      on_accept(l, std::move(socket));
      accept(l);
    });
  }

  void on_accept(Listener& l, stream_protocol::socket socket) {
    const Peer peer = peer_of(socket);
    auto refuse = [&](std::string reply) {
      std::make_shared<Refusal>(std::move(socket), std::move(reply))->start();
    };
    // Each socket has its own cap: decision clients at theirs leave room for the admin.
    // Loaded total first: a closing admin session decrements its count before the total, so
    // the difference never goes below the decision sessions (saturated all the same).
    const size_t total = ctx.connections.load(std::memory_order_acquire);
    const size_t admins = ctx.admin_connections.load(std::memory_order_acquire);
    const size_t open = l.admin ? admins : (total > admins ? total - admins : 0);
    const size_t cap = l.admin ? ctx.options.max_admin_connections : ctx.options.max_connections;
    if (open >= cap) {
      if (!l.full) {  // one line per episode, not one per refused connection
        spdlog::warn("refusing connections on {}: {} is the maximum", l.path, cap);
        l.full = true;
      }
      return refuse("-BUSY max number of connections reached\r\n");
    }
    l.full = false;
    if (l.admin && !admin_allowed(peer.uid)) {
      spdlog::warn("refusing admin connection from uid={} pid={}", peer.uid, peer.pid);
      return refuse(fmt::format("-NOPERM uid {} may not use the admin socket\r\n", peer.uid));
    }
    error_code ec;
    const int fd = socket.release(ec);  // the worker's own epoll set takes it from here
    if (ec) return;
    const size_t now_open = ctx.connections.fetch_add(1, std::memory_order_relaxed) + 1;
    if (l.admin) ctx.admin_connections.fetch_add(1, std::memory_order_relaxed);
    if (now_open > ctx.connection_peak.load(std::memory_order_relaxed)) {
      ctx.connection_peak.store(now_open, std::memory_order_relaxed);
    }
    Worker& w = l.admin ? admin_worker : *workers[next_worker++ % workers.size()];
    const bool admin_session = l.admin;
    asio::post(w.ioc, [&w, fd, admin_session, peer] {
      w.sessions.push_back(std::make_shared<Session>(w, fd, admin_session, peer));
      w.sessions.back()->start(w.sessions.size() - 1);
    });
  }

  void sweep(Worker& w) {
    w.sweep.expires_after(std::chrono::seconds(1));
    w.sweep.async_wait([this, &w](const error_code& ec) {
      if (ec) return;
      ++w.tick;
      const auto timeout = static_cast<uint64_t>(std::max<int64_t>(0, ctx.options.idle_timeout_s));
      // Backwards: closing moves the last session into the closed one's place.
      for (size_t i = w.sessions.size(); i-- > 0;) w.sessions[i]->close_if_idle(w.tick, timeout);
      // A replaced policy is freed once no thread and no idle connection refers to it; what it
      // took then goes back to the system (a 100,000-resource policy is hundreds of MiB).
      bool dropped = ctx.engine->release_stale_snapshots();
      for (auto& session : w.sessions) dropped |= session->release_stale_snapshots();
      if (dropped) ::malloc_trim(0);
      sweep(w);
    });
  }

  void on_signal(const error_code& ec, int signo) {
    if (ec) return;
    if (signo == SIGHUP) {
      spdlog::info("SIGHUP: reloading the policy file");
      if (ctx.admin != nullptr) {
        asio::post(admin_worker.ioc, [this] {
          auto r = ctx.admin->reload("SIGHUP", Peer{::getuid(), ::getpid()});
          if (r.ok()) {
            spdlog::info("policy file reloaded version={}", r.value());
          } else {
            spdlog::error("policy reload refused, the running policy stays: {}",
                          one_line(r.status().message()));
          }
        });
      }
      signals.async_wait([this](const error_code& e, int s) { on_signal(e, s); });
      return;
    }
    spdlog::info("{}: shutting down", signo == SIGTERM ? "SIGTERM" : "SIGINT");
    begin_shutdown();
  }

  void begin_shutdown() {
    if (stopping.exchange(true)) return;
    error_code ec;
    for (Listener* l : {decision.get(), admin.get()}) {
      if (!l) continue;
      // Connections already queued have been promised service: take them in before closing.
      l->acceptor.non_blocking(true, ec);
      while (!ec) {
        stream_protocol::socket socket(control.ioc);
        l->acceptor.accept(socket, ec);
        if (!ec) on_accept(*l, std::move(socket));
      }
      l->acceptor.close(ec);
      l->retry.cancel();
    }
    if (metrics) metrics->close();
    signals.cancel(ec);
    for (Worker* w : all_workers()) {
      asio::post(w->ioc, [w] {
        for (size_t i = 0; i < w->sessions.size(); ++i) w->sessions[i]->shutdown_read();
      });
    }
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::milliseconds(ctx.options.shutdown_grace_ms);
    wait_for_sessions(deadline);
  }

  void wait_for_sessions(std::chrono::steady_clock::time_point deadline) {
    if (ctx.connections.load() == 0 || std::chrono::steady_clock::now() >= deadline) {
      if (ctx.connections.load() != 0) {
        spdlog::warn("{} connection(s) did not finish in time; closing them",
                     ctx.connections.load());
        for (Worker* w : all_workers()) {
          asio::post(w->ioc, [w] {
            for (size_t i = w->sessions.size(); i-- > 0;) w->sessions[i]->close();
          });
        }
      }
      return finish_shutdown();
    }
    shutdown_timer.expires_after(std::chrono::milliseconds(10));
    shutdown_timer.async_wait([this, deadline](const error_code& ec) {
      if (!ec) wait_for_sessions(deadline);
    });
  }

  void finish_shutdown() {
    Status flushed = ctx.engine->storage().flush(2000);
    if (!flushed.ok()) spdlog::warn("storage flush: {}", flushed.message());
    // A timer belongs to its worker's thread: the others' are cancelled there (TSan saw the
    // cross-thread cancel race with the worker re-arming it).
    control.sweep.cancel();
    for (Worker* w : threaded_workers()) asio::post(w->ioc, [w] { w->sweep.cancel(); });
    guards.clear();
    for (Worker* w : threaded_workers()) w->ioc.stop();
    control.ioc.stop();
  }

  std::vector<Worker*> all_workers() {
    std::vector<Worker*> all = threaded_workers();
    all.push_back(&control);
    return all;
  }
  // The workers with a thread of their own: the decision workers, then the admin worker.
  std::vector<Worker*> threaded_workers() {
    std::vector<Worker*> all;
    for (auto& w : workers) all.push_back(w.get());
    all.push_back(&admin_worker);
    return all;
  }
  void join(Worker& w) {
    if (w.thread.joinable()) w.thread.join();
  }

  void remove_socket_files() {
    for (Listener* l : {decision.get(), admin.get()}) {
      if (l && l->bound) ::unlink(l->path.c_str());
    }
  }
};

Server::Server(ServerContext& context) : impl_(std::make_unique<Impl>(context)) {}

Server::~Server() {
  if (!impl_) return;
  impl_->guards.clear();
  for (Worker* w : impl_->threaded_workers()) {
    w->ioc.stop();
    impl_->join(*w);
  }
  impl_->remove_socket_files();
  impl_->ctx.waits = nullptr;
}

Status Server::start() {
  Impl& im = *impl_;
  ServerContext& ctx = im.ctx;
  size_t threads = ctx.options.threads;
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  ctx.threads = threads;
  for (size_t i = 0; i < threads; ++i) im.workers.push_back(std::make_unique<Worker>(ctx));
  Worker& queue_clock = *im.workers.front();
  im.waits = std::make_unique<WaitQueue>([&queue_clock](int64_t due_ms) {
    asio::post(queue_clock.ioc, [&queue_clock, due_ms] { queue_clock.arm_wait(due_ms); });
  });
  ctx.waits = im.waits.get();

  // Signals are taken over before the sockets exist: a SIGTERM from a supervisor that saw the
  // socket appear must start a clean shutdown, not kill the process (asio keeps a signal that
  // arrives before async_wait until it is waited for).
  im.signals.add(SIGTERM);
  im.signals.add(SIGINT);
  im.signals.add(SIGHUP);
  im.decision = std::make_unique<Impl::Listener>(im.control.ioc, ctx.options.socket_path, false);
  im.admin = std::make_unique<Impl::Listener>(im.control.ioc, ctx.options.admin_socket_path, true);
  Status s = im.listen(*im.decision, 0660);
  if (s.ok()) s = im.listen(*im.admin, 0600);
  if (s.ok() && !ctx.options.metrics_listen.empty()) {
    im.metrics = std::make_unique<MetricsServer>(im.control.ioc, ctx);
    s = im.metrics->listen(ctx.options.metrics_listen);
  }
  if (!s.ok()) {
    im.remove_socket_files();
    return s;
  }
  for (Worker* wp : im.threaded_workers()) {
    im.guards.emplace_back(wp->ioc.get_executor());
    im.sweep(*wp);
    wp->arm();
    wp->thread = std::thread([wp] {
      for (;;) {
        try {
          wp->ioc.run();
          break;
        } catch (const std::exception& e) {
          // A bug in one handler must not take the daemon down; it is logged loudly.
          spdlog::critical("worker thread: unhandled exception: {}", e.what());
        }
      }
      MutexLock lock(wp->exit_mu);
      wp->exited = true;
      wp->exit_cv.notify_all();
    });
  }
  im.sweep(im.control);
  im.control.arm();
  im.accept(*im.decision);
  im.accept(*im.admin);
  im.signals.async_wait([&im](const error_code& e, int signo) { im.on_signal(e, signo); });
  im.started = true;
  spdlog::info("serving decisions on {} and administration on {} threads={} storage={}",
               ctx.options.socket_path, ctx.options.admin_socket_path, threads,
               ctx.engine->storage().name());
  return Status::Ok();
}

void Server::run() {
  Impl& im = *impl_;
  for (;;) {
    try {
      im.control.ioc.run();
      break;
    } catch (const std::exception& e) {
      spdlog::critical("control thread: unhandled exception: {}", e.what());
    }
  }
  for (auto& w : im.workers) im.join(*w);
  // An admin command may still wait on a hung backend (with --storage-timeout 0 nothing
  // answers it). The storage was flushed in finish_shutdown; rather than wait for the backend
  // forever, the daemon then exits without that thread.
  {
    Worker& a = im.admin_worker;
    MutexLock lock(a.exit_mu);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    while (!a.exited && a.exit_cv.wait_until(lock.native(), deadline) != std::cv_status::timeout) {
    }
    if (!a.exited) {
      spdlog::warn("an admin command still waits on the storage backend; exiting without it");
      im.remove_socket_files();
      spdlog::shutdown();
      std::_Exit(0);
    }
  }
  im.join(im.admin_worker);
  im.remove_socket_files();
  spdlog::info("stopped");
}

void Server::stop() {
  asio::post(impl_->control.ioc, [im = impl_.get()] { im->begin_shutdown(); });
}

}  // namespace sluice::server
