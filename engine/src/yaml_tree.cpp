#include "yaml_tree.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/parser.h>
#include <yaml.h>

#include <istream>
#include <new>
#include <streambuf>

namespace sluice::policy_detail {

// Nodes are created in document order, a list or map when it opens. The children of the open
// containers wait in one stack (pending_) and move to the tree's index array as one range when
// their container closes, so each container's children end up contiguous.
class YamlTreeBuilder {
 public:
  using Kind = YamlTree::Kind;
  using NodeId = YamlTree::NodeId;

  // Takes room at once for the tree that text of `text_size` bytes is likely to give (a node
  // per 4 bytes is more than a policy has): grown by doubling instead, an array would at its
  // peak hold its old and its new copy together. Pages never written are never resident.
  YamlTreeBuilder(YamlTree& tree, size_t text_size) : tree_(tree) {
    tree_.nodes_.reserve(text_size / 4 + 1);
    tree_.children_.reserve(text_size / 4 + 1);
    tree_.text_.reserve(text_size);
  }

  NodeId null(const YAML::Mark& mark) { return finish(add(Kind::kNull, mark, false)); }

  NodeId scalar(const YAML::Mark& mark, std::string_view value, bool quoted) {
    const NodeId id = add(Kind::kScalar, mark, quoted);
    YamlTree::Node& n = tree_.nodes_[id];
    n.begin = static_cast<uint32_t>(tree_.text_.size());
    n.size = static_cast<uint32_t>(value.size());
    tree_.text_ += value;
    return finish(id);
  }

  // An alias: the node it names becomes a child once more.
  void alias(NodeId target) { finish(target); }

  NodeId open(Kind kind, const YAML::Mark& mark) {
    const NodeId id = add(kind, mark, false);
    open_.push_back({id, pending_.size()});
    return id;
  }

  void close() {
    const Open o = open_.back();
    open_.pop_back();
    YamlTree::Node& n = tree_.nodes_[o.id];
    n.begin = static_cast<uint32_t>(tree_.children_.size());
    n.size = static_cast<uint32_t>(pending_.size() - o.first_pending);
    tree_.children_.insert(tree_.children_.end(), pending_.begin() + o.first_pending,
                           pending_.end());
    pending_.resize(o.first_pending);
    finish(o.id);
  }

  size_t depth() const { return open_.size(); }

  void second_document(const YAML::Mark& mark) { tree_.second_document_ = mark; }

 private:
  struct Open {
    NodeId id;
    size_t first_pending;
  };

  NodeId add(Kind kind, const YAML::Mark& mark, bool quoted) {
    const auto id = static_cast<NodeId>(tree_.nodes_.size());
    tree_.nodes_.push_back({kind, quoted, mark.line, mark.column, 0, 0});
    return id;
  }

  // A complete node: a child of the innermost open container (the root has none).
  NodeId finish(NodeId id) {
    if (!open_.empty()) pending_.push_back(id);
    return id;
  }

  YamlTree& tree_;
  std::vector<Open> open_;
  std::vector<NodeId> pending_;
};

namespace {

// ---- yaml-cpp ---------------------------------------------------------------------------

// yaml-cpp reads from a std::istream; this one reads the caller's text in place.
class TextBuffer : public std::streambuf {
 public:
  explicit TextBuffer(std::string_view text) {
    char* begin = const_cast<char*>(text.data());  // only ever read
    setg(begin, begin, begin + text.size());
  }
};

class YamlCppEvents : public YAML::EventHandler {
 public:
  explicit YamlCppEvents(YamlTreeBuilder& builder) : builder_(builder) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    remember(anchor, builder_.null(mark));
  }
  void OnAlias(const YAML::Mark&, YAML::anchor_t anchor) override {
    builder_.alias(anchors_.at(anchor));  // yaml-cpp refuses an unknown anchor itself
  }
  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    remember(anchor, builder_.scalar(mark, value, tag == "!"));
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    remember(anchor, builder_.open(YamlTree::Kind::kSequence, mark));
  }
  void OnSequenceEnd() override { builder_.close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    remember(anchor, builder_.open(YamlTree::Kind::kMap, mark));
  }
  void OnMapEnd() override { builder_.close(); }

