#include "snapshot.h"

#include "sluice/algorithms.h"

namespace sluice {
namespace {

std::atomic<uint64_t> g_snapshot_ids{0};

struct CachedSnapshot {
  uint64_t id = 0;
  std::shared_ptr<const Snapshot> snap;
};
thread_local CachedSnapshot t_snapshot;

}  // namespace

Snapshot::Snapshot(std::shared_ptr<const CompiledPolicy> p, Stats& s)
    : id(g_snapshot_ids.fetch_add(1, std::memory_order_relaxed) + 1),
      policy(std::move(p)),
      stats(&s) {
  const auto& tiers = policy->tiers();
  const auto& resources = policy->resources();
  const size_t rcount = resources.size() + 1;
  base.resize(rcount * tiers.size() + 1);
  // Resource index ri: a listed resource, or at resources.size() the default one (or none).
  auto resource_at = [&](size_t ri) {
    return ri < resources.size() ? &resources[ri] : policy->default_resource();
  };
  size_t slots = 0;
  for (size_t ri = 0; ri < rcount; ++ri) {
    const CompiledResource* r = resource_at(ri);
    for (size_t t = 0; t < tiers.size(); ++t) {
      base[ri * tiers.size() + t] = static_cast<uint32_t>(slots);
      if (r != nullptr) slots += r->limits.size() + 2;
    }
  }
  base.back() = static_cast<uint32_t>(slots);
  series = std::make_unique<std::atomic<Stats::Series*>[]>(slots);
  capacities = std::make_unique<uint32_t[]>(slots);
  for (size_t ri = 0; ri < rcount; ++ri) {
    const CompiledResource* r = resource_at(ri);
    if (r == nullptr) continue;
    for (const auto& t : tiers) {
      uint32_t* caps = &capacities[base[ri * tiers.size() + t.index]];
      for (const auto& params : r->effective[t.index])
        *caps++ = static_cast<uint32_t>(algo::state_capacity(params));
    }
  }
}

void Snapshot::adopt_series(const Snapshot& previous) {
  const auto& tiers = policy->tiers();
  MutexLock lock(previous.bind_mu);
  for (const auto& s : previous.owned) {
    const Stats::SeriesKey key = Stats::key_of(*s);
    const CompiledResource* r = policy->find_resource(key.resource);
    if (r == nullptr && policy->default_resource() != nullptr &&
        key.resource == policy->default_resource()->name)
      r = policy->default_resource();
    const CompiledTier* t = policy->find_tier(key.tier);
    if (r == nullptr || t == nullptr) continue;
    for (size_t slot = 0; slot < r->limits.size() + 2; ++slot) {
      if (rule_of(*r, slot) != key.rule) continue;
      const size_t i = base[resource_index(r) * tiers.size() + t->index] + slot;
      series[i].store(keep(s), std::memory_order_relaxed);
      break;
    }
  }
}

Stats::Series* Snapshot::bind(const CompiledResource* r, uint32_t tier, size_t slot,
                              size_t i) const {
  MutexLock lock(bind_mu);
  if (Stats::Series* s = series[i].load(std::memory_order_acquire)) return s;
  owned.push_back(stats->series(r->name, policy->tiers()[tier].name, rule_of(*r, slot)));
  series[i].store(owned.back().get(), std::memory_order_release);
  return owned.back().get();
}

Stats::Series* Snapshot::keep(std::shared_ptr<Stats::Series> s) const {
  MutexLock lock(bind_mu);
  owned.push_back(std::move(s));
  return owned.back().get();
}

void SnapshotCache::install(std::shared_ptr<const Snapshot> snap) {
  const uint64_t id = snap->id;
  snapshot_.store(std::move(snap));
  id_.store(id, std::memory_order_release);
}

bool SnapshotCache::drop_stale() const {
  if (!t_snapshot.snap || t_snapshot.id == id_.load(std::memory_order_acquire)) return false;
  t_snapshot.snap.reset();
  t_snapshot.id = 0;
  return true;
}

const std::shared_ptr<const Snapshot>& SnapshotCache::current() const {
  if (t_snapshot.id != id_.load(std::memory_order_acquire)) {
    t_snapshot.snap = snapshot_.load();
    t_snapshot.id = t_snapshot.snap->id;
  }
  return t_snapshot.snap;
}

}  // namespace sluice
