// The engine: decides requests against the current policy with a storage plugin, and keeps
// warm-up state, granted leases (lease_registry.h) and statistics. Engine::decide (or prepare
// and submit_prepared) is the one decision path used by the server, the benchmarks and the
// tests.
//
// Thread safety: every method may be called from any thread at any time, concurrently; policy
// swaps (set_policy) are atomic for decisions, which each use one snapshot from start to end. A
// DecisionCall belongs to one decision at a time: reuse it only after its `done` has run.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/clock.h"
#include "sluice/export.h"
#include "sluice/policy.h"
#include "sluice/status.h"
#include "sluice/storage.h"
#include "sluice/storage_plugin.h"

namespace sluice {

class Timer;

class Stats;

enum class DecisionKind {
  kCheck,    // consume if allowed (concurrency limits are only looked at)
  kPeek,     // what kCheck would answer; nothing changes
  kAcquire,  // consume and hold a lease (concurrency slots, estimated cost)
  kInspect,  // like kPeek, and every limit's result is kept in the call
  kReset,    // forget the subject's state for every limit of the resource
};

// Wire bounds of a request's numbers. Every plugin answers exactly at and below them (their
// sums stay below 2^53, so the Redis plugin's Lua numbers are exact too); above them a request
// is refused before it reaches storage.
inline constexpr int64_t kMaxCost = 1'000'000'000'000;  // COST and ACTUAL

// What a client holds to release or settle its lease: the engine's id of the lease and 128
// bits drawn for it from the kernel's CSPRNG. Only the holder of the token can use the lease;
// ids alone (and tokens of other leases) tell nothing about it. On the wire: 48 lowercase
// hex digits (id, then secret).
struct LeaseToken {
  uint64_t id = 0;  // 0: no lease
  std::array<uint64_t, 2> secret{};

  static constexpr size_t kTextLength = 48;
  // Writes the kTextLength characters into `out`.
  void format(char* out) const;
  std::string to_string() const;
  // nullopt unless `text` is exactly kTextLength hex digits with a non-zero id.
  static std::optional<LeaseToken> parse(std::string_view text);
};

// A cost in a named unit (`COST input_tokens 120`): what limits counting that unit take.
struct NamedCost {
  std::string_view unit;
  int64_t amount = 0;  // 0 to kMaxCost
};

inline constexpr size_t kMaxNamedCosts = 8;

// The named costs of one request, charge or settlement, each unit at most once.
struct NamedCosts {
  std::array<NamedCost, kMaxNamedCosts> items{};
  uint8_t count = 0;
  std::span<const NamedCost> view() const { return {items.data(), count}; }
  // False (changing nothing) when full or when `unit` is already named.
  bool add(std::string_view unit, int64_t amount);
};

struct DecisionRequest {
  std::string_view resource;
  std::string_view subject;
  std::string_view tier;     // explicit tier; empty = resolve from api_key, subject, default
  std::string_view api_key;  // looked up in the policy's api_keys when tier is empty
  // The bare COST: what limits take whose unit is neither requests nor named below. 1 to
  // kMaxCost; 0 (with named costs only) = such limits are only looked at. Estimates for kAcquire.
  int64_t cost = 1;
  NamedCosts named;          // COST <unit> <n>
  int64_t lease_ttl_ms = 0;  // kAcquire: 0 = the policy's lease_ttl; at most lease_ttl_max
  // A denial is not counted in the statistics: the caller decides again (WAIT) and counts the
  // one it answers with Engine::count_denial.
  bool quiet_denial = false;
};

// What a WAIT request needs to know of its last decision (DecisionCall::wait_terms).
struct WaitTerms {
  int64_t priority = 0;  // the tier's
  int64_t max_wait_ms = QueueSpec::kDefaultMaxWaitMs;
  int64_t max_waiters = QueueSpec::kDefaultMaxWaiters;
  bool shared_denial = false;  // denied by a `per: resource` limit (no subject gets in now)
  // Denied by a concurrency limit: a release may come before retry_after (a lease's expiry).
  // Otherwise retry_after is when the limit admits again at the soonest.
  bool concurrency_denial = false;
};

// Why a decision came out the way it did.
enum class DecisionSource {
  kLimits,           // the resource's limits decided
  kUnlimited,        // the tier is unlimited
  kUnknownResource,  // the policy's unknown_resource mode decided (allow or deny)
  kStorageFailure,   // storage failed; the policy's on_storage_failure decided
  kError,            // the request was invalid; see Decision::error
};

struct Decision {
  bool allowed = false;
  int64_t limit = 0;
  int64_t remaining = 0;
  int64_t reset_after_ms = 0;
  int64_t retry_after_ms = 0;
  DecisionSource source = DecisionSource::kLimits;
  bool shadow_denied = false;  // a shadow limit would have denied
  LeaseToken lease;            // kAcquire, when allowed
  int64_t lease_ttl_ms = 0;
  std::string_view rule() const { return {rule_.data(), rule_len_}; }
  void set_rule(std::string_view r);
  // Set when source == kError (and for kStorageFailure: the plugin's sentence).
  StatusCode error = StatusCode::kOk;
  std::string error_message;

