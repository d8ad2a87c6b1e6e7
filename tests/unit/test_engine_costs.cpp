// Named costs, charges while streaming and settlement (docs/protocol.md, "Costs" and
// SL.CHARGE): all limits of a request decided together on the units each counts, a lease's
// usage charged beyond its reservation, settled at its usage, its ACTUAL or, once expired, by
// the engine. Time is a ManualClock; storage is the memory plugin.
#include <gtest/gtest.h>

#include "engine_test_support.h"

namespace sluice {
namespace {

using namespace sluice::testing;

class EngineCosts : public ::testing::Test {
 protected:
  // chat: 100 requests, 1000 input tokens, 500 output tokens per minute, and a $5 budget
  // (input $2.50 and output $10 per million tokens).
  void SetUp() override {
    auto p = base_policy();
    auto r = make_resource(
        "chat",
        {make_limit("rpm", SLUICE_ALG_FIXED_WINDOW, 100, 60'000),
         make_limit("in_tpm", SLUICE_ALG_FIXED_WINDOW, 1000, 60'000, 0, false, "input_tokens"),
         make_limit("out_tpm", SLUICE_ALG_FIXED_WINDOW, 500, 60'000, 0, false, "output_tokens"),
         make_limit("budget", SLUICE_ALG_FIXED_WINDOW, 5 * kMicrosPerDollar, 60'000, 0, false,
                    "usd")});
    r.prices = {{"input_tokens", 2'500'000}, {"output_tokens", 10'000'000}};  // pico-dollars
    p.resources = {r};
    start(p);
  }
  void start(PolicySpec spec) {
    engine_ = std::make_unique<Engine>(memory_storage(), compile_or_die(std::move(spec)),
                                       EngineOptions{&clock_});
  }
  static DecisionRequest tokens(std::string_view subject, int64_t in, int64_t out) {
    DecisionRequest r = req("chat", subject);
    r.cost = 0;
    if (in >= 0) r.named.add("input_tokens", in);
    if (out >= 0) r.named.add("output_tokens", out);
    return r;
  }
  Decision decide(DecisionKind kind, const DecisionRequest& r) {
    return engine_->decide_sync(kind, r);
  }
  // Every limit's remaining, in policy order, after a cost of nothing.
  std::vector<int64_t> remaining(std::string_view subject) {
    DecisionCall call;
    DecisionRequest r = tokens(subject, 0, 0);
    engine_->decide(
        DecisionKind::kInspect, r, call, [](void*, DecisionCall&) {}, nullptr);
    std::vector<int64_t> out;
    for (size_t i = 0; i < call.limit_count(); ++i)
      out.push_back(call.limit_result(i).result.remaining);
    return out;
  }
  static NamedCosts units(std::string_view unit, int64_t n) {
    NamedCosts c;
    c.add(unit, n);
    return c;
  }

  ManualClock clock_{1'700'000'000'000};
  std::unique_ptr<Engine> engine_;
};

// Issue 20: denied by out_tpm, and no input token, request or dollar is consumed.
TEST_F(EngineCosts, ADeniedRequestConsumesNothingOfAnyUnit) {
  const Decision d = decide(DecisionKind::kCheck, tokens("alice", 100, 600));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.rule(), "out_tpm");
  EXPECT_EQ(d.retry_after_ms, -1);  // 600 never fits in 500
  // rpm takes 1 per request, so its remaining after a request (this inspection) is 99.
  EXPECT_EQ(remaining("alice"), (std::vector<int64_t>{99, 1000, 500, 5'000'000}));

  const Decision ok = decide(DecisionKind::kCheck, tokens("alice", 100, 400));
  ASSERT_TRUE(ok.allowed);
  // $0.00025 of input and $0.004 of output.
  EXPECT_EQ(remaining("alice"), (std::vector<int64_t>{98, 900, 100, 5'000'000 - 250 - 4'000}));
}

// A unit the request does not name is only looked at: an exhausted output limit does not
// deny a request that names input tokens only, and takes nothing from it.
TEST_F(EngineCosts, UnitsNotNamedAreOnlyLookedAt) {
  ASSERT_TRUE(decide(DecisionKind::kCheck, tokens("bob", -1, 500)).allowed);
  const Decision d = decide(DecisionKind::kCheck, tokens("bob", 10, -1));
  EXPECT_TRUE(d.allowed);
  EXPECT_NE(d.rule(), "out_tpm");  // the deciding limit is one the request was counted by
  EXPECT_EQ(remaining("bob")[1], 990);
  EXPECT_EQ(remaining("bob")[2], 0);
  // A bare COST still means what it always did for limits of units the request does not name.
  DecisionRequest bare = req("chat", "carol", 7);
  ASSERT_TRUE(decide(DecisionKind::kCheck, bare).allowed);
  EXPECT_EQ(remaining("carol"), (std::vector<int64_t>{98, 993, 493, 5'000'000 - 88}));
}

// A `tokens` limit counts input + output when the request names those; money rounds up to
// the micro-dollar per request.
TEST_F(EngineCosts, TokensSumInputAndOutputAndMoneyRoundsUp) {
  auto p = base_policy();
  auto r = make_resource(
      "chat", {make_limit("tpm", SLUICE_ALG_FIXED_WINDOW, 1000, 60'000, 0, false, "tokens"),
               make_limit("budget", SLUICE_ALG_FIXED_WINDOW, 1'000'000, 60'000, 0, false, "usd")});
  r.prices = {{"input_tokens", 150'000}};  // $0.15 per million: 0.15 micro-dollars a token
  p.resources = {r};
  start(p);
  ASSERT_TRUE(decide(DecisionKind::kCheck, tokens("dan", 7, 5)).allowed);
  // 12 tokens; 7 × 0.15 = 1.05 micro-dollars, charged as 2.
  EXPECT_EQ(remaining("dan"), (std::vector<int64_t>{988, 999'998}));
}

// Issue 20's sequence: reserve 100 output tokens, charge 300 (200 beyond the reservation),
// a charge of 300 more is refused and consumes nothing, settle at 300, then exactly 200 more
// fit.
TEST_F(EngineCosts, ChargesBeyondTheReservationThenSettleAtUsage) {
  DecisionRequest a = tokens("erin", -1, 100);
  const Decision lease = decide(DecisionKind::kAcquire, a);
  ASSERT_TRUE(lease.allowed);
  EXPECT_EQ(remaining("erin")[2], 400);

  Decision c = engine_->charge_sync(lease.lease, 0, units("output_tokens", 300));
  ASSERT_TRUE(c.allowed);
  EXPECT_EQ(c.rule(), "out_tpm");
  EXPECT_EQ(c.remaining, 200);
  c = engine_->charge_sync(lease.lease, 0, units("output_tokens", 300));
  EXPECT_FALSE(c.allowed);
  EXPECT_EQ(c.rule(), "out_tpm");
  EXPECT_EQ(remaining("erin")[2], 200);  // the refused charge took nothing

  ASSERT_TRUE(engine_->release_sync(lease.lease, std::nullopt).allowed);   // settles at 300
  EXPECT_FALSE(engine_->release_sync(lease.lease, std::nullopt).allowed);  // once only
  EXPECT_EQ(remaining("erin")[2], 200);
  // The budget was charged for 300 output tokens: $0.003.
  EXPECT_EQ(remaining("erin")[3], 5'000'000 - 3'000);
  EXPECT_TRUE(decide(DecisionKind::kCheck, tokens("erin", -1, 200)).allowed);
  EXPECT_EQ(remaining("erin")[2], 0);
  EXPECT_FALSE(decide(DecisionKind::kCheck, tokens("erin", -1, 1)).allowed);
}

// Usage below the estimate refunds the rest at release; units never charged keep their
// estimate (the prompt's input tokens), and ACTUAL overrides both.
TEST_F(EngineCosts, SettlementRefundsUnusedReservationPerUnit) {
  const Decision lease = decide(DecisionKind::kAcquire, tokens("fay", 200, 400));
  ASSERT_TRUE(lease.allowed);
  ASSERT_TRUE(engine_->charge_sync(lease.lease, 0, units("output_tokens", 50)).allowed);
  EXPECT_EQ(remaining("fay")[2], 100);  // covered by the reservation: nothing more taken
  ASSERT_TRUE(engine_->release_sync(lease.lease, std::nullopt).allowed);
  EXPECT_EQ(remaining("fay"), (std::vector<int64_t>{98, 800, 450, 5'000'000 - 500 - 500}));

  const Decision second = decide(DecisionKind::kAcquire, tokens("fay", 200, 400));
  ASSERT_TRUE(second.allowed);
  NamedCosts actual = units("input_tokens", 150);
  ASSERT_TRUE(engine_->release_sync(second.lease, std::nullopt, &actual).allowed);
  // Input settled at 150 (ACTUAL), output at its estimate of 400 (never charged).
  EXPECT_EQ(remaining("fay")[1], 650);
  EXPECT_EQ(remaining("fay")[2], 50);
}

// An overrun reported at release is charged up to the limit's overdraft.
TEST_F(EngineCosts, OverrunAtReleaseIsCappedByTheOverdraft) {
  auto p = base_policy();
  auto out = make_limit("out_tpm", SLUICE_ALG_FIXED_WINDOW, 500, 60'000, 0, false, "output_tokens");
  out.overdraft = 50;
  p.resources = {make_resource("chat", {out})};
  start(p);
  const Decision lease = decide(DecisionKind::kAcquire, tokens("gil", -1, 100));
  ASSERT_TRUE(lease.allowed);
  NamedCosts actual = units("output_tokens", 400);  // 300 past the estimate
  ASSERT_TRUE(engine_->release_sync(lease.lease, std::nullopt, &actual).allowed);
  EXPECT_EQ(remaining("gil"), (std::vector<int64_t>{350}));  // 100 + 50 overdraft taken
}

// A charged lease that expires is settled at its usage by the engine: its unused reservation
// comes back.
TEST_F(EngineCosts, AnExpiredLeaseIsSettledAtItsUsage) {
  DecisionRequest a = tokens("hal", -1, 400);
  a.lease_ttl_ms = 5'000;
  const Decision lease = decide(DecisionKind::kAcquire, a);
  ASSERT_TRUE(lease.allowed);
  ASSERT_TRUE(engine_->charge_sync(lease.lease, 0, units("output_tokens", 30)).allowed);
  EXPECT_EQ(remaining("hal")[2], 100);
  clock_.advance(6'000);
  engine_->release_stale_snapshots();  // sluiced's workers call this once a second
  EXPECT_EQ(remaining("hal")[2], 470);
  EXPECT_EQ(engine_->charge_sync(lease.lease, 0, units("output_tokens", 1)).error,
            StatusCode::kNotFound);
}

// Bare costs keep their meaning: a bare estimate, a bare charge past it, a bare ACTUAL.
TEST_F(EngineCosts, BareEstimatesChargesAndActuals) {
  auto p = base_policy();
  p.resources = {make_resource(
      "gen", {make_limit("tokens", SLUICE_ALG_FIXED_WINDOW, 1000, 60'000, 0, false, "tokens")})};
  start(p);
  auto left = [&] { return decide(DecisionKind::kPeek, req("gen", "ivy", 1)).remaining + 1; };
  const Decision lease = decide(DecisionKind::kAcquire, req("gen", "ivy", 100));
  ASSERT_TRUE(lease.allowed);
  ASSERT_TRUE(engine_->charge_sync(lease.lease, 150).allowed);
  EXPECT_EQ(left(), 850);
  ASSERT_TRUE(engine_->release_sync(lease.lease, std::nullopt).allowed);
  EXPECT_EQ(left(), 850);
  const Decision second = decide(DecisionKind::kAcquire, req("gen", "ivy", 100));
  ASSERT_TRUE(second.allowed);
  ASSERT_TRUE(engine_->release_sync(second.lease, 20).allowed);
  EXPECT_EQ(left(), 830);
}

TEST_F(EngineCosts, InvalidCostsAreRefusedWithASentence) {
  DecisionRequest r = req("chat", "x");
  r.cost = 0;
  EXPECT_EQ(decide(DecisionKind::kCheck, r).error, StatusCode::kInvalid);  // no named cost
  r.named.add("Input", 1);
  const Decision bad = decide(DecisionKind::kCheck, r);
  EXPECT_EQ(bad.error, StatusCode::kInvalid);
  EXPECT_NE(bad.error_message.find("Input"), std::string::npos) << bad.error_message;
  DecisionRequest big = tokens("x", kMaxCost + 1, -1);
  EXPECT_EQ(decide(DecisionKind::kCheck, big).error, StatusCode::kInvalid);
  LeaseToken unknown{42, {1, 2}};
  EXPECT_EQ(engine_->charge_sync(unknown, 5).error, StatusCode::kNotFound);
}

}  // namespace
}  // namespace sluice
