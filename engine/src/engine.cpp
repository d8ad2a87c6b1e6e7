#include "sluice/engine.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>

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

#include "policy_internal.h"
#include "sluice/algorithms.h"
#include "sluice/stats.h"
#include "tsc.h"

namespace sluice {

namespace {

constexpr std::string_view kRuleUnlimited = "unlimited";
constexpr std::string_view kRuleUnknown = "(unknown-resource)";
constexpr std::string_view kRuleStorage = "(storage)";
constexpr std::string_view kRuleError = "(error)";
// How long a fail-closed denial asks the caller to wait before trying again.
constexpr int64_t kStorageRetryMs = 1000;

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

// A limit's capacity: above it every transition denies alike ("never", whatever the cost), so
// a cost is handed to storage as at most capacity + 1, and a settlement charges or refunds at
// most one capacity. Every plugin then computes with the same small numbers (the Redis
// plugin's Lua numbers stay exact), and a settlement denies for at most about one window.
int64_t capacity_of(const sluice_limit_params& p) { return std::max(p.limit, p.burst); }

int64_t scale(int64_t v, double f) {
  if (v <= 0 || f >= 1.0) return v;
  return std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(v) * f)));
}

}  // namespace

void Decision::set_rule(std::string_view r) {
  rule_len_ = std::min(r.size(), rule_.size() - 1);
  std::copy_n(r.data(), rule_len_, rule_.data());
}

// ---- snapshot: a compiled policy plus the engine's per-policy bindings -------------------

struct Snapshot {
  uint64_t id = 0;  // unique in the process, see Engine::Impl::current()
  std::shared_ptr<const CompiledPolicy> policy;
  Stats* stats = nullptr;
  // Per (resource, tier), at base[resource * tiers + tier]: one slot per limit, then one for
  // the tier's unlimited decisions and one for storage errors ([limits], [limits + 1]). The
  // default resource (unknown names with default_limits) has resource index
  // resources().size(). `series` slots are bound on first use (bind()), so that a policy of
  // a hundred thousand resources costs a pointer per slot, not a series.
  std::vector<uint32_t> base;
  std::unique_ptr<std::atomic<Stats::Series*>[]> series;
  std::unique_ptr<uint32_t[]> capacities;  // algo::state_capacity of each limit's parameters
  Stats::Series* unknown = nullptr;        // decisions on unknown resources (allow or deny mode)
  // Warm-up start time per resource (ms), or -1 when not warming. Shared with the engine's
  // name-keyed record so that warm-up state survives policy swaps.
  std::unique_ptr<std::atomic<int64_t>[]> warm_started;

  mutable std::mutex bind_mu;                                 // guards owned
  mutable std::vector<std::shared_ptr<Stats::Series>> owned;  // what the slots point to

  size_t resource_index(const CompiledResource* r) const {
    return r == policy->default_resource() ? policy->resources().size() : r->index;
  }
  Stats::Series* at(const CompiledResource* r, uint32_t tier, size_t slot) const {
    const size_t i = base[resource_index(r) * policy->tiers().size() + tier] + slot;
    Stats::Series* s = series[i].load(std::memory_order_acquire);
    return s != nullptr ? s : bind(r, tier, slot, i);
  }
  const uint32_t* capacities_at(const CompiledResource* r, uint32_t tier) const {
    return &capacities[base[resource_index(r) * policy->tiers().size() + tier]];
  }

  static std::string_view rule_of(const CompiledResource& r, size_t slot) {
    if (slot < r.limits.size()) return r.limits[slot].name;
    return slot == r.limits.size() ? kRuleUnlimited : kRuleStorage;
  }
  // Binds slot i to its series (found, or created, in Stats) and keeps the series alive for
  // this snapshot's lifetime. Once per slot; concurrent first uses agree on one series.
  Stats::Series* bind(const CompiledResource* r, uint32_t tier, size_t slot, size_t i) const {
    std::lock_guard lock(bind_mu);
    if (Stats::Series* s = series[i].load(std::memory_order_acquire)) return s;
    owned.push_back(stats->series(r->name, policy->tiers()[tier].name, rule_of(*r, slot)));
    series[i].store(owned.back().get(), std::memory_order_release);
    return owned.back().get();
  }
};