 private:
  std::array<char, kMaxNameLength + 1> rule_{};
  size_t rule_len_ = 0;
};

// One limit's answer inside a decision (kInspect keeps them all).
struct LimitResult {
  std::string_view rule;
  bool shadow;
  int64_t window_ms;  // the effective parameters' window (after tier and warm-up)
  sluice_item_result result;
};

// The caller-owned context of one decision in flight. Reused across decisions, so the hot
// path allocates nothing once the buffers have grown. Must stay alive until `done` has run.
class SLUICE_API DecisionCall {
 public:
  DecisionCall();
  ~DecisionCall();
  DecisionCall(const DecisionCall&) = delete;
  DecisionCall& operator=(const DecisionCall&) = delete;

  const Decision& decision() const { return decision_; }
  // Every limit's answer of the last decision (filled for all kinds).
  size_t limit_count() const { return count_; }
  LimitResult limit_result(size_t i) const;
  // The engine's time of the last decision (ms since the epoch).
  int64_t time_ms() const;
  // The tier the last decision was made for; empty when it failed before a tier was resolved.
  // Valid until the call is reused.
  std::string_view tier() const;
  // The resource's queue settings, the tier's priority and what denied the last decision.
  WaitTerms wait_terms() const;
  // After a release that freed a concurrency slot: the lease's resource (as requested); empty
  // otherwise. Valid until the call is reused.
  std::string_view released_resource() const;

