// The admission queues of WAIT requests (docs/architecture.md, "Waiting for capacity"): one
// queue per resource for the whole daemon, served by priority (higher first), then by deficit
// round robin across subjects (weighted by cost), FIFO within a subject.
//
// The queue decides nothing itself. It says which waiter should decide again (WaitSink::
// try_again), one at a time per resource, and the waiter's owner reports the answer
// (attempted). A release, a timer or a new waiter starts a round: the heads of the subjects
// are tried in service order until one is denied by a limit shared by every subject (capacity
// is gone for all) or every subject has had its try. A denial by a subject's own limit does not
// stop the round, so one subject's exhausted limit never holds up another's.
//
// Time is passed in (milliseconds on a monotonic clock): the tests drive it by hand. The
// owner of the daemon arms one timer at the time the queue asks for (the callback given at
// construction) and calls run_due() when it fires.
//
// Thread safety: every method may be called from any thread; one mutex guards everything. The
// sink's methods and the due callback run with that mutex held: they must only hand the news
// over (post it to the waiter's thread) and return, never call back into the queue.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/mutex.h"

namespace sluice::server {

class WaitSink;

// One held request. Owned by the caller, which keeps it at the same address from enqueue() until
// it leaves the queue (attempted() admitted it, remove(), or WaitSink::expired()).
struct Waiter {
  // Set by the owner before enqueue(). The views must stay valid while the waiter is queued.
  std::string_view resource, subject;
  int64_t priority = 0;
  int64_t cost = 1;
  int64_t deadline_ms = 0;
  WaitSink* sink = nullptr;
  void* user = nullptr;  // the owner's

  // The queue's own.
  enum class State : uint8_t { kOut, kIdle, kTrying };
  State state = State::kOut;
  int64_t enqueued_ms = 0;
  Waiter* next = nullptr;  // FIFO within its subject
  Waiter* prev = nullptr;
  void* subject_queue = nullptr;
  std::multimap<int64_t, Waiter*>::iterator deadline_at;
};

class WaitSink {
 public:
  // Decide `w`'s request again now, then report with WaitQueue::attempted().
  virtual void try_again(Waiter& w) = 0;
  // `w`'s deadline passed while it waited: it has left the queue; answer its last denial.
  virtual void expired(Waiter& w) = 0;

 protected:
  ~WaitSink() = default;
};

// What SL.STATS and /metrics show of one resource's queue (counters since the daemon started).
struct WaitStats {
  // Upper bounds of the wait-time histogram buckets, in ms; one more bucket counts the rest.
  static constexpr std::array<int64_t, 10> kBucketsMs = {1,   5,    10,   50,    100,
                                                         500, 1000, 5000, 10000, 30000};
  std::string resource;
  size_t waiting = 0;        // now
  uint64_t admitted = 0;     // admitted after waiting
  uint64_t expired = 0;      // denied at their deadline
  uint64_t rejected = 0;     // refused at once: queue full (the caller counts)
  uint64_t wait_ms_sum = 0;  // of admitted and expired waiters
  int64_t wait_ms_max = 0;
  std::array<uint64_t, kBucketsMs.size() + 1> wait_ms_buckets{};  // not cumulative
};

// SL.STATS's "queues" member: an object by resource name (docs/protocol.md, "SL.STATS").
std::string wait_stats_json(const std::vector<WaitStats>& stats);
// The /metrics lines: sluice_queue_waiting, _admitted_total, _expired_total, _rejected_total and
// the sluice_queue_wait_seconds histogram, labelled by resource.
std::string wait_stats_prometheus(const std::vector<WaitStats>& stats);

class WaitQueue {
 public:
  static constexpr int64_t kNever = INT64_MAX;
  // The longest a denied resource waits before its waiters decide again without being woken:
  // a release on another sluiced of a fleet, or a lease expiring, wakes no one here.
  static constexpr int64_t kPollMs = 100;
  // Names whose statistics are kept; later ones are counted under "(other)".
  static constexpr size_t kMaxStatNames = 10000;

  // `on_due(ms)`: arm the timer for `ms` (earlier than what it was armed for); called with the
  // queue's mutex held.
  explicit WaitQueue(std::function<void(int64_t)> on_due = {});
  ~WaitQueue();
  WaitQueue(const WaitQueue&) = delete;
  WaitQueue& operator=(const WaitQueue&) = delete;

  // Queues `w`, whose first decision was just denied (`retry_after_ms` from that denial, < 0 for
  // none). False when its resource already holds `max_waiters` (counted as rejected unless
  // `count_rejection` is false: the caller will decide the request and may try again).
  bool enqueue(Waiter& w, size_t max_waiters, int64_t retry_after_ms, int64_t now_ms,
               bool count_rejection = true);
  // Capacity of `resource` may have come back (a release): start a round.
  void kick(std::string_view resource, int64_t now_ms);
  // The answer of the decision try_again() asked for. Admitted: `w` has left the queue. Denied:
  // it stays (its place kept); `shared` when the deciding limit is shared by every subject,
  // `retry_after_ms` when the denial says when to try again (< 0: it does not).
  void attempted(Waiter& w, bool admitted, bool shared, int64_t retry_after_ms, int64_t now_ms);
  // Takes `w` out (its connection closed, or the owner answers it for another reason). True if it
  // was queued.
  // `expired`: the owner found its deadline passed (counted as expired).
  bool remove(Waiter& w, int64_t now_ms, bool expired = false);
  // Expires waiters whose deadline has come and starts the rounds that are due. Returns the next
  // time it must run (kNever: nothing pending), which the caller arms.
  int64_t run_due(int64_t now_ms);

  // Waiters in every queue; a relaxed read, for the paths that must not lock when no one waits.
  size_t total() const { return total_.load(std::memory_order_relaxed); }
  size_t waiting(std::string_view resource) const;
  void count_rejected(std::string_view resource);
  std::vector<WaitStats> stats() const;

 private:
  struct Subject;
  struct Level;
  struct Resource;

  Resource& resource_for(std::string_view name) SLUICE_REQUIRES(mu_);
  void start_round(Resource& r, int64_t now_ms) SLUICE_REQUIRES(mu_);
  void next_attempt(Resource& r, int64_t now_ms) SLUICE_REQUIRES(mu_);
  Waiter* pick(Resource& r) SLUICE_REQUIRES(mu_);
  void end_round(Resource& r, int64_t now_ms) SLUICE_REQUIRES(mu_);
  enum class Exit : uint8_t { kServed, kExpired, kRemoved };
  void unlink(Resource& r, Waiter& w, Exit how, int64_t now_ms) SLUICE_REQUIRES(mu_);
  void drop_if_empty(Resource& r) SLUICE_REQUIRES(mu_);
  void note_due(int64_t ms) SLUICE_REQUIRES(mu_);
  int64_t next_due() const SLUICE_REQUIRES(mu_);
  WaitStats& stats_for(std::string_view name) SLUICE_REQUIRES(mu_);

  mutable Mutex mu_;
  std::function<void(int64_t)> on_due_;
  std::map<std::string, std::unique_ptr<Resource>, std::less<>> resources_ SLUICE_GUARDED_BY(mu_);
  std::multimap<int64_t, Waiter*> deadlines_ SLUICE_GUARDED_BY(mu_);
  std::map<std::string, WaitStats, std::less<>> stats_ SLUICE_GUARDED_BY(mu_);
  int64_t armed_ SLUICE_GUARDED_BY(mu_) = kNever;  // what on_due_ was last told
  std::atomic<size_t> total_{0};
};

}  // namespace sluice::server
