// Fuzz target: the policy reader's YAML tree. Whatever the bytes, reading them with libyaml
// (falling back to yaml-cpp) gives what yaml-cpp alone gives: the same tree, places, second
// document, or the same error.
#include <yaml-cpp/exceptions.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "yaml_tree.h"

namespace {

using sluice::policy_detail::YamlTree;

// A missing value in a map (`key:`) is placed at its key by the policy reader, so where the
// parsers put the null itself does not matter (and yaml-cpp's choice depends on tokens that
// libyaml's events do not show).
bool same(const YamlTree& a, const YamlTree::Node& x, const YamlTree& b, const YamlTree::Node& y,
          int depth, bool map_value) {
  const bool placed = !(map_value && x.kind == YamlTree::Kind::kNull);
  if (x.kind != y.kind || x.quoted != y.quoted || a.scalar(x) != b.scalar(y) ||
      a.child_count(x) != b.child_count(y) ||
      (placed && (x.line != y.line || x.column != y.column))) {
    return false;
  }
  if (depth > 16) return true;  // a recursive alias
  const bool map = x.kind == YamlTree::Kind::kMap;
  for (size_t i = 0; i < a.child_count(x); ++i) {
    if (!same(a, a.child(x, i), b, b.child(y, i), depth + 1, map && i % 2 == 1)) return false;
  }
  return true;
}

// The tree, or yaml-cpp's error as "line:column message".
struct Outcome {
  std::optional<YamlTree> tree;
  std::string error;
};

template <typename Parse>
Outcome read(Parse parse, std::string_view text) {
  try {
    return {parse(text), ""};
  } catch (const YAML::Exception& e) {
    return {std::nullopt,
            std::to_string(e.mark.line) + ":" + std::to_string(e.mark.column) + " " + e.msg};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1 << 16) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // The policy reader refuses NUL bytes before any parser sees them.
  if (text.find('\0') != std::string_view::npos) return 0;
  const Outcome mixed = read(&YamlTree::parse, text);
  const Outcome alone = read(&YamlTree::parse_with_yaml_cpp, text);
  if (mixed.error != alone.error || mixed.tree.has_value() != alone.tree.has_value()) {
    __builtin_trap();
  }
  if (!mixed.tree) return 0;
  const YamlTree& a = *mixed.tree;
  const YamlTree& b = *alone.tree;
  const auto second = [](const YamlTree& t) {
    return t.second_document()
               ? std::make_pair(t.second_document()->line, t.second_document()->column)
               : std::make_pair(-1, -1);
  };
  if (a.empty() != b.empty() || second(a) != second(b)) __builtin_trap();
  if (!a.empty() && !same(a, a.root(), b, b.root(), 0, false)) __builtin_trap();
  return 0;
}
