// RESP2 (the Redis serialization protocol): the wire format of sluiced's sockets.
//
// A small, allocation-conscious codec shared by the daemon, sluicectl and the admin GUI. It has
// no I/O and no Asio dependency:
//   - parse_command: a request (an array of bulk strings, or an inline command line) into
//     string_views pointing into the caller's buffer; nothing is copied or allocated once the
//     caller's argv vector has grown;
//   - parse_value: any RESP2 reply into an owning Value tree (clients);
//   - Writer: appends replies or commands to a caller-owned std::string, so a reused buffer
//     serialises a whole batch of replies without allocating.
// Every function is pure and thread-compatible (no shared state).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::resp {

// Caps that keep a broken or hostile peer from making the reader buffer without bound.
struct Limits {
  size_t max_frame_bytes = 16u << 20;   // one whole request or reply
  size_t max_args = 1024;               // elements of one request array
  size_t max_bulk_bytes = 16u << 20;    // one bulk string
  size_t max_inline_bytes = 64u << 10;  // one inline command line (and any header line)
  size_t max_depth = 16;                // nesting of reply arrays (parse_value)
};

enum class ParseStatus {
  kComplete,    // one frame parsed; `consumed` bytes belong to it
  kIncomplete,  // the frame is not complete yet: read more and call again with the same start
  kError,       // the bytes cannot be RESP2; the stream cannot be resynchronised
};

struct ParseResult {
  ParseStatus status = ParseStatus::kIncomplete;
  size_t consumed = 0;     // kComplete: length of the frame
  std::string_view error;  // kError: a static sentence ("invalid bulk length", ...)
};

// Parses the first request in `buffer`. On kComplete `argv` holds the arguments, as views into
// `buffer` (valid while the buffer is); an empty argv means an empty request that is to be
// skipped (a blank inline line, "*0"). Inline commands follow redis-cli's quoting ("..." with
// \n \r \t \b \a \\ \" \xHH escapes, '...' with \'); unescaping is done in place, which is why
// the buffer is mutable. Bytes past the first frame are not looked at.
ParseResult parse_command(std::span<char> buffer, const Limits& limits,
                          std::vector<std::string_view>& argv);

// A reply, as a client sees it.
struct Value {
  enum class Type { kSimple, kError, kInteger, kBulk, kArray, kNull };
  Type type = Type::kNull;
  std::string str;              // kSimple, kError, kBulk
  int64_t integer = 0;          // kInteger
  std::vector<Value> elements;  // kArray

  bool is_error() const { return type == Type::kError; }
  bool is_null() const { return type == Type::kNull; }
  // The upper-case prefix of an error ("WRONGARGS"), empty for other types.
  std::string_view error_code() const;
  // Human-readable rendering in redis-cli's style, for tools and tests.
  std::string to_string() const;
};

// Parses the first reply in `buffer` into `out` (nil bulk strings and nil arrays become kNull).
ParseResult parse_value(std::string_view buffer, const Limits& limits, Value& out);

// Appends RESP2 to a caller-owned string. Simple strings and errors cannot hold CR or LF; any
// found is replaced by a space so a message can never break the framing.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(&out) {}

  void simple(std::string_view s);
  void ok() { out_->append("+OK\r\n", 5); }
  void error(std::string_view message);                         // "-message"
  void error(std::string_view code, std::string_view message);  // "-CODE message"
  void integer(int64_t v);
  void bulk(std::string_view s);
  void null_bulk() { out_->append("$-1\r\n", 5); }
  void array(size_t count);
  void null_array() { out_->append("*-1\r\n", 5); }

  // A request: an array of bulk strings.
  void command(std::span<const std::string_view> args);
  void command(std::initializer_list<std::string_view> args) {
    command(std::span<const std::string_view>(args.begin(), args.size()));
  }
  void command(const std::vector<std::string>& args);

  std::string& buffer() { return *out_; }

 private:
  void line_(char type, std::string_view s);
  void header_(char type, int64_t n);
  std::string* out_;
};

// Convenience for clients: the encoding of one command.
std::string encode_command(std::initializer_list<std::string_view> args);
std::string encode_command(const std::vector<std::string>& args);

}  // namespace sluice::resp
