// One pipelined connection to Redis and the thread that drives it.
//
// While connected, the batches queued are folded into script calls (up to `coalesce` batches
// each) and written at once. With `pipeline` calls in flight already, only full calls go out;
// the rest wait for the next reply and then go out together. Replies are matched in order. A
// command that outlives command_timeout_ms resets the connection (replies can no longer be
// matched), failing what was in flight. While disconnected the circuit is open: enqueue()
// refuses at once, so nobody waits on a dead Redis; reconnects back off from 10 ms to
// reconnect_max_ms.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client.h"
#include "request.h"

struct redisContext;
struct redisReader;
struct redisReply;

namespace sluice::redis_plugin {

enum class Breaker { kClosed, kOpen, kHalfOpen };

class Connection {
 public:
  // To the server of the configuration (one Redis), or to the master the Sentinels name at
  // every connection attempt (Sentinel mode).
  Connection(Shared& shared, int index);
  // To one node of a Redis Cluster.
  Connection(Shared& shared, int index, HostPort node);
  ~Connection();  // stops the thread; what is pending completes with an error
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // One connection attempt on the caller's thread, then the connection's thread starts.
  // Returns false only for errors retrying cannot fix (see Client::start).
  bool start(std::string& error);

  // Takes the request unless the circuit is open; then returns false and leaves it with the
  // caller. Thread-safe.
  bool enqueue(std::unique_ptr<Request>& request);

  Breaker breaker() const { return breaker_.load(std::memory_order_relaxed); }
  std::string down_reason() const;
  // Where this connection goes (or went last), for messages: "127.0.0.1:7000".
  std::string where() const;
  // Sentinel mode: the Sentinels now name `master`. A connection to another server closes
  // (what is in flight fails) and reconnects to it, even if that server still accepts writes:
  // a demoted master turns into a replica only when a Sentinel gets round to it. Thread-safe.
  void follow_master(const HostPort& master);
  // Sentinel mode: true when this connection is up and on a server other than `master`, so
  // follow_master(master) would move it. Thread-safe.
  bool up_elsewhere(const HostPort& master) const;

 private:
  struct Call {
    std::vector<std::unique_ptr<Request>> requests;
    bool eval = false;
    bool asking = false;        // ASKING goes first (an ASK redirection)
    bool asking_reply = false;  // ASKING's reply is still to come
    int64_t deadline_ms = 0;
  };

  void run();
  // Connects, authenticates, selects the database and loads the script. `fatal` is set for
  // errors Redis answered (wrong password, ...), as opposed to an unreachable Redis.
  bool connect(std::string& error, bool& fatal);
  void disconnect(sluice_status status, const std::string& why);
  void send_queued();
  // Fails the queued batches whose deadline has passed; returns the earliest deadline left.
  int64_t expire_queued(int64_t now_ms);
  void send_call(Call call);
  bool write_some(std::string& error);
  bool read_some(std::string& error);
  void on_reply(const redisReply& reply);
  void on_record_reply(std::unique_ptr<Request> request, const redisReply& reply);
  void fail(Call& call, sluice_status status, const std::string& message);
  void wait_for_wake(int64_t timeout_ms);
  void set_up(bool up, const std::string& reason);
  // Folds queued requests into calls: in order, or by slot in Cluster mode.
  std::vector<Call> make_calls(std::deque<std::unique_ptr<Request>>& queued) const;

  Shared& shared_;
  const int index_;
  std::thread thread_;
  int wake_fd_ = -1;

  mutable std::mutex mu_;  // protects queue_, up_, reason_, wake_pending_, saturated_, address_
  std::deque<std::unique_ptr<Request>> queue_;
  bool up_ = false;
  bool stopping_ = false;
  bool wake_pending_ = false;
  // `pipeline` calls are in flight: the thread looks at the queue again on the next reply,
  // so enqueue() need not wake it (saving a write and a context switch per batch) until a
  // full call is queued.
  bool saturated_ = false;
  std::string switch_to_;  // follow_master(): reconnect, the master is there now
  std::string reason_ = "not connected yet";
  // TCP host and port, or socket_path_ set; Sentinel mode sets them at every connection.
  std::string host_;
  int port_ = 0;
  std::string socket_path_;
  std::atomic<Breaker> breaker_{Breaker::kOpen};

  // Owned by the connection's thread.
  redisContext* ctx_ = nullptr;
  redisReader* reader_ = nullptr;
  std::string sha_;
  std::string wbuf_;
  size_t woff_ = 0;
  std::deque<Call> in_flight_;
  bool ever_connected_ = false;
  size_t sentinel_turn_ = 0;  // the Sentinel asked first; the next one after a failed attempt
};

}  // namespace sluice::redis_plugin