namespace {
std::atomic<uint64_t> g_snapshot_ids{0};

// The snapshot this thread decided with last, and its id. Loading a std::atomic<shared_ptr>
// takes a lock bit and two reference-count updates, each a locked instruction on the same
// cache line for every thread; a thread instead keeps its own reference and only checks that
// the engine's current id is still the one it holds. Ids are unique across engines, so a
// match can only mean the same snapshot, which this reference keeps alive. A thread that
// stops deciding keeps one old snapshot alive until it exits or decides again.
struct CachedSnapshot {
  uint64_t id = 0;
  std::shared_ptr<const Snapshot> snap;
};
thread_local CachedSnapshot t_snapshot;
}  // namespace

// ---- the per-call context ---------------------------------------------------------------

struct DecisionCall::Internal {
  std::array<sluice_item, kMaxLimitsPerResource> items{};
  std::array<sluice_item_result, kMaxLimitsPerResource> results{};
  std::array<uint8_t, kMaxLimitsPerResource> limit_index{};
  std::array<char, kMaxLimitsPerResource * kMaxKeyLength> keys;  // all items' keys
  size_t resource_len = 0;  // of the requested name, inside every key: "{resource:subject}rule"
  size_t subject_len = 0;
  sluice_batch batch{};

  std::shared_ptr<const Snapshot> snap;
  const CompiledResource* resource = nullptr;
  uint32_t tier = 0;
  DecisionKind kind = DecisionKind::kCheck;
  bool releasing = false;
  int64_t cost = 1;
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

LimitResult DecisionCall::limit_result(size_t i) const {
  const auto& lim = in_->resource->limits[in_->limit_index[i]];
  return {lim.name, lim.shadow, in_->results[i]};
}

// ---- engine -----------------------------------------------------------------------------

struct Lease {
  std::string resource, subject, tier;
  int64_t cost = 0;
  int64_t expires_ms = 0;
  std::array<uint64_t, 2> secret{};  // the token's secret half; see LeaseToken
};

namespace {

// 128 bits from the kernel's CSPRNG. Each thread reads 4 KiB at a time, so acquiring a lease
// makes one getrandom call in 256.
std::array<uint64_t, 2> random_secret() {
  struct Pool {
    std::array<uint64_t, 512> words;
    size_t next = 512;
  };
  thread_local Pool pool;
  if (pool.next + 2 > pool.words.size()) {
    auto* bytes = reinterpret_cast<char*>(pool.words.data());
    size_t filled = 0;
    while (filled < sizeof(pool.words)) {
      const ssize_t n = ::getrandom(bytes + filled, sizeof(pool.words) - filled, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        spdlog::critical("getrandom failed ({}): lease secrets cannot be drawn", errno);
        std::abort();
      }
      filled += static_cast<size_t>(n);
    }
    pool.next = 0;
  }
  std::array<uint64_t, 2> secret{pool.words[pool.next], pool.words[pool.next + 1]};
  pool.words[pool.next] = pool.words[pool.next + 1] = 0;
  pool.next += 2;
  return secret;
}

// Compares secrets in time that does not depend on where they differ.
bool same_secret(const std::array<uint64_t, 2>& a, const std::array<uint64_t, 2>& b) {
  return ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0;
}

}  // namespace

// A batch handed to a plugin that may complete on its own thread: a copy owned by the engine,
// so that when the storage timeout answers the decision first, the caller may reuse its
// DecisionCall while the plugin still writes into this copy.
struct Submission {
  std::array<sluice_item, kMaxLimitsPerResource> items{};
  std::array<sluice_item_result, kMaxLimitsPerResource> results{};
  std::array<char, kMaxLimitsPerResource * kMaxKeyLength> keys;
  sluice_batch batch{};
  DecisionCall* call = nullptr;
  void* engine = nullptr;  // the Engine::Impl that owns it (private to Engine)
  int64_t deadline_ns = 0;
  bool timed_out = false;
  Submission* prev = nullptr;  // in Impl's in-flight list (deadline order), or the free list
  Submission* next = nullptr;
};

struct Engine::Impl {
  std::unique_ptr<Storage> storage;
  const Clock* clock;
  Stats stats;
  const LatencyTimer& timer = LatencyTimer::instance();
  const int64_t storage_timeout_ms;
  const bool copy_batches;  // the plugin may complete later: go through Submissions
  // The clock is the system clock and the latency timer reads the TSC: decide() reads the
  // counter once for both.
  const bool tsc_clock;

