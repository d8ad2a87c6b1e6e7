#include "sluice/resp.h"

#include <charconv>
#include <cstring>

namespace sluice::resp {
namespace {

constexpr std::string_view kCrlf = "\r\n";

ParseResult incomplete() { return {ParseStatus::kIncomplete, 0, {}}; }
ParseResult fail(std::string_view why) { return {ParseStatus::kError, 0, why}; }

// Finds the CRLF ending the header line that starts at `pos`. Returns the index of '\r',
// or npos with `result` set to incomplete or an error.
size_t find_line_end(std::string_view buf, size_t pos, const Limits& limits, ParseResult& result,
                     std::string_view too_long) {
  const size_t window = std::min(buf.size() - pos, limits.max_inline_bytes);
  const void* cr = std::memchr(buf.data() + pos, '\r', window);
  if (cr == nullptr) {
    result = window == limits.max_inline_bytes ? fail(too_long) : incomplete();
    return std::string_view::npos;
  }
  const size_t at = static_cast<const char*>(cr) - buf.data();
  if (at + 1 >= buf.size()) {
    result = incomplete();
    return std::string_view::npos;
  }
  if (buf[at + 1] != '\n') {
    result = fail("protocol error: expected CRLF after a header line");
    return std::string_view::npos;
  }
  return at;
}

bool parse_int(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

ParseResult parse_multibulk(std::string_view buf, const Limits& limits,
                            std::vector<std::string_view>& argv) {
  ParseResult r;
  size_t cr = find_line_end(buf, 1, limits, r, "protocol error: too big multibulk count string");
  if (cr == std::string_view::npos) return r;
  int64_t count = 0;
  if (!parse_int(buf.substr(1, cr - 1), count)) {
    return fail("protocol error: invalid multibulk length");
  }
  size_t pos = cr + 2;
  if (count <= 0) return {ParseStatus::kComplete, pos, {}};  // "*0" and "*-1": nothing to do
  if (static_cast<uint64_t>(count) > limits.max_args) {
    return fail("protocol error: too many arguments");
  }
  for (int64_t i = 0; i < count; ++i) {
    if (pos >= buf.size()) return incomplete();
    if (buf[pos] != '$') return fail("protocol error: expected '$' for a bulk string argument");
    cr = find_line_end(buf, pos + 1, limits, r, "protocol error: too big bulk count string");
    if (cr == std::string_view::npos) return r;
    int64_t len = 0;
    if (!parse_int(buf.substr(pos + 1, cr - pos - 1), len) || len < 0 ||
        static_cast<uint64_t>(len) > limits.max_bulk_bytes) {
      return fail("protocol error: invalid bulk length");
    }
    const size_t data = cr + 2;
    const size_t end = data + static_cast<size_t>(len) + 2;
    if (end > limits.max_frame_bytes) return fail("protocol error: request too large");
    if (end > buf.size()) return incomplete();
    if (buf[end - 2] != '\r' || buf[end - 1] != '\n') {
      return fail("protocol error: bulk string not terminated by CRLF");
    }
    argv.emplace_back(buf.data() + data, static_cast<size_t>(len));
    pos = end;
  }
  return {ParseStatus::kComplete, pos, {}};
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f';
}

// Splits one inline line the way redis-cli's sdssplitargs does, unescaping in place (the
// output of a token never outgrows its input, so writing behind the reader is safe).
ParseResult split_inline(char* p, char* end, const Limits& limits,
                         std::vector<std::string_view>& argv) {
  while (true) {
    while (p < end && is_space(*p)) ++p;
    if (p == end) return {ParseStatus::kComplete, 0, {}};
    if (argv.size() == limits.max_args) return fail("protocol error: too many arguments");
    char* const start = p;
    char* w = p;
    bool in_double = false, in_single = false, done = false;
    while (!done) {
      if (in_double) {
        if (p == end) return fail("protocol error: unbalanced quotes in request");
        if (*p == '\\' && end - p > 3 && p[1] == 'x' && hex_digit(p[2]) >= 0 &&
            hex_digit(p[3]) >= 0) {
          *w++ = static_cast<char>(hex_digit(p[2]) * 16 + hex_digit(p[3]));
          p += 3;
        } else if (*p == '\\' && end - p > 1) {
          ++p;
          switch (*p) {
            case 'n':
              *w++ = '\n';
              break;
            case 'r':
              *w++ = '\r';
              break;
            case 't':
              *w++ = '\t';
              break;
            case 'b':
              *w++ = '\b';
              break;
            case 'a':
              *w++ = '\a';
              break;
            default:
              *w++ = *p;
              break;
          }
        } else if (*p == '"') {
          // A closing quote must end the argument.
          if (end - p > 1 && !is_space(p[1])) {
            return fail("protocol error: unbalanced quotes in request");
          }
          done = true;
        } else {
          *w++ = *p;
        }
      } else if (in_single) {
        if (p == end) return fail("protocol error: unbalanced quotes in request");
        if (*p == '\\' && end - p > 1 && p[1] == '\'') {
          ++p;
          *w++ = '\'';
        } else if (*p == '\'') {
          if (end - p > 1 && !is_space(p[1])) {
            return fail("protocol error: unbalanced quotes in request");
          }
          done = true;
        } else {
          *w++ = *p;
        }
      } else if (p == end || is_space(*p)) {
        done = true;
        argv.emplace_back(start, static_cast<size_t>(w - start));
        break;
      } else if (*p == '"') {
        in_double = true;
      } else if (*p == '\'') {
        in_single = true;
      } else {
        *w++ = *p;
      }
      if (p < end) ++p;
      if (done) argv.emplace_back(start, static_cast<size_t>(w - start));
    }
  }
}

ParseResult parse_inline(std::span<char> buf, const Limits& limits,
                         std::vector<std::string_view>& argv) {
  const size_t window = std::min(buf.size(), limits.max_inline_bytes);
  const void* nl = std::memchr(buf.data(), '\n', window);
  if (nl == nullptr) {
    return window == limits.max_inline_bytes ? fail("protocol error: too big inline request")
                                             : incomplete();
  }
  char* line_end = static_cast<char*>(const_cast<void*>(nl));
  const size_t consumed = static_cast<size_t>(line_end - buf.data()) + 1;
  if (line_end > buf.data() && line_end[-1] == '\r') --line_end;
  ParseResult r = split_inline(buf.data(), line_end, limits, argv);
  if (r.status != ParseStatus::kComplete) {
    argv.clear();
    return r;
  }
  r.consumed = consumed;
  return r;
}

ParseResult parse_value_at(std::string_view buf, size_t pos, const Limits& limits, size_t depth,
                           Value& out) {
  if (pos >= buf.size()) return incomplete();
  if (pos > limits.max_frame_bytes) return fail("protocol error: reply too large");
  const char type = buf[pos];
  if (type != '+' && type != '-' && type != ':' && type != '$' && type != '*') {
    return fail("protocol error: unknown reply type");
  }
  ParseResult r;
  const size_t cr = find_line_end(buf, pos + 1, limits, r, "protocol error: too long reply line");
  if (cr == std::string_view::npos) return r;
  const std::string_view line = buf.substr(pos + 1, cr - pos - 1);
  const size_t next = cr + 2;
  out.elements.clear();
  out.str.clear();
  out.integer = 0;
  switch (type) {
    case '+':
      out.type = Value::Type::kSimple;
      out.str.assign(line);
      return {ParseStatus::kComplete, next, {}};
    case '-':
      out.type = Value::Type::kError;
      out.str.assign(line);
      return {ParseStatus::kComplete, next, {}};
    case ':':
      if (!parse_int(line, out.integer)) return fail("protocol error: invalid integer reply");
      out.type = Value::Type::kInteger;
      return {ParseStatus::kComplete, next, {}};
    case '$': {
      int64_t len = 0;
      if (!parse_int(line, len) || len < -1 ||
          (len > 0 && static_cast<uint64_t>(len) > limits.max_bulk_bytes)) {
        return fail("protocol error: invalid bulk length");
      }
      if (len == -1) {
        out.type = Value::Type::kNull;
        return {ParseStatus::kComplete, next, {}};
      }
      const size_t end = next + static_cast<size_t>(len) + 2;
      if (end > limits.max_frame_bytes) return fail("protocol error: reply too large");
      if (end > buf.size()) return incomplete();
      if (buf.substr(end - 2, 2) != kCrlf) {
        return fail("protocol error: bulk string not terminated by CRLF");
      }
      out.type = Value::Type::kBulk;
      out.str.assign(buf.substr(next, static_cast<size_t>(len)));
      return {ParseStatus::kComplete, end, {}};
    }
    default: {  // '*'
      int64_t count = 0;
      if (!parse_int(line, count) || count < -1) {
        return fail("protocol error: invalid multibulk length");
      }
      if (count == -1) {
        out.type = Value::Type::kNull;
        return {ParseStatus::kComplete, next, {}};
      }
      if (static_cast<uint64_t>(count) > limits.max_args) {
        return fail("protocol error: too many array elements");
      }
      if (depth >= limits.max_depth) return fail("protocol error: arrays nested too deeply");
      out.type = Value::Type::kArray;
      out.elements.resize(static_cast<size_t>(count));
      size_t at = next;
      for (auto& element : out.elements) {
        ParseResult er = parse_value_at(buf, at, limits, depth + 1, element);
        if (er.status != ParseStatus::kComplete) return er;
        at = er.consumed;
      }
      return {ParseStatus::kComplete, at, {}};
    }
  }
}

void render(const Value& v, std::string& out, size_t indent) {
  switch (v.type) {
    case Value::Type::kSimple:
      out += v.str;
      break;
    case Value::Type::kError:
      out += "(error) " + v.str;
      break;
    case Value::Type::kInteger:
      out += "(integer) " + std::to_string(v.integer);
      break;
    case Value::Type::kNull:
      out += "(nil)";
      break;
    case Value::Type::kBulk:
      out += '"' + v.str + '"';
      break;
    case Value::Type::kArray:
      if (v.elements.empty()) {
        out += "(empty array)";
        break;
      }
      for (size_t i = 0; i < v.elements.size(); ++i) {
        if (i > 0) out += '\n' + std::string(indent, ' ');
        const std::string label = std::to_string(i + 1) + ") ";
        out += label;
        render(v.elements[i], out, indent + label.size());
      }
      break;
  }
}

}  // namespace

ParseResult parse_command(std::span<char> buffer, const Limits& limits,
                          std::vector<std::string_view>& argv) {
  argv.clear();
  if (buffer.empty()) return incomplete();
  ParseResult r = buffer[0] == '*' ? parse_multibulk(std::string_view(buffer.data(), buffer.size()),
                                                     limits, argv)
                                   : parse_inline(buffer, limits, argv);
  if (r.status == ParseStatus::kIncomplete) {
    argv.clear();
    if (buffer.size() >= limits.max_frame_bytes) return fail("protocol error: request too large");
  } else if (r.status == ParseStatus::kError) {
    argv.clear();
  }
  return r;
}

ParseResult parse_value(std::string_view buffer, const Limits& limits, Value& out) {
  ParseResult r = parse_value_at(buffer, 0, limits, 0, out);
  if (r.status == ParseStatus::kIncomplete && buffer.size() >= limits.max_frame_bytes) {
    return fail("protocol error: reply too large");
  }
  return r;
}

std::string_view Value::error_code() const {
  if (type != Type::kError) return {};
  const std::string_view s(str);
  return s.substr(0, s.find(' '));
}

std::string Value::to_string() const {
  std::string out;
  render(*this, out, 0);
  return out;
}

void Writer::line_(char type, std::string_view s) {
  out_->push_back(type);
  const size_t at = out_->size();
  out_->append(s);
  for (size_t i = at; i < out_->size(); ++i) {
    char& c = (*out_)[i];
    if (c == '\r' || c == '\n') c = ' ';
  }
  out_->append(kCrlf);
}

void Writer::header_(char type, int64_t n) {
  char buf[24];
  buf[0] = type;
  char* end = std::to_chars(buf + 1, buf + sizeof(buf) - 2, n).ptr;
  *end++ = '\r';
  *end++ = '\n';
  out_->append(buf, static_cast<size_t>(end - buf));
}

void Writer::simple(std::string_view s) { line_('+', s); }

void Writer::error(std::string_view message) { line_('-', message); }

void Writer::error(std::string_view code, std::string_view message) {
  out_->push_back('-');
  out_->append(code);
  out_->push_back(' ');
  const size_t at = out_->size();
  out_->append(message);
  for (size_t i = at; i < out_->size(); ++i) {
    char& c = (*out_)[i];
    if (c == '\r' || c == '\n') c = ' ';
  }
  out_->append(kCrlf);
}

void Writer::integer(int64_t v) { header_(':', v); }

void Writer::bulk(std::string_view s) {
  header_('$', static_cast<int64_t>(s.size()));
  out_->append(s);
  out_->append(kCrlf);
}

void Writer::array(size_t count) { header_('*', static_cast<int64_t>(count)); }

void Writer::command(std::span<const std::string_view> args) {
  array(args.size());
  for (std::string_view a : args) bulk(a);
}

void Writer::command(const std::vector<std::string>& args) {
  array(args.size());
  for (const std::string& a : args) bulk(a);
}

std::string encode_command(std::initializer_list<std::string_view> args) {
  std::string out;
  Writer(out).command(args);
  return out;
}

std::string encode_command(const std::vector<std::string>& args) {
  std::string out;
  Writer(out).command(args);
  return out;
}

}  // namespace sluice::resp
