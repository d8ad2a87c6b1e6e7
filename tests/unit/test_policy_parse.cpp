// Parsing and validation of policy YAML: every class of mistake is reported at the node that
// caused it (file:line:column), all mistakes are reported at once, and a policy with any
// mistake never comes back half-parsed.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "numbered.h"
#include "sluice/policy.h"

namespace sluice {
namespace {

// A valid policy the cases below start from; line numbers in the cases refer to their own text.
constexpr const char* kValid = R"(version: 1
default_tier: free
tiers:
  free: {multiplier: 1}
  premium: {multiplier: 5, overrides: {predict: {limits: {per_minute: 60}}}}
api_keys:
  premium-user-key: premium
resources:
  predict:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}
)";

TEST(PolicyParse, ValidPolicyParses) {
  // The base text of the error cases is itself valid, so each case fails for its own reason.
  auto r = parse_policy(kValid, "t.yaml");
  ASSERT_TRUE(r.ok()) << r.error_text();
  ASSERT_TRUE(r.policy.has_value());
  const PolicySpec& p = *r.policy;
  EXPECT_EQ(p.default_tier, "free");
  ASSERT_EQ(p.tiers.size(), 2u);
  EXPECT_EQ(p.tiers[1].name, "premium");
  EXPECT_EQ(p.tiers[1].multiplier, 5.0);
  EXPECT_EQ(p.tiers[1].overrides.at("predict").limits.at("per_minute"), 60);
  EXPECT_EQ(p.api_keys.at("premium-user-key"), "premium");
  ASSERT_EQ(p.resources.size(), 1u);
  ASSERT_EQ(p.resources[0].limits.size(), 1u);
  const LimitSpec& l = p.resources[0].limits[0];
  EXPECT_EQ(l.name, "per_minute");
  EXPECT_EQ(l.algorithm, SLUICE_ALG_FIXED_WINDOW);
  EXPECT_EQ(l.limit, 10);
  EXPECT_EQ(l.window_ms, 60'000);
  EXPECT_EQ(l.burst, 0);
  EXPECT_EQ(l.unit, "requests");
  EXPECT_FALSE(l.shadow);
  // Defaults of the keys left out.
  EXPECT_EQ(p.unknown_resource, UnknownResourceMode::kDeny);
  EXPECT_EQ(p.on_storage_failure, StorageFailureMode::kFailClosed);
  EXPECT_EQ(p.lease_ttl_ms, 60'000);
  EXPECT_FALSE(p.resources[0].warmup.enabled);
}

TEST(PolicyParse, EveryKeyIsRead) {
  // One policy that uses every key of the language, each with a non-default value.
  constexpr const char* kText = R"(version: 1
default_tier: basic
on_storage_failure: fail_open
unknown_resource: default_limits
default_limits:
  - {name: fallback, algorithm: gcra, limit: 5, window: 1s, burst: 7}
lease_ttl: 1m30s
tiers:
  basic: {description: "the basic tier", multiplier: 0.5}
  vip:
    unlimited: true
    overrides:
      gen: {multiplier: 2, unlimited: true, limits: {tok: 99}}
api_keys: {k-123456789: vip}
resources:
  gen:
    description: generation
    limits:
      - name: tok
        algorithm: token_bucket
        limit: 100
        window: 500ms
        burst: 150
        cost: tokens
        shadow: true
      - {name: inflight, algorithm: concurrency, limit: 3, window: 2m, cost: items}
      - {name: exact, algorithm: sliding_window, limit: 3, window: 1h}
      - {name: approx, algorithm: sliding_window_counter, limit: 3, window: 1d}
    warmup: {enabled: true, factor: 0.25, duration: 10m, ramp: true, start: cold}
)";
  auto r = parse_policy(kText, "all.yaml");
  ASSERT_TRUE(r.ok()) << r.error_text();
  const PolicySpec& p = *r.policy;
  EXPECT_EQ(p.on_storage_failure, StorageFailureMode::kFailOpen);
  EXPECT_EQ(p.unknown_resource, UnknownResourceMode::kDefaultLimits);
  ASSERT_EQ(p.default_limits.size(), 1u);
  EXPECT_EQ(p.default_limits[0].algorithm, SLUICE_ALG_GCRA);
  EXPECT_EQ(p.default_limits[0].burst, 7);
  EXPECT_EQ(p.lease_ttl_ms, 90'000);
  EXPECT_EQ(p.tiers[0].description, "the basic tier");
  EXPECT_EQ(p.tiers[0].multiplier, 0.5);
  EXPECT_TRUE(p.tiers[1].unlimited);
  const TierOverride& ov = p.tiers[1].overrides.at("gen");
  EXPECT_EQ(ov.multiplier, 2.0);
  EXPECT_TRUE(ov.unlimited);
  EXPECT_EQ(ov.limits.at("tok"), 99);
  const ResourceSpec& gen = p.resources[0];
  EXPECT_EQ(gen.description, "generation");
  ASSERT_EQ(gen.limits.size(), 4u);
  EXPECT_EQ(gen.limits[0].algorithm, SLUICE_ALG_TOKEN_BUCKET);
  EXPECT_EQ(gen.limits[0].window_ms, 500);
  EXPECT_EQ(gen.limits[0].burst, 150);
  EXPECT_EQ(gen.limits[0].unit, "tokens");
  EXPECT_TRUE(gen.limits[0].shadow);
  EXPECT_EQ(gen.limits[1].algorithm, SLUICE_ALG_CONCURRENCY);
  EXPECT_EQ(gen.limits[1].unit, "items");
  EXPECT_EQ(gen.limits[2].algorithm, SLUICE_ALG_SLIDING_WINDOW);
  EXPECT_EQ(gen.limits[3].algorithm, SLUICE_ALG_SLIDING_WINDOW_COUNTER);
  EXPECT_EQ(gen.limits[3].window_ms, 86'400'000);
  EXPECT_TRUE(gen.warmup.enabled);
  EXPECT_EQ(gen.warmup.factor, 0.25);
  EXPECT_EQ(gen.warmup.duration_ms, 600'000);
  EXPECT_TRUE(gen.warmup.ramp);
  EXPECT_TRUE(gen.warmup.start_cold);
}

struct ErrorCase {
  const char* name;
  const char* yaml;
  int line;
  int column;
  const char* message;  // the exact message
};

// Each case differs from kValid in one place and must be reported exactly there.
const ErrorCase kErrorCases[] = {
    {"UnknownRootKey", "version: 1\ndefault_tier: free\ntiers: {free: {}}\nresourcs: {}\n", 4, 1,
     "unknown key 'resourcs' in the policy; did you mean 'resources'? (allowed: version, "
     "default_tier, on_storage_failure, unknown_resource, default_limits, lease_ttl, "
     "lease_ttl_max, tiers, "
     "api_keys, resources)"},
    {"UnknownLimitKey",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: 1, window: 1s, brust: 3}\n",
     6, 58,
     "unknown key 'brust' in a limit; did you mean 'burst'? (allowed: name, algorithm, limit, "
     "window, timezone, burst, cost, overdraft, shadow, per, reserve)"},
    {"LimitNotANumber",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: ten, window: 1s}\n",
     6, 43, "'limit' must be a whole number, got 'ten'"},
    {"LimitFractional",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: 2.5, window: 1s}\n",
     6, 43, "'limit' must be a whole number, got '2.5'"},
    {"LimitQuoted",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: \"10\", window: 1s}\n",
     6, 43, "'limit' must be a whole number"},
    {"LimitNegative",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: -5, window: 1s}\n",
     6, 43, "limit must be between 1 and 1000000000, got -5"},
    {"LimitZero",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - name: a\n        algorithm: gcra\n        limit: 0\n        window: 1s\n",
     8, 16, "limit must be between 1 and 1000000000, got 0"},
    {"LimitTooLarge",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: 99999999999999999999, window: 1s}\n",
     6, 43, "'limit' is too large: 99999999999999999999"},
    {"BadDuration",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: 1, window: 1x}\n",
     6, 54,
     "'window' is not a duration: '1x' (examples: 500ms, 30s, 1m, 1m30s, 1h, 1d; or "
     "calendar_day, calendar_week, calendar_month)"},
    {"DurationWithoutUnit",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: 1, window: 60}\n",
     6, 54, "'window' needs a unit: '60s' or '60ms' (units: ms, s, m, h, d)"},
    {"ZeroWindow",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: 1, window: 0s}\n",
     6, 54, "window must be between 1ms and 90d, got 0s"},
    {"UnknownAlgorithm",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: leaky_bucket, limit: 1, window: 1s}\n",
     6, 30,
     "unknown algorithm 'leaky_bucket' (valid: fixed_window, sliding_window, "
     "sliding_window_counter, token_bucket, gcra, concurrency)"},
    {"AlgorithmTypo",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: token-bucket, limit: 1, window: 1s}\n",
     6, 30,
     "unknown algorithm 'token-bucket'; did you mean 'token_bucket'? (valid: fixed_window, "
     "sliding_window, sliding_window_counter, token_bucket, gcra, concurrency)"},
    {"UnknownCostUnit",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: 1, window: 1s, cost: Bytes}\n",
     6, 64,
     "cost unit 'Bytes' must start with a lower-case letter or '_' (e.g. requests, tokens, "
     "items, input_tokens, output_tokens, usd)"},
    {"ShadowNotBool",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: 1, window: 1s, shadow: maybe}\n",
     6, 66, "'shadow' must be true or false"},
    {"BurstOnFixedWindow",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: fixed_window, limit: 1, window: 1s, burst: 5}\n",
     6, 73, "burst applies only to token_bucket and gcra, not fixed_window"},
    {"NegativeBurst",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: token_bucket, limit: 1, window: 1s, burst: -1}\n",
     6, 73, "burst must be between 0 and 1000000000, got -1"},
    {"MissingRequiredLimitKey",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: 1}\n",
     6, 9, "a limit is missing required key 'window'"},
    {"DuplicateLimitName",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: a, algorithm: gcra, limit: 1, window: 1s}\n"
     "      - {name: a, algorithm: gcra, limit: 2, window: 1m}\n",
     7, 16, "duplicate limit name 'a' (also limits[0])"},
    {"DuplicateResourceKey",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits: []\n  p:\n"
     "    limits: []\n",
     6, 3, "duplicate key 'p' in resources (first on line 4)"},
    {"DuplicateApiKey",
     "default_tier: free\ntiers: {free: {}}\napi_keys:\n  abcdefgh1: free\n  abcdefgh1: free\n", 5,
     3, "duplicate key 'abcdefgh1' in api_keys (first on line 4)"},
    {"BadResourceName",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  \"a:b\":\n    limits: []\n", 4, 3,
     "resource name 'a:b' contains ':' (allowed: letters, digits, '_', '.', '-', '/')"},
    {"ResourceNameTooLong",
     "default_tier: free\ntiers: {free: {}}\nresources:\n"
     "  aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:\n    limits: []\n",
     4, 3,
     "resource name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa' is 65 "
     "characters long (at most 64)"},
    {"BadLimitName",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
     "      - {name: \"per minute\", algorithm: gcra, limit: 1, window: 1s}\n",
     6, 16, "limit name 'per minute' contains ' ' (allowed: letters, digits, '_', '.', '-', '/')"},
    {"UnknownDefaultTier", "default_tier: gold\ntiers: {free: {}, premium: {}}\n", 1, 15,
     "default_tier names unknown tier 'gold' (tiers: free, premium)"},
    {"ApiKeyUnknownTier",
     "default_tier: free\ntiers: {free: {}}\napi_keys:\n  key-12345678: gold\n", 4, 17,
     "api key '...5678' maps to unknown tier 'gold' (tiers: free)"},
    {"ApiKeyWithSpace",
     "default_tier: free\ntiers: {free: {}}\napi_keys:\n  \"my key 12345\": free\n", 4, 3,
     "api key '...2345' must be printable ASCII without spaces"},
    {"OverrideUnknownResource",
     "default_tier: free\ntiers:\n  free: {overrides: {nope: {multiplier: 2}}}\n"
     "resources: {p: {limits: []}}\n",
     3, 22, "override for unknown resource 'nope' (resources: p)"},
    {"OverrideUnknownLimit",
     "default_tier: free\ntiers:\n  free: {overrides: {p: {limits: {nope: 3}}}}\nresources:\n"
     "  p:\n    limits:\n      - {name: a, algorithm: gcra, limit: 1, window: 1s}\n",
     3, 35, "unknown limit 'nope' in resource 'p' (limits: a)"},
    {"OverrideZeroLimit",
     "default_tier: free\ntiers:\n  free: {overrides: {p: {limits: {a: 0}}}}\nresources:\n"
     "  p:\n    limits:\n      - {name: a, algorithm: gcra, limit: 1, window: 1s}\n",
     3, 38, "limit must be between 1 and 1000000000, got 0"},
    {"ZeroMultiplier", "default_tier: free\ntiers:\n  free: {multiplier: 0}\n", 3, 22,
     "multiplier must be > 0 and at most 1000000, got 0"},
    {"MultiplierNotANumber", "default_tier: free\ntiers:\n  free: {multiplier: lots}\n", 3, 22,
     "'multiplier' must be a number, got 'lots'"},
    {"UnlimitedNotBool", "default_tier: free\ntiers:\n  free: {unlimited: \"true\"}\n", 3, 21,
     "'unlimited' must be true or false"},
    {"DescriptionWithControlCharacter",
     "default_tier: free\ntiers:\n  free: {description: \"a\\x01b\"}\n", 3, 23,
     "description contains the control character \\x01"},
    {"DescriptionNotUtf8", "default_tier: free\ntiers:\n  free: {description: \"a\xff\"}\n", 3, 23,
     "description is not valid UTF-8"},
    {"TierNotAMap", "default_tier: free\ntiers:\n  free: [1, 2]\n", 3, 9,
     "tier 'free' must be a map"},
    {"WarmupFactorTooBig",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits: []\n"
     "    warmup: {factor: 1.5}\n",
     6, 22, "warmup factor must be > 0 and at most 1, got 1.5"},
    {"WarmupRampWithoutDuration",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits: []\n"
     "    warmup: {factor: 0.5, ramp: true}\n",
     6, 33, "a warmup ramp needs a duration to ramp over"},
    {"WarmupBadStart",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits: []\n"
     "    warmup: {factor: 0.5, start: hot}\n",
     6, 34, "unknown start 'hot' (valid: cold, warm)"},
    {"TooManyLimits",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits: [\n"
     "      {name: a0, algorithm: gcra, limit: 1, window: 1s}, {name: a1, algorithm: gcra, limit: "
     "1, window: 1s},\n"
     "      {name: a2, algorithm: gcra, limit: 1, window: 1s}, {name: a3, algorithm: gcra, limit: "
     "1, window: 1s},\n"
     "      {name: a4, algorithm: gcra, limit: 1, window: 1s}, {name: a5, algorithm: gcra, limit: "
     "1, window: 1s},\n"
     "      {name: a6, algorithm: gcra, limit: 1, window: 1s}, {name: a7, algorithm: gcra, limit: "
     "1, window: 1s},\n"
     "      {name: a8, algorithm: gcra, limit: 1, window: 1s}, {name: a9, algorithm: gcra, limit: "
     "1, window: 1s},\n"
     "      {name: b0, algorithm: gcra, limit: 1, window: 1s}, {name: b1, algorithm: gcra, limit: "
     "1, window: 1s},\n"
     "      {name: b2, algorithm: gcra, limit: 1, window: 1s}, {name: b3, algorithm: gcra, limit: "
     "1, window: 1s},\n"
     "      {name: b4, algorithm: gcra, limit: 1, window: 1s}, {name: b5, algorithm: gcra, limit: "
     "1, window: 1s},\n"
     "      {name: b6, algorithm: gcra, limit: 1, window: 1s}]\n",
     5, 13, "at most 16 limits are allowed, found 17"},
    {"ResourceWithoutLimitsKey",
     "default_tier: free\ntiers: {free: {}}\nresources:\n  p: {description: x}\n", 4, 6,
     "resource 'p' is missing required key 'limits'"},
    {"LimitsNotAList", "default_tier: free\ntiers: {free: {}}\nresources:\n  p: {limits: 3}\n", 4,
     15, "'limits' must be a list"},
    {"DefaultLimitsWithoutMode",
     "default_tier: free\ntiers: {free: {}}\ndefault_limits:\n"
     "  - {name: a, algorithm: gcra, limit: 1, window: 1s}\n",
     4, 3,
     "default_limits is only used with unknown_resource: default_limits (unknown_resource is "
     "deny)"},
    {"DefaultLimitsModeWithoutLimits",
     "default_tier: free\ntiers: {free: {}}\nunknown_resource: default_limits\n", 3, 19,
     "unknown_resource: default_limits needs a non-empty default_limits list"},
    {"UnknownResourceMode", "default_tier: free\ntiers: {free: {}}\nunknown_resource: maybe\n", 3,
     19, "unknown unknown_resource 'maybe' (valid: deny, allow, default_limits)"},
    {"UnknownFailureMode", "default_tier: free\ntiers: {free: {}}\non_storage_failure: open\n", 3,
     21, "unknown on_storage_failure 'open' (valid: fail_open, fail_closed)"},
    {"UnsupportedVersion", "version: 2\ndefault_tier: free\ntiers: {free: {}}\n", 1, 10,
     "unsupported policy version 2 (this sluice reads version 1)"},
    {"MissingTiers", "default_tier: free\nresources: {}\n", 1, 1,
     "the policy is missing required key 'tiers'"},
    {"MissingDefaultTier", "tiers: {free: {}}\n", 1, 1,
     "the policy is missing required key 'default_tier'"},
    {"EmptyTiers", "default_tier: free\ntiers: {}\n", 2, 8, "at least one tier is required"},
    {"RootNotAMap", "- a\n- b\n", 1, 1,
     "a policy must be a map of keys (version, default_tier, tiers, resources, ...)"},
    {"SyntaxError", "default_tier: free\ntiers: {free: {}\nresources: {}\n", 3, 1,
     "YAML syntax error: end of map flow not found"},
    {"BadIndentation", "default_tier: free\n tiers: {}\n", 2, 7,
     "YAML syntax error: illegal map value"},
    {"TwoDocuments", "default_tier: free\ntiers: {free: {}}\n---\na: 1\n", 3, 1,
     "a policy is one YAML document; found a second one here"},
    {"SecondAfterEnd", "default_tier: free\ntiers: {free: {}}\n...\n--- {a: 1}\n", 4, 1,
     "a policy is one YAML document; found a second one here"},
};

class PolicyErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(PolicyErrorTest, ReportedAtTheOffendingNode) {
  const ErrorCase& c = GetParam();
  auto r = parse_policy(c.yaml, "t.yaml");
  EXPECT_FALSE(r.policy.has_value());
  ASSERT_EQ(r.errors.size(), 1u) << r.error_text();
  EXPECT_EQ(r.errors[0].to_string(), std::string("t.yaml:") + std::to_string(c.line) + ":" +
                                         std::to_string(c.column) + ": " + c.message);
}

INSTANTIATE_TEST_SUITE_P(Cases, PolicyErrorTest, ::testing::ValuesIn(kErrorCases),
                         [](const ::testing::TestParamInfo<ErrorCase>& p) {
                           return std::string(p.param.name);
                         });

// lease_ttl_max: the longest TTL a client may ask for; unset, it is lease_ttl; it may not be
// shorter than lease_ttl.
TEST(PolicyParse, LeaseTtlMax) {
  auto unset = parse_policy(std::string(kValid) + "lease_ttl: 30s\n", "t.yaml");
  ASSERT_TRUE(unset.ok()) << unset.error_text();
  EXPECT_EQ(unset.policy->lease_ttl_max_ms, 0);
  EXPECT_EQ(unset.policy->max_lease_ttl_ms(), 30'000);

  auto set = parse_policy(std::string(kValid) + "lease_ttl: 30s\nlease_ttl_max: 2h\n", "t.yaml");
  ASSERT_TRUE(set.ok()) << set.error_text();
  EXPECT_EQ(set.policy->max_lease_ttl_ms(), 7'200'000);

  auto shorter =
      parse_policy(std::string(kValid) + "lease_ttl: 30s\nlease_ttl_max: 10s\n", "t.yaml");
  ASSERT_FALSE(shorter.ok());
  EXPECT_NE(shorter.error_text().find("lease_ttl_max must be between lease_ttl (30s)"),
            std::string::npos)
      << shorter.error_text();
}

// Document markers that start the one document, or end it with nothing after, are fine.
TEST(PolicyParse, OneDocumentWithMarkers) {
  EXPECT_TRUE(parse_policy(std::string("# sluice\n---\n") + kValid, "t.yaml").ok());
  EXPECT_TRUE(parse_policy(std::string("--- # the policy\n") + kValid + "...\n", "t.yaml").ok());
  EXPECT_TRUE(parse_policy(std::string(kValid) + "# ---\n  # ...\n", "t.yaml").ok());
}

TEST(PolicyParse, ReportsAllErrorsInDocumentOrder) {
  // Four independent mistakes in one document: all four come back, sorted by place.
  constexpr const char* kText = R"(default_tier: gold
tiers:
  free: {multiplier: -1}
resources:
  p:
    limits:
      - {name: a, algorithm: bogus, limit: 0, window: 1s}
)";
  auto r = parse_policy(kText, "many.yaml");
  EXPECT_FALSE(r.policy.has_value());
  ASSERT_EQ(r.errors.size(), 4u) << r.error_text();
  EXPECT_EQ(r.error_text(),
            "many.yaml:1:15: default_tier names unknown tier 'gold' (tiers: free)\n"
            "many.yaml:3:22: multiplier must be > 0 and at most 1000000, got -1\n"
            "many.yaml:7:30: unknown algorithm 'bogus' (valid: fixed_window, sliding_window, "
            "sliding_window_counter, token_bucket, gcra, concurrency)\n"
            "many.yaml:7:44: limit must be between 1 and 1000000000, got 0");
  EXPECT_EQ(r.errors[3].path, "resources.p.limits[0].limit");
}

