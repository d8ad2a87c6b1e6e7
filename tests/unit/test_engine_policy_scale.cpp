// Policies of many resources: statistics are bound when a series first counts (not one per
// resource x tier x rule up front), kept across a swap for the names that stay, and released
// with the last snapshot of the names that go.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine_test_support.h"
#include "numbered.h"
#include "sluice/stats.h"

namespace sluice {
namespace {

using namespace sluice::testing;

PolicySpec many_resources(size_t n) {
  auto p = base_policy();
  for (size_t i = 0; i < n; ++i) {
    p.resources.push_back(
        make_resource(numbered("model-", static_cast<long long>(i)),
                      {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 10, 60'000),
                       make_limit("per_hour", SLUICE_ALG_FIXED_WINDOW, 100, 3'600'000)}));
  }
  return p;
}

uint64_t allowed_of(Engine& engine, std::string_view resource) {
  return engine.stats().totals(resource, "free", "per_minute").allowed;
}

TEST(EnginePolicyScale, SeriesAreBoundWhenTheyFirstCount) {
  ManualClock clock{1'700'000'000'000};
  Engine engine(memory_storage(), compile_or_die(many_resources(20'000)), EngineOptions{&clock});
  // 20,000 resources x 4 tiers x 4 slots, and only the unknown-resource series exists.
  EXPECT_LE(engine.stats().series_count(), 1u);
  ASSERT_TRUE(engine.decide_sync(DecisionKind::kCheck, req("model-7", "alice")).allowed);
  EXPECT_EQ(allowed_of(engine, "model-7"), 1u);
  EXPECT_LE(engine.stats().series_count(), 2u);
}

TEST(EnginePolicyScale, ASwapKeepsTheHistoryOfNamesThatStayAndReleasesTheRest) {
  ManualClock clock{1'700'000'000'000};
  Engine engine(memory_storage(), compile_or_die(many_resources(3)), EngineOptions{&clock});
  for (const char* r : {"model-0", "model-1", "model-2"}) {
    ASSERT_TRUE(engine.decide_sync(DecisionKind::kCheck, req(r, "alice")).allowed);
  }
  const size_t before = engine.stats().series_count();
  EXPECT_GE(before, 3u);

  // model-2 leaves the policy.
  engine.set_policy(compile_or_die(many_resources(2), 2));
  // This thread's cached snapshot is the old one until it decides again.
  ASSERT_TRUE(engine.decide_sync(DecisionKind::kCheck, req("model-0", "alice")).allowed);
  EXPECT_EQ(allowed_of(engine, "model-0"), 2u);  // the history carried over
  EXPECT_EQ(allowed_of(engine, "model-1"), 1u);
  EXPECT_EQ(allowed_of(engine, "model-2"), 0u);  // released
  EXPECT_EQ(engine.stats().series_count(), before - 1);
  const auto doc = nlohmann::json::parse(engine.stats().to_json(clock.now_ms()));
  for (const auto& s : doc["series"]) EXPECT_NE(s["resource"], "model-2");
}

}  // namespace
}  // namespace sluice
