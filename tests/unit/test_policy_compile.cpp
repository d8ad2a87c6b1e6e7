// Compiling a PolicySpec: effective limits per tier (multipliers, overrides, unlimited),
// lookups by name and API key, the default resource, and the shipped policies.
#include <gtest/gtest.h>

#include <string>

#include "sluice/policy.h"

namespace sluice {
namespace {

std::shared_ptr<const CompiledPolicy> compile_text(const std::string& text, uint64_t version = 1) {
  auto parsed = parse_policy(text, "t.yaml");
  EXPECT_TRUE(parsed.ok()) << parsed.error_text();
  auto compiled = CompiledPolicy::compile(parsed.policy.value_or(PolicySpec{}), version);
  EXPECT_TRUE(compiled.ok()) << compiled.status().message();
  return compiled.ok() ? compiled.value() : nullptr;
}

std::shared_ptr<const CompiledPolicy> compile_shipped(const std::string& name) {
  auto parsed = parse_policy_file(std::string(SLUICE_SOURCE_DIR) + "/policies/" + name);
  EXPECT_TRUE(parsed.ok()) << parsed.error_text();
  auto compiled = CompiledPolicy::compile(parsed.policy.value_or(PolicySpec{}), 7);
  EXPECT_TRUE(compiled.ok()) << compiled.status().message();
  return compiled.ok() ? compiled.value() : nullptr;
}

// Effective limit of `limit_index` of `resource` for `tier`.
int64_t effective(const CompiledPolicy& p, std::string_view resource, std::string_view tier,
                  size_t limit_index = 0) {
  const CompiledResource* r = p.find_resource(resource);
  const CompiledTier* t = p.find_tier(tier);
  if (r == nullptr || t == nullptr) return -1;
  return r->effective[t->index][limit_index].limit;
}

constexpr const char* kTiers = R"(version: 1
default_tier: free
tiers:
  free: {}
  half: {multiplier: 0.5}
  premium:
    multiplier: 5
    overrides:
      heavy: {limits: {per_minute: 60}}
      light: {multiplier: 2}
      open: {unlimited: true}
  internal: {unlimited: true}
api_keys:
  premium-user-key: premium
  ops-key-000001: internal
resources:
  heavy:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}
      - {name: tokens, algorithm: token_bucket, limit: 1000, window: 1m, burst: 3000, cost: tokens}
  light:
    limits:
      - {name: per_minute, algorithm: gcra, limit: 3, window: 1m, burst: 5}
  open:
    limits:
      - {name: per_second, algorithm: sliding_window, limit: 1, window: 1s}
)";