TEST(PolicyParse, ABrokenFieldIsReportedOnce) {
  // A value that cannot be read is not also reported as out of range.
  auto r = parse_policy(
      "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
      "      - {algorithm: gcra, limit: x, window: 1s}\n",
      "t.yaml");
  ASSERT_EQ(r.errors.size(), 2u) << r.error_text();
  EXPECT_EQ(r.errors[0].message, "a limit is missing required key 'name'");
  EXPECT_EQ(r.errors[1].message, "'limit' must be a whole number, got 'x'");
}

TEST(PolicyParse, NeverReturnsAPartialPolicy) {
  // One bad limit among good ones: nothing of the policy is returned.
  std::string text = kValid;
  text += "  other:\n    limits:\n      - {name: z, algorithm: gcra, limit: 1, window: 1q}\n";
  auto r = parse_policy(text, "t.yaml");
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.policy.has_value());
}

TEST(PolicyParse, EmptyAndGarbageInputGiveErrorsNotCrashes) {
  for (const char* text :
       {"", "   \n", "~", "42", "\"just a string\"", "[[[[", "{a: b", "default_tier: [\n",
        "\t\tbad", "&a [*a]", "!!binary xyz", "? [a, b]\n: c\n"}) {
    auto r = parse_policy(text, "g.yaml");
    EXPECT_FALSE(r.ok()) << "input: " << text;
    EXPECT_FALSE(r.policy.has_value());
    EXPECT_FALSE(r.error_text().empty());
  }
  EXPECT_EQ(parse_policy("", "g.yaml").error_text(), "g.yaml: the policy is empty");
}

