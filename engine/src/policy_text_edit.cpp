// In-place editing of a policy's YAML text (sluice/policy_text_edit.h).
//
// The edit is found on canonical text, where it is easy to see, and made on the operator's
// text, where it matters. policy_to_yaml(original) and policy_to_yaml(edited) spell equal
// values alike, so where their trees differ is exactly what the user changed. Both are walked
// alongside the tree of the original text, which names the same things by the same keys and
// holds the list items in the same order (the spec keeps document order), but may spell values
// differently, omit defaults, or add keys the canonical text leaves out. Every difference
// becomes a byte edit of the original text; the result is parsed back and compared with the
// edited spec before it is trusted.
#include "sluice/policy_text_edit.h"

#include <yaml.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sluice {
namespace {

// ---- a YAML tree with byte places ---------------------------------------------------------

struct Node {
  enum class Kind : uint8_t { kScalar, kSequence, kMap };
  Kind kind = Kind::kScalar;
  bool flow = false;          // a collection written as [...] or {...}
  bool plain = true;          // a scalar without quotes
  bool block_scalar = false;  // a scalar written with | or >
  // Bytes of the node: a scalar with its quotes; a flow collection with its brackets; a block
  // collection from its first key or '-' to the end of its last entry's content.
  size_t begin = 0;
  size_t end = 0;
  std::string value;               // a scalar's value
  std::vector<uint32_t> children;  // a list's items; a map's key, value, key, value, ...
};

class Document {
 public:
  // nullopt for text libyaml refuses, several documents, no document, and for anchors,
  // aliases and tags: text where one node may stand for several places is not edited in place.
  static std::optional<Document> read(std::string_view text);

  const std::string& text() const { return text_; }
  const Node& root() const { return nodes_.front(); }
  const Node& at(uint32_t id) const { return nodes_[id]; }
  std::string_view raw(const Node& n) const {
    return std::string_view(text_).substr(n.begin, n.end - n.begin);
  }
  size_t count(const Node& n) const {
    return n.kind == Node::Kind::kMap ? n.children.size() / 2 : n.children.size();
  }
  const Node& key(const Node& map, size_t i) const { return at(map.children[2 * i]); }
  const Node& value(const Node& map, size_t i) const { return at(map.children[2 * i + 1]); }
  const Node& item(const Node& seq, size_t i) const { return at(seq.children[i]); }
  std::optional<size_t> find(const Node& map, std::string_view key_value) const {
    for (size_t i = 0; i < count(map); ++i) {
      if (key(map, i).kind == Node::Kind::kScalar && key(map, i).value == key_value) return i;
    }
    return std::nullopt;
  }

 private:
  std::string text_;
  std::vector<Node> nodes_;  // the root first
};

class Parser {
 public:
  Parser() { yaml_parser_initialize(&parser_); }
  ~Parser() { yaml_parser_delete(&parser_); }
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;
  yaml_parser_t* get() { return &parser_; }

 private:
  yaml_parser_t parser_;
};

class Event {
 public:
  ~Event() {
    if (filled_) yaml_event_delete(&event_);
  }
  bool next(yaml_parser_t* parser) {
    if (filled_) yaml_event_delete(&event_);
    filled_ = yaml_parser_parse(parser, &event_) != 0;
    return filled_;
  }
  const yaml_event_t& operator*() const { return event_; }
  const yaml_event_t* operator->() const { return &event_; }