TEST(PolicyCompile, MultipliersScaleLimitsAndBursts) {
  auto p = compile_text(kTiers);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(effective(*p, "heavy", "free", 0), 10);
  EXPECT_EQ(effective(*p, "heavy", "free", 1), 1000);
  EXPECT_EQ(effective(*p, "heavy", "premium", 1), 5000);  // tier multiplier
  const auto& tok_premium = p->find_resource("heavy")->effective[p->find_tier("premium")->index][1];
  EXPECT_EQ(tok_premium.burst, 15000);
  EXPECT_EQ(tok_premium.window_ms, 60'000);
  EXPECT_EQ(tok_premium.algorithm, static_cast<uint32_t>(SLUICE_ALG_TOKEN_BUCKET));
  // 0.5 × 3 = 1.5 -> floor 1; 0.5 × 1 = 0.5 -> at least 1.
  EXPECT_EQ(effective(*p, "light", "half"), 1);
  EXPECT_EQ(effective(*p, "open", "half"), 1);
  const auto& light_half = p->find_resource("light")->effective[p->find_tier("half")->index][0];
  EXPECT_EQ(light_half.burst, 2);  // floor(5 × 0.5)
}

TEST(PolicyCompile, OverridesWinOverTheTierMultiplier) {
  auto p = compile_text(kTiers);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(effective(*p, "heavy", "premium", 0), 60);  // absolute override, not 5 × 10
  EXPECT_EQ(effective(*p, "light", "premium"), 6);      // override multiplier 2, not 5
  const auto& light_premium =
      p->find_resource("light")->effective[p->find_tier("premium")->index][0];
  EXPECT_EQ(light_premium.burst, 10);
  // The base parameters stay those of the spec.
  EXPECT_EQ(p->find_resource("heavy")->limits[0].params.limit, 10);
}

TEST(PolicyCompile, UnlimitedTiersAndOverrides) {
  auto p = compile_text(kTiers);
  ASSERT_NE(p, nullptr);
  const uint32_t premium = p->find_tier("premium")->index;
  const uint32_t internal = p->find_tier("internal")->index;
  const uint32_t free = p->find_tier("free")->index;
  EXPECT_TRUE(p->find_tier("internal")->unlimited);
  for (const auto& r : p->resources()) {
    EXPECT_TRUE(r.unlimited_for_tier[internal]) << r.name;
    EXPECT_FALSE(r.unlimited_for_tier[free]) << r.name;
    EXPECT_EQ(r.unlimited_for_tier[premium], r.name == "open") << r.name;
    EXPECT_EQ(r.effective.size(), p->tiers().size());
  }
}

TEST(PolicyCompile, LookupsByNameAndApiKey) {
  auto p = compile_text(kTiers, 42);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->version(), 42u);
  EXPECT_EQ(p->default_tier().name, "free");
  ASSERT_NE(p->find_resource("light"), nullptr);
  EXPECT_EQ(p->find_resource("light")->index, 1u);
  EXPECT_EQ(p->find_resource("ligh"), nullptr);
  EXPECT_EQ(p->find_resource(""), nullptr);
  ASSERT_NE(p->find_tier("premium"), nullptr);
  EXPECT_EQ(p->find_tier("premium")->multiplier, 5.0);
  EXPECT_EQ(p->find_tier("gold"), nullptr);
  ASSERT_NE(p->tier_for_api_key("premium-user-key"), nullptr);
  EXPECT_EQ(p->tier_for_api_key("premium-user-key")->name, "premium");
  EXPECT_EQ(p->tier_for_api_key("ops-key-000001")->name, "internal");
  EXPECT_EQ(p->tier_for_api_key("premium-user-ke"), nullptr);
  // Lookups take any string_view, not only NUL-terminated strings.
  const std::string buffer = "xxpremium-user-keyxx";
  EXPECT_NE(p->tier_for_api_key(std::string_view(buffer).substr(2, 16)), nullptr);
  EXPECT_EQ(p->default_resource(), nullptr);
}

TEST(PolicyCompile, DefaultResourceForUnknownNames) {
  auto p = compile_text(R"(default_tier: free
unknown_resource: default_limits
default_limits:
  - {name: fallback, algorithm: fixed_window, limit: 4, window: 1s}
tiers: {free: {}, premium: {multiplier: 3}}
resources:
  known: {limits: [{name: a, algorithm: gcra, limit: 1, window: 1s}]}
)");
  ASSERT_NE(p, nullptr);
  const CompiledResource* d = p->default_resource();
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->name, "*");
  EXPECT_EQ(d->index, 1u);  // after the declared resources
  ASSERT_EQ(d->limits.size(), 1u);
  EXPECT_EQ(d->limits[0].name, "fallback");
  EXPECT_EQ(d->effective[p->find_tier("premium")->index][0].limit, 12);
  EXPECT_FALSE(d->warmup.enabled);
  EXPECT_EQ(p->find_resource("*"), nullptr);
}

TEST(PolicyCompile, RejectsAnInvalidSpec) {
  PolicySpec spec;
  spec.default_tier = "missing";
  spec.tiers.push_back({.name = "free"});
  auto compiled = CompiledPolicy::compile(spec, 1);
  ASSERT_FALSE(compiled.ok());
  EXPECT_EQ(compiled.status().code(), StatusCode::kInvalid);
  EXPECT_NE(compiled.status().message().find("unknown tier 'missing'"), std::string::npos);
}