TEST(PolicyParse, NulByteIsRejectedWithItsPlace) {
  // yaml-cpp would read endless empty documents after a NUL; sluice stops before.
  const std::string text("default_tier: free\ntiers: {fr\0ee: {}}\n", 38);
  auto r = parse_policy(text, "nul.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(), "nul.yaml:2:11: the policy contains a NUL byte");
}

TEST(PolicyParse, DeepNestingIsRejectedNotACrash) {
  std::string deep(100'000, '[');
  auto r = parse_policy(deep, "deep.yaml");
  EXPECT_FALSE(r.ok());
}

TEST(PolicyParse, ProblemsInLargeMapsAndDottedNamesAreReportedInPlace) {
  // Places are found from the problem's path only when there is a problem: through a map of
  // many names (searched by an index), and past names that contain '.' themselves.
  std::string text = "default_tier: free\ntiers: {free: {}}\nresources:\n";
  for (int i = 0; i < 40; ++i) {
    text += "  r" + std::to_string(i) + ": {limits: []}\n";
  }
  text += "  a: {limits: [{name: x, algorithm: gcra, limit: 1, window: 1s}]}\n";  // line 44
  text += "  a.limits: {limits: [{name: x, algorithm: gcra, limit: 0, window: 1s}]}\n";
  text +=
      "  q7.x: {limits: []}\n  q7: {limits: [{name: y, algorithm: gcra, limit: 1, window: 0s}]}\n";
  auto r = parse_policy(text, "t.yaml");
  ASSERT_EQ(r.errors.size(), 2u) << r.error_text();
  EXPECT_EQ(r.errors[0].to_string(), "t.yaml:45:57: limit must be between 1 and 1000000000, got 0");
  EXPECT_EQ(r.errors[0].path, "resources.a.limits.limits[0].limit");
  EXPECT_EQ(r.errors[1].to_string(), "t.yaml:47:62: window must be between 1ms and 90d, got 0s");
}

TEST(PolicyParse, MissingValueIsReportedAtItsKey) {
  // `limit:` with nothing after it has no node of its own; the key is the place to point at.
  auto r = parse_policy(
      "default_tier: free\ntiers: {free: {}}\nresources:\n  p:\n    limits:\n"
      "      - name: a\n        algorithm: gcra\n        limit:\n        window: 1s\n",
      "t.yaml");
  ASSERT_EQ(r.errors.size(), 1u) << r.error_text();
  EXPECT_EQ(r.errors[0].to_string(), "t.yaml:8:9: 'limit' must be a whole number");
}

TEST(PolicyParse, NullTierBodyAndEmptySectionsAreAccepted) {
  auto r = parse_policy("default_tier: free\ntiers:\n  free:\napi_keys:\nresources:\n", "t.yaml");
  ASSERT_TRUE(r.ok()) << r.error_text();
  EXPECT_EQ(r.policy->tiers.size(), 1u);
  EXPECT_EQ(r.policy->tiers[0].multiplier, 1.0);
  EXPECT_TRUE(r.policy->resources.empty());
}

TEST(PolicyParse, FileErrors) {
  auto r = parse_policy_file("/nonexistent/dir/policy.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(),
            "cannot read policy file /nonexistent/dir/policy.yaml: No such file or directory");
  // Only regular files are read, and opening a FIFO does not wait for a writer.
  const std::string fifo = ::testing::TempDir() + "/sluice_policy_fifo";
  std::remove(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto f = parse_policy_file(fifo);
  ASSERT_EQ(f.errors.size(), 1u);
  EXPECT_EQ(f.errors[0].message, "policy file " + fifo + " is a FIFO, not a regular file");
  std::remove(fifo.c_str());
  auto d = parse_policy_file(::testing::TempDir());
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("is a directory, not a regular file"), std::string::npos);
}

TEST(PolicyParse, FileNameAppearsInMessages) {
  const std::string path = ::testing::TempDir() + "/sluice_bad_policy.yaml";
  {
    std::ofstream out(path);
    out << "default_tier: free\ntiers: {free: {multiplier: 0}}\n";
  }
  auto r = parse_policy_file(path);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].to_string(),
            path + ":2:28: multiplier must be > 0 and at most 1000000, got 0");
}

TEST(PolicyValidate, SpecBuiltInCodeGetsTheSameChecks) {
  // The GUI builds specs directly; validate_policy reports by path since there is no text.
  PolicySpec spec;
  spec.default_tier = "free";
  spec.tiers.push_back({.name = "free"});
  spec.tiers.push_back({.name = "free"});
  ResourceSpec r{.name = "p"};
  r.limits.push_back({.name = "a", .algorithm = SLUICE_ALG_GCRA, .limit = 5, .window_ms = 0});
  spec.resources.push_back(r);
  spec.api_keys["abcdefgh-9999"] = "nope";
  auto errors = validate_policy(spec);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].path, "resources.p.limits[0].window");
  EXPECT_EQ(errors[0].line, 0);
  EXPECT_EQ(errors[0].to_string(), "window must be between 1ms and 90d, got 0s");
  EXPECT_EQ(errors[1].message, "duplicate tier 'free'");
  EXPECT_EQ(errors[2].message, "api key '...9999' maps to unknown tier 'nope' (tiers: free, free)");

  spec.tiers.pop_back();
  spec.resources[0].limits[0].window_ms = 1000;
  spec.api_keys["abcdefgh-9999"] = "free";
  EXPECT_TRUE(validate_policy(spec).empty());
}

