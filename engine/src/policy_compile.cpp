// PolicySpec -> CompiledPolicy: every tier's effective parameters worked out once, and hash
// indexes for the names the hot path looks up, so a decision never walks the spec.
#include <fmt/format.h>

#include <algorithm>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cmath>
#include <functional>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "calendar.h"
#include "policy_internal.h"
#include "sluice/policy.h"

namespace sluice {
namespace pd = policy_detail;

namespace {

// Transparent hashing so lookups take a string_view without building a std::string. XXH3
// mixes well enough that the table need not mix again (is_avalanching), and for short names
// costs a third of std::hash's byte loop: find_resource runs on every decision.
struct NameHash {
  using is_transparent = void;
  using is_avalanching = void;
  size_t operator()(std::string_view s) const noexcept { return XXH3_64bits(s.data(), s.size()); }
};
struct NameEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};
using NameMap = boost::unordered_flat_map<std::string, uint32_t, NameHash, NameEq>;

sluice_limit_params base_params(const LimitSpec& l) {
  sluice_limit_params p{};
  // A calendar window's start and length are filled in per decision (Engine::begin).
  p.algorithm = static_cast<uint32_t>(
      l.calendar != CalendarPeriod::kNone ? SLUICE_ALG_CALENDAR_WINDOW : l.algorithm);
  p.reserved = 0;
  p.limit = l.limit;
  p.window_ms = l.window_ms;
  p.burst = l.burst;
  return p;
}

// floor(value × factor), never below 1 and never above the language's bound.
int64_t scale(int64_t value, double factor, int64_t max = pd::kMaxLimitValue) {
  const double scaled = std::floor(static_cast<double>(value) * factor);
  return static_cast<int64_t>(std::clamp(scaled, 1.0, static_cast<double>(max)));
}

UnitKind unit_kind(std::string_view unit) {
  if (unit == kUnitRequests) return UnitKind::kRequests;
  if (unit == kUnitTokens) return UnitKind::kTokens;
  if (unit == kUnitUsd) return UnitKind::kUsd;
  return UnitKind::kOther;
}

sluice_limit_params effective_params(const LimitSpec& l, const TierSpec& tier,
                                     const TierOverride* ov) {
  sluice_limit_params p = base_params(l);
  double factor = ov != nullptr && ov->multiplier ? *ov->multiplier : tier.multiplier;
  if (ov != nullptr) {
    if (auto it = ov->limits.find(l.name); it != ov->limits.end()) {
      // An absolute limit replaces the computed one; the burst keeps its proportion to it.
      factor = static_cast<double>(it->second) / static_cast<double>(l.limit);
      p.limit = it->second;
      if (p.burst != 0) p.burst = scale(l.burst, factor);
      return p;
    }
  }
  p.limit = scale(l.limit, factor, pd::max_limit_of(l));
  if (p.burst != 0) p.burst = scale(l.burst, factor);
  return p;
}

// A concurrency limit's reserve: tiers below its priority see the limit without the reserved
// share (rounded down, so a one-slot limit reserves nothing), and are refused once only that
// share is free.
sluice_limit_params apply_reserve(sluice_limit_params p, const LimitSpec& l, const TierSpec& tier) {
  if (l.reserve.share <= 0 || tier.priority >= l.reserve.min_priority) return p;
  const auto reserved =
      static_cast<int64_t>(std::floor(static_cast<double>(p.limit) * l.reserve.share));
  p.limit = std::max<int64_t>(1, p.limit - reserved);
  return p;
}

CompiledResource compile_resource(const std::string& name, uint32_t index,
                                  const std::vector<LimitSpec>& limits, const WarmupSpec& warmup,
                                  const QueueSpec& queue, const std::vector<TierSpec>& tiers,
                                  const std::map<std::string, int64_t>& prices = {}) {
  CompiledResource r;
  r.name = name;
  r.prices.assign(prices.begin(), prices.end());
  r.index = index;
  r.warmup = warmup;
  r.queue = queue;
  r.limits.reserve(limits.size());
  for (const auto& l : limits) {
    const date::time_zone* zone =
        l.calendar != CalendarPeriod::kNone ? find_time_zone(l.timezone) : nullptr;
    r.limits.push_back({l.name, base_params(l), l.unit, unit_kind(l.unit), l.overdraft, l.shadow,
                        l.per_resource, l.calendar, zone});
    r.has_shared_limit = r.has_shared_limit || l.per_resource;
  }
  r.effective.resize(tiers.size());
  r.unlimited_for_tier.resize(tiers.size());
  for (size_t t = 0; t < tiers.size(); ++t) {
    const TierSpec& tier = tiers[t];
    const TierOverride* ov = nullptr;
    if (auto it = tier.overrides.find(name); it != tier.overrides.end()) ov = &it->second;
    r.unlimited_for_tier[t] = tier.unlimited || (ov != nullptr && ov->unlimited);
    r.effective[t].reserve(limits.size());
    for (const auto& l : limits) {
      r.effective[t].push_back(apply_reserve(effective_params(l, tier, ov), l, tier));
    }
  }
  return r;
}

}  // namespace