 private:
  yaml_event_t event_{};
  bool filled_ = false;
};

std::optional<Document> Document::read(std::string_view text) {
  Document doc;
  doc.text_ = std::string(text);
  // libyaml counts places in characters; the edits are made on bytes.
  std::vector<size_t> byte_of_char;
  byte_of_char.reserve(text.size() + 1);
  for (size_t b = 0; b < text.size(); ++b) {
    if ((static_cast<unsigned char>(text[b]) & 0xc0) != 0x80) byte_of_char.push_back(b);
  }
  byte_of_char.push_back(text.size());
  auto byte_at = [&](const yaml_mark_t& m) {
    return m.index < byte_of_char.size() ? byte_of_char[m.index] : text.size();
  };

  Parser parser;
  yaml_parser_set_input_string(parser.get(), reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  std::vector<uint32_t> open;
  int documents = 0;
  auto attach = [&](uint32_t id) {
    if (!open.empty()) doc.nodes_[open.back()].children.push_back(id);
  };
  Event e;
  while (true) {
    if (!e.next(parser.get())) return std::nullopt;
    switch (e->type) {
      case YAML_STREAM_END_EVENT:
        if (doc.nodes_.empty()) return std::nullopt;
        return doc;
      case YAML_DOCUMENT_START_EVENT:
        if (++documents > 1) return std::nullopt;
        break;
      case YAML_ALIAS_EVENT:
        return std::nullopt;
      case YAML_SCALAR_EVENT: {
        if (e->data.scalar.anchor != nullptr || e->data.scalar.tag != nullptr) return std::nullopt;
        Node n;
        n.kind = Node::Kind::kScalar;
        n.plain = e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n.block_scalar = e->data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
                         e->data.scalar.style == YAML_FOLDED_SCALAR_STYLE;
        n.begin = byte_at(e->start_mark);
        n.end = byte_at(e->end_mark);
        n.value.assign(reinterpret_cast<const char*>(e->data.scalar.value), e->data.scalar.length);
        doc.nodes_.push_back(std::move(n));
        attach(static_cast<uint32_t>(doc.nodes_.size() - 1));
        break;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT: {
        const bool seq = e->type == YAML_SEQUENCE_START_EVENT;
        const auto* anchor = seq ? e->data.sequence_start.anchor : e->data.mapping_start.anchor;
        const auto* tag = seq ? e->data.sequence_start.tag : e->data.mapping_start.tag;
        if (anchor != nullptr || tag != nullptr) return std::nullopt;
        Node n;
        n.kind = seq ? Node::Kind::kSequence : Node::Kind::kMap;
        n.flow = seq ? e->data.sequence_start.style == YAML_FLOW_SEQUENCE_STYLE
                     : e->data.mapping_start.style == YAML_FLOW_MAPPING_STYLE;
        n.begin = byte_at(e->start_mark);
        doc.nodes_.push_back(std::move(n));
        const auto id = static_cast<uint32_t>(doc.nodes_.size() - 1);
        attach(id);
        open.push_back(id);
        break;
      }
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT: {
        Node& n = doc.nodes_[open.back()];
        if (n.flow) {
          n.end = byte_at(e->end_mark);
        } else {
          // A block collection ends where libyaml sees the next token, past comments and
          // blank lines; its content ends with its last child's.
          n.end = n.begin;
          for (uint32_t c : n.children) n.end = std::max(n.end, doc.nodes_[c].end);
        }
        open.pop_back();
        break;
      }
      default:
        break;
    }
  }
}

// Same value, spelled alike: only for trees of canonical text (policy_to_yaml's).
bool same(const Document& da, const Node& a, const Document& db, const Node& b) {
  if (a.kind != b.kind) return false;
  if (a.kind == Node::Kind::kScalar) return da.raw(a) == db.raw(b);
  if (a.flow != b.flow || a.children.size() != b.children.size()) return false;
  for (size_t i = 0; i < a.children.size(); ++i) {
    if (!same(da, da.at(a.children[i]), db, db.at(b.children[i]))) return false;
  }
  return true;
}

// ---- writing new nodes --------------------------------------------------------------------

std::string double_quoted(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

// A scalar of the canonical text as it may be written on one line, in a flow collection or
// not. The canonical spelling is kept unless it spans lines or, inside [...] or {...}, would
// read a ',' or a bracket as the end of the value.
std::string scalar_text(const Document& d, const Node& n, bool in_flow) {
  const std::string_view raw = d.raw(n);
  if (n.block_scalar || raw.find('\n') != std::string_view::npos) return double_quoted(n.value);
  if (in_flow && n.plain && raw.find_first_of(",[]{}") != std::string_view::npos) {
    return double_quoted(n.value);
  }
  return std::string(raw);
}

std::string flow_text(const Document& d, const Node& n) {
  switch (n.kind) {
    case Node::Kind::kScalar:
      return scalar_text(d, n, true);
    case Node::Kind::kSequence: {
      std::string out = "[";
      for (size_t i = 0; i < d.count(n); ++i) {
        if (i > 0) out += ", ";
        out += flow_text(d, d.item(n, i));
      }
      return out + "]";
    }
    case Node::Kind::kMap: {
      std::string out = "{";
      for (size_t i = 0; i < d.count(n); ++i) {
        if (i > 0) out += ", ";
        out += flow_text(d, d.key(n, i)) + ": " + flow_text(d, d.value(n, i));
      }
      return out + "}";
    }
  }
  return {};
}

// Written as indented lines (what policy_to_yaml writes that way): a non-empty block
// collection.
bool is_block(const Node& n) {
  return n.kind != Node::Kind::kScalar && !n.flow && !n.children.empty();
}

void block_body(std::string& out, const Document& d, const Node& n, size_t indent);

void block_entry(std::string& out, const Document& d, const Node& key, const Node& value,
                 size_t indent) {
  out.append(indent, ' ');
  out += scalar_text(d, key, false);
  out += ':';
  if (is_block(value)) {
    out += '\n';
    block_body(out, d, value, indent + 2);
  } else {
    out += ' ';
    out += value.kind == Node::Kind::kScalar ? scalar_text(d, value, false) : flow_text(d, value);
    out += '\n';
  }
}

void block_item(std::string& out, const Document& d, const Node& item, size_t indent) {
  if (is_block(item)) {
    // The item's first line carries the dash: "- name: x" over "  limit: 5".
    std::string body;
    block_body(body, d, item, indent + 2);
    body.replace(0, indent + 2, std::string(indent, ' ') + "- ");
    out += body;
    return;
  }
  out.append(indent, ' ');
  out += "- ";
  out += item.kind == Node::Kind::kScalar ? scalar_text(d, item, false) : flow_text(d, item);
  out += '\n';
}

void block_body(std::string& out, const Document& d, const Node& n, size_t indent) {
  for (size_t i = 0; i < d.count(n); ++i) {
    if (n.kind == Node::Kind::kMap) {
      block_entry(out, d, d.key(n, i), d.value(n, i), indent);
    } else {
      block_item(out, d, d.item(n, i), indent);
    }
  }
}

// ---- the editor ---------------------------------------------------------------------------

class Editor {
 public:
  Editor(const Document& text, const Document& before, const Document& after)
      : o_(text), b_(before), a_(after), t_(text.text()) {}

  bool run() {
    Place root;
    root.root = true;
    return patch(o_.root(), b_.root(), a_.root(), root);
  }

  // The original text with the edits made; nullopt when two edits overlap.
  std::optional<std::string> result() const {
    std::vector<const Edit*> order;
    order.reserve(edits_.size());
    for (const auto& e : edits_) order.push_back(&e);
    // Insertions before a replacement at the same place (what is inserted before a removed
    // entry stays); otherwise in the order they were made, which is document order.
    std::stable_sort(order.begin(), order.end(), [](const Edit* x, const Edit* y) {
      if (x->begin != y->begin) return x->begin < y->begin;
      return (x->end > x->begin) < (y->end > y->begin);
    });
    std::string out;
    size_t pos = 0;
    for (const Edit* e : order) {
      if (e->begin < pos) {
        if (e->end <= pos) continue;  // inside text already replaced (a removed entry)
        return std::nullopt;
      }
      out.append(t_, pos, e->begin - pos);
      out += e->text;
      pos = e->end;
    }
    out.append(t_, pos, std::string::npos);
    return out;
  }

  const std::vector<std::string>& notes() const { return notes_; }

 private:
  struct Edit {
    size_t begin, end;
    std::string text;
  };

  // Where a node of the original text stands.
  struct Place {
    bool root = false;
    bool in_flow = false;                    // inside [...] or {...}
    size_t after_colon = std::string::npos;  // a map value: just past its key's ':'
    size_t child_indent = 0;                 // indentation for a block written under its key
    bool ordered = false;                    // a map whose order is part of the spec
    std::string path;                        // for notes: "resources.generate.limits"
  };

  // ---- lines of the original text

  size_t line_start(size_t off) const {
    const size_t nl = off == 0 ? std::string::npos : t_.rfind('\n', off - 1);
    return nl == std::string::npos ? 0 : nl + 1;
  }
  // The start of the line after the one holding byte `off`.
  size_t next_line(size_t off) const {
    const size_t nl = t_.find('\n', off);
    return nl == std::string::npos ? t_.size() : nl + 1;
  }
  size_t column(size_t off) const { return off - line_start(off); }
  bool first_on_line(size_t off) const {
    for (size_t i = line_start(off); i < off; ++i) {
      if (t_[i] != ' ') return false;
    }
    return true;
  }
  // The comment lines right above a line that starts at `line`, indented like `col`: they
  // belong to what follows them and go when it goes.
  size_t with_comments_above(size_t line, size_t col) const {
    while (line > 0) {
      const size_t prev = line_start(line - 1);
      size_t i = prev;
      while (i < line && t_[i] == ' ') ++i;
      if (i - prev != col || i >= line || t_[i] != '#') break;
      line = prev;
    }
    return line;
  }

  // ---- entries (a map's key and value, a list's item)

  size_t entry_begin(const Node& coll, size_t i) const {
    if (coll.kind == Node::Kind::kMap) return o_.key(coll, i).begin;
    const Node& item = o_.item(coll, i);
    if (coll.flow) return item.begin;
    // A block item starts at its dash.
    size_t p = item.begin;
    while (p > 0 && t_[p - 1] == ' ') --p;
    return p > 0 && t_[p - 1] == '-' ? p - 1 : std::string::npos;
  }
  size_t entry_end(const Node& coll, size_t i) const {
    if (coll.kind == Node::Kind::kMap) return std::max(o_.key(coll, i).end, o_.value(coll, i).end);
    return o_.item(coll, i).end;
  }
  // The lines of a block entry, with its comments: [begin, end).
  std::optional<std::pair<size_t, size_t>> entry_lines(const Node& coll, size_t i) const {
    const size_t b = entry_begin(coll, i);
    if (b == std::string::npos || !first_on_line(b)) return std::nullopt;
    const size_t e = entry_end(coll, i);
    return std::pair{with_comments_above(line_start(b), column(b)), next_line(e > b ? e - 1 : b)};
  }

  bool remove_entry(const Node& coll, size_t i) {
    const size_t n = o_.count(coll);
    if (coll.flow) {
      if (n == 1) {
        edit(entry_begin(coll, i), entry_end(coll, i), "");
      } else if (i + 1 < n) {
        edit(entry_begin(coll, i), entry_begin(coll, i + 1), "");
      } else {
        edit(entry_end(coll, i - 1), entry_end(coll, i), "");
      }
      return true;
    }
    const auto lines = entry_lines(coll, i);
    if (!lines) return false;
    edit(lines->first, lines->second, "");
    return true;
  }

  // Inserts the canonical entry (key may be null for a list item) after the original entry
  // `after`, or before the first one.
  bool insert_entry(const Node& coll, std::optional<size_t> after, const Node* key,
                    const Node& value) {
    if (o_.count(coll) == 0) return false;
    if (coll.flow) {
      std::string text =
          key ? flow_text(a_, *key) + ": " + flow_text(a_, value) : flow_text(a_, value);
      if (after) {
        edit(entry_end(coll, *after), entry_end(coll, *after), ", " + text);
      } else {
        edit(entry_begin(coll, 0), entry_begin(coll, 0), text + ", ");
      }
      return true;
    }
    const size_t first = entry_begin(coll, 0);
    if (first == std::string::npos) return false;
    const size_t indent = column(first);
    std::string text;
    if (key) {
      block_entry(text, a_, *key, value, indent);
    } else {
      block_item(text, a_, value, indent);
    }
    size_t at;
    if (after) {
      const size_t e = entry_end(coll, *after);
      at = next_line(e - 1);
    } else {
      const auto lines = entry_lines(coll, 0);
      if (!lines) return false;
      at = lines->first;
    }
    if (at == t_.size() && !t_.empty() && t_.back() != '\n') text.insert(0, "\n");
    edit(at, at, std::move(text));
    return true;
  }

  // ---- whole nodes

  // Writes the canonical `n` where the original `o` stands.
  bool replace(const Node& o, const Node& n, const Place& place) {
    if (o.kind == Node::Kind::kScalar && o.block_scalar) return false;
    if (o.kind == Node::Kind::kScalar || o.flow) {
      if (!place.in_flow && is_block(n) && place.after_colon != std::string::npos) {
        std::string body;
        block_body(body, a_, n, place.child_indent);
        edit(place.after_colon, o.end, "");
        const size_t at = next_line(std::max(o.end, place.after_colon));
        if (at == t_.size() && !t_.empty() && t_.back() != '\n') body.insert(0, "\n");
        edit(at, at, std::move(body));
        return true;
      }
      std::string text = place.in_flow || n.kind != Node::Kind::kScalar ? flow_text(a_, n)
                                                                        : scalar_text(a_, n, false);
      if (o.begin == o.end && o.begin > 0 && t_[o.begin - 1] == ':') text.insert(0, " ");
      edit(o.begin, o.end, std::move(text));
      return true;
    }
    // A block collection: its lines.
    if (place.root || !first_on_line(o.begin)) return false;
    const size_t from = line_start(o.begin);
    const size_t to = next_line(o.end > o.begin ? o.end - 1 : o.begin);
    if (is_block(n)) {
      std::string body;
      block_body(body, a_, n, column(o.begin));
      edit(from, to, std::move(body));
      return true;
    }
    if (place.after_colon == std::string::npos) return false;
    edit(from, to, "");
    edit(place.after_colon, place.after_colon, " " + flow_text(a_, n));
    return true;
  }

  bool patch(const Node& o, const Node& before, const Node& after, const Place& place) {
    if (same(b_, before, a_, after)) return true;
    if (after.kind == Node::Kind::kScalar || before.kind != after.kind || o.kind != before.kind ||
        after.children.empty() || o.children.empty()) {
      return replace(o, after, place);
    }
    const size_t edits = edits_.size();
    const size_t notes = notes_.size();
    const bool done = o.kind == Node::Kind::kMap ? patch_map(o, before, after, place)
                                                 : patch_list(o, before, after, place);
    if (done) return true;
    edits_.resize(edits);
    notes_.resize(notes);
    if (!replace(o, after, place)) return false;
    notes_.push_back(place.path + " was rewritten as a whole: comments inside it are not kept");
    return true;
  }

  Place child_place(const Node& o, const Place& place, size_t i) const {
    Place p;
    p.in_flow = place.in_flow || o.flow;
    if (o.kind == Node::Kind::kMap) {
      const Node& key = o_.key(o, i);
      p.path = place.root ? key.value : place.path + "." + key.value;
      // The spec keeps tiers and resources in the order the text lists them.
      p.ordered = place.root && (key.value == "tiers" || key.value == "resources");
      const size_t colon = t_.find(':', key.end);
      if (colon != std::string::npos && colon <= o_.value(o, i).begin) p.after_colon = colon + 1;
      p.child_indent = column(key.begin) + 2;
    } else {
      p.path = place.path + "[" + std::to_string(i) + "]";
    }
    return p;
  }

  bool patch_map(const Node& o, const Node& before, const Node& after, const Place& place) {
    for (size_t i = 0; i < o_.count(o); ++i) {
      if (o_.key(o, i).kind != Node::Kind::kScalar) return false;
      if (o_.find(o, o_.key(o, i).value) != i) return false;  // a key written twice
    }
    // A key that goes while another with the same value comes is a rename (a model, a tier):
    // only the key is rewritten, so the entry keeps its comments and spellings.
    std::map<std::string, std::string> renamed;  // new key -> the original key it renames
    std::vector<bool> taken(b_.count(before), false);
    for (size_t i = 0; i < a_.count(after); ++i) {
      const std::string& k = a_.key(after, i).value;
      if (b_.find(before, k) || o_.find(o, k)) continue;
      for (size_t j = 0; j < b_.count(before); ++j) {
        const std::string& old_key = b_.key(before, j).value;
        if (taken[j] || a_.find(after, old_key) || !o_.find(o, old_key) ||
            !same(b_, b_.value(before, j), a_, a_.value(after, i))) {
          continue;
        }
        taken[j] = true;
        renamed[k] = old_key;
        break;
      }
    }
    for (size_t i = 0; i < b_.count(before); ++i) {
      const std::string& k = b_.key(before, i).value;
      if (a_.find(after, k) || taken[i]) continue;
      if (const auto oi = o_.find(o, k); oi && !remove_entry(o, *oi)) return false;
    }
    std::optional<size_t> anchor;  // the original entry the next new one goes after
    for (size_t i = 0; i < a_.count(after); ++i) {
      const Node& key = a_.key(after, i);
      const Node& value = a_.value(after, i);
      if (const auto r = renamed.find(key.value); r != renamed.end()) {
        const size_t oi = *o_.find(o, r->second);
        if (place.ordered && anchor && oi < *anchor) return false;
        const Node& old_key = o_.key(o, oi);
        edit(old_key.begin, old_key.end, scalar_text(a_, key, place.in_flow || o.flow));
        if (!anchor || oi > *anchor || place.ordered) anchor = oi;
        continue;
      }
      const auto oi = o_.find(o, key.value);
      const auto bi = b_.find(before, key.value);
      if (!oi) {
        // Left out of the text: a default that still holds needs no line.
        if (bi && same(b_, b_.value(before, *bi), a_, value)) continue;
        if (!insert_entry(o, anchor, &key, value)) return false;
        continue;
      }
      if (place.ordered && anchor && *oi < *anchor) return false;
      const Place child = child_place(o, place, *oi);
      const bool ok = bi ? patch(o_.value(o, *oi), b_.value(before, *bi), value, child)
                         : replace(o_.value(o, *oi), value, child);
      if (!ok) return false;
      if (!anchor || *oi > *anchor || place.ordered) anchor = *oi;
    }
    return true;
  }

  // Items of a list are the same item in before and after when they have the same `name:`
  // (limits), else when they are at the same index.
  static std::optional<std::vector<std::string>> names(const Document& d, const Node& list) {
    std::vector<std::string> out;
    for (size_t i = 0; i < d.count(list); ++i) {
      const Node& item = d.item(list, i);
      if (item.kind != Node::Kind::kMap) return std::nullopt;
      const auto k = d.find(item, "name");
      if (!k || d.value(item, *k).kind != Node::Kind::kScalar) return std::nullopt;
      const std::string& name = d.value(item, *k).value;
      if (std::find(out.begin(), out.end(), name) != out.end()) return std::nullopt;
      out.push_back(name);
    }
    return out;
  }

  bool patch_list(const Node& o, const Node& before, const Node& after, const Place& place) {
    const size_t nb = b_.count(before);
    const size_t na = a_.count(after);
    if (o_.count(o) != nb) return false;
    std::vector<std::optional<size_t>> match(na);  // after's item -> before's
    const auto nb_names = names(b_, before);
    const auto na_names = names(a_, after);
    if (nb_names && na_names) {
      for (size_t j = 0; j < na; ++j) {
        const auto it = std::find(nb_names->begin(), nb_names->end(), (*na_names)[j]);
        if (it != nb_names->end()) match[j] = static_cast<size_t>(it - nb_names->begin());
      }
    } else {
      for (size_t j = 0; j < std::min(na, nb); ++j) match[j] = j;
    }
    for (size_t i = 0; i < nb; ++i) {
      if (std::find(match.begin(), match.end(), std::optional(i)) == match.end() &&
          !remove_entry(o, i)) {
        return false;
      }
    }
    std::optional<size_t> anchor;
    for (size_t j = 0; j < na; ++j) {
      if (!match[j]) {
        if (!insert_entry(o, anchor, nullptr, a_.item(after, j))) return false;
        continue;
      }
      const size_t i = *match[j];
      if (anchor && i < *anchor) {
        // Moved (a limit moved up or down): an unchanged item of a block list moves as its
        // lines, with the comments above it; anything else rewrites the list.
        if (o.flow || !same(b_, b_.item(before, i), a_, a_.item(after, j))) return false;
        const auto lines = entry_lines(o, i);
        if (!lines || t_[lines->second - 1] != '\n') return false;
        const size_t at = next_line(entry_end(o, *anchor) - 1);
        edit(lines->first, lines->second, "");
        edit(at, at, t_.substr(lines->first, lines->second - lines->first));
        continue;
      }
      if (!patch(o_.item(o, i), b_.item(before, i), a_.item(after, j), child_place(o, place, i)))
        return false;
      anchor = i;
    }
    return true;
  }

  void edit(size_t begin, size_t end, std::string text) {
    edits_.push_back({begin, end, std::move(text)});
  }

  const Document& o_;  // the original text
  const Document& b_;  // policy_to_yaml(original)
  const Document& a_;  // policy_to_yaml(edited)
  const std::string& t_;
  std::vector<Edit> edits_;
  std::vector<std::string> notes_;
};

PolicyTextEdit rewritten(const PolicySpec& edited, std::string why) {
  return {policy_to_yaml(edited),
          false,
          {"The policy text is written anew, so its comments and spellings are not kept: " +
           std::move(why)}};
}

}  // namespace

PolicyTextEdit edit_policy_text(std::string_view original_text, const PolicySpec& original,
                                const PolicySpec& edited) {
  try {
    if (original_text.empty()) return rewritten(edited, "there is no text to edit.");
    const PolicyParseResult read = parse_policy(original_text, "<original>");
    if (!read.ok() || *read.policy != original) {
      return rewritten(edited, "the text does not read as the policy the draft started from.");
    }
    if (original == edited) return {std::string(original_text), true, {}};
    const auto text = Document::read(original_text);
    if (!text) {
      return rewritten(edited,
                       "the text uses YAML that is not edited in place (anchors, aliases, "
                       "tags or several documents).");
    }
    const auto before = Document::read(policy_to_yaml(original));
    const auto after = Document::read(policy_to_yaml(edited));
    if (!before || !after) return rewritten(edited, "the policy could not be written as YAML.");
    Editor editor(*text, *before, *after);
    if (!editor.run()) return rewritten(edited, "the change cannot be made in place.");
    auto result = editor.result();
    if (!result) return rewritten(edited, "the edits in place overlap.");
    const PolicyParseResult check = parse_policy(*result, "<edited>");
    if (!check.ok() || *check.policy != edited) {
      return rewritten(edited, "the text edited in place did not read back as the draft.");
    }
    return {std::move(*result), true, editor.notes()};
  } catch (const std::exception& e) {
    return rewritten(edited, e.what());
  }
}

}  // namespace sluice
