// API keys with a label for people (`key: {tier: t, label: ...}`): read, checked, written
// back, compared, and kept in place by the text edit. The plain `key: tier` form is unchanged.
#include <gtest/gtest.h>

#include <string>

#include "sluice/policy.h"
#include "sluice/policy_text_edit.h"

namespace sluice {
namespace {

const char* kPolicy = R"(default_tier: free
tiers:
  free: {}
  premium: {multiplier: 5}
api_keys:
  plain-key-0000001: premium   # the old form
  acme-prod-7f3a9c: {tier: premium, label: "Acme Corp, production"}
resources: {}
)";

PolicySpec parse_or_die(const std::string& text) {
  auto r = parse_policy(text, "t.yaml");
  EXPECT_TRUE(r.ok()) << r.error_text() << "\n--- text ---\n" << text;
  return r.policy.value_or(PolicySpec{});
}

// Both forms are read; only the labelled key has a label.
TEST(ApiKeyLabels, BothFormsAreRead) {
  const PolicySpec p = parse_or_die(kPolicy);
  EXPECT_EQ(p.api_keys.at("plain-key-0000001"), "premium");
  EXPECT_EQ(p.api_keys.at("acme-prod-7f3a9c"), "premium");
  ASSERT_EQ(p.api_key_labels.size(), 1u);
  EXPECT_EQ(p.api_key_labels.at("acme-prod-7f3a9c"), "Acme Corp, production");
}

// Written back as the same two forms, and read back equal.
TEST(ApiKeyLabels, RoundTrip) {
  const PolicySpec p = parse_or_die(kPolicy);
  const std::string yaml = policy_to_yaml(p);
  EXPECT_NE(yaml.find("plain-key-0000001: premium\n"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("acme-prod-7f3a9c: {tier: premium, label: "), std::string::npos) << yaml;
  EXPECT_EQ(parse_or_die(yaml), p);
}

// Mistakes are reported on the key's settings, without printing the key.
TEST(ApiKeyLabels, MistakesAreReported) {
  struct Case {
    const char* keys;
    const char* message;
  } cases[] = {
      {"  secret-key-123456: {label: x}", "missing required key 'tier'"},
      {"  secret-key-123456: {tier: free, owner: x}", "unknown key 'owner'"},
      {"  secret-key-123456: {tier: free, label: [a]}", "'label' must be a string"},
      {"  secret-key-123456: {tier: free, label: \"a\\x01\"}", "control character"},
  };
  for (const auto& c : cases) {
    const std::string text = std::string("default_tier: free\ntiers:\n  free: {}\napi_keys:\n") +
                             c.keys + "\nresources: {}\n";
    const auto r = parse_policy(text, "t.yaml");
    ASSERT_FALSE(r.ok()) << c.keys;
    EXPECT_NE(r.error_text().find(c.message), std::string::npos) << r.error_text();
    EXPECT_EQ(r.error_text().find("secret-key-123456"), std::string::npos) << r.error_text();
  }
  PolicySpec p = parse_or_die(kPolicy);
  p.api_key_labels["unmapped-key-1234"] = "x";
  const auto errors = validate_policy(p);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, "api_keys.unmapped-key-1234.label");
}

// The review lists label changes, the key masked.
TEST(ApiKeyLabels, DiffShowsLabelChanges) {
  const PolicySpec before = parse_or_die(kPolicy);
  PolicySpec after = before;
  after.api_key_labels["plain-key-0000001"] = "Beta tester";
  after.api_key_labels.erase("acme-prod-7f3a9c");
  const auto diff = diff_policies(before, after);
  ASSERT_EQ(diff.size(), 2u);
  EXPECT_EQ(diff[0], R"(api key ...3a9c: label "Acme Corp, production" → "")");
  EXPECT_EQ(diff[1], R"(api key ...0001: label "" → "Beta tester")");
}

// Labelling a key in the GUI changes that key's line only; the comments stay.
TEST(ApiKeyLabels, LabellingAKeyEditsItsLineInPlace) {
  const PolicySpec before = parse_or_die(kPolicy);
  PolicySpec after = before;
  after.api_key_labels["plain-key-0000001"] = "Beta tester";
  const PolicyTextEdit out = edit_policy_text(kPolicy, before, after);
  ASSERT_TRUE(out.in_place);
  EXPECT_TRUE(out.notes.empty());
  EXPECT_EQ(parse_or_die(out.text), after);
  std::string expected = kPolicy;
  expected.replace(expected.find("premium   # the old form"), 7,
                   "{tier: premium, label: Beta tester}");
  EXPECT_EQ(out.text, expected);
}

}  // namespace
}  // namespace sluice