 private:
  void remember(YAML::anchor_t anchor, YamlTree::NodeId id) {
    if (anchor == YAML::NullAnchor) return;
    if (anchors_.size() <= anchor) anchors_.resize(anchor + 1);
    anchors_[anchor] = id;
  }

  YamlTreeBuilder& builder_;
  std::vector<YamlTree::NodeId> anchors_;  // by yaml-cpp's anchor number
};

// Sees where a document starts; the document is parsed (a syntax error in it still counts)
// but not kept.
class DocumentStart : public YAML::EventHandler {
 public:
  std::optional<YAML::Mark> start;
  void OnDocumentStart(const YAML::Mark& mark) override { start = mark; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

// ---- libyaml ----------------------------------------------------------------------------

// Deeper than any policy; yaml-cpp refuses some depth beyond this, so deeper text goes to it
// for its verdict.
constexpr size_t kMaxLibyamlDepth = 64;

// libyaml counts columns (and its index) in characters and also breaks lines at '\r' and at
// Unicode line separators; yaml-cpp, whose places sluice reports, counts bytes and breaks
// lines at '\n' only. Walks the text along with libyaml's marks to give yaml-cpp's places.
class YamlCppPlaces {
 public:
  explicit YamlCppPlaces(std::string_view text) : text_(text) {}

  YAML::Mark at(const yaml_mark_t& mark) {
    while (chars_ > mark.index && byte_ > 0) retreat();
    while (chars_ < mark.index && byte_ < text_.size()) advance();
    return here();
  }

  // Where yaml-cpp sees the token after `mark` (which is in a block list or map whose items
  // start at `indent`): the first character that is neither blank nor in a
  // comment. At the end of the text that token ends the list or map: yaml-cpp places it where
  // the last line left off if that is left of the items (or at them, for a list), else at
  // column 0.
  YAML::Mark next_token(const yaml_mark_t& mark, int indent, bool list) {
    at(mark);
    YamlCppPlaces scan = *this;
    bool comment = false;
    while (scan.byte_ < text_.size()) {
      const char c = text_[scan.byte_];
      if (c == '\n') {
        comment = false;
      } else if (c == '#') {
        comment = true;
      } else if (!comment && c != ' ' && c != '\t' && c != '\r') {
        break;
      }
      scan.advance();
    }
    YAML::Mark m = scan.here();
    if (scan.byte_ == text_.size() && !(m.column < indent || (list && m.column == indent))) {
      m.column = 0;
    }
    return m;
  }

 private:
  void advance() {
    const auto c = static_cast<unsigned char>(text_[byte_]);
    if (c == '\n') {
      ++line_;
      line_start_ = byte_ + 1;
    }
    // libyaml has checked the UTF-8, so a lead byte gives the length.
    byte_ += c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    ++chars_;
  }

  // Marks come in document order but for the odd one; a step back stays short.
  void retreat() {
    do {
      --byte_;
    } while (byte_ > 0 && (static_cast<unsigned char>(text_[byte_]) & 0xC0) == 0x80);
    --chars_;
    if (text_[byte_] == '\n') {
      --line_;
      const size_t previous = byte_ == 0 ? std::string_view::npos : text_.rfind('\n', byte_ - 1);
      line_start_ = previous == std::string_view::npos ? 0 : previous + 1;
    }
  }

  YAML::Mark here() const {
    YAML::Mark m;
    m.pos = static_cast<int>(byte_);
    m.line = line_;
    m.column = static_cast<int>(byte_ - line_start_);
    return m;
  }

  std::string_view text_;
  size_t chars_ = 0;  // libyaml's index of byte_
  size_t byte_ = 0;
  int line_ = 0;
  size_t line_start_ = 0;
};

struct LibyamlParser {
  yaml_parser_t parser{};
  LibyamlParser() {
    if (yaml_parser_initialize(&parser) == 0) throw std::bad_alloc();
  }
  ~LibyamlParser() { yaml_parser_delete(&parser); }
  LibyamlParser(const LibyamlParser&) = delete;
  LibyamlParser& operator=(const LibyamlParser&) = delete;
};

struct LibyamlEvent {
  yaml_event_t event{};
  bool held = false;
  ~LibyamlEvent() { release(); }
  void release() {
    if (held) yaml_event_delete(&event);
    held = false;
  }
};

// yaml-cpp's null: a plain, untagged "", "~", "null", "Null" or "NULL".
bool is_null_scalar(const yaml_event_t& e) {
  if (e.data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return false;
  const std::string_view v(reinterpret_cast<const char*>(e.data.scalar.value),
                           e.data.scalar.length);
  return v.empty() || v == "~" || v == "null" || v == "Null" || v == "NULL";
}

// Builds the tree from libyaml's events. False, with the tree half built, for text libyaml
// refuses, or that yaml-cpp may read otherwise: the caller then asks yaml-cpp. Policies need
// none of what yaml-cpp reads otherwise (the fuzz target fuzz_yaml_tree finds such text): tags,
// directives, anchors and aliases, a second document, plain text that starts with ':' or '?'
// (or has a '?' inside a flow list or map), a block scalar ('|', '>') not right of the block
// around it, a flow list or map over more than one line, nesting deeper than kMaxLibyamlDepth.
bool parse_with_libyaml(std::string_view text, YamlTreeBuilder& builder) {
  LibyamlParser p;
  yaml_parser_set_input_string(&p.parser, reinterpret_cast<const unsigned char*>(text.data()),
                               text.size());
  YamlCppPlaces places(text);
  int documents = 0;
  struct Open {
    bool block;
    bool list;
    int column;
    int line;
  };
  std::vector<Open> open;  // the lists and maps not yet closed
  LibyamlEvent e;
  for (;;) {
    e.release();
    if (yaml_parser_parse(&p.parser, &e.event) == 0) return false;
    e.held = true;
    const yaml_event_t& ev = e.event;
    switch (ev.type) {
      case YAML_STREAM_END_EVENT:
        return true;
      case YAML_DOCUMENT_START_EVENT:
        if (ev.data.document_start.version_directive != nullptr ||
            ev.data.document_start.tag_directives.start !=
                ev.data.document_start.tag_directives.end) {
          return false;
        }
        // A second document is an error, and yaml-cpp's reading of it (a syntax error first?)
        // makes the message.
        if (++documents == 2) return false;
        continue;
      case YAML_DOCUMENT_END_EVENT:
        continue;
      default:
        break;
    }
    switch (ev.type) {
      case YAML_SCALAR_EVENT: {
        const std::string_view value(reinterpret_cast<const char*>(ev.data.scalar.value),
                                     ev.data.scalar.length);
        const bool plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        const bool block_scalar = ev.data.scalar.style == YAML_LITERAL_SCALAR_STYLE ||
                                  ev.data.scalar.style == YAML_FOLDED_SCALAR_STYLE;
        const bool in_flow = !open.empty() && !open.back().block;
        if (ev.data.scalar.tag != nullptr || ev.data.scalar.anchor != nullptr ||
            (plain && (value.starts_with(':') || value.starts_with('?') ||
                       (in_flow && value.find('?') != std::string_view::npos))) ||
            (block_scalar && !open.empty() &&
             places.at(ev.start_mark).column <= open.back().column)) {
          return false;
        }
        if (!is_null_scalar(ev)) {
          // Quoted and block scalars are text: yaml-cpp's non-specific tag "!".
          builder.scalar(places.at(ev.start_mark), value, !plain);
        } else if (value.empty() && !open.empty() && open.back().block) {
          // An empty node in a block list or map: yaml-cpp places it at the token after it.
          builder.null(places.next_token(ev.start_mark, open.back().column, open.back().list));
        } else {
          builder.null(places.at(ev.start_mark));
        }
        break;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT: {
        const bool map = ev.type == YAML_MAPPING_START_EVENT;
        if (builder.depth() >= kMaxLibyamlDepth ||
            (map ? ev.data.mapping_start.tag : ev.data.sequence_start.tag) != nullptr ||
            (map ? ev.data.mapping_start.anchor : ev.data.sequence_start.anchor) != nullptr) {
          return false;
        }
        const YAML::Mark mark = places.at(ev.start_mark);
        builder.open(map ? YamlTree::Kind::kMap : YamlTree::Kind::kSequence, mark);
        open.push_back({map ? ev.data.mapping_start.style == YAML_BLOCK_MAPPING_STYLE
                            : ev.data.sequence_start.style == YAML_BLOCK_SEQUENCE_STYLE,
                        !map, mark.column, mark.line});
        break;
      }
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT: {
        const Open closed = open.back();
        open.pop_back();
        if (!closed.block && places.at(ev.start_mark).line != closed.line) return false;
        builder.close();
        break;
      }
      case YAML_ALIAS_EVENT:
        return false;
      default:
        break;
    }
  }
}

// Whether libyaml reads `text` as yaml-cpp does, if it reads it at all. libyaml decodes UTF-16
// and UTF-32 (the places above are for UTF-8) and drops a UTF-8 byte order mark (anywhere),
// which yaml-cpp keeps as text; it breaks lines (also inside scalars) at a '\r' alone and at the
// Unicode separators NEL, LS and PS, where yaml-cpp breaks only at '\n'.
bool libyaml_agrees(std::string_view text) {
  if (text.starts_with("\xFE\xFF") || text.starts_with("\xFF\xFE") ||
      text.find("\xEF\xBB\xBF") != std::string_view::npos) {
    return false;
  }
  // An explicit key ("? key"), which yaml-cpp reads otherwise in many places: a '?' after the
  // start of a line, a '-', '?', ':' or a flow's '{', '[' or ','.
  for (size_t q = text.find('?'); q != std::string_view::npos; q = text.find('?', q + 1)) {
    const size_t before = text.find_last_not_of(" \t", q == 0 ? std::string_view::npos : q - 1);
    if (q == 0 || before == std::string_view::npos ||
        std::string_view("\n-?:{[,").find(text[before]) != std::string_view::npos) {
      return false;
    }
  }
  for (size_t cr = text.find('\r'); cr != std::string_view::npos; cr = text.find('\r', cr + 1)) {
    if (cr + 1 == text.size() || text[cr + 1] != '\n') return false;
  }
  for (std::string_view separator : {"\xC2\x85", "\xE2\x80\xA8", "\xE2\x80\xA9"}) {
    if (text.find(separator) != std::string_view::npos) return false;
  }
  // A last line of spaces without a line break: the two fold a block scalar ending there
  // differently ("a: >\n x\n ").
  const size_t last_line = text.find_last_of('\n') + 1;  // 0 when there is none
  if (last_line < text.size() && text.find_first_not_of(' ', last_line) == std::string_view::npos) {
    return false;
  }
  return true;
}

}  // namespace

YamlTree YamlTree::parse_with_yaml_cpp(std::string_view text) {
  TextBuffer buffer(text);
  std::istream in(&buffer);
  YAML::Parser parser(in);
  YamlTree tree;
  YamlTreeBuilder builder(tree, text.size());
  YamlCppEvents events(builder);
  if (!parser.HandleNextDocument(events)) return tree;
  DocumentStart second;
  if (parser.HandleNextDocument(second)) builder.second_document(*second.start);
  return tree;
}

YamlTree YamlTree::parse(std::string_view text) {
  if (libyaml_agrees(text)) {
    YamlTree tree;
    YamlTreeBuilder builder(tree, text.size());
    // A document that is not a map is no policy, and yaml-cpp reads some of them (a scalar
    // that spans lines, say) otherwise: its reading makes the message, as before.
    if (parse_with_libyaml(text, builder) &&
        (tree.empty() || tree.root().kind == YamlTree::Kind::kMap)) {
      tree.read_by_libyaml_ = true;
      return tree;
    }
  }
  return parse_with_yaml_cpp(text);
}

}  // namespace sluice::policy_detail
