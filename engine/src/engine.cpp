#include "sluice/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "calendar.h"
#include "costs.h"
#include "lease_record.h"
#include "lease_registry.h"
#include "policy_internal.h"
#include "sluice/algorithms.h"
#include "sluice/mutex.h"
#include "sluice/stats.h"
#include "snapshot.h"
#include "storage_watchdog.h"
#include "tsc.h"

namespace sluice {

namespace {

constexpr std::string_view kRuleUnknown = "(unknown-resource)";
constexpr std::string_view kRuleError = "(error)";
// How long a fail-closed denial asks the caller to wait before trying again.
constexpr int64_t kStorageRetryMs = 1000;
// A lease's record outlives the lease by this long, so that the engine watching it can still
// read it and settle it at its usage after it expired (docs/protocol.md, "Where leases live").
constexpr int64_t kLeaseRecordGraceMs = 10 * 60 * 1000;

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The decision-latency histogram times every decision, so its two clock reads are on the hot
// path: the time-stamp counter where it is invariant (see tsc.h), steady_clock elsewhere.
class LatencyTimer {
 public:
  static const LatencyTimer& instance() {
    static const LatencyTimer timer;
    return timer;
  }
  bool tsc() const { return tsc_.usable(); }
  int64_t start() const { return tsc() ? static_cast<int64_t>(detail::Tsc::read()) : steady_ns(); }
  int64_t elapsed_ns(int64_t started) const {
    if (tsc()) {
      const auto ticks = static_cast<int64_t>(detail::Tsc::read()) - started;
      return static_cast<int64_t>(static_cast<double>(ticks) * tsc_.ns_per_tick());
    }
    return steady_ns() - started;
  }

 private:
  LatencyTimer() : tsc_(detail::Tsc::instance()) {}
  const detail::Tsc& tsc_;
};

// Storage key of one limit for one subject, written at `out`; returns its length. The braces
// are a Redis Cluster hash tag, so all limits of one request land in one slot. Names cannot
// contain ':' '{' '}' (policy validation), which keeps the encoding unambiguous whatever bytes
// the subject holds.
size_t write_key(char* out, std::string_view resource, std::string_view subject,
                 std::string_view rule) {
  char* p = out;
  *p++ = '{';
  p = std::copy(resource.begin(), resource.end(), p);
  *p++ = ':';
  p = std::copy(subject.begin(), subject.end(), p);
  *p++ = '}';
  p = std::copy(rule.begin(), rule.end(), p);
  return static_cast<size_t>(p - out);
}

constexpr size_t kMaxKeyLength = 2 * kMaxNameLength + kMaxSubjectLength + 3;
static_assert(kMaxLimitsPerResource * kMaxKeyLength <= StorageWatchdog::kMaxKeyBytes);

// A limit's capacity: above it every transition denies alike ("never", whatever the cost), so
// a cost is handed to storage as at most capacity + 1, and a settlement charges or refunds at
// most one capacity. Every plugin then computes with the same small numbers (the Redis
// plugin's Lua numbers stay exact), and a settlement denies for at most about one window.
int64_t capacity_of(const sluice_limit_params& p) {
  // A calendar window's burst is its start time, not an amount.
  return p.algorithm == SLUICE_ALG_CALENDAR_WINDOW ? p.limit : std::max(p.limit, p.burst);
}

// A calendar limit's current window (its start travels in burst; see storage_plugin.h).
void set_calendar_window(sluice_limit_params& p, const CompiledLimit& lim, int64_t now_ms) {
  if (lim.calendar == CalendarPeriod::kNone) return;
  const CalendarWindow w = calendar_window(lim.calendar, lim.zone, now_ms);
  p.burst = w.start_ms;
  p.window_ms = w.length_ms;
}

// A limit's item as a decision or a charge sends it: its key, its parameters after warm-up
// (`factor`) and, for a calendar limit, the window current at `now_ms`. Op and cost are the
// caller's.
void fill_item(sluice_item& it, const char* key, size_t key_len,
               const sluice_limit_params& effective, double factor, const CompiledLimit& lim,
               int64_t now_ms) {
  it = sluice_item{};
  it.key = key;
  it.key_len = static_cast<uint32_t>(key_len);
  it.params = effective;
  it.params.limit = warm_limit(it.params.limit, factor);
  it.params.burst = warm_limit(it.params.burst, factor);
  set_calendar_window(it.params, lim, now_ms);
}

}  // namespace

void Decision::set_rule(std::string_view r) {
  rule_len_ = std::min(r.size(), rule_.size() - 1);
  std::copy_n(r.data(), rule_len_, rule_.data());
}

// ---- the per-call context ---------------------------------------------------------------

// What a lease command waits for when its lease is a storage record.
enum class RecordStep : uint8_t {
  kNone,           // not a record: the registry holds the lease, or no lease at all
  kAcquirePut,     // SL.ACQUIRE was allowed: writing the new lease
  kChargeGet,      // SL.CHARGE: reading the lease (then deciding, as with the registry)
  kChargePut,      // the charge was allowed: writing the lease's new usage
  kReleaseGet,     // SL.RELEASE: reading the lease to check the token
  kReleaseDelete,  // taking it out of storage (then settling)
  kExpiredDelete,  // an expired lease this engine watched: taking it out (then settling)
};

struct DecisionCall::Internal {
  // One entry per limit of the largest resource decided with this call so far.
  std::vector<sluice_item> items;
  std::vector<sluice_item_result> results;
  std::vector<uint8_t> limit_index;
  // Items whose limit takes nothing from this request (a unit it does not name): only looked
  // at, never deciding (docs/protocol.md, "Costs").
  std::vector<uint8_t> uncharged;
  void fit(size_t limits) {
    if (items.size() >= limits) return;
    items.resize(limits);
    results.resize(limits);
    limit_index.resize(limits);
    uncharged.resize(limits);
  }
  // All items' keys; with `per: resource` limits, "{resource:subject}" first (see begin). Sized
  // for the requests seen so far, not for the largest possible: a call held by a waiting
  // request (WAIT) or a deep pipeline then costs a few hundred bytes here, not 11 KB.
  std::vector<char> keys;
  char* key_space(size_t limits, size_t names) {
    const size_t need = (limits + 1) * (names + kMaxNameLength + 3);
    if (keys.size() < need) keys.resize(std::max<size_t>(need, 1024));
    return keys.data();
  }
  size_t resource_len = 0;  // of the requested name, inside every key: "{resource:subject}rule"
  size_t subject_len = 0;
  sluice_batch batch{};

  std::shared_ptr<const Snapshot> snap;
  const CompiledResource* resource = nullptr;
  uint32_t tier = 0;
  bool tier_known = false;  // `tier` was resolved for the current decision
  DecisionKind kind = DecisionKind::kCheck;
  bool releasing = false;
  bool charging = false;  // SL.CHARGE: a refused charge is taken back from the lease
  bool quiet_denial = false;
  int chosen = -1;       // the deciding limit's item
  std::string released;  // released_resource()
  LeaseCosts estimate;   // kAcquire: the request's costs, kept with the lease
  // SL.CHARGE: the lease before the charge, and the charge (owned: undone on refusal, after
  // the request's buffers are gone).
  std::optional<Lease> charge_before;
  LeaseCosts charge;
  // Leases kept as storage records (lease_record.h): the step waited for, the token the
  // command was given, the lease to write (SL.ACQUIRE) or as it is after the charge
  // (SL.CHARGE), and SL.RELEASE's ACTUALs (owned: the request's buffers may be gone by the time
  // the record is read).
  RecordStep record_step = RecordStep::kNone;
  LeaseToken token;
  Lease record_lease;
  std::optional<int64_t> release_actual;
  std::optional<LeaseCosts> release_named;
  int64_t now_ms = 0;
  int64_t started = 0;  // LatencyTimer::start()
  int64_t lease_ttl_ms = 0;
  DecisionDone done = nullptr;
  void* user = nullptr;
  Engine::Impl* engine = nullptr;

