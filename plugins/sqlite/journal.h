// The journal's record format: a compact serialization of key changes. Interval and commit
// mode write each writer cycle's changes as one journal row holding these records; a start-up
// replays the rows in order after loading the counters table (a later record wins).
//
// A row is a format byte followed by records, all integers little-endian:
//   put:   0x01, u32 key_len, key, u32 state_len, i64 expires_at_ms, state
//   erase: 0x02, u32 key_len, key
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace sluice::sqlite_plugin::journal {

inline constexpr uint8_t kFormat = 1;  // the first byte of every journal row

// Appends a put record; returns the offset to pass to overwrite() while `buf` is unchanged
// before that offset.
size_t append_put(std::string& buf, std::string_view key, std::string_view state,
                  int64_t expires_at_ms);
// Rewrites the put record at `offset` if its state has the same length; false otherwise.
bool overwrite(std::string& buf, size_t offset, std::string_view state, int64_t expires_at_ms);
void append_erase(std::string& buf, std::string_view key);

// Calls `put` or `erase` for each record of one row (format byte included), in order.
// Returns false, having called nothing more, at the first malformed byte.
using PutFn =
    std::function<void(std::string_view key, std::string_view state, int64_t expires_at_ms)>;
using EraseFn = std::function<void(std::string_view key)>;
bool replay(std::string_view row, const PutFn& put, const EraseFn& erase);

}  // namespace sluice::sqlite_plugin::journal