struct CompiledPolicy::Index {
  NameMap resources;
  NameMap tiers;
  NameMap api_keys;  // key -> tier index
};

CompiledPolicy::~CompiledPolicy() = default;

Result<std::shared_ptr<const CompiledPolicy>> CompiledPolicy::compile(PolicySpec spec,
                                                                      uint64_t version) {
  if (auto errors = validate_policy(spec); !errors.empty()) {
    std::string text = "invalid policy:";
    for (const auto& e : errors) text += fmt::format("\n{}: {}", e.path, e.message);
    return Status::Invalid(std::move(text));
  }
  std::shared_ptr<CompiledPolicy> p(new CompiledPolicy());
  p->version_ = version;
  p->index_ = std::make_unique<Index>();
  Index& index = *p->index_;

  p->tiers_.reserve(spec.tiers.size());
  for (size_t i = 0; i < spec.tiers.size(); ++i) {
    const TierSpec& t = spec.tiers[i];
    const auto idx = static_cast<uint32_t>(i);
    p->tiers_.push_back({t.name, idx, t.unlimited, t.multiplier, t.priority});
    index.tiers.emplace(t.name, idx);
    if (t.name == spec.default_tier) p->default_tier_ = idx;
  }
  for (const auto& [key, tier] : spec.api_keys)
    index.api_keys.emplace(key, index.tiers.find(tier)->second);

  p->resources_.reserve(spec.resources.size());
  for (size_t i = 0; i < spec.resources.size(); ++i) {
    const ResourceSpec& r = spec.resources[i];
    const auto idx = static_cast<uint32_t>(i);
    p->resources_.push_back(
        compile_resource(r.name, idx, r.limits, r.warmup, r.queue, spec.tiers, r.prices));
    index.resources.emplace(r.name, idx);
  }
  if (spec.unknown_resource == UnknownResourceMode::kDefaultLimits) {
    // '*' can never be a resource name, so the default resource's counters and statistics
    // cannot collide with a declared resource.
    p->default_resource_ = std::make_unique<CompiledResource>(
        compile_resource("*", static_cast<uint32_t>(spec.resources.size()), spec.default_limits,
                         WarmupSpec{}, QueueSpec{}, spec.tiers));
  }
  p->spec_ = std::move(spec);
  return std::shared_ptr<const CompiledPolicy>(std::move(p));
}

const CompiledResource* CompiledPolicy::find_resource(std::string_view name) const {
  auto it = index_->resources.find(name);
  return it == index_->resources.end() ? nullptr : &resources_[it->second];
}

const CompiledTier* CompiledPolicy::find_tier(std::string_view name) const {
  auto it = index_->tiers.find(name);
  return it == index_->tiers.end() ? nullptr : &tiers_[it->second];
}

const CompiledTier* CompiledPolicy::tier_for_api_key(std::string_view key) const {
  auto it = index_->api_keys.find(key);
  return it == index_->api_keys.end() ? nullptr : &tiers_[it->second];
}

}  // namespace sluice
