// Engine decisions end to end in-process: tiers, all-or-nothing, shadow, warm-up, leases,
// unknown resources, storage failure, policy swaps, statistics. Time is a ManualClock.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "engine_test_support.h"
#include "sluice/stats.h"

namespace sluice {
namespace {

using namespace sluice::testing;

class EngineTest : public ::testing::Test {
 protected:
  void start(PolicySpec spec) {
    engine_ = std::make_unique<Engine>(memory_storage(), compile_or_die(std::move(spec)),
                                       EngineOptions{&clock_});
  }
  Decision check(std::string_view resource, std::string_view subject, int64_t cost = 1,
                 std::string_view tier = {}) {
    return engine_->decide_sync(DecisionKind::kCheck, req(resource, subject, cost, tier));
  }

  ManualClock clock_{1'700'000'000'000};  // aligned to a minute boundary
  std::unique_ptr<Engine> engine_;
};

// The seed article's curl loop: 10 per minute, the 11th request is denied.
TEST_F(EngineTest, TenPerMinuteThenDenied) {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 10, 60'000)})};
  start(p);
  for (int i = 0; i < 10; ++i) {
    auto d = check("predict", "1.2.3.4");
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 9 - i);
    EXPECT_EQ(d.limit, 10);
    EXPECT_EQ(d.rule(), "per_minute");
  }
  auto d = check("predict", "1.2.3.4");
  EXPECT_FALSE(d.allowed);
  EXPECT_GT(d.retry_after_ms, 0);
  EXPECT_LE(d.retry_after_ms, 60'000);
  EXPECT_EQ(d.source, DecisionSource::kLimits);
  // Another subject has its own counter.
  EXPECT_TRUE(check("predict", "5.6.7.8").allowed);
  // Retry-after is honest: waiting that long admits the request.
  clock_.advance(d.retry_after_ms);
  EXPECT_TRUE(check("predict", "1.2.3.4").allowed);
}

// Tier multiplier, API-key lookup, explicit tier, unlimited tier, unknown tier.
TEST_F(EngineTest, TiersScaleLimits) {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 10, 60'000)})};
  start(p);
  int premium_allowed = 0;
  for (int i = 0; i < 60; ++i) premium_allowed += check("predict", "carol", 1, "premium").allowed;
  EXPECT_EQ(premium_allowed, 50);

  // The subject itself is an API key mapped to premium.
  int by_key = 0;
  for (int i = 0; i < 60; ++i) by_key += check("predict", "premium-user-key").allowed;
  EXPECT_EQ(by_key, 50);

  // KEY given separately from the subject.
  DecisionRequest r = req("predict", "dave");
  r.api_key = "premium-user-key";
  EXPECT_EQ(engine_->decide_sync(DecisionKind::kCheck, r).limit, 50);

  auto unlimited = check("predict", "ops", 1, "internal");
  EXPECT_TRUE(unlimited.allowed);
  EXPECT_EQ(unlimited.source, DecisionSource::kUnlimited);
  EXPECT_EQ(unlimited.limit, -1);

  auto bad = check("predict", "x", 1, "gold");
  EXPECT_EQ(bad.source, DecisionSource::kError);
  EXPECT_EQ(bad.error, StatusCode::kInvalid);
  EXPECT_NE(bad.error_message.find("gold"), std::string::npos);
}

// Overrides win over multipliers.
TEST_F(EngineTest, TierOverrideIsAbsolute) {
  auto p = base_policy();
  p.resources = {make_resource("premium-predict",
                               {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 6, 60'000)})};
  p.tiers[1].overrides["premium-predict"].limits["per_minute"] = 30;
  start(p);
  int n = 0;
  for (int i = 0; i < 40; ++i) n += check("premium-predict", "p", 1, "premium").allowed;
  EXPECT_EQ(n, 30);
}

// All limits of a request consume together or not at all.
TEST_F(EngineTest, AllOrNothing) {
  auto p = base_policy();
  p.resources = {make_resource(
      "gen", {make_limit("per_second", SLUICE_ALG_FIXED_WINDOW, 5, 1'000, 0, false, "items"),
              make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 3, 60'000, 0, false, "items")})};
  start(p);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(check("gen", "s").allowed);
  auto d = check("gen", "s");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.rule(), "per_minute");
  // The denied request did not consume per_second: 2 left of 5 after 3 admissions.
  auto peek = engine_->decide_sync(DecisionKind::kInspect, req("gen", "s"));
  EXPECT_TRUE(peek.allowed == false);
  DecisionCall call;
  struct Done {
    static void fn(void*, DecisionCall&) {}
  };
  engine_->decide(DecisionKind::kInspect, req("gen", "s"), call, &Done::fn, nullptr);
  ASSERT_EQ(call.limit_count(), 2u);
  EXPECT_EQ(call.limit_result(0).rule, "per_second");
  // PEEK reports what would remain after one more: 5 - 3 - 1. Had the denied request
  // consumed per_second, this would be 0.
  EXPECT_EQ(call.limit_result(0).result.remaining, 1);
  // A cost per_second could take but per_minute never can: denied for good (-1).
  clock_.advance(60'000);
  auto big = check("gen", "s", 4);
  EXPECT_FALSE(big.allowed);
  EXPECT_EQ(big.rule(), "per_minute");
  EXPECT_EQ(big.retry_after_ms, -1);
}

// The reported rule when allowed is the one with the least remaining.
TEST_F(EngineTest, ReportsTightestRule) {
  auto p = base_policy();
  p.resources = {
      make_resource("gen", {make_limit("per_second", SLUICE_ALG_FIXED_WINDOW, 5, 1'000),
                            make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 100, 60'000)})};
  start(p);
  auto d = check("gen", "s");
  EXPECT_EQ(d.rule(), "per_second");
  EXPECT_EQ(d.remaining, 4);
}

// Shadow limits count and report, never deny.
TEST_F(EngineTest, ShadowNeverDenies) {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("real", SLUICE_ALG_FIXED_WINDOW, 100, 60'000),
                                make_limit("trial", SLUICE_ALG_FIXED_WINDOW, 2, 60'000, 0, true)})};
  start(p);
  int shadow_denied = 0;
  for (int i = 0; i < 5; ++i) {
    auto d = check("predict", "s");
    EXPECT_TRUE(d.allowed);
    shadow_denied += d.shadow_denied;
  }
  EXPECT_EQ(shadow_denied, 3);
  EXPECT_EQ(engine_->stats().totals("predict", "free", "trial").shadow_denied, 3u);
  EXPECT_EQ(engine_->stats().totals().allowed, 5u);
}

// Warm-up: a cold model serves 1/5 of its limit until READY.
TEST_F(EngineTest, WarmupReducesUntilReady) {
  auto p = base_policy();
  auto heavy =
      make_resource("heavy", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 10, 60'000)});
  heavy.warmup.enabled = true;
  heavy.warmup.factor = 0.2;
  heavy.warmup.start_cold = true;
  p.resources = {heavy};
  start(p);
  auto st = engine_->warmup_status("heavy");
  ASSERT_TRUE(st.ok());
  EXPECT_TRUE(st.value().warming);
  int n = 0;
  for (int i = 0; i < 10; ++i) n += check("heavy", "s").allowed;
  EXPECT_EQ(n, 2);
  ASSERT_TRUE(engine_->warmup_ready("heavy").ok());
  EXPECT_FALSE(engine_->warmup_status("heavy").value().warming);
  n = 0;
  for (int i = 0; i < 10; ++i) n += check("heavy", "s").allowed;
  EXPECT_EQ(n, 8);  // 10 in this window, 2 already used
  ASSERT_TRUE(engine_->warmup_start("heavy").ok());
  EXPECT_TRUE(engine_->warmup_status("heavy").value().warming);
  EXPECT_EQ(engine_->warmup_start("nope").code(), StatusCode::kNotFound);
}

// A warm-up with a duration ramps linearly and ends by itself.
TEST_F(EngineTest, WarmupRampEndsByItself) {
  auto p = base_policy();
  auto heavy =
      make_resource("heavy", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 100, 60'000)});
  heavy.warmup = {true, 0.2, 600'000, true, true};
  p.resources = {heavy};
  start(p);
  EXPECT_EQ(check("heavy", "a").limit, 20);
  clock_.advance(300'000);  // half way: 0.2 + 0.8 * 0.5 = 0.6
  EXPECT_EQ(check("heavy", "b").limit, 60);
  clock_.advance(300'000);
  EXPECT_EQ(check("heavy", "c").limit, 100);
  EXPECT_FALSE(engine_->warmup_status("heavy").value().warming);
}

// Concurrency leases: held until released, freed by expiry if the client vanishes.
TEST_F(EngineTest, ConcurrencyLeases) {
  auto p = base_policy();
  p.lease_ttl_ms = 30'000;
  p.resources = {
      make_resource("gpu", {make_limit("in_flight", SLUICE_ALG_CONCURRENCY, 2, 30'000)})};
  start(p);
  auto a = engine_->decide_sync(DecisionKind::kAcquire, req("gpu", "s"));
  auto b = engine_->decide_sync(DecisionKind::kAcquire, req("gpu", "s"));
  ASSERT_TRUE(a.allowed && b.allowed);
  EXPECT_NE(a.lease.id, 0u);
  EXPECT_NE(a.lease.id, b.lease.id);
  auto c = engine_->decide_sync(DecisionKind::kAcquire, req("gpu", "s"));
  EXPECT_FALSE(c.allowed);
  EXPECT_EQ(c.lease.id, 0u);
  EXPECT_GT(c.retry_after_ms, 0);
  // CHECK only looks at a concurrency limit.
  EXPECT_FALSE(check("gpu", "s").allowed);
  EXPECT_TRUE(engine_->release_sync(a.lease, std::nullopt).allowed);
  EXPECT_FALSE(engine_->release_sync(a.lease, std::nullopt).allowed);  // twice: unknown
  EXPECT_TRUE(engine_->decide_sync(DecisionKind::kAcquire, req("gpu", "s")).allowed);
  EXPECT_EQ(engine_->active_leases(), 2u);
  // Nobody releases: after the TTL both slots are free again.
  clock_.advance(30'001);
  EXPECT_EQ(engine_->active_leases(), 0u);
  EXPECT_TRUE(engine_->decide_sync(DecisionKind::kAcquire, req("gpu", "s")).allowed);
  EXPECT_TRUE(engine_->decide_sync(DecisionKind::kAcquire, req("gpu", "s")).allowed);
}

// An estimated cost is settled on release: a refund returns capacity, an extra charge takes it.
TEST_F(EngineTest, LeaseSettlesActualCost) {
  auto p = base_policy();
  p.resources = {make_resource(
      "generate", {make_limit("tokens", SLUICE_ALG_FIXED_WINDOW, 1000, 60'000, 0, false, "tokens"),
                   make_limit("requests", SLUICE_ALG_FIXED_WINDOW, 1000, 60'000)})};
  start(p);
  auto a = engine_->decide_sync(DecisionKind::kAcquire, req("generate", "s", 800));
  ASSERT_TRUE(a.allowed);
  EXPECT_EQ(a.remaining, 200);
  EXPECT_FALSE(check("generate", "s", 300).allowed);
  ASSERT_TRUE(engine_->release_sync(a.lease, 100).allowed);  // refund 700
  auto after = engine_->decide_sync(DecisionKind::kPeek, req("generate", "s", 1));
  EXPECT_EQ(after.remaining, 899);  // what would remain after a cost of 1: 1000 - 100 - 1
  auto b = engine_->decide_sync(DecisionKind::kAcquire, req("generate", "s", 100));
  ASSERT_TRUE(b.allowed);
  ASSERT_TRUE(engine_->release_sync(b.lease, 500).allowed);  // extra charge 400
  EXPECT_EQ(engine_->decide_sync(DecisionKind::kPeek, req("generate", "s", 1)).remaining,
            399);  // 100 + 100 + 400 used
  // The request-counted limit took 1 per acquire and was not settled: 2 used (the denied
  // 300-token check consumed nothing), so 997 would remain after one more.
  DecisionCall call;
  engine_->decide(
      DecisionKind::kInspect, req("generate", "s", 1), call, [](void*, DecisionCall&) {}, nullptr);
  ASSERT_EQ(call.limit_count(), 2u);
  EXPECT_EQ(call.limit_result(1).rule, "requests");
  EXPECT_EQ(call.limit_result(1).result.remaining, 997);
}

TEST_F(EngineTest, UnknownResourceModes) {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 10, 60'000)})};
  start(p);
  auto d = check("nope", "s");
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.source, DecisionSource::kUnknownResource);

  p.unknown_resource = UnknownResourceMode::kAllow;
  engine_->set_policy(compile_or_die(p, 2));
  EXPECT_TRUE(check("nope", "s").allowed);

  p.unknown_resource = UnknownResourceMode::kDefaultLimits;
  p.default_limits = {make_limit("default", SLUICE_ALG_FIXED_WINDOW, 2, 60'000)};
  engine_->set_policy(compile_or_die(p, 3));
  EXPECT_TRUE(check("a", "s").allowed);
  EXPECT_TRUE(check("a", "s").allowed);
  EXPECT_FALSE(check("a", "s").allowed);
  EXPECT_TRUE(check("b", "s").allowed);  // each unknown resource counts on its own
}

TEST_F(EngineTest, RejectsBadRequests) {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 10, 60'000)})};
  start(p);
  EXPECT_EQ(check("predict", "s", 0).source, DecisionSource::kError);
  EXPECT_EQ(check("predict", "s", -5).source, DecisionSource::kError);
  EXPECT_EQ(check("predict", "").source, DecisionSource::kError);
  EXPECT_EQ(check("predict", std::string(513, 'x')).source, DecisionSource::kError);
  EXPECT_EQ(check(std::string(65, 'r'), "s").source, DecisionSource::kError);
  // Nothing was consumed by the rejected requests.
  EXPECT_EQ(check("predict", "s").remaining, 9);
}

// Counters of unchanged limits survive a policy swap; a raised limit applies at once.
TEST_F(EngineTest, PolicySwapKeepsCounters) {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 10, 60'000)})};
  start(p);
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(check("predict", "s").allowed);
  EXPECT_FALSE(check("predict", "s").allowed);
  p.resources[0].limits[0].limit = 12;
  engine_->set_policy(compile_or_die(p, 2));
  EXPECT_EQ(engine_->policy()->version(), 2u);
  EXPECT_TRUE(check("predict", "s").allowed);
  EXPECT_TRUE(check("predict", "s").allowed);
  EXPECT_FALSE(check("predict", "s").allowed);
}

// A plugin whose every batch fails, to drive the storage-failure modes.
const sluice_storage_plugin* failing_plugin() {
  static const sluice_storage_plugin table = [] {
    sluice_storage_plugin t{};
    t.abi_version = SLUICE_ABI_VERSION;
    t.struct_size = sizeof(sluice_storage_plugin);
    t.name = "failing";
    t.version = "test";
    t.open = [](const sluice_host_api*, const char* const*, const char* const*, size_t,
                sluice_plugin_handle** out, char*, size_t) {
      static int dummy;
      *out = reinterpret_cast<sluice_plugin_handle*>(&dummy);
      return SLUICE_OK;
    };
    t.submit = [](sluice_plugin_handle*, const sluice_batch*, sluice_completion_fn done, void* u) {
      done(u, SLUICE_ERR_UNAVAILABLE, "backend is down");
    };
    t.close = [](sluice_plugin_handle*) {};
    return t;
  }();
  return &table;
}

TEST_F(EngineTest, StorageFailureFollowsPolicy) {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 10, 60'000)})};
  p.on_storage_failure = StorageFailureMode::kFailClosed;
  auto storage = Storage::open_table(failing_plugin(), {});
  ASSERT_TRUE(storage.ok());
  Engine engine(std::move(storage).value(), compile_or_die(p), EngineOptions{&clock_});
  auto d = engine.decide_sync(DecisionKind::kCheck, req("predict", "s"));
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.source, DecisionSource::kStorageFailure);
  EXPECT_EQ(d.error_message, "backend is down");
  EXPECT_GT(d.retry_after_ms, 0);
  p.on_storage_failure = StorageFailureMode::kFailOpen;
  engine.set_policy(compile_or_die(p, 2));
  EXPECT_TRUE(engine.decide_sync(DecisionKind::kCheck, req("predict", "s")).allowed);
  EXPECT_EQ(engine.stats().totals().storage_errors, 2u);
}

TEST(StorageLoad, ClearSentences) {
  auto missing = Storage::load("nosuchplugin", {SLUICE_PLUGIN_DIR}, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("not found"), std::string::npos);
  // A shared library that is not a plugin: libc has no entry symbol.
  auto not_plugin = Storage::load("/lib/x86_64-linux-gnu/libc.so.6", {}, {});
  ASSERT_FALSE(not_plugin.ok());
  EXPECT_NE(not_plugin.status().message().find("does not export"), std::string::npos);
  // A table from a future major ABI.
  static sluice_storage_plugin future = *failing_plugin();
  future.abi_version = (SLUICE_ABI_VERSION_MAJOR + 1) << 16;
  auto mismatch = Storage::open_table(&future, {});
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("ABI"), std::string::npos);
}

TEST_F(EngineTest, StatsCountOutcomes) {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 3, 60'000)})};
  start(p);
  for (int i = 0; i < 5; ++i) check("predict", "mallory");
  auto t = engine_->stats().totals("predict", "free", "per_minute");
  EXPECT_EQ(t.allowed, 3u);
  EXPECT_EQ(t.denied, 2u);
  auto json = engine_->stats().to_json(clock_.now_ms(), 10);
  EXPECT_NE(json.find("\"mallory\""), std::string::npos);
  EXPECT_NE(
      engine_->stats().to_prometheus().find("sluice_decisions_total{resource=\"predict\",tier="
                                            "\"free\",rule=\"per_minute\",outcome=\"denied\"} 2"),
      std::string::npos);
}

// A grant (SL.ACQUIRE ... COST requests n, from which a client admits n requests itself)
// counts as its n requests in the statistics, as it does in the limits; a refused grant is
// one denial.
TEST_F(EngineTest, StatsCountAGrantAsTheRequestsItAdmits) {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 10, 60'000)})};
  start(p);
  auto grant = [&](int64_t n) {
    auto r = req("predict", "alice", n);
    EXPECT_TRUE(r.named.add("requests", n));
    return engine_->decide_sync(DecisionKind::kAcquire, r);
  };
  const Decision first = grant(6);
  ASSERT_TRUE(first.allowed);
  EXPECT_EQ(first.remaining, 4);
  EXPECT_FALSE(grant(5).allowed);  // 5 do not fit in the 4 left
  EXPECT_TRUE(check("predict", "alice").allowed);
  auto t = engine_->stats().totals("predict", "free", "per_minute");
  EXPECT_EQ(t.allowed, 7u);
  EXPECT_EQ(t.denied, 1u);
}

TEST_F(EngineTest, StatsJsonIsWellFormedWithTheDocumentedShape) {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 3, 60'000)})};
  start(p);
  const std::string odd_subject = "bad\xff\"quote\n";  // invalid UTF-8, a quote, a newline
  for (int i = 0; i < 5; ++i) check("predict", odd_subject);
  clock_.advance(2'000);
  check("predict", odd_subject);
  const std::string text =
      engine_->stats().to_json(clock_.now_ms(), 10, R"("server":{"version":"x"})");
  const auto doc = nlohmann::json::parse(text);  // throws (fails the test) when malformed
  EXPECT_EQ(doc["window_seconds"], 10);
  EXPECT_EQ(doc["first_second"], clock_.now_ms() / 1000 - 9);
  EXPECT_EQ(doc["totals"]["allowed"], 3);
  EXPECT_EQ(doc["totals"]["denied"], 3);
  EXPECT_EQ(doc["server"]["version"], "x");
  const nlohmann::json* found = nullptr;  // one series per resource x tier x rule
  for (const auto& s : doc["series"]) {
    if (s["resource"] == "predict" && s["tier"] == "free" && s["rule"] == "per_minute") found = &s;
  }
  ASSERT_NE(found, nullptr) << text;
  const auto& series = *found;
  EXPECT_EQ(series["totals"]["denied"], 3);
  const auto& denied = series["per_second"]["denied"];
  ASSERT_EQ(denied.size(), 10u);
  EXPECT_EQ(denied[7], 2);  // two seconds before the last bucket
  EXPECT_EQ(denied[9], 1);
  ASSERT_EQ(doc["top_blocked"].size(), 1u);
  EXPECT_EQ(doc["top_blocked"][0]["count"], 3);
  const std::string subject = doc["top_blocked"][0]["subject"];
  EXPECT_EQ(subject.substr(0, 3), "bad");
  EXPECT_NE(subject.find("\"quote\n"), std::string::npos);
  EXPECT_EQ(doc["latency"]["upper_bound_ns"].size(), doc["latency"]["counts"].size());
  EXPECT_EQ(doc["latency"]["count"], 6);
  // Without extra members the object still closes.
  EXPECT_TRUE(nlohmann::json::accept(engine_->stats().to_json(clock_.now_ms(), 1)));
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// A replaced policy is freed once the threads that decided with it and the calls that last
// used it let go (sluiced's workers do so once a second, then return the memory).
TEST(EngineSnapshots, AReplacedPolicyIsFreedOnceCallersLetGo) {
  using namespace sluice::testing;
  auto spec = base_policy();
  spec.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 5, 60'000)})};
  ManualClock clock;
  auto first = compile_or_die(spec, 1);
  const std::weak_ptr<const CompiledPolicy> weak = first;
  Engine engine(memory_storage(), std::move(first), EngineOptions{&clock});
  DecisionCall call;
  engine.decide(
      DecisionKind::kCheck, req("predict", "alice"), call, [](void*, DecisionCall&) {}, nullptr);
  ASSERT_TRUE(call.decision().allowed);
  engine.set_policy(compile_or_die(spec, 2));
  EXPECT_FALSE(weak.expired()) << "this thread's cache and the call still refer to it";
  EXPECT_TRUE(engine.release_if_stale(call));
  EXPECT_FALSE(engine.release_if_stale(call));
  EXPECT_FALSE(weak.expired());
  EXPECT_TRUE(engine.release_stale_snapshots());
  EXPECT_TRUE(weak.expired()) << "the replaced policy is still referenced";
  EXPECT_FALSE(engine.release_stale_snapshots());
  // The same call decides again, on the new policy, with alice's count kept.
  engine.decide(
      DecisionKind::kCheck, req("predict", "alice"), call, [](void*, DecisionCall&) {}, nullptr);
  EXPECT_TRUE(call.decision().allowed);
  EXPECT_EQ(call.decision().remaining, 3);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

using namespace sluice::testing;

// A daily quota in Berlin resets at local midnight (23:00 UTC in winter), not at UTC
// midnight; reset and retry point at it, and the reply's window is the day's real length.
TEST(EngineCalendar, DailyQuotaResetsAtLocalMidnight) {
  // 2026-10-24 21:00 UTC = 23:00 in Berlin (UTC+2); the next local day has 25 hours.
  constexpr int64_t kHour = 3'600'000;
  constexpr int64_t kBerlinMidnight = 1'792'879'200'000;  // 2026-10-24 22:00 UTC
  ManualClock clock(kBerlinMidnight - kHour);
  auto p = base_policy();
  LimitSpec day = make_limit("per_day", SLUICE_ALG_FIXED_WINDOW, 3, 0);
  day.calendar = CalendarPeriod::kDay;
  day.window_ms = 25 * kHour;
  day.timezone = "Europe/Berlin";
  p.resources = {make_resource("generate", {day})};
  Engine engine(memory_storage(), compile_or_die(p), EngineOptions{&clock});
  DecisionCall call;
  struct Done {
    static void fn(void*, DecisionCall&) {}
  };
  // The memory plugin answers inline: the call is complete when decide() returns.
  auto check = [&] {
    engine.decide(DecisionKind::kCheck, req("generate", "alice", 1, {}), call, &Done::fn, nullptr);
    EXPECT_EQ(call.limit_count(), 1u);
    return call.decision();
  };
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(check().allowed) << i;
  const Decision denied = check();  // a copy: the call is reused
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.retry_after_ms, kHour);
  EXPECT_EQ(denied.reset_after_ms, kHour);
  EXPECT_EQ(call.limit_result(0).window_ms, 24 * kHour);  // 24 October is an ordinary day
  clock.advance(kHour);                                   // local midnight: a new day
  const Decision next = check();
  EXPECT_TRUE(next.allowed);
  EXPECT_EQ(next.remaining, 2);
  EXPECT_EQ(next.reset_after_ms, 25 * kHour);  // the day the clocks go back
  EXPECT_EQ(call.limit_result(0).window_ms, 25 * kHour);
}

}  // namespace
}  // namespace sluice
