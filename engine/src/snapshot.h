// What a decision reads: a compiled policy plus the engine's bindings for it (statistics
// series, state capacities, warm-up start times), and the cache through which every thread
// reaches the current one without touching a shared reference count.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "sluice/mutex.h"
#include "sluice/policy.h"
#include "sluice/stats.h"

namespace sluice {

// Rule names of what a resource decides besides its limits.
inline constexpr std::string_view kRuleUnlimited = "unlimited";
inline constexpr std::string_view kRuleStorage = "(storage)";

struct Snapshot {
  uint64_t id = 0;  // unique in the process, see SnapshotCache
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

  mutable Mutex bind_mu;
  // What the slots point to.
  mutable std::vector<std::shared_ptr<Stats::Series>> owned SLUICE_GUARDED_BY(bind_mu);

  // Lays out the slots of `policy` (series unbound, capacities computed), with a fresh id.
  Snapshot(std::shared_ptr<const CompiledPolicy> policy, Stats& stats);

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

  // Keeps `series` alive as long as this snapshot; returns it.
  Stats::Series* keep(std::shared_ptr<Stats::Series> series) const;

  // Takes over the series `previous` has bound for names this policy still has, so a policy
  // swap keeps their history; those of removed names go with the old snapshot.
  void adopt_series(const Snapshot& previous);

 private:
  // Binds slot i to its series (found, or created, in Stats) and keeps the series alive for
  // this snapshot's lifetime. Once per slot; concurrent first uses agree on one series.
  Stats::Series* bind(const CompiledResource* r, uint32_t tier, size_t slot, size_t i) const;
};

// The current snapshot. Loading a std::atomic<shared_ptr> takes a lock bit and two reference
// count updates, each a locked instruction on the same cache line for every thread; a thread
// instead keeps its own reference and only checks that the current id is still the one it
// holds. Ids are unique across engines, so a match can only mean the same snapshot, which that
// reference keeps alive. A thread that stops deciding keeps one old snapshot alive until it
// exits or decides again.
class SnapshotCache {
 public:
  void install(std::shared_ptr<const Snapshot> snap);
  // The current snapshot, from this thread's cache when it is still current.
  const std::shared_ptr<const Snapshot>& current() const;
  // Drops this thread's cached reference when it is not the current snapshot; true if it did.
  bool drop_stale() const;
  bool is_current(const Snapshot& snap) const {
    return snap.id == id_.load(std::memory_order_acquire);
  }
  // The current snapshot, always from the shared reference (for rare readers).
  std::shared_ptr<const Snapshot> load() const { return snapshot_.load(); }

 private:
  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
  std::atomic<uint64_t> id_{0};  // snapshot_'s id; stored after snapshot_
};

}  // namespace sluice