  // Storage timeout. In-flight submissions are kept in deadline order (one timeout for all,
  // so arrival order); a watchdog thread answers the overdue ones.
  std::mutex wd_mu;  // guards the lists, Submission::timed_out/prev/next, stopping
  std::condition_variable wd_cv;
  Submission* inflight_head = nullptr;
  Submission* inflight_tail = nullptr;
  Submission* free_subs = nullptr;
  std::vector<std::unique_ptr<Submission>> all_subs;
  bool stopping = false;
  std::thread watchdog;

  std::atomic<std::shared_ptr<const Snapshot>> snapshot;
  std::atomic<uint64_t> snapshot_id{0};  // snapshot's id; stored after snapshot
  std::mutex install_mu;                 // one policy swap at a time keeps the two in step

  std::mutex warm_mu;  // guards warm_by_name and writes to the snapshot's warm_started
  std::unordered_map<std::string, int64_t> warm_by_name;

  mutable std::mutex lease_mu;  // guards leases, next_sweep_ms
  std::unordered_map<uint64_t, Lease> leases;
  int64_t next_sweep_ms = 0;
  std::atomic<uint64_t> lease_counter{0};
  uint64_t lease_seed;

  Impl(std::unique_ptr<Storage> s, const EngineOptions& o)
      : storage(std::move(s)),
        clock(o.clock),
        storage_timeout_ms(o.storage_timeout_ms),
        copy_batches(!storage->completes_inline() && o.storage_timeout_ms > 0),
        tsc_clock(o.clock == &SystemClock::instance() && timer.tsc()) {
    std::random_device rd;
    lease_seed = (uint64_t{rd()} << 32) ^ rd();
    if (copy_batches) watchdog = std::thread([this] { watch(); });
  }
  ~Impl() { shutdown(); }
  void shutdown() {
    if (watchdog.joinable()) {
      {
        std::lock_guard lock(wd_mu);
        stopping = true;
      }
      wd_cv.notify_one();
      watchdog.join();
    }
    storage.reset();  // completes what the plugin still holds before the submissions go
  }

  void submit(DecisionCall& call);
  static void on_submission_done(void* user, sluice_status status, const char* message);
  void watch();

  std::shared_ptr<const Snapshot> build_snapshot(std::shared_ptr<const CompiledPolicy> policy);
  void install(std::shared_ptr<const CompiledPolicy> policy) {
    std::lock_guard lock(install_mu);
    auto snap = build_snapshot(std::move(policy));
    const uint64_t id = snap->id;
    snapshot.store(std::move(snap));
    snapshot_id.store(id, std::memory_order_release);
  }
  // The current snapshot, from this thread's cache when it is still current.
  const std::shared_ptr<const Snapshot>& current() {
    if (t_snapshot.id != snapshot_id.load(std::memory_order_acquire)) {
      t_snapshot.snap = snapshot.load();
      t_snapshot.id = t_snapshot.snap->id;
    }
    return t_snapshot.snap;
  }
  double warm_factor(const Snapshot& snap, const CompiledResource& r, int64_t now) const;
  uint64_t new_lease_id();
  void sweep_leases(int64_t now);
  // Records a granted lease under `id` with a fresh secret; returns the holder's token.
  LeaseToken hold_lease(uint64_t id, Lease lease, int64_t now) {
    const LeaseToken token{id, random_secret()};
    lease.secret = token.secret;
    std::lock_guard lock(lease_mu);
    sweep_leases(now);
    leases[id] = std::move(lease);
    return token;
  }

