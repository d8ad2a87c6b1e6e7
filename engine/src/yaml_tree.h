// A YAML document as a compact, read-only tree for the policy reader.
//
// yaml-cpp's node tree (YAML::Load) costs about 63 bytes of heap per byte of YAML and seconds
// for a policy of 100,000 resources, and yaml-cpp's parser alone takes 1.6 s of that. This
// tree is built from libyaml's events (0.2 s) and keeps what the reader looks at: each node's
// kind, its place, a scalar's text and whether it was quoted; 20 bytes a node in one array,
// the scalars' text in one string, the children of every list and map as one range of a
// shared index array.
//
// The tree is the one yaml-cpp's events would give, with yaml-cpp's places (line and byte
// column, lines broken at '\n' only) and yaml-cpp's idea of null and of quoting. Text that
// libyaml refuses (a syntax error, invalid UTF-8, control characters, deep nesting), and text
// that uses what the two parsers read differently and policies do not need (tags, anchors,
// explicit keys, a second document, ...; see parse_with_libyaml), is read by yaml-cpp alone:
// it is accepted, or refused with yaml-cpp's message and place, as before libyaml was used.
// tests/fuzz/fuzz_yaml_tree.cpp checks that both ways give the same.
#pragma once

#include <yaml-cpp/mark.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::policy_detail {

class YamlTree {
 public:
  enum class Kind : uint8_t { kNull, kScalar, kSequence, kMap };
  using NodeId = uint32_t;

  struct Node {
    Kind kind;
    // A scalar in quotes, a block scalar, or one tagged "!": text, never a number or a bool
    // (yaml-cpp's non-specific tag "!").
    bool quoted;
    int32_t line;  // 0-based, as in YAML::Mark
    int32_t column;
    // A scalar: its bytes in text_. A list: its items in children_. A map: its keys and values
    // in children_, alternating.
    uint32_t begin;
    uint32_t size;
  };

  // Reads the first document of `text` and notes where a second one starts. Throws
  // YAML::Exception, with yaml-cpp's message and mark, for text yaml-cpp cannot read.
  static YamlTree parse(std::string_view text);
  // The same with yaml-cpp's parser only: what parse() falls back to. For tests that compare
  // the two.
  static YamlTree parse_with_yaml_cpp(std::string_view text);

  // No document at all (empty text, only comments).
  bool empty() const { return nodes_.empty(); }
  // Where a second document starts, if the text has one.
  const std::optional<YAML::Mark>& second_document() const { return second_document_; }
  // Whether libyaml read the text (else yaml-cpp did, for one of the reasons above).
  bool read_by_libyaml() const { return read_by_libyaml_; }

  const Node& root() const { return nodes_.front(); }
  const Node& node(NodeId id) const { return nodes_[id]; }
  NodeId id_of(const Node& n) const { return static_cast<NodeId>(&n - nodes_.data()); }
  size_t node_count() const { return nodes_.size(); }

  std::string_view scalar(const Node& n) const {
    return n.kind == Kind::kScalar ? std::string_view(text_).substr(n.begin, n.size)
                                   : std::string_view();
  }
  // Items of a list; entries of a map (key, value, key, value, ...). An alias is the node it
  // names, so a node may be the child of several parents.
  size_t child_count(const Node& n) const { return n.kind >= Kind::kSequence ? n.size : 0; }
  const Node& child(const Node& n, size_t i) const { return nodes_[children_[n.begin + i]]; }
  size_t pair_count(const Node& map) const { return child_count(map) / 2; }
  const Node& key(const Node& map, size_t i) const { return child(map, 2 * i); }
  const Node& value(const Node& map, size_t i) const { return child(map, 2 * i + 1); }

  static YAML::Mark mark(const Node& n) {
    YAML::Mark m;
    m.line = n.line;
    m.column = n.column;
    return m;
  }

 private:
  friend class YamlTreeBuilder;

  std::vector<Node> nodes_;  // the root first
  std::string text_;
  std::vector<NodeId> children_;
  std::optional<YAML::Mark> second_document_;
  bool read_by_libyaml_ = false;
};

}  // namespace sluice::policy_detail