  // The request's names, read back from the first key: the request's own buffers may be gone
  // by the time an asynchronous plugin completes.
  std::string_view resource_name() const { return {keys.data() + 1, resource_len}; }
  std::string_view subject() const { return {keys.data() + 2 + resource_len, subject_len}; }
};

DecisionCall::DecisionCall() : in_(std::make_unique<Internal>()) {}
DecisionCall::~DecisionCall() = default;

int64_t DecisionCall::time_ms() const { return in_->now_ms; }

std::string_view DecisionCall::tier() const {
  if (!in_->tier_known || !in_->snap) return {};
  return in_->snap->policy->tiers()[in_->tier].name;
}

WaitTerms DecisionCall::wait_terms() const {
  WaitTerms t;
  if (!in_->snap) return t;
  if (in_->tier_known) t.priority = in_->snap->policy->tiers()[in_->tier].priority;
  if (const CompiledResource* r = in_->resource) {
    t.max_wait_ms = r->queue.max_wait_ms;
    t.max_waiters = r->queue.max_waiters;
    if (in_->chosen >= 0 && static_cast<size_t>(in_->chosen) < count_) {
      const auto& lim = r->limits[in_->limit_index[static_cast<size_t>(in_->chosen)]];
      t.shared_denial = lim.per_resource;
      t.concurrency_denial = lim.params.algorithm == SLUICE_ALG_CONCURRENCY;
    }
  }
  return t;
}

std::string_view DecisionCall::released_resource() const { return in_->released; }

LimitResult DecisionCall::limit_result(size_t i) const {
  const auto& lim = in_->resource->limits[in_->limit_index[i]];
  return {lim.name, lim.shadow, in_->items[i].params.window_ms, in_->results[i]};
}

// ---- engine -----------------------------------------------------------------------------

struct Engine::Impl {
  std::unique_ptr<Storage> storage;
  const Clock* clock;
  Stats stats;
  const LatencyTimer& timer = LatencyTimer::instance();
  // The clock is the system clock and the latency timer reads the TSC: decide() reads the
  // counter once for both.
  const bool tsc_clock;
  // Present when the plugin may complete later and a storage timeout is set: batches then go
  // through it (copies with deadlines).
  std::unique_ptr<StorageWatchdog> watchdog;

  SnapshotCache snapshots;
  Mutex install_mu;  // one policy swap at a time

  Mutex warm_mu;  // also serialises writes to the snapshot's warm_started
  std::unordered_map<std::string, int64_t> warm_by_name SLUICE_GUARDED_BY(warm_mu);

  LeaseRegistry leases;  // leases in memory: without record support, and of unlimited tiers
  LeaseWatch watched;    // leases kept as records that this engine granted or touched

  Impl(std::unique_ptr<Storage> s, const EngineOptions& o)
      : storage(std::move(s)),
        clock(o.clock),
        tsc_clock(o.clock == &SystemClock::instance() && timer.tsc()) {
    if (!storage->completes_inline() && o.storage_timeout_ms > 0) {
      watchdog = std::make_unique<StorageWatchdog>(
          *storage, o.timer != nullptr ? *o.timer : SteadyTimer::instance(), o.storage_timeout_ms,
          &Impl::on_watched_done, this);
    }
  }
  ~Impl() { shutdown(); }
  void shutdown() {
    if (watchdog) watchdog->stop();
    // Completes what the plugin still holds; the watchdog (which owns those batches) outlives
    // this.
    storage.reset();
  }

  void submit(DecisionCall& call);
  static void on_watched_done(void* owner, void* call, sluice_status status, const char* message);

  std::shared_ptr<const Snapshot> build_snapshot(std::shared_ptr<const CompiledPolicy> policy);
  void install(std::shared_ptr<const CompiledPolicy> policy) {
    MutexLock lock(install_mu);
    snapshots.install(build_snapshot(std::move(policy)));
  }
  const std::shared_ptr<const Snapshot>& current() const { return snapshots.current(); }
  double warm_factor(const Snapshot& snap, const CompiledResource& r, int64_t now) const;

  void finish_inline(DecisionCall& call);
  static void on_storage_done(void* user, sluice_status status, const char* message);
  void complete(DecisionCall& call, sluice_status status, const char* message);
  void settle(uint64_t lease_id, const Lease& lease, std::optional<int64_t> actual,
              const NamedCosts* named, DecisionCall& call, int64_t now_ms);
  // Settles the charged leases that expired at their usage (once a second at most).
  void settle_expired(int64_t now_ms);