  void finish_inline(DecisionCall& call);
  static void on_storage_done(void* user, sluice_status status, const char* message);
  void complete(DecisionCall& call, sluice_status status, const char* message);
};

std::shared_ptr<const Snapshot> Engine::Impl::build_snapshot(
    std::shared_ptr<const CompiledPolicy> policy) {
  auto snap = std::make_shared<Snapshot>();
  snap->id = g_snapshot_ids.fetch_add(1, std::memory_order_relaxed) + 1;
  const auto& tiers = policy->tiers();
  const auto& resources = policy->resources();
  const size_t rcount = resources.size() + 1;
  snap->policy = policy;
  snap->stats = &stats;
  snap->base.resize(rcount * tiers.size() + 1);
  // Resource index ri: a listed resource, or at resources.size() the default one (or none).
  auto resource_at = [&](size_t ri) {
    return ri < resources.size() ? &resources[ri] : policy->default_resource();
  };
  size_t slots = 0;
  for (size_t ri = 0; ri < rcount; ++ri) {
    const CompiledResource* r = resource_at(ri);
    for (size_t t = 0; t < tiers.size(); ++t) {
      snap->base[ri * tiers.size() + t] = static_cast<uint32_t>(slots);
      if (r != nullptr) slots += r->limits.size() + 2;
    }
  }
  snap->base.back() = static_cast<uint32_t>(slots);
  snap->series = std::make_unique<std::atomic<Stats::Series*>[]>(slots);
  snap->capacities = std::make_unique<uint32_t[]>(slots);
  for (size_t ri = 0; ri < rcount; ++ri) {
    const CompiledResource* r = resource_at(ri);
    if (r == nullptr) continue;
    for (const auto& t : tiers) {
      uint32_t* caps = &snap->capacities[snap->base[ri * tiers.size() + t.index]];
      for (const auto& p : r->effective[t.index])
        *caps++ = static_cast<uint32_t>(algo::state_capacity(p));
    }
  }
  // The series the running snapshot has bound carry over to the names that stay, so a
  // policy swap keeps their history; those of removed names go with the old snapshot.
  if (auto previous = snapshot.load()) {
    std::lock_guard lock(previous->bind_mu);
    for (const auto& s : previous->owned) {
      const Stats::SeriesKey key = Stats::key_of(*s);
      const CompiledResource* r = policy->find_resource(key.resource);
      if (r == nullptr && policy->default_resource() != nullptr &&
          key.resource == policy->default_resource()->name)
        r = policy->default_resource();
      const CompiledTier* t = policy->find_tier(key.tier);
      if (r == nullptr || t == nullptr) continue;
      for (size_t slot = 0; slot < r->limits.size() + 2; ++slot) {
        if (Snapshot::rule_of(*r, slot) != key.rule) continue;
        const size_t i = snap->base[snap->resource_index(r) * tiers.size() + t->index] + slot;
        snap->owned.push_back(s);
        snap->series[i].store(s.get(), std::memory_order_relaxed);
        break;
      }
    }
  }
  snap->owned.push_back(stats.series("(unknown)", "", "(unknown-resource)"));
  snap->unknown = snap->owned.back().get();

  snap->warm_started = std::make_unique<std::atomic<int64_t>[]>(resources.size());
  const int64_t now = clock->now_ms();
  std::lock_guard lock(warm_mu);
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
  snap->policy = std::move(policy);
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

uint64_t Engine::Impl::new_lease_id() {
  // splitmix64 over a random seed: unique per engine, not guessable by another client.
  uint64_t z = lease_seed + 0x9e3779b97f4a7c15ULL * (lease_counter.fetch_add(1) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return z ? z : 1;
}

void Engine::Impl::sweep_leases(int64_t now) {
  if (now < next_sweep_ms) return;
  next_sweep_ms = now + 1000;
  std::erase_if(leases, [now](const auto& kv) { return kv.second.expires_ms <= now; });
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
  return impl_->snapshot.load()->policy;
}

Stats& Engine::stats() { return impl_->stats; }
Storage& Engine::storage() { return *impl_->storage; }
const Clock& Engine::clock() const { return *impl_->clock; }

size_t Engine::active_leases() const {
  std::lock_guard lock(impl_->lease_mu);
  const int64_t now = impl_->clock->now_ms();
  return static_cast<size_t>(
      std::count_if(impl_->leases.begin(), impl_->leases.end(),
                    [now](const auto& kv) { return kv.second.expires_ms > now; }));
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
  auto snap = impl_->snapshot.load();
  auto r = warm_resource(*snap, resource);
  if (!r.ok()) return r.status();
  const int64_t now = impl_->clock->now_ms();
  std::lock_guard lock(impl_->warm_mu);
  impl_->warm_by_name[std::string(resource)] = now;
  snap->warm_started[r.value()->index].store(now);
  return Status::Ok();
}

Status Engine::warmup_ready(std::string_view resource) {
  auto snap = impl_->snapshot.load();
  auto r = warm_resource(*snap, resource);
  if (!r.ok()) return r.status();
  std::lock_guard lock(impl_->warm_mu);
  impl_->warm_by_name[std::string(resource)] = -1;
  snap->warm_started[r.value()->index].store(-1);
  return Status::Ok();
}

Result<WarmupStatus> Engine::warmup_status(std::string_view resource) const {
  auto snap = impl_->snapshot.load();
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
  in.cost = req.cost;
  in.resource = nullptr;

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
  if (kind != DecisionKind::kReset && (req.cost < 1 || req.cost > kMaxCost))
    return fail(StatusCode::kInvalid, fmt::format("COST must be 1 to {}", kMaxCost));
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
      d.lease = impl_->hold_lease(impl_->new_lease_id(),
                                  {std::string(req.resource), std::string(req.subject), tier->name,
                                   req.cost, in.now_ms + d.lease_ttl_ms},
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
  // Every key starts with the same "{resource:subject}": written once, then copied.
  std::array<size_t, kMaxLimitsPerResource + 1> offsets{};
  char* keys = in.keys.data();
  offsets[1] = write_key(keys, req.resource, req.subject, res->limits[0].name);
  const size_t prefix = req.resource.size() + req.subject.size() + 3;
  for (size_t i = 1; i < n; ++i) {
    char* p = std::copy_n(keys, prefix, keys + offsets[i]);
    const std::string_view rule = res->limits[i].name;
    p = std::copy(rule.begin(), rule.end(), p);
    offsets[i + 1] = static_cast<size_t>(p - keys);
  }
  // State sizes depend on the limit only for logs and leases; warm-up scales the limit.
  const uint32_t* capacities = factor >= 1.0 ? snap.capacities_at(res, tier->index) : nullptr;
  in.lease_ttl_ms = 0;
  uint64_t lease_id = 0;  // its secret is drawn when the lease is granted (hold_lease)
  if (kind == DecisionKind::kAcquire) {
    lease_id = impl_->new_lease_id();
    in.lease_ttl_ms = req.lease_ttl_ms ? req.lease_ttl_ms : policy.spec().lease_ttl_ms;
  }
  for (size_t i = 0; i < n; ++i) {
    const auto& lim = res->limits[i];
    sluice_item& it = in.items[i];
    it = sluice_item{};
    it.key = keys + offsets[i];
    it.key_len = static_cast<uint32_t>(offsets[i + 1] - offsets[i]);
    it.params = effective[i];
    it.params.limit = scale(it.params.limit, factor);
    it.params.burst = scale(it.params.burst, factor);
    // A limit counted in requests takes 1 whatever the cost; tokens and items take the cost.
    it.cost = lim.unit == CostUnit::kRequests ? 1 : std::min(req.cost, capacity_of(it.params) + 1);
    it.shadow = lim.shadow ? 1 : 0;
    const bool concurrency = lim.params.algorithm == SLUICE_ALG_CONCURRENCY;
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
    in.limit_index[i] = static_cast<uint8_t>(i);
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
  if (!copy_batches) return storage->submit(in.batch, &Impl::on_storage_done, &call);
  Submission* sub;
  {
    std::lock_guard lock(wd_mu);
    if (free_subs) {
      sub = free_subs;
      free_subs = sub->next;
    } else {
      sub = all_subs.emplace_back(std::make_unique<Submission>()).get();
      sub->engine = this;
    }
    const size_t n = in.batch.count;
    const char* base = in.keys.data();
    const auto key_bytes =
        static_cast<size_t>(in.items[n - 1].key + in.items[n - 1].key_len - base);
    std::copy_n(base, key_bytes, sub->keys.data());
    for (size_t i = 0; i < n; ++i) {
      sub->items[i] = in.items[i];
      sub->items[i].key = sub->keys.data() + (in.items[i].key - base);
    }
    sub->batch = {in.batch.now_ms, n, sub->items.data(), sub->results.data()};
    sub->call = &call;
    sub->timed_out = false;
    sub->deadline_ns = steady_ns() + storage_timeout_ms * 1'000'000;
    sub->next = nullptr;
    sub->prev = inflight_tail;
    (inflight_tail ? inflight_tail->next : inflight_head) = sub;
    inflight_tail = sub;
    // No wake-up: the watchdog never sleeps longer than one timeout, and this deadline is a
    // full timeout away (waking it on every decision cost a context switch each).
  }
  storage->submit(sub->batch, &Impl::on_submission_done, sub);
}

void Engine::Impl::on_submission_done(void* user, sluice_status status, const char* message) {
  auto* sub = static_cast<Submission*>(user);
  Impl& e = *static_cast<Impl*>(sub->engine);
  DecisionCall* call;
  {
    std::lock_guard lock(e.wd_mu);
    call = sub->timed_out ? nullptr : sub->call;
    if (call) {
      (sub->prev ? sub->prev->next : e.inflight_head) = sub->next;
      (sub->next ? sub->next->prev : e.inflight_tail) = sub->prev;
      std::copy_n(sub->results.data(), sub->batch.count, call->in_->results.data());
    }
    sub->next = e.free_subs;
    e.free_subs = sub;
  }
  // A submission the watchdog already answered is only recycled: its caller has moved on.
  if (call) e.complete(*call, status, message);
}

void Engine::Impl::watch() {
  std::vector<DecisionCall*> overdue;
  overdue.reserve(64);
  const std::string message =
      fmt::format("storage did not answer within {} ms", storage_timeout_ms);
  std::unique_lock lock(wd_mu);
  while (!stopping) {
    if (!inflight_head) {
      wd_cv.wait_for(lock, std::chrono::milliseconds(storage_timeout_ms));
      continue;
    }
    const int64_t now = steady_ns();
    if (inflight_head->deadline_ns > now) {
      wd_cv.wait_for(lock, std::chrono::nanoseconds(inflight_head->deadline_ns - now));
      continue;
    }
    while (inflight_head && inflight_head->deadline_ns <= now) {
      Submission* sub = inflight_head;
      sub->timed_out = true;
      overdue.push_back(sub->call);
      inflight_head = sub->next;
      (inflight_head ? inflight_head->prev : inflight_tail) = nullptr;
    }
    lock.unlock();
    for (DecisionCall* call : overdue) complete(*call, SLUICE_ERR_TIMEOUT, message.c_str());
    overdue.clear();
    lock.lock();
  }
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
  const bool counts = in.kind == DecisionKind::kCheck || in.kind == DecisionKind::kAcquire;

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
  if (chosen < 0) chosen = 0;  // only shadow limits
  const auto& r = in.results[static_cast<size_t>(chosen)];
  d.allowed = !denied;
  d.limit = r.limit;
  d.remaining = r.remaining;
  d.reset_after_ms = r.reset_after_ms;
  d.retry_after_ms = denied ? r.retry_after_ms : 0;
  d.set_rule(res->limits[in.limit_index[static_cast<size_t>(chosen)]].name);
  d.source = DecisionSource::kLimits;

  if (counts) {
    Stats::record(snap.at(res, in.tier, static_cast<size_t>(chosen)),
                  denied ? Outcome::kDenied : Outcome::kAllowed, in.now_ms);
    if (denied) stats.record_blocked(res->name, in.subject());
    stats.record_latency_ns(timer.elapsed_ns(in.started));
  }
  if (in.kind == DecisionKind::kAcquire) {
    if (denied) {
      d.lease = {};
    } else {
      d.lease_ttl_ms = in.lease_ttl_ms;
      // The resource name as requested: with default_limits it differs from res->name.
      d.lease =
          hold_lease(d.lease.id,
                     {std::string(in.resource_name()), std::string(in.subject()),
                      snap.policy->tiers()[in.tier].name, in.cost, in.now_ms + in.lease_ttl_ms},
                     in.now_ms);
    }
  }
  finish_inline(call);
}

void Engine::release(const LeaseToken& token, std::optional<int64_t> actual, DecisionCall& call,
                     DecisionDone done, void* user) {
  const uint64_t lease_id = token.id;
  auto& in = *call.in_;
  Decision& d = call.decision_;
  d = Decision{};
  call.count_ = 0;
  in.releasing = true;
  in.kind = DecisionKind::kAcquire;
  in.done = done;
  in.user = user;
  in.engine = impl_.get();
  in.now_ms = impl_->clock->now_ms();
  in.resource = nullptr;

  if (actual && (*actual < 0 || *actual > kMaxCost)) {
    d.error = StatusCode::kInvalid;
    d.error_message = fmt::format("ACTUAL must be 0 to {}", kMaxCost);
    return impl_->finish_inline(call);
  }
  Lease lease;
  {
    std::lock_guard lock(impl_->lease_mu);
    auto it = impl_->leases.find(lease_id);
    // A token whose secret is not the lease's gets the answer an unknown id gets, and the
    // lease stays its holder's.
    const bool held = it != impl_->leases.end() && same_secret(it->second.secret, token.secret);
    if (!held || it->second.expires_ms <= in.now_ms) {
      if (held) impl_->leases.erase(it);
      d.allowed = false;
      d.error = StatusCode::kNotFound;
      d.error_message = "unknown or expired lease";
      return impl_->finish_inline(call);
    }
    lease = std::move(it->second);
    impl_->leases.erase(it);
  }

  in.snap = impl_->current();
  const CompiledPolicy& policy = *in.snap->policy;
  const CompiledResource* res = policy.find_resource(lease.resource);
  if (!res) res = policy.default_resource();
  const CompiledTier* tier = policy.find_tier(lease.tier);
  if (!res || !tier || res->unlimited_for_tier[tier->index]) {
    d.allowed = true;  // nothing was held in storage (or the policy no longer has the resource)
    return impl_->finish_inline(call);
  }
  in.resource = res;
  in.tier = tier->index;
  const auto& effective = res->effective[tier->index];
  const int64_t delta = actual ? *actual - lease.cost : 0;
  std::array<size_t, kMaxLimitsPerResource + 1> offsets{};
  std::array<size_t, kMaxLimitsPerResource> which{};
  size_t n = 0;
  for (size_t i = 0; i < res->limits.size(); ++i) {
    const auto& lim = res->limits[i];
    const bool concurrency = lim.params.algorithm == SLUICE_ALG_CONCURRENCY;
    if (!concurrency && (delta == 0 || lim.unit == CostUnit::kRequests)) continue;
    which[n] = i;
    offsets[n + 1] = offsets[n] + write_key(in.keys.data() + offsets[n], lease.resource,
                                            lease.subject, res->limits[i].name);
    ++n;
  }
  for (size_t k = 0; k < n; ++k) {
    const size_t i = which[k];
    sluice_item& it = in.items[k];
    it = sluice_item{};
    it.key = in.keys.data() + offsets[k];
    it.key_len = static_cast<uint32_t>(offsets[k + 1] - offsets[k]);
    it.params = effective[i];
    const bool concurrency = it.params.algorithm == SLUICE_ALG_CONCURRENCY;
    it.op = concurrency ? SLUICE_OP_LEASE_RELEASE : SLUICE_OP_ADJUST;
    const int64_t held = res->limits[i].unit == CostUnit::kRequests ? 1 : lease.cost;
    const int64_t capacity = capacity_of(it.params);
    it.cost = concurrency ? held : std::clamp(delta, -capacity, capacity);
    it.lease_id = lease_id;
    it.state_capacity = static_cast<uint32_t>(algo::state_capacity(it.params));
    in.limit_index[k] = static_cast<uint8_t>(i);
  }
  call.count_ = n;
  if (n == 0) {
    d.allowed = true;
    return impl_->finish_inline(call);
  }
  in.batch = {in.now_ms, n, in.items.data(), in.results.data()};
  impl_->submit(call);
}

// ---- blocking conveniences -------------------------------------------------------------------

namespace {
struct SyncWait {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  static void signal(void* user, DecisionCall&) {
    auto* w = static_cast<SyncWait*>(user);
    std::lock_guard lock(w->mu);
    w->done = true;
    w->cv.notify_one();
  }
  void wait() {
    std::unique_lock lock(mu);
    cv.wait(lock, [this] { return done; });
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

Decision Engine::release_sync(const LeaseToken& lease, std::optional<int64_t> actual) {
  DecisionCall call;
  SyncWait w;
  release(lease, actual, call, &SyncWait::signal, &w);
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