TEST(PolicyCompile, EffectiveLimitsNeverExceedTheBound) {
  // A huge multiplier cannot push a limit past what the algorithms can count.
  auto p = compile_text(R"(default_tier: big
tiers: {big: {multiplier: 1000000}}
resources:
  r: {limits: [{name: a, algorithm: token_bucket, limit: 1000000000, window: 1s, burst: 999999999}]}
)");
  ASSERT_NE(p, nullptr);
  const auto& params = p->find_resource("r")->effective[0][0];
  EXPECT_EQ(params.limit, 1'000'000'000);
  EXPECT_EQ(params.burst, 1'000'000'000);
}

TEST(PolicyCompile, ShippedDefaultPolicy) {
  auto p = compile_shipped("default.yaml");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->version(), 7u);
  EXPECT_EQ(p->default_tier().name, "free");
  EXPECT_EQ(p->spec().unknown_resource, UnknownResourceMode::kDeny);
  EXPECT_EQ(effective(*p, "predict", "free"), 10);
  EXPECT_EQ(p->find_resource("predict")->limits[0].params.window_ms, 60'000);
  EXPECT_EQ(effective(*p, "predict", "premium"), 50);
  const CompiledResource* gen = p->find_resource("generate");
  ASSERT_NE(gen, nullptr);
  EXPECT_EQ(gen->limits[0].unit, "tokens");
  EXPECT_EQ(gen->limits[0].params.algorithm, static_cast<uint32_t>(SLUICE_ALG_TOKEN_BUCKET));
  EXPECT_EQ(p->tier_for_api_key("premium-user-key")->name, "premium");
}

TEST(PolicyCompile, ShippedMlApiPolicyMatchesTheSeed) {
  auto p = compile_shipped("ml-api.yaml");
  ASSERT_NE(p, nullptr);
  struct Expect {
    const char* resource;
    int64_t limit;
    int64_t window_ms;
  };
  // The seed article's limits, per request of a free caller.
  for (const auto& e :
       {Expect{"predict", 10, 60'000}, Expect{"batch-predict", 2, 60'000},
        Expect{"limiter/predict", 20, 60'000}, Expect{"predict/batch", 5, 300'000},
        Expect{"premium/predict", 30, 60'000}, Expect{"models/lightweight", 100, 60'000},
        Expect{"models/heavy", 10, 60'000}, Expect{"models/batch-process", 2, 300'000}}) {
    const CompiledResource* r = p->find_resource(e.resource);
    ASSERT_NE(r, nullptr) << e.resource;
    EXPECT_EQ(effective(*p, e.resource, "free"), e.limit) << e.resource;
    EXPECT_EQ(r->limits[0].params.window_ms, e.window_ms) << e.resource;
  }
  // Premium: 5× everywhere, except exactly 30 per minute on /premium/predict.
  EXPECT_EQ(effective(*p, "predict", "premium"), 50);
  EXPECT_EQ(effective(*p, "models/heavy", "premium"), 50);
  EXPECT_EQ(effective(*p, "premium/predict", "premium"), 30);
  EXPECT_EQ(p->tier_for_api_key("premium-user-key")->name, "premium");
  // The heavy model starts cold at a fifth of its limits.
  const WarmupSpec& w = p->find_resource("models/heavy")->warmup;
  EXPECT_TRUE(w.enabled);
  EXPECT_TRUE(w.start_cold);
  EXPECT_EQ(w.factor, 0.2);
  // Token metering and the unlimited internal tier.
  const CompiledResource* gen = p->find_resource("generate");
  ASSERT_NE(gen, nullptr);
  EXPECT_EQ(gen->limits[0].params.algorithm, static_cast<uint32_t>(SLUICE_ALG_TOKEN_BUCKET));
  EXPECT_EQ(gen->limits[0].unit, "tokens");
  EXPECT_TRUE(gen->limits[1].shadow);
  const uint32_t internal = p->find_tier("internal")->index;
  for (const auto& r : p->resources()) EXPECT_TRUE(r.unlimited_for_tier[internal]) << r.name;
  EXPECT_TRUE(p->find_resource("model-info")->limits.empty());
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

// policies/llm-gateway.yaml: per-model token limits, and monthly budgets in dollars that tiers
// scale or override (in dollars).
TEST(PolicyCompile, ShippedLlmGatewayBudgets) {
  auto p = compile_shipped("llm-gateway.yaml");
  ASSERT_NE(p, nullptr);
  const CompiledResource* large = p->find_resource("chat-large");
  ASSERT_NE(large, nullptr);
  ASSERT_EQ(large->limits.size(), 6u);
  EXPECT_EQ(large->limits[2].unit, "output_tokens");
  EXPECT_EQ(large->limits[2].overdraft, 1000);
  EXPECT_EQ(large->limits[4].kind, UnitKind::kUsd);
  EXPECT_EQ(large->limits[4].calendar, CalendarPeriod::kMonth);
  EXPECT_EQ(effective(*p, "chat-large", "free", 4), 20 * kMicrosPerDollar);
  EXPECT_EQ(effective(*p, "chat-large", "pro", 4), 200 * kMicrosPerDollar);
  EXPECT_EQ(effective(*p, "chat-large", "enterprise", 4), 100'000 * kMicrosPerDollar);
  EXPECT_EQ(effective(*p, "chat-small", "enterprise", 3), 250 * kMicrosPerDollar);
  EXPECT_EQ(p->tier_for_api_key("sk-pro-0001")->name, "pro");
}

}  // namespace
}  // namespace sluice
