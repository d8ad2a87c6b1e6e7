// The comment-preservation test: edits of a PolicySpec written back into the policy's own text
// (sluice/policy_text_edit.h) keep every comment and every line nobody edited, and the text
// reads back as the edited spec.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "sluice/policy.h"
#include "sluice/policy_text_edit.h"

namespace sluice {
namespace {

std::string shipped_text(const std::string& name) {
  auto r = read_policy_file(std::string(SLUICE_SOURCE_DIR) + "/policies/" + name);
  EXPECT_TRUE(r.ok());
  return r.ok() ? r.value() : std::string();
}

PolicySpec parse_or_die(const std::string& text) {
  auto r = parse_policy(text, "t.yaml");
  EXPECT_TRUE(r.ok()) << r.error_text() << "\n--- text ---\n" << text;
  return r.policy.value_or(PolicySpec{});
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

ResourceSpec& resource(PolicySpec& p, const std::string& name) {
  for (auto& r : p.resources) {
    if (r.name == name) return r;
  }
  throw std::runtime_error("no resource " + name);
}

TierSpec& tier(PolicySpec& p, const std::string& name) {
  for (auto& t : p.tiers) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("no tier " + name);
}

LimitSpec limit(std::string name, int64_t value, int64_t window_ms) {
  LimitSpec l;
  l.name = std::move(name);
  l.limit = value;
  l.window_ms = window_ms;
  return l;
}

// Lines of the original that go: `count` lines from the one holding `at` (a part of it that
// only that line holds, or after '=' the whole line).
struct Removed {
  Removed(const char* text, size_t lines = 1) : at(text), count(lines) {}  // NOLINT
  std::string at;
  size_t count;
};

struct TextEditCase {
  const char* name;
  std::function<void(PolicySpec&)> edit;
  std::vector<Removed> removed;
  // Lines the text gains, exactly.
  std::vector<std::string> added;
};

void PrintTo(const TextEditCase& c, std::ostream* os) { *os << c.name; }

class MlApiTextEdit : public ::testing::TestWithParam<TextEditCase> {};

// The edit made in place: the output reads back as the edited spec, and it is the original
// with exactly the expected lines taken out and put in — so every comment line and every
// untouched value (60s, 300s, multiplier: 1, ...) is there byte for byte, in order.
TEST_P(MlApiTextEdit, KeepsEveryCommentAndUntouchedLine) {
  const TextEditCase& c = GetParam();
  const std::string text = shipped_text("ml-api.yaml");
  const PolicySpec original = parse_or_die(text);
  PolicySpec edited = original;
  c.edit(edited);
  ASSERT_NE(edited, original) << "the case edits nothing";

  const PolicyTextEdit out = edit_policy_text(text, original, edited);
  ASSERT_TRUE(out.in_place) << (out.notes.empty() ? "" : out.notes.front());
  EXPECT_TRUE(out.notes.empty()) << out.notes.front();
  EXPECT_EQ(parse_or_die(out.text), edited) << out.text;

  std::vector<std::string> expected;
  size_t comments = 0;
  std::vector<bool> used(c.removed.size(), false);
  size_t skip = 0;
  for (const auto& line : lines_of(text)) {
    for (size_t i = 0; i < c.removed.size(); ++i) {
      const std::string& r = c.removed[i].at;
      if (r.starts_with('=') ? line == r.substr(1) : line.find(r) != std::string::npos) {
        EXPECT_FALSE(used[i]) << "'" << r << "' is on more than one line";
        used[i] = true;
        skip = std::max(skip, c.removed[i].count);
      }
    }
    if (skip > 0) {
      --skip;
      continue;
    }
    expected.push_back(line);
    const size_t first = line.find_first_not_of(' ');
    if (first != std::string::npos && line[first] == '#') ++comments;
  }
  for (size_t i = 0; i < used.size(); ++i)
    EXPECT_TRUE(used[i]) << "no line holds " << c.removed[i].at;

  // The output, line by line, is the next kept line of the original or the next added one.
  const std::vector<std::string> got = lines_of(out.text);
  size_t next_kept = 0, next_added = 0;
  for (const auto& line : got) {
    if (next_kept < expected.size() && line == expected[next_kept]) {
      ++next_kept;
    } else {
      ASSERT_TRUE(next_added < c.added.size() && line == c.added[next_added])
          << "unexpected line '" << line << "' in\n"
          << out.text;
      ++next_added;
    }
  }
  EXPECT_EQ(next_kept, expected.size()) << "missing '" << expected[next_kept] << "' in\n"
                                        << out.text;
  EXPECT_EQ(next_added, c.added.size()) << out.text;
  EXPECT_GE(comments, 25u);  // the shipped file's comments are all among the kept lines
}

const TextEditCase kMlApiCases[] = {
    {"ChangeALimit",
     [](PolicySpec& p) { resource(p, "predict").limits[0].limit = 12; },
     {"algorithm: fixed_window, limit: 10, window: 1m}"},
     {"      - {name: per_minute, algorithm: fixed_window, limit: 12, window: 1m}"}},
    {"ChangeAWindow",
     [](PolicySpec& p) { resource(p, "limiter/predict").limits[0].window_ms = 90'000; },
     {"limit: 20, window: 60s}"},
     {"      - {name: per_minute, algorithm: fixed_window, limit: 20, window: 1m30s}"}},
    {"ChangeAMultiplier",
     [](PolicySpec& p) { tier(p, "premium").multiplier = 8; },
     {"multiplier: 5"},
     {"    multiplier: 8"}},
    {"SetATierPriority",
     [](PolicySpec& p) { tier(p, "premium").priority = 10; },
     {},
     {"    priority: 10"}},
    {"ChangeAnOverride",
     [](PolicySpec& p) {
       tier(p, "premium").overrides["premium/predict"].limits["per_minute"] = 40;
     },
     {"premium/predict: {limits: {per_minute: 30}}"},
     {"      premium/predict: {limits: {per_minute: 40}}"}},
    {"ChangeTheWarmupFactor",
     [](PolicySpec& p) { resource(p, "models/heavy").warmup.factor = 0.25; },
     {"warmup: {factor: 0.2,"},
     {"    warmup: {factor: 0.25, duration: 5m, start: cold}"}},
    {"ChangeADescription",
     [](PolicySpec& p) { tier(p, "free").description = "Callers without a key, or unknown keys"; },
     {"description: Anonymous callers"},
     {"    description: Callers without a key, or unknown keys"}},
    {"TurnShadowOff",
     [](PolicySpec& p) { resource(p, "generate").limits[1].shadow = false; },
     {"cost: tokens, shadow: true}"},
     {"      - {name: tokens_per_day, algorithm: fixed_window, limit: 1000000, window: 1d, cost: "
      "tokens}"}},
    {"AddABurst",
     [](PolicySpec& p) {
       auto& l = resource(p, "predict").limits[0];
       l.algorithm = SLUICE_ALG_TOKEN_BUCKET;
       l.burst = 15;
     },
     {"algorithm: fixed_window, limit: 10, window: 1m}"},
     {"      - {name: per_minute, algorithm: token_bucket, limit: 10, window: 1m, burst: 15}"}},
    {"AddALimit",
     [](PolicySpec& p) {
       resource(p, "predict").limits.push_back(limit("per_hour", 100, 3'600'000));
     },
     {},
     {"      - {name: per_hour, algorithm: fixed_window, limit: 100, window: 1h}"}},
    {"AddALimitWhereThereWasNone",
     [](PolicySpec& p) {
       resource(p, "model-info").limits.push_back(limit("per_second", 50, 1000));
     },
     {"    limits: []"},
     {"    limits:", "      - {name: per_second, algorithm: fixed_window, limit: 50, window: 1s}"}},
    {"RemoveALimitWithItsComment",
     [](PolicySpec& p) { resource(p, "generate").limits.pop_back(); },
     {{"# Counted and reported, never enforced", 2}},
     {}},
    {"RemoveTheFirstLimit",
     [](PolicySpec& p) {
       auto& limits = resource(p, "generate").limits;
       limits.erase(limits.begin());
     },
     {"name: tokens_per_minute"},
     {}},
    {"AddAModel",
     [](PolicySpec& p) {
       ResourceSpec r;
       r.name = "embeddings";
       r.description = "POST /embeddings, vectors for a batch of texts";
       r.limits.push_back(limit("per_minute", 60, 60'000));
       r.limits.push_back(limit("tokens_per_minute", 50'000, 60'000));
       r.limits.back().unit = "tokens";
       p.resources.push_back(r);
     },
     {},
     {"  embeddings:", "    description: POST /embeddings, vectors for a batch of texts",
      "    limits:", "      - {name: per_minute, algorithm: fixed_window, limit: 60, window: 1m}",
      "      - {name: tokens_per_minute, algorithm: fixed_window, limit: 50000, window: 1m, cost: "
      "tokens}"}},
    {"RemoveAModelWithItsComments",
     [](PolicySpec& p) {
       std::erase_if(p.resources, [](const ResourceSpec& r) { return r.name == "models/heavy"; });
     },
     {{"  models/heavy:", 7}},
     {}},
    {"RemoveAModelAndItsOverride",
     [](PolicySpec& p) {
       std::erase_if(p.resources,
                     [](const ResourceSpec& r) { return r.name == "premium/predict"; });
       tier(p, "premium").overrides.clear();
     },
     {{"    overrides:", 2}, {"=  premium/predict:", 4}},
     {}},
    {"RenameAModelKeepingItsComments",
     [](PolicySpec& p) { resource(p, "models/heavy").name = "models/heavy-v2"; },
     {"=  models/heavy:"},
     {"  models/heavy-v2:"}},
    {"RenameAModelAndItsOverride",
     [](PolicySpec& p) {
       resource(p, "premium/predict").name = "premium/chat";
       auto& overrides = tier(p, "premium").overrides;
       overrides["premium/chat"] = overrides.at("premium/predict");
       overrides.erase("premium/predict");
     },
     {"=  premium/predict:", "premium/predict: {limits"},
     {"      premium/chat: {limits: {per_minute: 30}}", "  premium/chat:"}},
    {"RenameATierAndItsKeys",
     [](PolicySpec& p) {
       tier(p, "internal").name = "ops";
       p.api_keys["internal-batch-key"] = "ops";
     },
     {"=  internal:", "internal-batch-key: internal"},
     {"  ops:", "  internal-batch-key: ops"}},
    {"MoveALimitUpWithItsComment",
     [](PolicySpec& p) {
       auto& limits = resource(p, "generate").limits;
       std::swap(limits[0], limits[1]);
     },
     {"name: tokens_per_minute"},
     {"      - {name: tokens_per_minute, algorithm: token_bucket, limit: 10000, window: 1m, burst: "
      "20000, cost: tokens}"}},
    {"AddATier",
     [](PolicySpec& p) {
       TierSpec t;
       t.name = "gold";
       t.description = "Paying customers, 2x";
       t.multiplier = 2;
       t.priority = 5;
       p.tiers.push_back(t);
     },
     {},
     {"  gold:", "    description: Paying customers, 2x", "    multiplier: 2", "    priority: 5"}},
    {"AddAnOverrideToATierWithout",
     [](PolicySpec& p) { tier(p, "free").overrides["models/heavy"].limits["per_minute"] = 5; },
     {},
     {"    overrides:", "      models/heavy: {limits: {per_minute: 5}}"}},
    {"SetAMultiplierLeftOut",
     [](PolicySpec& p) { tier(p, "internal").multiplier = 3; },
     {},
     {"    multiplier: 3"}},
    {"AddAnApiKey",
     [](PolicySpec& p) { p.api_keys["gold-customer-0001"] = "premium"; },
     {},
     {"  gold-customer-0001: premium"}},
    {"RemoveAnApiKey",
     [](PolicySpec& p) { p.api_keys.erase("internal-batch-key"); },
     {"internal-batch-key: internal"},
     {}},
    {"MoveAnApiKeyToAnotherTier",
     [](PolicySpec& p) { p.api_keys["premium-user-key"] = "internal"; },
     {"premium-user-key: premium"},
     {"  premium-user-key: internal"}},
    {"RemoveEveryApiKey", [](PolicySpec& p) { p.api_keys.clear(); }, {{"=api_keys:", 3}}, {}},
    {"ChangeTheDefaultTier",
     [](PolicySpec& p) { p.default_tier = "premium"; },
     {"default_tier: free"},
     {"default_tier: premium"}},
    {"ChangeStorageFailure",
     [](PolicySpec& p) { p.on_storage_failure = StorageFailureMode::kFailOpen; },
     {"on_storage_failure: fail_closed"},
     {"on_storage_failure: fail_open"}},
    {"ChangeUnknownResource",
     [](PolicySpec& p) { p.unknown_resource = UnknownResourceMode::kAllow; },
     {"unknown_resource: deny"},
     {"unknown_resource: allow"}},
    {"SwitchToDefaultLimits",
     [](PolicySpec& p) {
       p.unknown_resource = UnknownResourceMode::kDefaultLimits;
       p.default_limits.push_back(limit("per_minute", 60, 60'000));
     },
     {"unknown_resource: deny"},
     {"unknown_resource: default_limits",
      "default_limits:", "  - {name: per_minute, algorithm: fixed_window, limit: 60, window: 1m}"}},
    {"ChangeTheLeaseTtl",
     [](PolicySpec& p) { p.lease_ttl_ms = 120'000; },
     {"lease_ttl: 60s"},
     {"lease_ttl: 2m"}},
    {"SeveralEditsAtOnce",
     [](PolicySpec& p) {
       tier(p, "premium").multiplier = 6;
       resource(p, "batch-predict").limits[0].limit = 3;
       p.api_keys.erase("premium-user-key");
       p.lease_ttl_ms = 30'000;
     },
     {"multiplier: 5", "limit: 2, window: 1m}", "premium-user-key: premium", "lease_ttl: 60s"},
     {"lease_ttl: 30s", "    multiplier: 6",
      "      - {name: per_minute, algorithm: fixed_window, limit: 3, window: 1m}"}},
};

INSTANTIATE_TEST_SUITE_P(PolicyTextEdit, MlApiTextEdit, ::testing::ValuesIn(kMlApiCases),
                         [](const auto& test) { return std::string(test.param.name); });

// Any three of the table's edits made together (in a seeded random order) are still made in
// place, with nothing rewritten, and read back as the edited spec.
TEST(PolicyTextEdit, CombinedEditsStayInPlace) {
  const std::string text = shipped_text("ml-api.yaml");
  const PolicySpec original = parse_or_die(text);
  std::mt19937 rng(16);
  const size_t n = std::size(kMlApiCases);
  int made = 0;
  for (int round = 0; round < 300; ++round) {
    PolicySpec edited = original;
    std::string names;
    try {
      for (int k = 0; k < 3; ++k) {
        const TextEditCase& c = kMlApiCases[rng() % n];
        c.edit(edited);
        names += std::string(c.name) + " ";
      }
    } catch (const std::exception&) {
      continue;  // an edit of something an earlier one removed
    }
    if (!validate_policy(edited).empty()) continue;
    const PolicyTextEdit out = edit_policy_text(text, original, edited);
    ASSERT_TRUE(out.in_place) << names << (out.notes.empty() ? "" : out.notes.front());
    EXPECT_TRUE(out.notes.empty()) << names << out.notes.front();
    ASSERT_EQ(parse_or_die(out.text), edited) << names;
    ++made;
  }
  EXPECT_GT(made, 200);
}

// No change: the text comes back as it was.
TEST(PolicyTextEdit, AnUnchangedSpecKeepsTheTextAsItIs) {
  const std::string text = shipped_text("ml-api.yaml");
  const PolicySpec spec = parse_or_die(text);
  const PolicyTextEdit out = edit_policy_text(text, spec, spec);
  EXPECT_TRUE(out.in_place);
  EXPECT_EQ(out.text, text);
}

// A limit moved and changed at once cannot be made as a line edit: that list is rewritten,
// everything around it is kept, and the user is told which part lost its comments.
TEST(PolicyTextEdit, AMovedAndChangedItemRewritesItsListAndSaysSo) {
  const std::string text = shipped_text("ml-api.yaml");
  const PolicySpec original = parse_or_die(text);
  PolicySpec edited = original;
  auto& limits = resource(edited, "generate").limits;
  std::swap(limits[0], limits[1]);
  limits[1].limit = 12'000;  // tokens_per_minute, which the swap moves after tokens_per_day
  const PolicyTextEdit out = edit_policy_text(text, original, edited);
  ASSERT_TRUE(out.in_place);
  EXPECT_EQ(parse_or_die(out.text), edited);
  ASSERT_EQ(out.notes.size(), 1u);
  EXPECT_NE(out.notes[0].find("resources.generate.limits"), std::string::npos) << out.notes[0];
  EXPECT_EQ(out.text.find("# Counted and reported"), std::string::npos);
  EXPECT_NE(out.text.find("# While the model loads"), std::string::npos);
  EXPECT_NE(out.text.find("window: 60s}"), std::string::npos);
}

// Text in flow style gets its new entries in flow style, quoted where a ',' would end them.
TEST(PolicyTextEdit, FlowCollectionsGetFlowEntries) {
  const std::string text =
      "# header\n"
      "default_tier: free\n"
      "tiers: {free: {multiplier: 1}}  # one tier\n"
      "api_keys: {k-0000000001: free}\n"
      "resources:\n"
      "  predict: {limits: [{name: m, algorithm: fixed_window, limit: 10, window: 60s}]}\n";
  const PolicySpec original = parse_or_die(text);
  PolicySpec edited = original;
  TierSpec gold;
  gold.name = "gold";
  gold.multiplier = 2;
  gold.description = "a, b";
  edited.tiers.push_back(gold);
  edited.api_keys["k-0000000002"] = "gold";
  edited.resources[0].limits.push_back(limit("h", 100, 3'600'000));
  const PolicyTextEdit out = edit_policy_text(text, original, edited);
  ASSERT_TRUE(out.in_place) << out.notes.front();
  EXPECT_TRUE(out.notes.empty());
  EXPECT_EQ(parse_or_die(out.text), edited);
  EXPECT_EQ(out.text,
            "# header\n"
            "default_tier: free\n"
            "tiers: {free: {multiplier: 1}, gold: {description: \"a, b\", multiplier: 2}}  # one "
            "tier\n"
            "api_keys: {k-0000000001: free, k-0000000002: gold}\n"
            "resources:\n"
            "  predict: {limits: [{name: m, algorithm: fixed_window, limit: 10, window: 60s}, "
            "{name: h, algorithm: fixed_window, limit: 100, window: 1h}]}\n");
}

// A block sequence of block maps: a key added to, and one removed from, an item whose first
// key shares the line with the dash.
TEST(PolicyTextEdit, BlockMapsInsideListItems) {
  const std::string text =
      "default_tier: free\n"
      "tiers:\n"
      "  free: {}\n"
      "resources:\n"
      "  predict:\n"
      "    limits:\n"
      "      - name: m        # per minute\n"
      "        algorithm: fixed_window\n"
      "        limit: 10\n"
      "        window: 60s\n"
      "        shadow: true\n";
  const PolicySpec original = parse_or_die(text);
  PolicySpec edited = original;
  edited.resources[0].limits[0].shadow = false;
  edited.resources[0].limits[0].burst = 0;
  edited.resources[0].limits[0].unit = "tokens";
  const PolicyTextEdit out = edit_policy_text(text, original, edited);
  ASSERT_TRUE(out.in_place);
  EXPECT_TRUE(out.notes.empty());
  EXPECT_EQ(parse_or_die(out.text), edited);
  EXPECT_EQ(out.text,
            "default_tier: free\n"
            "tiers:\n"
            "  free: {}\n"
            "resources:\n"
            "  predict:\n"
            "    limits:\n"
            "      - name: m        # per minute\n"
            "        algorithm: fixed_window\n"
            "        limit: 10\n"
            "        window: 60s\n"
            "        cost: tokens\n");
}

// Text that is not the policy the draft started from is not patched: the draft is written
// anew, and the user is told why.
TEST(PolicyTextEdit, FallsBackWhenTheTextIsNotTheOriginal) {
  const std::string text = shipped_text("ml-api.yaml");
  const PolicySpec original = parse_or_die(text);
  PolicySpec other = original;
  tier(other, "premium").multiplier = 7;
  PolicySpec edited = other;
  edited.default_tier = "premium";
  const PolicyTextEdit out = edit_policy_text(text, other, edited);
  EXPECT_FALSE(out.in_place);
  EXPECT_EQ(out.text, policy_to_yaml(edited));
  ASSERT_EQ(out.notes.size(), 1u);
  EXPECT_NE(out.notes[0].find("comments"), std::string::npos);
}

// Anchors and aliases make one node stand for several places: written anew.
TEST(PolicyTextEdit, FallsBackOnAliases) {
  const std::string text =
      "default_tier: free\n"
      "tiers:\n"
      "  free: {multiplier: 1}\n"
      "resources:\n"
      "  a: {limits: &l [{name: m, algorithm: fixed_window, limit: 10, window: 1m}]}\n"
      "  b: {limits: *l}\n";
  const PolicySpec original = parse_or_die(text);
  PolicySpec edited = original;
  edited.resources[0].limits[0].limit = 11;
  const PolicyTextEdit out = edit_policy_text(text, original, edited);
  EXPECT_FALSE(out.in_place);
  EXPECT_EQ(parse_or_die(out.text), edited);
}

// Every edit of every case, made at once on text without a final newline and with non-ASCII
// descriptions: still read back as the edited spec.
TEST(PolicyTextEdit, NonAsciiTextAndNoFinalNewline) {
  const std::string text =
      "default_tier: free\n"
      "tiers:\n"
      "  free:\n"
      "    description: Gäste → anonyme Aufrufer\n"
      "    multiplier: 1\n"
      "resources:\n"
      "  predict:\n"
      "    description: “quoted” ünïcode\n"
      "    limits: [{name: m, algorithm: fixed_window, limit: 10, window: 60s}]";
  const PolicySpec original = parse_or_die(text);
  PolicySpec edited = original;
  edited.resources[0].limits[0].limit = 11;
  tier(edited, "free").multiplier = 2;
  ResourceSpec r;
  r.name = "other";
  r.limits.push_back(limit("m", 1, 1000));
  edited.resources.push_back(r);
  const PolicyTextEdit out = edit_policy_text(text, original, edited);
  ASSERT_TRUE(out.in_place);
  EXPECT_EQ(parse_or_die(out.text), edited);
  EXPECT_NE(out.text.find("    description: Gäste → anonyme Aufrufer\n    multiplier: 2\n"),
            std::string::npos)
      << out.text;
  EXPECT_NE(out.text.find("limit: 11, window: 60s}]\n  other:\n"), std::string::npos) << out.text;
}

}  // namespace
}  // namespace sluice
