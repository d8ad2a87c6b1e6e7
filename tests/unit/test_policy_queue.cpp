// The policy parts of WAIT (docs/policy.md, "Queue" and "Priority and reserve"): tier priority,
// a resource's queue caps, `per: resource` limits and a concurrency reserve. Read, checked with
// clear messages, written back, and enforced by the engine (ManualClock, memory plugin).
#include <gtest/gtest.h>

#include "engine_test_support.h"
#include "sluice/stats.h"

namespace sluice {
namespace {

using namespace sluice::testing;

constexpr const char* kQueuePolicy = R"(default_tier: free
tiers:
  free: {}
  premium: {priority: 10}
resources:
  gpu:
    limits:
      - {name: slots, algorithm: concurrency, limit: 5, window: 1m, per: resource, reserve: {share: 40%, min_priority: 10}}
    queue: {max_wait: 20s, max_waiters: 50}
  plain:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}
)";

// Every new key is read, and the text written back reads to the same policy.
TEST(PolicyQueue, ReadAndWrittenBack) {
  auto r = parse_policy(kQueuePolicy, "q.yaml");
  ASSERT_TRUE(r.ok()) << r.error_text();
  const PolicySpec& p = *r.policy;
  EXPECT_EQ(p.tiers[1].priority, 10);
  const ResourceSpec& gpu = p.resources[0];
  EXPECT_TRUE(gpu.queue.present);
  EXPECT_EQ(gpu.queue.max_wait_ms, 20'000);
  EXPECT_EQ(gpu.queue.max_waiters, 50);
  EXPECT_TRUE(gpu.limits[0].per_resource);
  EXPECT_DOUBLE_EQ(gpu.limits[0].reserve.share, 0.4);
  EXPECT_EQ(gpu.limits[0].reserve.min_priority, 10);
  // Without a queue block: WAIT up to 30 s and 1000 waiters.
  EXPECT_FALSE(p.resources[1].queue.present);
  EXPECT_EQ(p.resources[1].queue.max_wait_ms, 30'000);
  EXPECT_EQ(p.resources[1].queue.max_waiters, 1000);

  auto again = parse_policy(policy_to_yaml(p), "again.yaml");
  ASSERT_TRUE(again.ok()) << again.error_text() << policy_to_yaml(p);
  EXPECT_EQ(*again.policy, p);
}

// The audit log says what changed.
TEST(PolicyQueue, ChangesAreDiffed) {
  auto before = *parse_policy(kQueuePolicy, "q.yaml").policy;
  auto after = before;
  after.tiers[1].priority = 20;
  after.resources[0].queue.max_waiters = 10;
  const auto lines = diff_policies(before, after);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "tier premium: priority 10 → 20");
  EXPECT_NE(lines[1].find("resource gpu: queue"), std::string::npos) << lines[1];
}

struct BadQueue {
  const char* name;
  const char* yaml;
  int line;
  const char* message;
};

class PolicyQueueErrors : public ::testing::TestWithParam<BadQueue> {};

// Each bad value is reported, once, at its line, with a sentence that says what is allowed.
TEST_P(PolicyQueueErrors, AreReportedClearly) {
  const BadQueue& c = GetParam();
  auto r = parse_policy(c.yaml, "t.yaml");
  EXPECT_FALSE(r.policy.has_value());
  ASSERT_EQ(r.errors.size(), 1u) << r.error_text();
  EXPECT_EQ(r.errors[0].line, c.line) << r.error_text();
  EXPECT_EQ(r.errors[0].message, c.message);
}

#define SLUICE_RES "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n"
INSTANTIATE_TEST_SUITE_P(
    Cases, PolicyQueueErrors,
    ::testing::Values(
        BadQueue{"UnknownQueueKey", SLUICE_RES "    limits: []\n    queue: {max_wiat: 1s}\n", 6,
                 "unknown key 'max_wiat' in queue; did you mean 'max_wait'? (allowed: max_wait, "
                 "max_waiters)"},
        BadQueue{"QueueNotAMap", SLUICE_RES "    limits: []\n    queue: 5\n", 6,
                 "'queue' must be a map"},
        BadQueue{"MaxWaitWithoutUnit", SLUICE_RES "    limits: []\n    queue: {max_wait: 30}\n", 6,
                 "'max_wait' needs a unit: '30s' or '30ms' (units: ms, s, m, h, d)"},
        BadQueue{"MaxWaitTooLong", SLUICE_RES "    limits: []\n    queue: {max_wait: 2h}\n", 6,
                 "queue max_wait must be between 0s and 1h, got 2h"},
        BadQueue{"NegativeWaiters", SLUICE_RES "    limits: []\n    queue: {max_waiters: -1}\n", 6,
                 "queue max_waiters must be between 0 and 1000000, got -1"},
        BadQueue{"WaitersNotANumber", SLUICE_RES "    limits: []\n    queue: {max_waiters: many}\n",
                 6, "'max_waiters' must be a whole number, got 'many'"},
        BadQueue{"PriorityTooHigh", "default_tier: free\ntiers:\n  free: {priority: 5000}\n", 3,
                 "priority must be between -1000 and 1000, got 5000"},
        BadQueue{"PriorityNotAnInteger", "default_tier: free\ntiers:\n  free: {priority: 1.5}\n", 3,
                 "'priority' must be a whole number, got '1.5'"},
        BadQueue{"BadPer",
                 SLUICE_RES "    limits:\n      - {name: a, algorithm: gcra, limit: 1, window: 1s, "
                            "per: tenant}\n",
                 6, "unknown per 'tenant' (valid: subject, resource)"},
        BadQueue{"ReserveOnARate",
                 SLUICE_RES "    limits:\n      - {name: a, algorithm: gcra, limit: 4, window: 1s, "
                            "reserve: {share: 20%, min_priority: 10}}\n",
                 6, "reserve applies only to concurrency limits, not gcra"},
        BadQueue{"ReserveShareTooBig",
                 SLUICE_RES "    limits:\n      - {name: a, algorithm: concurrency, limit: 4, "
                            "window: 1s, reserve: {share: 100%, min_priority: 10}}\n",
                 6, "reserve share must be more than 0% and less than 100%, got 100%"},
        BadQueue{"ReserveShareNotAShare",
                 SLUICE_RES "    limits:\n      - {name: a, algorithm: concurrency, limit: 4, "
                            "window: 1s, reserve: {share: half, min_priority: 10}}\n",
                 6, "'share' must be a percentage (20%) or a number between 0 and 1"},
        BadQueue{"ReserveWithoutMinPriority",
                 SLUICE_RES "    limits:\n      - {name: a, algorithm: concurrency, limit: 4, "
                            "window: 1s, reserve: {share: 20%}}\n",
                 6, "'reserve' is missing required key 'min_priority'"}),
    [](const ::testing::TestParamInfo<BadQueue>& p) { return std::string(p.param.name); });
#undef SLUICE_RES

class QueuePolicyEngine : public ::testing::Test {
 protected:
  void SetUp() override {
    auto r = parse_policy(kQueuePolicy, "q.yaml");
    ASSERT_TRUE(r.ok()) << r.error_text();
    engine_ = std::make_unique<Engine>(memory_storage(), compile_or_die(*r.policy),
                                       EngineOptions{&clock_});
  }
  Decision acquire(std::string_view subject, std::string_view tier = {}) {
    return engine_->decide_sync(DecisionKind::kAcquire, req("gpu", subject, 1, tier));
  }
  ManualClock clock_{1'700'000'000'000};
  std::unique_ptr<Engine> engine_;
};

// `per: resource`: every subject counts against the same five slots. The reserve keeps two of
// them (40 % of 5) for priority 10 and up: free callers stop at three, premium ones get all five.
TEST_F(QueuePolicyEngine, SharedSlotsWithAReserve) {
  EXPECT_TRUE(acquire("a").allowed);
  EXPECT_TRUE(acquire("b").allowed);
  EXPECT_TRUE(acquire("c").allowed);
  const Decision free_denied = acquire("d");
  EXPECT_FALSE(free_denied.allowed);
  EXPECT_EQ(free_denied.limit, 3);
  EXPECT_TRUE(acquire("e", "premium").allowed);
  EXPECT_TRUE(acquire("f", "premium").allowed);
  EXPECT_FALSE(acquire("g", "premium").allowed);
}

// What a waiter needs of its decision: its tier's priority, the queue's caps, and whether the
// denial came from a limit every subject shares.
TEST_F(QueuePolicyEngine, WaitTermsOfADecision) {
  for (const char* s : {"a", "b", "c"}) ASSERT_TRUE(acquire(s).allowed);
  DecisionCall call;
  struct Done {
    static void done(void*, DecisionCall&) {}
  };
  DecisionRequest r = req("gpu", "d", 1, "premium");
  engine_->decide(DecisionKind::kAcquire, r, call, &Done::done, nullptr);  // memory: inline
  ASSERT_TRUE(call.decision().allowed);
  for (const char* s : {"e"}) ASSERT_TRUE(acquire(s, "premium").allowed);
  engine_->decide(DecisionKind::kAcquire, r, call, &Done::done, nullptr);
  ASSERT_FALSE(call.decision().allowed);
  const WaitTerms t = call.wait_terms();
  EXPECT_EQ(t.priority, 10);
  EXPECT_EQ(t.max_wait_ms, 20'000);
  EXPECT_EQ(t.max_waiters, 50);
  EXPECT_TRUE(t.shared_denial);
}

// A quiet denial is not counted; count_denial counts it once.
TEST_F(QueuePolicyEngine, QuietDenialsAreCountedOnlyWhenAsked) {
  for (const char* s : {"a", "b", "c"}) ASSERT_TRUE(acquire(s).allowed);
  DecisionCall call;
  struct Done {
    static void done(void*, DecisionCall&) {}
  };
  DecisionRequest r = req("gpu", "d");
  r.quiet_denial = true;
  engine_->decide(DecisionKind::kAcquire, r, call, &Done::done, nullptr);
  ASSERT_FALSE(call.decision().allowed);
  EXPECT_EQ(engine_->stats().totals().denied, 0u);
  engine_->count_denial(call);
  EXPECT_EQ(engine_->stats().totals().denied, 1u);
}

}  // namespace
}  // namespace sluice
