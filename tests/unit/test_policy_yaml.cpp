// Durations, YAML serialisation (round trips) and readable diffs of policies.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "sluice/policy.h"

namespace sluice {
namespace {

PolicySpec parse_or_die(const std::string& text) {
  auto r = parse_policy(text, "t.yaml");
  EXPECT_TRUE(r.ok()) << r.error_text() << "\n--- text ---\n" << text;
  return r.policy.value_or(PolicySpec{});
}

// A value change's line from its parts.
std::string fmt_line(const PolicyChange& c) {
  if (c.field == "limit") return c.what + ": " + c.before + " → " + c.after;
  return c.what + ": " + c.field + " " + c.before + " → " + c.after;
}

PolicySpec load_shipped(const std::string& name) {
  auto r = parse_policy_file(std::string(SLUICE_SOURCE_DIR) + "/policies/" + name);
  EXPECT_TRUE(r.ok()) << r.error_text();
  return r.policy.value_or(PolicySpec{});
}

TEST(Duration, ParsesEveryUnitAndCombinations) {
  const std::pair<const char*, int64_t> cases[] = {
      {"0s", 0},
      {"1ms", 1},
      {"500ms", 500},
      {"1s", 1000},
      {"90s", 90'000},
      {"1m", 60'000},
      {"1m30s", 90'000},
      {"1h", 3'600'000},
      {"1d", 86'400'000},
      {"2h30m", 9'000'000},
      {"1d1h1m1s1ms", 90'061'001},
      {"300s", 300'000},
  };
  for (const auto& [text, ms] : cases) {
    EXPECT_EQ(parse_duration_ms(text), ms) << text;
  }
}

TEST(Duration, RejectsMalformedText) {
  for (const char* text : {"",
                           "s",
                           "1",
                           "60",
                           "-1s",
                           "+1s",
                           "1.5s",
                           "1 s",
                           " 1s",
                           "1s ",
                           "1x",
                           "1sm",
                           "30s1m",
                           "1m1m",
                           "1msms",
                           "1S",
                           "m1",
                           "1m30",
                           "99999999999999999999s",
                           "9223372036854775807d"}) {
    EXPECT_EQ(parse_duration_ms(text), std::nullopt) << text;
  }
}

TEST(Duration, FormatsTheShortestCombination) {
  EXPECT_EQ(format_duration_ms(0), "0s");
  EXPECT_EQ(format_duration_ms(500), "500ms");
  EXPECT_EQ(format_duration_ms(1000), "1s");
  EXPECT_EQ(format_duration_ms(60'000), "1m");
  EXPECT_EQ(format_duration_ms(90'000), "1m30s");
  EXPECT_EQ(format_duration_ms(300'000), "5m");
  EXPECT_EQ(format_duration_ms(86'400'000), "1d");
  EXPECT_EQ(format_duration_ms(90'061'001), "1d1h1m1s1ms");
  EXPECT_EQ(format_duration_ms(-5), "-5ms");
  for (int64_t ms : {1LL, 999LL, 1001LL, 59'999LL, 3'600'001LL, 7'776'000'000LL}) {
    EXPECT_EQ(parse_duration_ms(format_duration_ms(ms)), ms) << ms;
  }
}

TEST(PolicyYaml, ShippedPoliciesRoundTrip) {
  // parse(to_yaml(spec)) == spec for both policies that ship with sluice.
  for (const char* name : {"default.yaml", "ml-api.yaml", "llm-gateway.yaml"}) {
    const PolicySpec spec = load_shipped(name);
    ASSERT_FALSE(spec.tiers.empty()) << name;
    const std::string text = policy_to_yaml(spec);
    const PolicySpec again = parse_or_die(text);
    EXPECT_EQ(again, spec) << name << "\n" << text;
    EXPECT_EQ(policy_to_yaml(again), text) << name;
  }
}

TEST(PolicyYaml, EveryFieldRoundTrips) {
  // A spec with every field away from its default, including awkward strings.
  PolicySpec spec;
  spec.default_tier = "basic";
  spec.unknown_resource = UnknownResourceMode::kDefaultLimits;
  spec.on_storage_failure = StorageFailureMode::kFailOpen;
  spec.lease_ttl_ms = 1500;
  spec.default_limits.push_back({.name = "fallback",
                                 .algorithm = SLUICE_ALG_GCRA,
                                 .limit = 3,
                                 .window_ms = 1000,
                                 .burst = 9});
  spec.tiers.push_back({.name = "basic", .description = "yes", .multiplier = 0.1});
  TierSpec vip{
      .name = "vip",
      .description = "VIP: \"quoted\" # not a comment\nsecond line\ttab, caf\u00e9 \U0001F680",
      .multiplier = 12.5,
      .unlimited = true};
  vip.overrides["gen"] =
      TierOverride{.multiplier = 1.0 / 3.0, .limits = {{"tok", 99}}, .unlimited = true};
  vip.overrides["123"] = TierOverride{.multiplier = std::nullopt, .limits = {{"x", 7}}};
  spec.tiers.push_back(vip);
  spec.api_keys["sk-live-0123456789"] = "vip";
  spec.api_keys["key: with colon"] = "basic";  // invalid as a key, but must survive the trip
  ResourceSpec gen{.name = "gen", .description = "- starts like a list item"};
  gen.limits.push_back({.name = "tok",
                        .algorithm = SLUICE_ALG_TOKEN_BUCKET,
                        .limit = 100,
                        .window_ms = 61'001,
                        .burst = 150,
                        .unit = "tokens",
                        .shadow = true});
  gen.limits.push_back({.name = "inflight",
                        .algorithm = SLUICE_ALG_CONCURRENCY,
                        .limit = 2,
                        .window_ms = 120'000,
                        .unit = "items"});
  gen.warmup = {
      .enabled = true, .factor = 0.125, .duration_ms = 600'000, .ramp = true, .start_cold = true};
  spec.resources.push_back(gen);
  ResourceSpec numeric{.name = "123"};
  numeric.limits.push_back(
      {.name = "x", .algorithm = SLUICE_ALG_SLIDING_WINDOW, .limit = 1, .window_ms = 1});
  // Disabled, but with settings: they are kept so the GUI can switch warm-up back on.
  numeric.warmup = {
      .enabled = false, .factor = 0.5, .duration_ms = 0, .ramp = false, .start_cold = false};
  spec.resources.push_back(numeric);
  spec.resources.push_back({.name = "no-limits"});

  const std::string text = policy_to_yaml(spec);
  auto r = parse_policy(text, "rt.yaml");
  // The one invalid api key is reported, and nothing else.
  ASSERT_EQ(r.errors.size(), 1u) << r.error_text() << "\n" << text;
  EXPECT_NE(r.errors[0].message.find("must be printable ASCII without spaces"), std::string::npos);

  spec.api_keys.erase("key: with colon");
  const std::string valid_text = policy_to_yaml(spec);
  const PolicySpec again = parse_or_die(valid_text);
  EXPECT_EQ(again, spec) << valid_text;
}

TEST(PolicyYaml, OutputIsReadable) {
  // The admin GUI shows this text: limits one per line, keys in a stable order.
  const PolicySpec spec = parse_or_die(R"(version: 1
default_tier: free
tiers:
  free: {multiplier: 1}
resources:
  predict:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}
)");
  EXPECT_EQ(policy_to_yaml(spec), R"(version: 1
default_tier: free
on_storage_failure: fail_closed
unknown_resource: deny
lease_ttl: 1m
tiers:
  free:
    multiplier: 1
resources:
  predict:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}
)");
}

TEST(PolicyDiff, IdenticalPoliciesHaveNoDiff) {
  const PolicySpec spec = load_shipped("ml-api.yaml");
  EXPECT_TRUE(diff_policies(spec, spec).empty());
}

TEST(PolicyDiff, ReadableLinesForEveryKindOfChange) {
  const PolicySpec before = load_shipped("ml-api.yaml");
  PolicySpec after = before;
  after.default_tier = "premium";
  after.unknown_resource = UnknownResourceMode::kAllow;
  after.lease_ttl_ms = 30'000;
  after.tiers[1].multiplier = 6;  // premium
  after.tiers[1].overrides["premium/predict"].limits["per_minute"] = 40;
  after.tiers[1].overrides["models/heavy"].multiplier = 2;
  after.tiers.erase(after.tiers.begin() + 2);  // internal
  after.tiers.push_back({.name = "gold", .multiplier = 10});
  after.api_keys["premium-user-key"] = "gold";
  after.api_keys.erase("internal-batch-key");
  after.api_keys["new-customer-5678"] = "premium";
  for (auto& r : after.resources) {
    if (r.name == "models/heavy") {
      r.limits[0].limit = 20;
      r.limits[0].window_ms = 120'000;
      r.warmup.factor = 0.5;
    }
    if (r.name == "generate") {
      r.limits[1].shadow = false;
      r.limits.push_back({.name = "inflight",
                          .algorithm = SLUICE_ALG_CONCURRENCY,
                          .limit = 4,
                          .window_ms = 120'000});
    }
  }
  std::erase_if(after.resources, [](const ResourceSpec& r) { return r.name == "model-info"; });
  after.resources.push_back({.name = "embed", .description = "new"});

  const std::vector<std::string> expected = {
      "policy: default_tier free → premium",
      "policy: unknown_resource deny → allow",
      "policy: lease_ttl 1m → 30s",
      "tier premium: multiplier 5 → 6",
      "tier premium: override premium/predict: limit per_minute: 30 → 40",
      "tier premium: override for models/heavy added",
      "tier internal: removed",
      "tier gold: added (multiplier 10)",
      "api key ...-key: removed (was internal)",  // keys in sorted order
      "api key ...-key: tier premium → gold",
      "api key ...5678: added (premium)",
      "resource models/heavy: limit per_minute: 10 → 20",
      "resource models/heavy: limit per_minute: window 1m → 2m",
      "resource models/heavy: warmup: factor 0.2 → 0.5",
      "resource generate: limit tokens_per_day: shadow true → false",
      "resource generate: limit inflight added (concurrency 4 requests per 2m)",
      "resource model-info: removed",
      "resource embed: added (0 limits)",
  };
  EXPECT_EQ(diff_policies(before, after), expected);
}

TEST(PolicyDiff, ApiKeysAreMasked) {
  PolicySpec before = load_shipped("default.yaml");
  PolicySpec after = before;
  after.api_keys["sk-secret-abcd1234"] = "free";
  after.api_keys["short"] = "free";
  const auto lines = diff_policies(before, after);
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& line : lines) {
    EXPECT_EQ(line.find("secret"), std::string::npos) << line;
    EXPECT_EQ(line.find("short"), std::string::npos) << line;
  }
  EXPECT_EQ(lines[0], "api key ...: added (free)");  // too short to show any of it
  EXPECT_EQ(lines[1], "api key ...1234: added (free)");
}

// A value changed in place reads "field old → new", with the field and both values also given
// apart (policy_changes), for every kind of setting the review lists.
struct ValueChange {
  const char* name;
  void (*edit)(PolicySpec&);
  const char* what;
  const char* field;
  const char* before;
  const char* after;
  const char* line;
};

class PolicyValueChange : public testing::TestWithParam<ValueChange> {};

ResourceSpec& generate(PolicySpec& p) {
  for (auto& r : p.resources)
    if (r.name == "generate") return r;
  throw std::logic_error("no generate in default.yaml");
}

const ValueChange kValueChanges[] = {
    {"TierDescription", [](PolicySpec& p) { p.tiers[1].description = "Paying customers"; },
     "tier premium", "description", R"("Paying customers get five times the free limits")",
     R"("Paying customers")",
     R"(tier premium: description "Paying customers get five times the free limits" → )"
     R"("Paying customers")"},
    {"LongDescriptionIsCut",
     [](PolicySpec& p) {
       generate(p).description = std::string(59, 'x') + "yz and much more text after it";
     },
     "resource generate", "description",
     R"("POST /generate, text generation metered in tokens (send COS…")",
     R"("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…")", nullptr},
    {"SixtyCharactersAreKept",
     [](PolicySpec& p) { generate(p).description = std::string(60, 'a'); }, "resource generate",
     "description", nullptr, R"("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")",
     nullptr},
    {"DescriptionOnOneLineWithQuotesEscaped",
     [](PolicySpec& p) { generate(p).description = "say \"hi\"\nthen go"; }, "resource generate",
     "description", nullptr, R"("say \"hi\" then go")", nullptr},
    {"NonAsciiIsCutAtACharacter",
     [](PolicySpec& p) {
       std::string d;
       for (int i = 0; i < 70; ++i) d += "é";
       generate(p).description = d;
     },
     "resource generate", "description", nullptr,
     "\"ééééééééééééééééééééééééééééééééééééééééééééééééééééééééééé…\"", nullptr},
    {"Algorithm", [](PolicySpec& p) { generate(p).limits[0].algorithm = SLUICE_ALG_GCRA; },
     "resource generate: limit tokens_per_minute", "algorithm", "token_bucket", "gcra",
     "resource generate: limit tokens_per_minute: algorithm token_bucket → gcra"},
    {"Window", [](PolicySpec& p) { generate(p).limits[0].window_ms = 30'000; },
     "resource generate: limit tokens_per_minute", "window", "1m", "30s",
     "resource generate: limit tokens_per_minute: window 1m → 30s"},
    {"Burst", [](PolicySpec& p) { generate(p).limits[0].burst = 30'000; },
     "resource generate: limit tokens_per_minute", "burst", "20000", "30000",
     "resource generate: limit tokens_per_minute: burst 20000 → 30000"},
    {"CostUnit", [](PolicySpec& p) { generate(p).limits[0].unit = "output_tokens"; },
     "resource generate: limit tokens_per_minute", "cost", "tokens", "output_tokens",
     "resource generate: limit tokens_per_minute: cost tokens → output_tokens"},
    {"Shadow", [](PolicySpec& p) { generate(p).limits[0].shadow = true; },
     "resource generate: limit tokens_per_minute", "shadow", "false", "true",
     "resource generate: limit tokens_per_minute: shadow false → true"},
    {"Overdraft", [](PolicySpec& p) { generate(p).limits[0].overdraft = 500; },
     "resource generate: limit tokens_per_minute", "overdraft", "none", "500",
     "resource generate: limit tokens_per_minute: overdraft none → 500"},
    {"Amount", [](PolicySpec& p) { generate(p).limits[0].limit = 12'000; },
     "resource generate: limit tokens_per_minute", "limit", "10000", "12000",
     "resource generate: limit tokens_per_minute: 10000 → 12000"},
    {"TierPriority", [](PolicySpec& p) { p.tiers[1].priority = 10; }, "tier premium", "priority",
     "0", "10", "tier premium: priority 0 → 10"},
    {"KeyLabel", [](PolicySpec& p) { p.api_key_labels["premium-user-key"] = "Acme Corp"; },
     "api key ...-key", "label", R"("")", R"("Acme Corp")",
     R"(api key ...-key: label "" → "Acme Corp")"},
    {"KeyTier", [](PolicySpec& p) { p.api_keys["premium-user-key"] = "free"; }, "api key ...-key",
     "tier", "premium", "free", "api key ...-key: tier premium → free"},
};

TEST_P(PolicyValueChange, ReadsOldToNew) {
  const ValueChange& c = GetParam();
  const PolicySpec before = load_shipped("default.yaml");
  PolicySpec after = before;
  c.edit(after);
  const auto changes = policy_changes(before, after);
  ASSERT_EQ(changes.size(), 1u) << (changes.empty() ? "" : changes[1].text);
  EXPECT_EQ(changes[0].what, c.what);
  EXPECT_EQ(changes[0].field, c.field);
  if (c.before != nullptr) {
    EXPECT_EQ(changes[0].before, c.before);
  }
  EXPECT_EQ(changes[0].after, c.after);
  if (c.line != nullptr) {
    EXPECT_EQ(changes[0].text, c.line);
  }
  EXPECT_EQ(changes[0].text, fmt_line(changes[0]));
  EXPECT_EQ(diff_policies(before, after), std::vector<std::string>{changes[0].text});
}

INSTANTIATE_TEST_SUITE_P(Fields, PolicyValueChange, testing::ValuesIn(kValueChanges),
                         [](const auto& p) { return std::string(p.param.name); });

// An added or removed item has its line only: the review lists value changes apart.
TEST(PolicyDiff, AddedAndRemovedItemsHaveNoField) {
  const PolicySpec before = load_shipped("default.yaml");
  PolicySpec after = before;
  after.tiers.push_back({.name = "gold", .multiplier = 10});
  after.api_keys.erase("premium-user-key");
  const auto changes = policy_changes(before, after);
  ASSERT_EQ(changes.size(), 2u);
  for (const auto& c : changes) {
    EXPECT_TRUE(c.field.empty()) << c.text;
    EXPECT_TRUE(c.before.empty() && c.after.empty()) << c.text;
  }
  EXPECT_EQ(changes[0].what, "tier gold");
  EXPECT_EQ(changes[1].text, "api key ...-key: removed (was premium)");
}

// The caller's mask writes every key of every line (sluice-admin tells look-alikes apart so).
TEST(PolicyDiff, KeysAreWrittenWithTheCallersMask) {
  PolicySpec before = load_shipped("default.yaml");
  before.api_keys["acme-prod-key"] = "free";
  PolicySpec after = before;
  after.api_keys["acme-prod-key"] = "premium";
  after.api_key_labels["premium-user-key"] = "Acme";
  after.api_keys["beta-prod-key"] = "free";
  std::vector<std::string> masked;
  const ApiKeyMask mask = [&](const std::string& key) {
    masked.push_back(key);
    return "<" + key + ">";
  };
  EXPECT_EQ(diff_policies(before, after, mask),
            (std::vector<std::string>{"api key <acme-prod-key>: tier free → premium",
                                      "api key <beta-prod-key>: added (free)",
                                      R"(api key <premium-user-key>: label "" → "Acme")"}));
  EXPECT_FALSE(masked.empty());
  // Without one: the last 4 characters, as in every engine message.
  for (const auto& line : diff_policies(before, after))
    EXPECT_EQ(line.find("prod"), std::string::npos) << line;
}

// The fenced blocks of one language ("yaml", "text") in docs/policy.md, in order.
std::vector<std::string> doc_blocks(const std::string& language) {
  std::ifstream in(std::string(SLUICE_SOURCE_DIR) + "/docs/policy.md");
  std::stringstream text;
  text << in.rdbuf();
  const std::string doc = text.str();
  const std::string open = "```" + language + "\n";
  std::vector<std::string> out;
  for (size_t pos = doc.find(open); pos != std::string::npos; pos = doc.find(open, pos)) {
    pos += open.size();
    const size_t end = doc.find("```", pos);
    if (end == std::string::npos) break;
    out.push_back(doc.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

TEST(PolicyDocs, TheCompleteExampleIsValid) {
  const auto blocks = doc_blocks("yaml");
  ASSERT_FALSE(blocks.empty());
  const PolicySpec spec = parse_or_die(blocks[0]);
  EXPECT_EQ(spec.tiers.size(), 3u);
  EXPECT_EQ(spec.resources.size(), 5u);
}

TEST(PolicyDocs, TheBrokenExampleGivesTheDocumentedErrors) {
  const auto yaml = doc_blocks("yaml");
  const auto text = doc_blocks("text");
  std::string broken;
  for (const auto& b : yaml) {
    if (b.starts_with("default_tier: gold")) broken = b;
  }
  ASSERT_FALSE(broken.empty());
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(parse_policy(broken, "broken.yaml").error_text() + "\n", text[0]);
}

}  // namespace
}  // namespace sluice
