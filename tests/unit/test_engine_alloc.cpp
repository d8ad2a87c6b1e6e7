// The decision hot path allocates nothing once warm. Every operator new in this binary is
// counted; after a warm-up pass, thousands of decisions on known keys must not add one.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <new>

#include "count_allocations.h"
#include "engine_test_support.h"

namespace sluice {
namespace {

using namespace sluice::testing;

void noop(void*, DecisionCall&) {}

// A one-limit resource and a four-limit one, limits far above what the tests use.
PolicySpec hot_path_policy() {
  auto p = base_policy();
  p.resources = {
      make_resource("predict",
                    {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 1'000'000, 60'000)}),
      make_resource("multi",
                    {make_limit("a", SLUICE_ALG_FIXED_WINDOW, 1'000'000, 60'000),
                     make_limit("b", SLUICE_ALG_TOKEN_BUCKET, 1'000'000, 60'000),
                     make_limit("c", SLUICE_ALG_GCRA, 1'000'000, 1'000),
                     make_limit("d", SLUICE_ALG_SLIDING_WINDOW_COUNTER, 1'000'000, 60'000)})};
  return p;
}

TEST(HotPath, NoAllocationOnceWarm) {
  ManualClock clock;
  Engine engine(memory_storage(), compile_or_die(hot_path_policy()), EngineOptions{&clock});
  DecisionCall call;
  const std::string subjects[] = {"alice", "bob", "premium-user-key", "carol"};
  auto run = [&] {
    for (int i = 0; i < 2000; ++i) {
      for (const auto& s : subjects) {
        engine.decide(DecisionKind::kCheck, req("predict", s), call, &noop, nullptr);
        ASSERT_TRUE(call.decision().allowed);
        engine.decide(DecisionKind::kCheck, req("multi", s), call, &noop, nullptr);
        ASSERT_TRUE(call.decision().allowed);
      }
      clock.advance(1);
    }
  };
  run();  // warm: keys exist, buffers have grown
  const uint64_t before = testing::allocations();
  run();
  EXPECT_EQ(testing::allocations() - before, 0u);
}

// The same through Engine::prepare / submit_prepared, with a store large enough that the
// memory plugin's prefetch hint is live (it does nothing under 16,384 keys).
TEST(HotPath, NoAllocationOncePipelinesAreWarm) {
  ManualClock clock;
  Engine engine(memory_storage(), compile_or_die(hot_path_policy()), EngineOptions{&clock});
  {
    DecisionCall call;
    for (int i = 0; i < 20'000; ++i) {
      engine.decide(DecisionKind::kCheck, req("predict", "filler-" + std::to_string(i)), call,
                    &noop, nullptr);
    }
  }
  constexpr size_t kDepth = 8;
  std::array<DecisionCall, kDepth> calls;
  const std::string subjects[] = {"alice", "bob", "premium-user-key", "carol"};
  auto run = [&] {
    for (int i = 0; i < 2000; ++i) {
      for (size_t k = 0; k < kDepth; ++k) {
        const auto r = req(k % 2 ? "multi" : "predict", subjects[k % 4]);
        ASSERT_TRUE(engine.prepare(DecisionKind::kCheck, r, calls[k], &noop, nullptr));
      }
      for (auto& call : calls) {
        engine.submit_prepared(call);
        ASSERT_TRUE(call.decision().allowed);
      }
      clock.advance(1);
    }
  };
  run();
  const uint64_t before = testing::allocations();
  run();
  EXPECT_EQ(testing::allocations() - before, 0u);
}

// The counter itself works: a decision on a brand-new call does allocate (its buffers).
TEST(HotPath, CounterSeesAllocations) {
  const uint64_t before = testing::allocations();
  auto* call = new DecisionCall();
  delete call;
  EXPECT_GT(testing::allocations(), before);
}

}  // namespace
}  // namespace sluice