TEST(PolicyValidate, LimitsAndNamesAtTheirBounds) {
  PolicySpec spec;
  spec.default_tier = std::string(kMaxNameLength, 't');
  spec.tiers.push_back({.name = spec.default_tier, .multiplier = 1e6});
  ResourceSpec r{.name = "a-Z_0.9/x"};
  for (size_t i = 0; i < kMaxLimitsPerResource; ++i) {
    r.limits.push_back({.name = sluice::testing::numbered("l", i),
                        .algorithm = SLUICE_ALG_TOKEN_BUCKET,
                        .limit = 1'000'000'000,
                        .window_ms = 90LL * 86'400'000,
                        .burst = 1'000'000'000});
  }
  spec.resources.push_back(r);
  EXPECT_TRUE(validate_policy(spec).empty());

  spec.resources[0].limits[0].limit = 1'000'000'001;
  spec.resources[0].limits[1].window_ms += 1;
  spec.tiers[0].multiplier = 1e6 + 1;
  EXPECT_EQ(validate_policy(spec).size(), 3u);
}

}  // namespace
}  // namespace sluice

namespace sluice {
namespace {

constexpr const char* kCalendar = R"(default_tier: free
tiers: {free: {}}
resources:
  generate:
    limits:
      - {name: per_day, algorithm: fixed_window, limit: 100000, window: calendar_day, timezone: Europe/Berlin}
      - {name: per_month, algorithm: fixed_window, limit: 2000000, window: calendar_month}
)";

TEST(PolicyParse, CalendarWindowsReadAndWriteBack) {
  auto r = parse_policy(kCalendar, "cal.yaml");
  ASSERT_TRUE(r.ok()) << r.error_text();
  const auto& limits = r.policy->resources[0].limits;
  EXPECT_EQ(limits[0].calendar, CalendarPeriod::kDay);
  EXPECT_EQ(limits[0].timezone, "Europe/Berlin");
  EXPECT_EQ(limits[1].calendar, CalendarPeriod::kMonth);
  EXPECT_EQ(limits[1].timezone, "");  // UTC
  EXPECT_GE(limits[1].window_ms, 31LL * 24 * 3600 * 1000);
  const std::string text = policy_to_yaml(*r.policy);
  EXPECT_NE(text.find("window: calendar_day, timezone: Europe/Berlin"), std::string::npos) << text;
  auto again = parse_policy(text, "again.yaml");
  ASSERT_TRUE(again.ok()) << again.error_text();
  EXPECT_EQ(*again.policy, *r.policy);
}

TEST(PolicyParse, CalendarWindowMistakesAreReportedInPlace) {
  auto r = parse_policy(R"(default_tier: free
tiers: {free: {}}
resources:
  a:
    limits:
      - {name: x, algorithm: token_bucket, limit: 5, window: calendar_week}
      - {name: y, algorithm: fixed_window, limit: 5, window: 1d, timezone: Europe/Paris}
      - {name: z, algorithm: fixed_window, limit: 5, window: calendar_day, timezone: Mars/Base}
      - {name: w, algorithm: fixed_window, limit: 5, window: calendar_year}
)",
                        "cal.yaml");
  ASSERT_EQ(r.errors.size(), 4u) << r.error_text();
  EXPECT_EQ(r.errors[0].to_string(),
            "cal.yaml:6:62: a calendar window (calendar_week) needs algorithm fixed_window; "
            "token_bucket needs a window of fixed length such as 1d");
  EXPECT_EQ(r.errors[1].to_string(),
            "cal.yaml:7:76: timezone applies only to a calendar window (window: calendar_day, "
            "calendar_week or calendar_month)");
  EXPECT_EQ(r.errors[2].to_string(),
            "cal.yaml:8:86: unknown time zone 'Mars/Base' (an IANA name such as UTC, "
            "Europe/Berlin or America/New_York)");
  EXPECT_EQ(r.errors[3].message,
            "'window' is not a duration: 'calendar_year' (examples: 500ms, 30s, 1m, 1m30s, 1h, "
            "1d; or calendar_day, calendar_week, calendar_month)");
}

