// The policy reader's YAML tree: read with libyaml, it must be the tree yaml-cpp's events give
// (the reader's behaviour before libyaml): the same nodes, text, quoting, places and second
// document, and text yaml-cpp refuses is refused with yaml-cpp's message and place.
#include <gtest/gtest.h>
#include <yaml-cpp/exceptions.h>

#include <string>
#include <vector>

#include "yaml_tree.h"

namespace sluice::policy_detail {
namespace {

std::string describe(const YamlTree& tree, const YamlTree::Node& n, int depth = 0) {
  std::string out = std::to_string(static_cast<int>(n.kind)) + (n.quoted ? "q" : "") + "@" +
                    std::to_string(n.line) + ":" + std::to_string(n.column);
  if (depth > 8) return out + "...";  // a recursive alias
  if (n.kind == YamlTree::Kind::kScalar) return out + "'" + std::string(tree.scalar(n)) + "'";
  if (tree.child_count(n) == 0) return out;
  out += "(";
  for (size_t i = 0; i < tree.child_count(n); ++i) {
    if (i > 0) out += ",";
    out += describe(tree, tree.child(n, i), depth + 1);
  }
  return out + ")";
}

// The tree, its second document or yaml-cpp's error, as text to compare.
template <typename Parse>
std::string outcome(Parse parse, const std::string& text) {
  try {
    const YamlTree tree = parse(text);
    std::string out = tree.empty() ? "empty" : describe(tree, tree.root());
    if (const auto& second = tree.second_document()) {
      out += " second@" + std::to_string(second->line) + ":" + std::to_string(second->column);
    }
    return out;
  } catch (const YAML::Exception& e) {
    return "error@" + std::to_string(e.mark.line) + ":" + std::to_string(e.mark.column) + " " +
           e.msg;
  }
}

TEST(YamlTree, LibyamlGivesYamlCppsTree) {
  const std::vector<std::string> documents = {
      "",
      "# only a comment\n",
      "~",
      "---\n",
      "version: 1\ndefault_tier: free\ntiers:\n  free: {multiplier: 1}\n"
      "  premium: {multiplier: 5, overrides: {predict: {limits: {per_minute: 60}}}}\n"
      "api_keys:\n  premium-user-key: premium\nresources:\n  predict:\n    limits:\n"
      "      - {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}\n",
      // Block lists, indented and not, and items that are maps.
      "resources:\n  p:\n    limits:\n    - name: a\n      limit: 1\n    -   name: b\n",
      "a:\n  - x\n  -\n  - - y\n    - z\n",
      // Quoting and tags: only an untagged non-plain scalar, or the tag "!", is quoted.
      "a: \"10\"\nb: '10'\nc: 10\nd: !!str 10\ne: ! 10\nf: |\n  text\ng: >\n  folded\n  text\n",
      "h: !!binary xyz\ni: !custom {x: 1}\nj: !!str\nk: ''\n",
      // yaml-cpp's nulls, and what only looks like one.
      "a:\nb: ~\nc: null\nd: Null\ne: NULL\nf: \"null\"\ng: nil\nh: [~, , null]\n",
      "{a, b: , : c}\n",
      "[a: 1, b]\n",
      "? [a, b]\n: c\n",
      // Anchors and aliases, a redefined anchor, an alias to an open node.
      "a: &x {k: 1}\nb: *x\nc: &x [2]\nd: *x\n",
      "&a [*a]",
      // Places after multi-byte characters, tabs, CRLF, a byte order mark, '\r' alone.
      "a: {d: \"\xC3\xA9\xC3\xA9\", x: 1}\n\xE2\x82\xAC: [\xF0\x9F\x98\x80, y]\n",
      "a:\t{b: 1}\r\nc: [1,\r\n  2]\r\n",
      "\xEF\xBB\xBF"
      "a: 1\nb: {c: 2}\n",
      "a: 'x\ry'\nb: 2\n",
      "a: 'x\r\n  y'\nb: \"p\r\n\r\n  q\"\nc: |\r\n  l1\r\n  l2\r\n",
      "a: \"x\xC2\x85y\"\n",
      // Empty items and keys.
      "a:\n  -\n  -\nb:\n- \n- x\n-\n",
      "- [a, {b: }]\n-\n",
      ": c\n",
      "{: c, d: }\n",
      "a: &n\nb: *n\nc: !!null\n",
      // Multi-line scalars and comments.
      "a: one\n  two\n  three # c\nb: \"x\n  y\"\n",
      // A folded scalar whose text ends in a line of spaces and no line break (fuzzing found
      // libyaml reading it otherwise).
      "Fc: >\n -:\n ",
      "Fc:\n >\n x\n ",
      // Documents.
      "--- # the policy\na: 1\n...\n",
      "a: 1\n---\nb: 2\n",
      "a: 1\n...\n--- {b: 2}\n",
      "a: 1\n--- [\n",
      "%YAML 1.1\n---\na: 1\n",
      // Refused by one parser or both.
      "default_tier: free\ntiers: {free: {}\nresources: {}\n",
      "default_tier: free\n tiers: {}\n",
      "a: *nowhere\n",
      "a: {d: \"\xFF\"}\n",
      "a: b\x01\n",
      "[[[[",
      "\t\tbad",
      "a: [1, 2\n",
      "a: 1\na: 2\n",
  };
  for (const auto& text : documents) {
    EXPECT_EQ(outcome(&YamlTree::parse, text), outcome(&YamlTree::parse_with_yaml_cpp, text))
        << "text: " << text;
  }
}

TEST(YamlTree, PoliciesAreReadByLibyaml) {
  // The fast path is the usual one: what policies are written with stays on it.
  for (const std::string& text :
       {std::string("version: 1\ndefault_tier: free\ntiers:\n  free:\n  pro: {multiplier: 5}\n"
                    "resources:\n  p:\n    description: \"caf\xC3\xA9, 'quoted'\"\n"
                    "    limits:\n    - name: a\n      limit: 10\n"
                    "    - {name: b, window: 1m}  # a comment\n"
                    "    warmup: {factor: 0.5, ramp: true}\n"),
        std::string("--- # the policy\r\na: |\r\n  text\r\nb: [1, 2, 3]\r\n...\r\n"),
        std::string("why: is it? yes\n")}) {
    EXPECT_TRUE(YamlTree::parse(text).read_by_libyaml()) << text;
  }
  for (const char* text : {"a: &x 1\nb: *x\n", "a: !!str 1\n", "%YAML 1.1\n---\na: 1\n",
                           "? a\n: 1\n", "a: 1\n---\nb: 2\n", "a: {b: 1,\n    c: 2}\n",
                           "\xEF\xBB\xBF"
                           "a: 1\n",
                           "a: 'x\ry'\n"}) {
    EXPECT_FALSE(YamlTree::parse(text).read_by_libyaml()) << text;
  }
}

TEST(YamlTree, DeepNestingIsYamlCppsError) {
  // libyaml would nest without end; yaml-cpp refuses, as it always has for the policy.
  for (const std::string& text :
       {std::string(100'000, '['), std::string(1000, '[') + std::string(1000, ']')}) {
    EXPECT_EQ(outcome(&YamlTree::parse, text), outcome(&YamlTree::parse_with_yaml_cpp, text));
    EXPECT_EQ(outcome(&YamlTree::parse, text).rfind("error@", 0), 0u);
  }
  const std::string nested_ok = std::string(40, '[') + std::string(40, ']');
  EXPECT_EQ(outcome(&YamlTree::parse, nested_ok),
            outcome(&YamlTree::parse_with_yaml_cpp, nested_ok));
}

TEST(YamlTree, ChildrenAreRangesAndAliasesShareTheirNode) {
  const YamlTree tree = YamlTree::parse("a: &x [1, {b: 2}]\nc: *x\n");
  const YamlTree::Node& root = tree.root();
  ASSERT_EQ(tree.pair_count(root), 2u);
  EXPECT_EQ(tree.scalar(tree.key(root, 1)), "c");
  EXPECT_EQ(&tree.value(root, 0), &tree.value(root, 1));
  const YamlTree::Node& list = tree.value(root, 0);
  ASSERT_EQ(tree.child_count(list), 2u);
  EXPECT_EQ(tree.scalar(tree.child(list, 0)), "1");
  EXPECT_EQ(tree.scalar(tree.value(tree.child(list, 1), 0)), "2");
}

}  // namespace
}  // namespace sluice::policy_detail
