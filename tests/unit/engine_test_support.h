// Helpers shared by the engine unit tests: policies built in code (independent of the YAML
// syntax, which has its own tests), the memory plugin from the build tree, a manual clock.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "plugin_driver.h"
#include "sluice/clock.h"
#include "sluice/engine.h"
#include "sluice/policy.h"
#include "sluice/storage.h"

namespace sluice::testing {

inline LimitSpec make_limit(std::string name, sluice_algorithm alg, int64_t limit,
                            int64_t window_ms, int64_t burst = 0, bool shadow = false,
                            std::string unit = "requests") {
  LimitSpec l;
  l.unit = std::move(unit);
  l.name = std::move(name);
  l.algorithm = alg;
  l.limit = limit;
  l.window_ms = window_ms;
  l.burst = burst;
  l.shadow = shadow;
  return l;
}

inline ResourceSpec make_resource(std::string name, std::vector<LimitSpec> limits) {
  ResourceSpec r;
  r.name = std::move(name);
  r.limits = std::move(limits);
  return r;
}

// free (x1, default), premium (x5), internal (unlimited).
inline PolicySpec base_policy() {
  PolicySpec p;
  p.default_tier = "free";
  TierSpec free_tier;
  free_tier.name = "free";
  TierSpec premium;
  premium.name = "premium";
  premium.multiplier = 5;
  TierSpec internal;
  internal.name = "internal";
  internal.unlimited = true;
  p.tiers = {free_tier, premium, internal};
  p.api_keys["premium-user-key"] = "premium";
  return p;
}

inline std::shared_ptr<const CompiledPolicy> compile_or_die(PolicySpec spec, uint64_t version = 1) {
  auto errors = validate_policy(spec);
  for (const auto& e : errors) ADD_FAILURE() << e.to_string();
  auto compiled = CompiledPolicy::compile(std::move(spec), version);
  if (!compiled.ok()) {
    ADD_FAILURE() << compiled.status().message();
    return nullptr;
  }
  return compiled.value();
}

inline std::unique_ptr<Storage> memory_storage(StorageConfig config = {}) {
  auto s = load_plugin("memory", config);
  if (!s.ok()) {
    ADD_FAILURE() << s.status().message();
    return nullptr;
  }
  return std::move(s).value();
}

inline DecisionRequest req(std::string_view resource, std::string_view subject, int64_t cost = 1,
                           std::string_view tier = {}) {
  DecisionRequest r;
  r.resource = resource;
  r.subject = subject;
  r.cost = cost;
  r.tier = tier;
  return r;
}

}  // namespace sluice::testing