// Named cost units, exact prices, a budget in dollars and an overdraft, written back as read.
TEST(PolicyParse, CostUnitsPricesAndBudgets) {
  auto r = parse_policy(R"(default_tier: free
tiers: {free: {}}
resources:
  chat:
    prices: {input_tokens: 0.0000025, output_tokens: 0.00001, requests: 0.0001}
    limits:
      - {name: in_tpm, algorithm: fixed_window, limit: 1000, window: 1m, cost: input_tokens}
      - {name: out_tpm, algorithm: gcra, limit: 500, window: 1m, cost: output_tokens, overdraft: 50}
      - {name: monthly, algorithm: fixed_window, limit: 250.5, window: calendar_month, cost: usd}
)",
                        "llm.yaml");
  ASSERT_TRUE(r.ok()) << r.error_text();
  const ResourceSpec& chat = r.policy->resources[0];
  EXPECT_EQ(chat.prices.at("input_tokens"), 2'500'000);  // pico-dollars
  EXPECT_EQ(chat.prices.at("output_tokens"), 10'000'000);
  EXPECT_EQ(chat.prices.at("requests"), 100'000'000);
  EXPECT_EQ(chat.limits[0].unit, "input_tokens");
  EXPECT_EQ(chat.limits[1].overdraft, 50);
  EXPECT_EQ(chat.limits[0].overdraft, -1);
  EXPECT_EQ(chat.limits[2].unit, "usd");
  EXPECT_EQ(chat.limits[2].limit, 250'500'000);  // micro-dollars
  const std::string text = policy_to_yaml(*r.policy);
  EXPECT_NE(text.find("limit: 250.5"), std::string::npos) << text;
  EXPECT_NE(text.find("input_tokens: 0.0000025"), std::string::npos) << text;
  auto again = parse_policy(text, "again.yaml");
  ASSERT_TRUE(again.ok()) << again.error_text();
  EXPECT_EQ(*again.policy, *r.policy);
  // A budget of more than the largest plain limit (a billion) is fine in dollars.
  PolicySpec big = *r.policy;
  big.resources[0].limits[2].limit = 900'000 * kMicrosPerDollar;
  EXPECT_TRUE(validate_policy(big).empty());
  const auto diff = diff_policies(*r.policy, big);
  ASSERT_EQ(diff.size(), 1u);
  EXPECT_EQ(diff[0], "resource chat: limit monthly: $250.5 → $900000");
}