  // Leases as storage records (see RecordStep).
  bool records() const { return storage != nullptr && storage->supports_records(); }
  static void on_record_done(void* user, sluice_status status, const char* message,
                             const uint8_t* value, size_t value_len);
  void record_done(DecisionCall& call, sluice_status status, const char* message,
                   const uint8_t* value, size_t value_len);
  // Writes in.record_lease; `step` says what the write completes.
  void put_lease(DecisionCall& call, RecordStep step);
  // The lease a record holds, if it is the one `token` names and has not expired. An expired
  // one is watched from now on, so that it is settled at its usage.
  std::optional<Lease> held_lease(const LeaseToken& token, const uint8_t* value, size_t len,
                                  int64_t now_ms);
  // SL.CHARGE once its lease is known (in.charge_before, in.charge): decides the charge.
  void charge_lease(DecisionCall& call);
  // An allowed charge's end: its lease record gets the new usage first.
  void finish_charge(DecisionCall& call);
  // The answer a decision gets when storage fails, per the policy's on_storage_failure.
  void answer_storage_failure(DecisionCall& call, sluice_status status, const char* message);
  // Gives back, in the background, what the call's allowed batch consumed.
  void undo_consumption(DecisionCall& call);
  void fail_call(DecisionCall& call, StatusCode code, std::string message);
};

namespace {
// The settlement of an expired lease, or the giving back of what a lease whose record could not
// be written took: nobody waits for it, so it owns its call.
struct ExpiredSettlement {
  Lease lease;
  DecisionCall call;
  static void done(void* user, DecisionCall&) {
    auto* self = static_cast<ExpiredSettlement*>(user);
    if (!self->call.decision().allowed)
      spdlog::warn("settling the lease of {} for {} failed: {}", self->lease.resource,
                   self->lease.subject, self->call.decision().error_message);
    delete self;
  }
};
}  // namespace

void Engine::Impl::settle_expired(int64_t now_ms) {
  for (Lease& lease : leases.take_expired(now_ms)) {
    auto* s = new ExpiredSettlement{std::move(lease), {}};
    auto& in = *s->call.in_;
    in.done = &ExpiredSettlement::done;
    in.user = s;
    in.engine = this;
    settle(s->lease.id, s->lease, std::nullopt, nullptr, s->call, now_ms);
  }
  if (!records()) return;
  // Whoever deletes a record settles it: of two engines watching one lease, one does.
  for (const auto& [id, expires_ms] : watched.take_expired(now_ms)) {
    auto* s = new ExpiredSettlement{Lease{.id = id, .expires_ms = expires_ms}, {}};
    auto& in = *s->call.in_;
    in.done = &ExpiredSettlement::done;
    in.user = s;
    in.engine = this;
    in.now_ms = now_ms;
    in.record_step = RecordStep::kExpiredDelete;
    storage->record_delete(LeaseRecordKey(id).view(), now_ms, &Impl::on_record_done, &s->call);
  }
}

// ---- leases kept as storage records -------------------------------------------------------

void Engine::Impl::on_record_done(void* user, sluice_status status, const char* message,
                                  const uint8_t* value, size_t value_len) {
  auto& call = *static_cast<DecisionCall*>(user);
  call.in_->engine->record_done(call, status, message, value, value_len);
}

void Engine::Impl::fail_call(DecisionCall& call, StatusCode code, std::string message) {
  Decision& d = call.decision_;
  d.allowed = false;
  d.source = DecisionSource::kError;
  d.error = code;
  d.error_message = std::move(message);
  d.set_rule(kRuleError);
  finish_inline(call);
}

void Engine::Impl::answer_storage_failure(DecisionCall& call, sluice_status status,
                                          const char* message) {
  const auto& in = *call.in_;
  Decision& d = call.decision_;
  const bool open = in.snap->policy->spec().on_storage_failure == StorageFailureMode::kFailOpen;
  d = Decision{};
  d.allowed = open;
  d.source = DecisionSource::kStorageFailure;
  d.limit = d.remaining = open ? -1 : 0;
  d.retry_after_ms = open ? 0 : kStorageRetryMs;
  d.set_rule(kRuleStorage);
  d.error = status == SLUICE_ERR_TIMEOUT ? StatusCode::kTimeout : StatusCode::kUnavailable;
  d.error_message = message ? message : "storage failure";
}

void Engine::Impl::put_lease(DecisionCall& call, RecordStep step) {
  auto& in = *call.in_;
  in.record_step = step;
  const LeaseRecordKey key(in.record_lease.id);
  const std::string bytes = encode_lease(in.record_lease);
  storage->record_put(key.view(), bytes, in.record_lease.expires_ms + kLeaseRecordGraceMs,
                      in.now_ms, &Impl::on_record_done, &call);
}

std::optional<Lease> Engine::Impl::held_lease(const LeaseToken& token, const uint8_t* value,
                                              size_t len, int64_t now_ms) {
  if (value == nullptr) return std::nullopt;
  std::optional<Lease> lease =
      decode_lease(std::string_view(reinterpret_cast<const char*>(value), len));
  if (!lease) {
    spdlog::warn("the record of lease {:016x} cannot be read; it is treated as unknown", token.id);
    return std::nullopt;
  }
  // A wrong secret gets what an unknown id gets.
  if (lease->id != token.id || !same_lease_secret(lease->secret, token.secret)) return std::nullopt;
  if (lease->expires_ms <= now_ms) {
    watched.watch(lease->id, lease->expires_ms);
    return std::nullopt;
  }
  return lease;
}

void Engine::Impl::record_done(DecisionCall& call, sluice_status status, const char* message,
                               const uint8_t* value, size_t value_len) {
  auto& in = *call.in_;
  Decision& d = call.decision_;
  if (storage == nullptr && status == SLUICE_OK) {
    // Completed while the engine shuts down: nothing more may be asked of the storage.
    status = SLUICE_ERR_UNAVAILABLE;
    message = "the storage is closing";
    value = nullptr;
  }
  switch (in.record_step) {
    case RecordStep::kNone:
      break;
    case RecordStep::kAcquirePut:
    case RecordStep::kChargePut:
      if (status == SLUICE_OK) {
        watched.watch(in.record_lease.id, in.record_lease.expires_ms);
        return finish_inline(call);
      }
      // What the decision consumed would count against the subject with no lease to settle
      // it: it is given back, and the answer is the storage failure's.
      spdlog::warn("writing the record of lease {:016x} failed: {}", in.record_lease.id,
                   message ? message : "storage failure");
      undo_consumption(call);
      answer_storage_failure(call, status, message);
      if (in.record_step == RecordStep::kAcquirePut) {
        Stats::record(in.snap->at(in.resource, in.tier, in.resource->limits.size() + 1),
                      Outcome::kStorageError, in.now_ms);
      }
      return finish_inline(call);
    case RecordStep::kChargeGet: {
      if (status != SLUICE_OK) {
        answer_storage_failure(call, status, message);
        return finish_inline(call);
      }
      std::optional<Lease> lease = held_lease(in.token, value, value_len, in.now_ms);
      if (!lease) return fail_call(call, StatusCode::kNotFound, "unknown or expired lease");
      NamedCosts buf;
      const CostView charge = in.charge.view(buf);
      if (lease->account.units_after(charge.named) > kMaxNamedCosts) {
        return fail_call(call, StatusCode::kInvalid,
                         fmt::format("a lease counts at most {} named units", kMaxNamedCosts));
      }
      in.record_lease = *lease;
      in.record_lease.account.add(charge.bare, charge.named, +1);
      ++in.record_lease.charges;
      in.charge_before = std::move(lease);
      return charge_lease(call);
    }
    case RecordStep::kReleaseGet:
    case RecordStep::kReleaseDelete: {
      if (status != SLUICE_OK) {
        d.allowed = false;
        d.source = DecisionSource::kStorageFailure;
        d.error = status == SLUICE_ERR_TIMEOUT ? StatusCode::kTimeout : StatusCode::kUnavailable;
        d.error_message = message ? message : "storage failure";
        return finish_inline(call);
      }
      if (in.record_step == RecordStep::kReleaseGet) {
        if (!held_lease(in.token, value, value_len, in.now_ms))
          return fail_call(call, StatusCode::kNotFound, "unknown or expired lease");
        in.record_step = RecordStep::kReleaseDelete;
        return storage->record_delete(LeaseRecordKey(in.token.id).view(), in.now_ms,
                                      &Impl::on_record_done, &call);
      }
      // Deleted: this release settles it. Gone meanwhile: another release (or the settlement
      // of its expiry) did.
      std::optional<Lease> lease =
          value != nullptr
              ? decode_lease(std::string_view(reinterpret_cast<const char*>(value), value_len))
              : std::nullopt;
      if (!lease) return fail_call(call, StatusCode::kNotFound, "unknown or expired lease");
      watched.forget(lease->id);
      NamedCosts named;
      if (in.release_named) in.release_named->view(named);
      in.record_lease = std::move(*lease);
      return settle(in.record_lease.id, in.record_lease, in.release_actual,
                    in.release_named ? &named : nullptr, call, in.now_ms);
    }
    case RecordStep::kExpiredDelete: {
      auto* owner = static_cast<ExpiredSettlement*>(in.user);
      d.allowed = true;  // nothing to settle unless the record says so
      if (status != SLUICE_OK) {
        const Lease& lease = owner->lease;
        spdlog::warn("settling expired lease {:016x} failed: {}", lease.id,
                     message ? message : "storage failure");
        if (in.now_ms < lease.expires_ms + kLeaseRecordGraceMs)
          watched.watch(lease.id, lease.expires_ms);  // tried again in a second
        return finish_inline(call);
      }
      std::optional<Lease> lease =
          value != nullptr
              ? decode_lease(std::string_view(reinterpret_cast<const char*>(value), value_len))
              : std::nullopt;
      if (!lease || !lease->account.charged()) return finish_inline(call);
      owner->lease = std::move(*lease);
      return settle(owner->lease.id, owner->lease, std::nullopt, nullptr, call, in.now_ms);
    }
  }
  finish_inline(call);
}

void Engine::Impl::undo_consumption(DecisionCall& from) {
  const auto& src = *from.in_;
  auto* s = new ExpiredSettlement{src.record_lease, {}};
  auto& in = *s->call.in_;
  in.done = &ExpiredSettlement::done;
  in.user = s;
  in.engine = this;
  in.releasing = true;
  in.snap = src.snap;
  in.now_ms = src.now_ms;
  in.keys = src.keys;
  in.fit(from.count_);
  size_t n = 0;
  for (size_t i = 0; i < from.count_; ++i) {
    sluice_item it = src.items[i];
    if (src.uncharged[i]) continue;
    if (it.op == SLUICE_OP_CONSUME && src.results[i].allowed) {
      it.op = SLUICE_OP_ADJUST;
      it.cost = -it.cost;
    } else if (it.op == SLUICE_OP_LEASE_ACQUIRE) {
      it.op = SLUICE_OP_LEASE_RELEASE;
    } else {
      continue;
    }
    it.key = in.keys.data() + (src.items[i].key - src.keys.data());
    in.items[n] = it;
    in.limit_index[n] = src.limit_index[i];
    in.uncharged[n] = 0;
    ++n;
  }
  if (n == 0) {
    delete s;
    return;
  }
  s->call.count_ = n;
  in.batch = {src.now_ms, n, in.items.data(), in.results.data()};
  submit(s->call);
}

std::shared_ptr<const Snapshot> Engine::Impl::build_snapshot(
    std::shared_ptr<const CompiledPolicy> policy) {
  auto snap = std::make_shared<Snapshot>(policy, stats);
  if (auto previous = snapshots.load()) snap->adopt_series(*previous);
  snap->unknown = snap->keep(stats.series("(unknown)", "", "(unknown-resource)"));

  const auto& resources = policy->resources();
  snap->warm_started = std::make_unique<std::atomic<int64_t>[]>(resources.size());
  const int64_t now = clock->now_ms();
  MutexLock lock(warm_mu);
  for (const auto& r : resources) {
    int64_t started = -1;
    if (r.warmup.enabled) {
      auto it = warm_by_name.find(r.name);
      if (it != warm_by_name.end()) {
        started = it->second;
      } else if (r.warmup.start_cold) {
        started = now;
        warm_by_name.emplace(r.name, now);
      }
    }
    snap->warm_started[r.index].store(started);
  }
  return snap;
}

double Engine::Impl::warm_factor(const Snapshot& snap, const CompiledResource& r,
                                 int64_t now) const {
  if (!r.warmup.enabled || &r == snap.policy->default_resource()) return 1.0;
  const int64_t started = snap.warm_started[r.index].load(std::memory_order_relaxed);
  if (started < 0) return 1.0;
  const int64_t elapsed = std::max<int64_t>(0, now - started);
  const auto& w = r.warmup;
  if (w.duration_ms > 0 && elapsed >= w.duration_ms) return 1.0;
  if (w.ramp && w.duration_ms > 0)
    return w.factor +
           (1.0 - w.factor) * static_cast<double>(elapsed) / static_cast<double>(w.duration_ms);
  return w.factor;
}

Engine::Engine(std::unique_ptr<Storage> storage, std::shared_ptr<const CompiledPolicy> policy,
               EngineOptions options)
    : impl_(std::make_unique<Impl>(std::move(storage), options)) {
  impl_->install(std::move(policy));
}

Engine::~Engine() = default;

void Engine::shutdown() { impl_->shutdown(); }

void Engine::set_policy(std::shared_ptr<const CompiledPolicy> policy) {
  impl_->install(std::move(policy));
}

std::shared_ptr<const CompiledPolicy> Engine::policy() const {
  return impl_->snapshots.load()->policy;
}

Stats& Engine::stats() { return impl_->stats; }
Storage& Engine::storage() { return *impl_->storage; }
const Clock& Engine::clock() const { return *impl_->clock; }

bool Engine::release_stale_snapshots() {
  impl_->settle_expired(impl_->clock->now_ms());
  return impl_->snapshots.drop_stale();
}

bool Engine::release_if_stale(DecisionCall& call) {
  auto& snap = call.in_->snap;
  if (!snap || impl_->snapshots.is_current(*snap)) return false;
  snap.reset();
  call.in_->resource = nullptr;  // it pointed into the released policy
  call.count_ = 0;
  return true;
}

size_t Engine::active_leases() const {
  const int64_t now_ms = impl_->clock->now_ms();
  return impl_->leases.active(now_ms) + impl_->watched.active(now_ms);
}

// ---- warm-up ------------------------------------------------------------------------------

namespace {
Result<const CompiledResource*> warm_resource(const Snapshot& snap, std::string_view name) {
  const CompiledResource* r = snap.policy->find_resource(name);
  if (!r) return Status::NotFound(fmt::format("unknown resource '{}'", name));
  if (!r->warmup.enabled)
    return Status::Invalid(fmt::format("resource '{}' has no warm-up settings", name));
  return r;
}
}  // namespace

Status Engine::warmup_start(std::string_view resource) {
  auto snap = impl_->snapshots.load();
  auto r = warm_resource(*snap, resource);
  if (!r.ok()) return r.status();
  const int64_t now = impl_->clock->now_ms();
  MutexLock lock(impl_->warm_mu);
  impl_->warm_by_name[std::string(resource)] = now;
  snap->warm_started[r.value()->index].store(now);
  return Status::Ok();
}

Status Engine::warmup_ready(std::string_view resource) {
  auto snap = impl_->snapshots.load();
  auto r = warm_resource(*snap, resource);
  if (!r.ok()) return r.status();
  MutexLock lock(impl_->warm_mu);
  impl_->warm_by_name[std::string(resource)] = -1;
  snap->warm_started[r.value()->index].store(-1);
  return Status::Ok();
}

Result<WarmupStatus> Engine::warmup_status(std::string_view resource) const {
  auto snap = impl_->snapshots.load();
  const CompiledResource* r = snap->policy->find_resource(resource);
  if (!r) return Status::NotFound(fmt::format("unknown resource '{}'", resource));
  WarmupStatus st;
  st.enabled = r->warmup.enabled;
  if (!st.enabled) return st;
  const int64_t now = impl_->clock->now_ms();
  const int64_t started = snap->warm_started[r->index].load();
  st.factor = impl_->warm_factor(*snap, *r, now);
  st.warming = started >= 0 && st.factor < 1.0;
  if (st.warming) {
    st.elapsed_ms = now - started;
    st.remaining_ms = r->warmup.duration_ms > 0 ? r->warmup.duration_ms - st.elapsed_ms : 0;
  }
  return st;
}

// ---- decisions ------------------------------------------------------------------------------

void Engine::Impl::finish_inline(DecisionCall& call) {
  // The snapshot stays referenced until the call is reused: limit_result() reads it.
  auto& in = *call.in_;
  if (in.done) in.done(in.user, call);
}

bool Engine::begin(DecisionKind kind, const DecisionRequest& req, DecisionCall& call,
                   DecisionDone done, void* user) {
  auto& in = *call.in_;
  Decision& d = call.decision_;
  d = Decision{};
  call.count_ = 0;
  in.kind = kind;
  in.releasing = false;
  in.charging = false;
  in.quiet_denial = req.quiet_denial;
  in.chosen = -1;
  in.done = done;
  in.user = user;
  in.engine = impl_.get();
  if (impl_->tsc_clock) {
    // One counter read for both the latency timer and the wall clock.
    const uint64_t ticks = detail::Tsc::read();
    in.started = static_cast<int64_t>(ticks);
    in.now_ms = detail::unix_ms_at_tsc(ticks);
  } else {
    in.started = impl_->timer.start();
    in.now_ms = impl_->clock->now_ms();
  }
  in.resource = nullptr;
  in.tier_known = false;

  // The decision is complete without the storage: `done` runs now.
  auto answered = [&] {
    impl_->finish_inline(call);
    return false;
  };
  auto fail = [&](StatusCode code, std::string msg) {
    d.source = DecisionSource::kError;
    d.error = code;
    d.error_message = std::move(msg);
    d.set_rule(kRuleError);
    return answered();
  };
  if (req.resource.empty() || req.resource.size() > kMaxNameLength)
    return fail(StatusCode::kInvalid, "resource name must be 1 to 64 bytes");
  if (req.subject.empty() || req.subject.size() > kMaxSubjectLength)
    return fail(StatusCode::kInvalid, "subject must be 1 to 512 bytes");
  if (kind != DecisionKind::kReset) {
    if (req.named.count == 0) {
      if (req.cost < 1 || req.cost > kMaxCost)
        return fail(StatusCode::kInvalid, fmt::format("COST must be 1 to {}", kMaxCost));
    } else if (auto problem = cost_problem(req.cost, req.named); !problem.empty()) {
      return fail(StatusCode::kInvalid, std::move(problem));
    }
  }
  if (kind == DecisionKind::kAcquire) in.estimate = LeaseCosts::of(req.cost, req.named.view());
  if (req.lease_ttl_ms < 0) return fail(StatusCode::kInvalid, "lease TTL must not be negative");

  if (const auto& current = impl_->current(); in.snap != current) in.snap = current;
  const Snapshot& snap = *in.snap;
  const CompiledPolicy& policy = *snap.policy;

  const CompiledTier* tier = nullptr;
  if (!req.tier.empty()) {
    tier = policy.find_tier(req.tier);
    if (!tier) return fail(StatusCode::kInvalid, fmt::format("unknown tier '{}'", req.tier));
  } else {
    if (!policy.spec().api_keys.empty())
      tier = policy.tier_for_api_key(req.api_key.empty() ? req.subject : req.api_key);
    if (!tier) tier = &policy.default_tier();
  }
  in.tier = tier->index;
  in.tier_known = true;
  if (req.lease_ttl_ms > policy.spec().max_lease_ttl_ms()) {
    return fail(StatusCode::kInvalid,
                fmt::format("TTL must be 1 to {} ms (the policy's lease_ttl_max)",
                            policy.spec().max_lease_ttl_ms()));
  }

  const CompiledResource* res = policy.find_resource(req.resource);
  if (!res) {
    switch (policy.spec().unknown_resource) {
      case UnknownResourceMode::kDefaultLimits:
        // The requested name becomes part of the storage keys: it must be a name a policy
        // could hold, or ("a:b", "c") and ("a", "b:c") would share counters.
        if (auto problem = policy_detail::name_problem(req.resource); !problem.empty())
          return fail(StatusCode::kInvalid, fmt::format("resource name {}", problem));
        res = policy.default_resource();
        break;
      case UnknownResourceMode::kAllow:
      case UnknownResourceMode::kDeny: {
        const bool allow = policy.spec().unknown_resource == UnknownResourceMode::kAllow;
        d.allowed = allow;
        d.source = DecisionSource::kUnknownResource;
        d.limit = d.remaining = allow ? -1 : 0;
        d.retry_after_ms = allow ? 0 : -1;
        d.set_rule(kRuleUnknown);
        if (kind == DecisionKind::kCheck || kind == DecisionKind::kAcquire)
          Stats::record(snap.unknown, allow ? Outcome::kAllowed : Outcome::kDenied, in.now_ms);
        return answered();
      }
    }
  }
  in.resource = res;
  in.resource_len = req.resource.size();
  in.subject_len = req.subject.size();

  if (res->unlimited_for_tier[tier->index] && kind != DecisionKind::kReset) {
    d.allowed = true;
    d.source = DecisionSource::kUnlimited;
    d.limit = d.remaining = -1;
    d.set_rule(kRuleUnlimited);
    if (kind == DecisionKind::kAcquire) {
      d.lease_ttl_ms = req.lease_ttl_ms ? req.lease_ttl_ms : policy.spec().lease_ttl_ms;
      d.lease = impl_->leases.hold(impl_->leases.new_id(),
                                   Lease{.resource = std::string(req.resource),
                                         .subject = std::string(req.subject),
                                         .tier = tier->name,
                                         .account = {in.estimate},
                                         .expires_ms = in.now_ms + d.lease_ttl_ms},
                                   in.now_ms);
    }
    if (kind == DecisionKind::kCheck || kind == DecisionKind::kAcquire)
      Stats::record(snap.at(res, tier->index, res->limits.size()), Outcome::kAllowed, in.now_ms);
    return answered();
  }

  // Build one item per limit, all keys in one reused buffer.
  const double factor = impl_->warm_factor(snap, *res, in.now_ms);
  const auto& effective = res->effective[tier->index];
  const size_t n = res->limits.size();
  if (n == 0) {  // a resource that is known but not limited (`limits: []`)
    d.allowed = true;
    d.limit = d.remaining = -1;
    d.set_rule(kRuleUnlimited);
    return answered();
  }
  std::array<size_t, kMaxLimitsPerResource + 1> offsets{};
  char* keys = in.key_space(n, req.resource.size() + req.subject.size());
  in.fit(n);
  if (!res->has_shared_limit) {
    // Every key starts with the same "{resource:subject}": written once, then copied.
    offsets[1] = write_key(keys, req.resource, req.subject, res->limits[0].name);
    const size_t prefix = req.resource.size() + req.subject.size() + 3;
    for (size_t i = 1; i < n; ++i) {
      char* p = std::copy_n(keys, prefix, keys + offsets[i]);
      const std::string_view rule = res->limits[i].name;
      p = std::copy(rule.begin(), rule.end(), p);
      offsets[i + 1] = static_cast<size_t>(p - keys);
    }
  } else {
    // A `per: resource` limit counts under "{resource:}rule" (a subject is never empty). The
    // names stay readable at the start of the buffer (resource_name(), subject()).
    offsets[0] = write_key(keys, req.resource, req.subject, {});
    for (size_t i = 0; i < n; ++i) {
      const auto& lim = res->limits[i];
      offsets[i + 1] =
          offsets[i] + write_key(keys + offsets[i], req.resource,
                                 lim.per_resource ? std::string_view() : req.subject, lim.name);
    }
  }
  // State sizes depend on the limit only for logs and leases; warm-up scales the limit.
  const uint32_t* capacities = factor >= 1.0 ? snap.capacities_at(res, tier->index) : nullptr;
  in.lease_ttl_ms = 0;
  uint64_t lease_id = 0;  // its secret is drawn when the lease is granted (LeaseRegistry::hold)
  if (kind == DecisionKind::kAcquire) {
    lease_id = impl_->leases.new_id();
    in.lease_ttl_ms = req.lease_ttl_ms ? req.lease_ttl_ms : policy.spec().lease_ttl_ms;
  }
  for (size_t i = 0; i < n; ++i) {
    const auto& lim = res->limits[i];
    sluice_item& it = in.items[i];
    fill_item(it, keys + offsets[i], offsets[i + 1] - offsets[i], effective[i], factor, lim,
              in.now_ms);
    const int64_t units = cost_of(lim, *res, {req.cost, req.named.view()});
    it.cost = std::min(units, capacity_of(it.params) + 1);
    it.shadow = lim.shadow ? 1 : 0;
    in.limit_index[i] = static_cast<uint8_t>(i);
    in.uncharged[i] = 0;
    const bool concurrency = lim.params.algorithm == SLUICE_ALG_CONCURRENCY;
    if (units == 0 && kind != DecisionKind::kReset) {
      // Takes nothing: looked at (its state is reported), never deciding.
      it.op = SLUICE_OP_PEEK;
      it.shadow = 1;
      in.uncharged[i] = 1;
      it.state_capacity = static_cast<uint32_t>(algo::state_capacity(it.params));
      continue;
    }
    switch (kind) {
      case DecisionKind::kCheck:
        it.op = concurrency ? SLUICE_OP_PEEK : SLUICE_OP_CONSUME;
        break;
      case DecisionKind::kPeek:
      case DecisionKind::kInspect:
        it.op = SLUICE_OP_PEEK;
        break;
      case DecisionKind::kAcquire:
        it.op = concurrency ? SLUICE_OP_LEASE_ACQUIRE : SLUICE_OP_CONSUME;
        it.lease_id = lease_id;
        it.lease_expires_ms = in.now_ms + in.lease_ttl_ms;
        break;
      case DecisionKind::kReset:
        it.op = SLUICE_OP_RESET;
        break;
    }
    it.state_capacity = capacities != nullptr
                            ? capacities[i]
                            : static_cast<uint32_t>(algo::state_capacity(it.params));
  }
  d.lease.id = lease_id;
  call.count_ = n;
  in.batch = {in.now_ms, n, in.items.data(), in.results.data()};
  return true;
}

void Engine::decide(DecisionKind kind, const DecisionRequest& request, DecisionCall& call,
                    DecisionDone done, void* user) {
  if (begin(kind, request, call, done, user)) impl_->submit(call);
}

bool Engine::prepare(DecisionKind kind, const DecisionRequest& request, DecisionCall& call,
                     DecisionDone done, void* user) {
  if (!begin(kind, request, call, done, user)) return false;
  impl_->storage->prefetch(call.in_->batch);
  return true;
}

void Engine::submit_prepared(DecisionCall& call) { impl_->submit(call); }

void Engine::Impl::submit(DecisionCall& call) {
  auto& in = *call.in_;
  if (!watchdog) return storage->submit(in.batch, &Impl::on_storage_done, &call);
  watchdog->submit(in.batch, in.results.data(), &call);
}

void Engine::Impl::on_watched_done(void* owner, void* call, sluice_status status,
                                   const char* message) {
  static_cast<Impl*>(owner)->complete(*static_cast<DecisionCall*>(call), status, message);
}

void Engine::Impl::on_storage_done(void* user, sluice_status status, const char* message) {
  auto& call = *static_cast<DecisionCall*>(user);
  call.in_->engine->complete(call, status, message);
}

void Engine::Impl::complete(DecisionCall& call, sluice_status status, const char* message) {
  auto& in = *call.in_;
  Decision& d = call.decision_;
  const Snapshot& snap = *in.snap;
  const CompiledResource* res = in.resource;
  const size_t n = call.count_;
  const bool counts =
      !in.charging && (in.kind == DecisionKind::kCheck || in.kind == DecisionKind::kAcquire);

  if (in.releasing) {
    d.allowed = status == SLUICE_OK;
    if (status != SLUICE_OK) {
      d.source = DecisionSource::kStorageFailure;
      d.error = StatusCode::kUnavailable;
      d.error_message = message ? message : "storage failure";
    }
    return finish_inline(call);
  }

  if (status != SLUICE_OK) {
    const bool open = snap.policy->spec().on_storage_failure == StorageFailureMode::kFailOpen;
    d = Decision{};
    d.allowed = open;
    d.source = DecisionSource::kStorageFailure;
    d.limit = d.remaining = open ? -1 : 0;
    d.retry_after_ms = open ? 0 : kStorageRetryMs;
    d.set_rule(kRuleStorage);
    d.error = status == SLUICE_ERR_TIMEOUT ? StatusCode::kTimeout : StatusCode::kUnavailable;
    d.error_message = message ? message : "storage failure";
    if (in.charging && !open && in.record_step == RecordStep::kNone) {
      NamedCosts buf;
      leases.undo_charge(in.charge_before->id, *in.charge_before, in.charge.bare,
                         in.charge.view(buf).named);
    }
    Stats::record(snap.at(res, in.tier, res->limits.size() + 1), Outcome::kStorageError, in.now_ms);
    stats.record_latency_ns(timer.elapsed_ns(in.started));
    return finish_inline(call);
  }

  // The deciding rule: when denied, the non-shadow denial with the longest wait (-1 = never);
  // when allowed, the non-shadow limit with the least remaining.
  int chosen = -1;
  bool denied = false;
  for (size_t i = 0; i < n; ++i) {
    const auto& r = in.results[i];
    if (in.uncharged[i]) continue;
    if (in.items[i].shadow) {
      if (!r.allowed) {
        d.shadow_denied = true;
        if (counts) Stats::record(snap.at(res, in.tier, i), Outcome::kShadowDenied, in.now_ms);
      }
      continue;
    }
    if (!r.allowed) {
      const auto& best = in.results[static_cast<size_t>(chosen < 0 ? 0 : chosen)];
      const bool longer = r.retry_after_ms < 0 ||
                          (best.retry_after_ms >= 0 && r.retry_after_ms > best.retry_after_ms);
      if (!denied || longer) chosen = static_cast<int>(i);
      denied = true;
    } else if (!denied &&
               (chosen < 0 || r.remaining < in.results[static_cast<size_t>(chosen)].remaining)) {
      chosen = static_cast<int>(i);
    }
  }
  if (chosen < 0) {
    // Only shadow limits and limits this request takes nothing from: report the one of the
    // latter with the least remaining, a rate limit rather than a concurrency limit (a charge
    // covered by its reservation reports the token limit it is counted by, not the slots).
    chosen = -1;
    auto rank = [&](size_t i) {
      const auto& lim = res->limits[in.limit_index[i]];
      if (!in.uncharged[i] || lim.shadow) return 0;
      return lim.params.algorithm == SLUICE_ALG_CONCURRENCY ? 1 : 2;
    };
    for (size_t i = 0; i < n; ++i) {
      if (rank(i) == 0) continue;
      const auto c = static_cast<size_t>(chosen);
      if (chosen < 0 || rank(i) > rank(c) ||
          (rank(i) == rank(c) && in.results[i].remaining < in.results[c].remaining)) {
        chosen = static_cast<int>(i);
      }
    }
    if (chosen < 0) chosen = 0;
  }
  in.chosen = chosen;
  const auto& r = in.results[static_cast<size_t>(chosen)];
  d.allowed = !denied;
  d.limit = r.limit;
  d.remaining = r.remaining;
  d.reset_after_ms = r.reset_after_ms;
  d.retry_after_ms = denied ? r.retry_after_ms : 0;
  d.set_rule(res->limits[in.limit_index[static_cast<size_t>(chosen)]].name);
  d.source = DecisionSource::kLimits;

  if (counts) {
    if (!denied || !in.quiet_denial) {
      // An allowed grant (SL.ACQUIRE ... COST requests n: its client admits n requests from
      // it) counts as the n requests.
      uint32_t admitted = 1;
      if (const int64_t* granted =
              in.kind == DecisionKind::kAcquire ? in.estimate.find(kUnitRequests) : nullptr;
          !denied && granted != nullptr && *granted > 1) {
        admitted = static_cast<uint32_t>(std::min<int64_t>(*granted, 1'000'000));
      }
      Stats::record(snap.at(res, in.tier, static_cast<size_t>(chosen)),
                    denied ? Outcome::kDenied : Outcome::kAllowed, in.now_ms, admitted);
      if (denied) {
        const std::string_view tier = snap.policy->tiers()[in.tier].name;
        stats.record_blocked(res->name, in.subject(), tier, d.rule(), in.now_ms);
      }
    }
    stats.record_latency_ns(timer.elapsed_ns(in.started));
  }
  if (in.kind == DecisionKind::kAcquire && !in.charging) {
    if (denied) {
      d.lease = {};
    } else if (records()) {
      d.lease_ttl_ms = in.lease_ttl_ms;
      d.lease.secret = draw_lease_secret();
      // The resource name as requested: with default_limits it differs from res->name.
      in.record_lease = Lease{.id = d.lease.id,
                              .resource = std::string(in.resource_name()),
                              .subject = std::string(in.subject()),
                              .tier = snap.policy->tiers()[in.tier].name,
                              .account = {std::move(in.estimate)},
                              .expires_ms = in.now_ms + in.lease_ttl_ms,
                              .secret = d.lease.secret};
      return put_lease(call, RecordStep::kAcquirePut);
    } else {
      d.lease_ttl_ms = in.lease_ttl_ms;
      // The resource name as requested: with default_limits it differs from res->name.
      d.lease = leases.hold(d.lease.id,
                            Lease{.resource = std::string(in.resource_name()),
                                  .subject = std::string(in.subject()),
                                  .tier = snap.policy->tiers()[in.tier].name,
                                  .account = {std::move(in.estimate)},
                                  .expires_ms = in.now_ms + in.lease_ttl_ms},
                            in.now_ms);
    }
  }
  if (in.charging && denied && in.record_step == RecordStep::kNone) {
    const Lease& before = *in.charge_before;
    NamedCosts buf;
    leases.undo_charge(before.id, before, in.charge.bare, in.charge.view(buf).named);
  }
  if (in.charging && !denied) return finish_charge(call);
  finish_inline(call);
}

void Engine::Impl::finish_charge(DecisionCall& call) {
  if (call.in_->record_step == RecordStep::kChargeGet && call.decision_.allowed)
    return put_lease(call, RecordStep::kChargePut);
  finish_inline(call);
}

void Engine::release(const LeaseToken& token, std::optional<int64_t> actual, DecisionCall& call,
                     DecisionDone done, void* user, const NamedCosts* named) {
  auto& in = *call.in_;
  Decision& d = call.decision_;
  d = Decision{};
  call.count_ = 0;
  in.done = done;
  in.user = user;
  in.engine = impl_.get();
  in.record_step = RecordStep::kNone;
  const int64_t now_ms = impl_->clock->now_ms();

  if (actual && (*actual < 0 || *actual > kMaxCost)) {
    d.error = StatusCode::kInvalid;
    d.error_message = fmt::format("ACTUAL must be 0 to {}", kMaxCost);
    return impl_->finish_inline(call);
  }
  if (named != nullptr) {
    if (auto problem = named_cost_problem(*named); !problem.empty()) {
      d.error = StatusCode::kInvalid;
      d.error_message = "ACTUAL" + problem.substr(4);  // "COST x ..." -> "ACTUAL x ..."
      return impl_->finish_inline(call);
    }
  }
  // A token whose secret is not the lease's gets the answer an unknown id gets, and the lease
  // stays its holder's.
  std::optional<Lease> taken = impl_->leases.take(token, now_ms);
  if (!taken && impl_->records()) {
    in.record_step = RecordStep::kReleaseGet;
    in.token = token;
    in.now_ms = now_ms;
    in.release_actual = actual;
    in.release_named.reset();
    if (named != nullptr) in.release_named = LeaseCosts::of(0, named->view());
    impl_->storage->record_get(LeaseRecordKey(token.id).view(), now_ms, &Impl::on_record_done,
                               &call);
    impl_->settle_expired(now_ms);
    return;
  }
  if (!taken) {
    d.allowed = false;
    d.error = StatusCode::kNotFound;
    d.error_message = "unknown or expired lease";
    return impl_->finish_inline(call);
  }
  impl_->settle(token.id, *taken, actual, named, call, now_ms);
  impl_->settle_expired(now_ms);
}

// The settlement of a lease that has been taken out of the registry: concurrency slots are
// freed, and every other limit's count is moved from what the lease took so far to its final
// cost — the estimate refunded down to it, or an overrun charged (at most the limit's
// overdraft). Final costs, per unit: ACTUAL if given, else the usage charged, else the
// estimate.
void Engine::Impl::settle(uint64_t lease_id, const Lease& lease, std::optional<int64_t> actual,
                          const NamedCosts* named, DecisionCall& call, int64_t now_ms) {
  auto& in = *call.in_;
  Decision& d = call.decision_;
  in.releasing = true;
  in.charging = false;
  in.released.clear();
  in.kind = DecisionKind::kAcquire;
  in.now_ms = now_ms;
  in.resource = nullptr;
  in.tier_known = false;

  in.snap = current();
  const CompiledPolicy& policy = *in.snap->policy;
  const CompiledResource* res = policy.find_resource(lease.resource);
  if (!res) res = policy.default_resource();
  const CompiledTier* tier = policy.find_tier(lease.tier);
  if (!res || !tier || res->unlimited_for_tier[tier->index]) {
    d.allowed = true;  // nothing was held in storage (or the policy no longer has the resource)
    return finish_inline(call);
  }
  in.resource = res;
  in.tier = tier->index;
  in.tier_known = true;

  const LeaseAccount& account = lease.account;
  const LeaseCosts effective = account.effective();
  LeaseCosts final_costs = effective;
  if (actual) final_costs.bare = *actual;
  if (named != nullptr) {
    for (const NamedCost& n : named->view()) final_costs.set(n.unit, n.amount);
  }
  NamedCosts est_buf, eff_buf, fin_buf;
  const CostView est_view = account.estimate.view(est_buf);
  const CostView eff_view = effective.view(eff_buf);
  const CostView fin_view = final_costs.view(fin_buf);

  const auto& effective_params = res->effective[tier->index];
  std::array<size_t, kMaxLimitsPerResource + 1> offsets{};
  std::array<size_t, kMaxLimitsPerResource> which{};
  std::array<int64_t, kMaxLimitsPerResource> deltas{};
  size_t n = 0;
  in.key_space(res->limits.size(), lease.resource.size() + lease.subject.size());
  in.fit(res->limits.size());
  for (size_t i = 0; i < res->limits.size(); ++i) {
    const auto& lim = res->limits[i];
    const bool concurrency = lim.params.algorithm == SLUICE_ALG_CONCURRENCY;
    int64_t delta = 0;
    if (!concurrency) {
      // What the lease has taken from this limit: its reservation, or its usage beyond it.
      const int64_t reserved = cost_of(lim, *res, est_view);
      const int64_t taken =
          account.charged() ? std::max(reserved, cost_of(lim, *res, eff_view)) : reserved;
      delta = cost_of(lim, *res, fin_view) - taken;
      if (delta > 0 && lim.overdraft >= 0) delta = std::min(delta, lim.overdraft);
      if (delta == 0) continue;
    }
    which[n] = i;
    deltas[n] = delta;
    offsets[n + 1] = offsets[n] + write_key(in.keys.data() + offsets[n], lease.resource,
                                            lim.per_resource ? std::string_view()
                                                             : std::string_view(lease.subject),
                                            lim.name);
    if (concurrency) in.released.assign(lease.resource);
    ++n;
  }
  for (size_t k = 0; k < n; ++k) {
    const size_t i = which[k];
    sluice_item& it = in.items[k];
    it = sluice_item{};
    it.key = in.keys.data() + offsets[k];
    it.key_len = static_cast<uint32_t>(offsets[k + 1] - offsets[k]);
    it.params = effective_params[i];
    const bool concurrency = it.params.algorithm == SLUICE_ALG_CONCURRENCY;
    it.op = concurrency ? SLUICE_OP_LEASE_RELEASE : SLUICE_OP_ADJUST;
    const int64_t capacity = capacity_of(it.params);
    it.cost = concurrency ? 0 : std::clamp(deltas[k], -capacity, capacity);
    set_calendar_window(it.params, res->limits[i], now_ms);
    it.lease_id = lease_id;
    it.state_capacity = static_cast<uint32_t>(algo::state_capacity(it.params));
    in.limit_index[k] = static_cast<uint8_t>(i);
    in.uncharged[k] = 0;
  }
  call.count_ = n;
  if (n == 0) {
    d.allowed = true;
    return finish_inline(call);
  }
  in.batch = {now_ms, n, in.items.data(), in.results.data()};
  submit(call);
}

void Engine::charge(const LeaseToken& token, int64_t cost, const NamedCosts& named,
                    DecisionCall& call, DecisionDone done, void* user) {
  auto& in = *call.in_;
  Decision& d = call.decision_;
  d = Decision{};
  call.count_ = 0;
  in.kind = DecisionKind::kCheck;
  in.releasing = false;
  in.charging = false;
  in.quiet_denial = false;
  in.chosen = -1;
  in.done = done;
  in.user = user;
  in.engine = impl_.get();
  in.started = impl_->timer.start();
  in.now_ms = impl_->clock->now_ms();
  in.resource = nullptr;
  in.tier_known = false;
  auto fail = [&](StatusCode code, std::string msg) {
    d.source = DecisionSource::kError;
    d.error = code;
    d.error_message = std::move(msg);
    d.set_rule(kRuleError);
    impl_->finish_inline(call);
  };
  if (cost < 0 || cost > kMaxCost)
    return fail(StatusCode::kInvalid, fmt::format("COST must be 0 to {}", kMaxCost));
  if (auto problem = named_cost_problem(named); !problem.empty())
    return fail(StatusCode::kInvalid, std::move(problem));
  in.record_step = RecordStep::kNone;
  bool too_many = false;
  in.charge_before = impl_->leases.begin_charge(token, in.now_ms, cost, named.view(), too_many);
  if (too_many) {
    return fail(StatusCode::kInvalid,
                fmt::format("a lease counts at most {} named units", kMaxNamedCosts));
  }
  const int64_t now_ms = in.now_ms;
  if (const auto& current = impl_->current(); in.snap != current) in.snap = current;
  in.charge = LeaseCosts::of(cost, named.view());
  d.lease.id = token.id;
  if (!in.charge_before && impl_->records()) {
    in.record_step = RecordStep::kChargeGet;
    in.token = token;
    impl_->storage->record_get(LeaseRecordKey(token.id).view(), now_ms, &Impl::on_record_done,
                               &call);
  } else if (!in.charge_before) {
    return fail(StatusCode::kNotFound, "unknown or expired lease");
  } else {
    impl_->charge_lease(call);
  }
  impl_->settle_expired(now_ms);
}

void Engine::Impl::charge_lease(DecisionCall& call) {
  auto& in = *call.in_;
  Decision& d = call.decision_;
  in.charging = true;
  const Lease& lease = *in.charge_before;
  NamedCosts charge_buf;
  const CostView charge = in.charge.view(charge_buf);

  const Snapshot& snap = *in.snap;
  const CompiledPolicy& policy = *snap.policy;
  const CompiledResource* res = policy.find_resource(lease.resource);
  if (!res) res = policy.default_resource();
  const CompiledTier* tier = policy.find_tier(lease.tier);
  if (tier != nullptr) {
    in.tier = tier->index;
    in.tier_known = true;
  }
  if (!res || !tier || res->unlimited_for_tier[tier->index] || res->limits.empty()) {
    d.allowed = true;
    d.source = res && tier ? DecisionSource::kUnlimited : DecisionSource::kUnknownResource;
    d.limit = d.remaining = -1;
    d.set_rule(res && tier ? kRuleUnlimited : kRuleUnknown);
    return finish_charge(call);
  }
  in.resource = res;
  in.resource_len = lease.resource.size();
  in.subject_len = lease.subject.size();

  // Per limit: what the lease has taken (its reservation, or its usage beyond it) before and
  // after this charge; the difference is consumed.
  LeaseAccount after = lease.account;
  after.add(charge.bare, charge.named, +1);
  const LeaseCosts eff_before = lease.account.effective();
  const LeaseCosts eff_after = after.effective();
  NamedCosts est_buf, before_buf, after_buf;
  const CostView est_view = lease.account.estimate.view(est_buf);
  const CostView before_view = eff_before.view(before_buf);
  const CostView after_view = eff_after.view(after_buf);

  const double factor = warm_factor(snap, *res, in.now_ms);
  const auto& effective = res->effective[in.tier];
  const size_t n = res->limits.size();
  std::array<size_t, kMaxLimitsPerResource + 1> offsets{};
  char* keys = in.key_space(n, lease.resource.size() + lease.subject.size());
  in.fit(n);
  offsets[0] = write_key(keys, lease.resource, lease.subject, {});
  for (size_t i = 0; i < n; ++i) {
    const auto& lim = res->limits[i];
    offsets[i + 1] =
        offsets[i] + write_key(keys + offsets[i], lease.resource,
                               lim.per_resource ? std::string_view() : lease.subject, lim.name);
  }
  for (size_t i = 0; i < n; ++i) {
    const auto& lim = res->limits[i];
    sluice_item& it = in.items[i];
    fill_item(it, keys + offsets[i], offsets[i + 1] - offsets[i], effective[i], factor, lim,
              in.now_ms);
    it.state_capacity = static_cast<uint32_t>(algo::state_capacity(it.params));
    in.limit_index[i] = static_cast<uint8_t>(i);
    const bool concurrency = lim.params.algorithm == SLUICE_ALG_CONCURRENCY;
    int64_t delta = 0;
    if (!concurrency) {
      const int64_t reserved = cost_of(lim, *res, est_view);
      const int64_t taken_before =
          lease.account.charged() ? std::max(reserved, cost_of(lim, *res, before_view)) : reserved;
      delta =
          std::max<int64_t>(0, std::max(reserved, cost_of(lim, *res, after_view)) - taken_before);
    }
    it.shadow = lim.shadow ? 1 : 0;
    in.uncharged[i] = delta == 0 ? 1 : 0;
    if (delta == 0) {
      it.op = SLUICE_OP_PEEK;
      it.shadow = 1;
      it.cost = 0;
    } else {
      it.op = SLUICE_OP_CONSUME;
      it.cost = std::min(delta, capacity_of(it.params) + 1);
    }
  }
  call.count_ = n;
  in.batch = {in.now_ms, n, in.items.data(), in.results.data()};
  submit(call);
}

void Engine::count_denial(const DecisionCall& call) {
  const auto& in = *call.in_;
  const Decision& d = call.decision_;
  if (d.allowed || d.source != DecisionSource::kLimits || !in.snap || in.resource == nullptr ||
      in.chosen < 0) {
    return;
  }
  Stats::record(in.snap->at(in.resource, in.tier, static_cast<size_t>(in.chosen)), Outcome::kDenied,
                in.now_ms);
  impl_->stats.record_blocked(in.resource->name, in.subject());
}

std::optional<WaitTerms> Engine::wait_terms(const DecisionRequest& req) const {
  const auto snap = impl_->snapshots.load();
  const CompiledPolicy& policy = *snap->policy;
  const CompiledTier* tier = nullptr;
  if (!req.tier.empty()) {
    tier = policy.find_tier(req.tier);
    if (tier == nullptr) return std::nullopt;
  } else {
    if (!policy.spec().api_keys.empty())
      tier = policy.tier_for_api_key(req.api_key.empty() ? req.subject : req.api_key);
    if (tier == nullptr) tier = &policy.default_tier();
  }
  const CompiledResource* res = policy.find_resource(req.resource);
  if (res == nullptr || res->limits.empty() || res->unlimited_for_tier[tier->index]) {
    return std::nullopt;
  }
  WaitTerms t;
  t.priority = tier->priority;
  t.max_wait_ms = res->queue.max_wait_ms;
  t.max_waiters = res->queue.max_waiters;
  return t;
}

// ---- blocking conveniences -------------------------------------------------------------------

namespace {
struct SyncWait {
  Mutex mu;
  std::condition_variable cv;
  bool done SLUICE_GUARDED_BY(mu) = false;
  static void signal(void* user, DecisionCall&) {
    auto* w = static_cast<SyncWait*>(user);
    MutexLock lock(w->mu);
    w->done = true;
    w->cv.notify_one();
  }
  void wait() {
    MutexLock lock(mu);
    while (!done) lock.wait(cv);
  }
};
}  // namespace

Decision Engine::decide_sync(DecisionKind kind, const DecisionRequest& request) {
  DecisionCall call;
  SyncWait w;
  decide(kind, request, call, &SyncWait::signal, &w);
  w.wait();
  return call.decision();
}

Decision Engine::release_sync(const LeaseToken& lease, std::optional<int64_t> actual,
                              const NamedCosts* named) {
  DecisionCall call;
  SyncWait w;
  release(lease, actual, call, &SyncWait::signal, &w, named);
  w.wait();
  return call.decision();
}

Decision Engine::charge_sync(const LeaseToken& lease, int64_t cost, const NamedCosts& named) {
  DecisionCall call;
  SyncWait w;
  charge(lease, cost, named, call, &SyncWait::signal, &w);
  w.wait();
  return call.decision();
}

// ---- lease tokens -------------------------------------------------------------------------

void LeaseToken::format(char* out) const {
  const uint64_t words[3] = {id, secret[0], secret[1]};
  for (uint64_t w : words) {
    for (int shift = 60; shift >= 0; shift -= 4) *out++ = "0123456789abcdef"[(w >> shift) & 0xf];
  }
}

std::string LeaseToken::to_string() const {
  std::string text(kTextLength, '0');
  format(text.data());
  return text;
}

std::optional<LeaseToken> LeaseToken::parse(std::string_view text) {
  if (text.size() != kTextLength) return std::nullopt;
  uint64_t words[3] = {0, 0, 0};
  for (size_t i = 0; i < kTextLength; ++i) {
    const char c = text[i];
    uint64_t digit = 0;
    if (c >= '0' && c <= '9') {
      digit = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      digit = static_cast<uint64_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      digit = static_cast<uint64_t>(c - 'A' + 10);
    } else {
      return std::nullopt;
    }
    words[i / 16] = (words[i / 16] << 4) | digit;
  }
  if (words[0] == 0) return std::nullopt;
  return LeaseToken{words[0], {words[1], words[2]}};
}

}  // namespace sluice
