// Fuzz target: the RESP2 request parser (in place, mutable buffer) and the reply parser.
// Every frame in the input is parsed the way a session does: until incomplete or error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sluice/resp.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sluice::resp::Limits limits;
  limits.max_frame_bytes = 1 << 16;
  limits.max_bulk_bytes = 1 << 15;
  limits.max_args = 64;
  std::string buffer(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> argv;
  std::span<char> rest(buffer.data(), buffer.size());
  while (!rest.empty()) {
    auto r = sluice::resp::parse_command(rest, limits, argv);
    if (r.status != sluice::resp::ParseStatus::kComplete) break;
    if (r.consumed == 0 || r.consumed > rest.size()) __builtin_trap();  // must make progress
    for (auto a : argv)  // views must stay inside the buffer
      if (a.data() < buffer.data() || a.data() + a.size() > buffer.data() + buffer.size())
        __builtin_trap();
    rest = rest.subspan(r.consumed);
  }
  std::string_view replies(reinterpret_cast<const char*>(data), size);
  while (!replies.empty()) {
    sluice::resp::Value v;
    auto r = sluice::resp::parse_value(replies, limits, v);
    if (r.status != sluice::resp::ParseStatus::kComplete || r.consumed == 0) break;
    (void)v.to_string();
    replies.remove_prefix(r.consumed);
  }
  return 0;
}