TEST(PolicyParse, CostMistakesAreReportedInPlace) {
  auto r = parse_policy(R"(default_tier: free
tiers: {free: {}}
resources:
  a:
    prices: {input_tokens: 0.0000000000001, usd: 1}
    limits:
      - {name: x, algorithm: token_bucket, limit: 5, window: 1m, cost: usd}
      - {name: y, algorithm: fixed_window, limit: 5, window: 1m, cost: 9lives}
      - {name: z, algorithm: fixed_window, limit: 5, window: 1m, overdraft: -3}
  b:
    limits:
      - {name: w, algorithm: fixed_window, limit: 1.5, window: 1m, cost: usd}
)",
                        "cost.yaml");
  std::vector<std::string> got;
  for (const auto& e : r.errors) got.push_back(e.message);
  EXPECT_EQ(got, (std::vector<std::string>{
                     "price of 'input_tokens' must be dollars per unit from 0 to 1000 with at "
                     "most 12 decimals (0.0000025), got '0.0000000000001'",
                     "usd cannot have a price: it is what prices add up to",
                     "a usd limit (a budget) counts with fixed_window, not token_bucket",
                     "cost unit '9lives' must start with a lower-case letter or '_' (e.g. "
                     "requests, tokens, items, input_tokens, output_tokens, usd)",
                     "overdraft must be between 0 and 1000000000, got -3",
                     "a usd limit needs the resource's 'prices:' (dollars per unit, e.g. "
                     "{input_tokens: 0.0000025})"}))
      << r.error_text();
}

}  // namespace
}  // namespace sluice