 private:
  friend class Engine;
  struct Internal;
  Decision decision_;
  size_t count_ = 0;
  std::unique_ptr<Internal> in_;
};

using DecisionDone = void (*)(void* user, DecisionCall& call);

struct WarmupStatus {
  bool enabled = false;  // the resource has warm-up settings
  bool warming = false;
  double factor = 1.0;       // current factor applied to limits
  int64_t elapsed_ms = 0;    // since warm-up started (when warming)
  int64_t remaining_ms = 0;  // until it ends by itself (0 = until READY)
};

struct EngineOptions {
  const Clock* clock = &SystemClock::instance();
  // A plugin that completes asynchronously (Redis, SQLite in commit mode) and has not answered
  // a decision within this long gets it answered by the engine as a storage failure (the
  // policy's fail-open/fail-closed), so a hung backend cannot hang callers. 0 = wait forever.
  // Plugins that complete inline (memory) are never timed out.
  int64_t storage_timeout_ms = 1000;
  // What the storage timeout is measured with (monotonic; sluice/timer.h). Null: the steady
  // clock. Tests pass a ManualTimer.
  const Timer* timer = nullptr;
};

class SLUICE_API Engine {
 public:
  Engine(std::unique_ptr<Storage> storage, std::shared_ptr<const CompiledPolicy> policy,
         EngineOptions options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Decide asynchronously. `done` runs exactly once, inline (memory plugin) or on the
  // plugin's thread. Invalid requests complete inline with source kError.
  void decide(DecisionKind kind, const DecisionRequest& request, DecisionCall& call,
              DecisionDone done, void* user);

  // decide() in two steps, for a caller that holds several requests at once (a pipeline):
  // prepare() does everything up to the storage and tells the storage which keys are coming
  // (the memory plugin starts loading their table slots into the CPU cache); submit_prepared()
  // then decides. Preparing N requests before submitting any lets their memory loads overlap
  // instead of following one another. prepare() returns false when the decision needed no
  // storage and has already completed (`done` ran); otherwise the call must be passed to
  // submit_prepared() exactly once, and `done` runs then. Calls are independent: submitting
  // them in another order than they were prepared is fine.
  bool prepare(DecisionKind kind, const DecisionRequest& request, DecisionCall& call,
               DecisionDone done, void* user);
  void submit_prepared(DecisionCall& call);

  // Release a lease from kAcquire; `actual` settles the real cost (refund or extra charge).
  // Completes with decision().allowed = true when the lease existed, false when unknown or
  // expired, or when the token's secret is not the lease's (error kNotFound, the same answer).
  // With `named`, ACTUAL <unit> <n> settles those units: a unit neither in `actual` nor in
  // `named` settles at what the lease was charged in it (SL.CHARGE), or at its estimate when
  // it was never charged. Leases that expire are settled the same way, at their usage.
  // With a plugin that keeps records (ABI 1.4) the lease is read from and deleted in storage,
  // so it may have been granted by another engine on that storage; a lease that cannot be read
  // completes with error kUnavailable (docs/protocol.md, "Where leases live").
  void release(const LeaseToken& lease, std::optional<int64_t> actual, DecisionCall& call,
               DecisionDone done, void* user, const NamedCosts* named = nullptr);

  // SL.CHARGE: `cost` (bare) and `named` more units used by the lease. Usage up to the lease's
  // estimate is covered by its reservation; beyond it the charge consumes from the limits, all
  // together or none. The decision is an SL.CHECK's: denied = the charge consumed nothing and
  // is not added to the lease's usage. Unknown, expired or wrong-secret leases complete with
  // error kNotFound. With records (ABI 1.4) the lease is read from storage first and its new
  // usage written back after an allowed charge.
  void charge(const LeaseToken& lease, int64_t cost, const NamedCosts& named, DecisionCall& call,
              DecisionDone done, void* user);

  // Counts the call's last decision, a denial made with quiet_denial, in the statistics: the
  // answer a WAIT request finally got.
  void count_denial(const DecisionCall& call);
  // What a WAIT request would wait under, from the current policy and without deciding: its
  // tier's priority and its resource's queue caps. nullopt when the request would not be
  // limited (unknown resource, unlimited tier, no limits) or names an unknown tier.
  std::optional<WaitTerms> wait_terms(const DecisionRequest& request) const;

  // Blocking conveniences for tests, tools and benchmarks.
  Decision decide_sync(DecisionKind kind, const DecisionRequest& request);
  Decision release_sync(const LeaseToken& lease, std::optional<int64_t> actual,
                        const NamedCosts* named = nullptr);
  Decision charge_sync(const LeaseToken& lease, int64_t cost, const NamedCosts& named = {});

  // Swap in a new policy atomically. Counters of limits whose name and algorithm are
  // unchanged carry over (they live in storage under the same keys). Warm-up state carries
  // over by resource name.
  void set_policy(std::shared_ptr<const CompiledPolicy> policy);
  std::shared_ptr<const CompiledPolicy> policy() const;

  // Warm-up control of one resource; kNotFound for an unknown resource, kInvalid when it
  // has no warm-up settings.
  Status warmup_start(std::string_view resource);
  Status warmup_ready(std::string_view resource);
  Result<WarmupStatus> warmup_status(std::string_view resource) const;

  // Stops the storage timeout and closes the storage plugin, which first completes every batch
  // it still holds (their callers' callbacks run now, while the callers still exist). No
  // decision may be made afterwards. The destructor does the same if this was not called.
  void shutdown();

  size_t active_leases() const;

  // A replaced policy stays in memory while anything references it: the snapshot cache of each
  // thread that decided with it, and each DecisionCall's last decision. An idle caller lets go
  // of them (sluiced's workers do once a second): release_stale_snapshots() drops this
  // thread's, release_if_stale() a call's (not while it is in flight). Each returns true when
  // it dropped a replaced policy.
  bool release_stale_snapshots();
  bool release_if_stale(DecisionCall& call);
  Stats& stats();
  Storage& storage();
  const Clock& clock() const;

 private:
  friend class DecisionCall;
  // Everything of decide() before the storage; false when it completed already.
  bool begin(DecisionKind kind, const DecisionRequest& request, DecisionCall& call,
             DecisionDone done, void* user);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
