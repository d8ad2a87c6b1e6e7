// A lease as a storage record (ABI 1.4 records): its key and its bytes, so that a lease granted
// by one sluiced can be charged and released by another on the same storage, or by the same
// one after a restart (docs/protocol.md, "Where leases live").
//
// The bytes are a small versioned binary format, all integers little-endian:
//   u8 format (1), u64 id, i64 expires_ms, u64 charges, u64 secret[2],
//   str resource, str subject, str tier   (str: u16 length, then the bytes)
//   costs estimate, costs used            (costs: i64 bare, u8 count, count x (u8 length,
//   u8 bare_charged (0 or 1)                                   unit bytes, i64 amount))
// The decoder refuses anything else: another format, a length past the end or beyond the
// policy's bounds, an amount out of range, trailing bytes.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "lease_registry.h"

namespace sluice {

// The key of lease `id`'s record, "lease:{<id in 16 hex digits>}", held inline (a release
// allocates nothing for it). Limit keys start with '{', so the two never meet, and the braces
// are a Redis Cluster hash tag that spreads leases over the slots.
class LeaseRecordKey {
 public:
  explicit LeaseRecordKey(uint64_t id);
  std::string_view view() const { return {bytes_.data(), bytes_.size()}; }

 private:
  std::array<char, 24> bytes_{};
};

std::string encode_lease(const Lease& lease);
std::optional<Lease> decode_lease(std::string_view bytes);

}  // namespace sluice
