#include "journal.h"

#include <bit>
#include <cstring>

namespace sluice::sqlite_plugin::journal {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the journal format is little-endian; add byte swaps for this target");

constexpr uint8_t kPut = 1;
constexpr uint8_t kErase = 2;
// A put's fields after its key: state length, expiry.
constexpr size_t kPutFields = 4 + 8;

template <typename T>
void put_int(std::string& buf, T v) {
  char bytes[sizeof v];
  std::memcpy(bytes, &v, sizeof v);
  buf.append(bytes, sizeof v);
}

template <typename T>
bool take_int(std::string_view& in, T& v) {
  if (in.size() < sizeof v) return false;
  std::memcpy(&v, in.data(), sizeof v);
  in.remove_prefix(sizeof v);
  return true;
}

}  // namespace

size_t append_put(std::string& buf, std::string_view key, std::string_view state,
                  int64_t expires_at_ms) {
  buf.push_back(static_cast<char>(kPut));
  put_int(buf, static_cast<uint32_t>(key.size()));
  buf.append(key);
  const size_t offset = buf.size();
  put_int(buf, static_cast<uint32_t>(state.size()));
  put_int(buf, expires_at_ms);
  buf.append(state);
  return offset;
}

bool overwrite(std::string& buf, size_t offset, std::string_view state, int64_t expires_at_ms) {
  uint32_t len = 0;
  if (offset + kPutFields > buf.size()) return false;
  std::memcpy(&len, buf.data() + offset, sizeof len);
  if (len != state.size() || offset + kPutFields + len > buf.size()) return false;
  std::memcpy(buf.data() + offset + 4, &expires_at_ms, sizeof expires_at_ms);
  if (len > 0) std::memcpy(buf.data() + offset + kPutFields, state.data(), len);
  return true;
}

void append_erase(std::string& buf, std::string_view key) {
  buf.push_back(static_cast<char>(kErase));
  put_int(buf, static_cast<uint32_t>(key.size()));
  buf.append(key);
}

bool replay(std::string_view row, const PutFn& put, const EraseFn& erase) {
  uint8_t format = 0;
  if (!take_int(row, format) || format != kFormat) return false;
  while (!row.empty()) {
    uint8_t kind = 0;
    uint32_t key_len = 0;
    if (!take_int(row, kind) || !take_int(row, key_len) || row.size() < key_len) return false;
    const std::string_view key = row.substr(0, key_len);
    row.remove_prefix(key_len);
    if (kind == kErase) {
      erase(key);
      continue;
    }
    uint32_t state_len = 0;
    int64_t expires = 0;
    if (kind != kPut || !take_int(row, state_len) || !take_int(row, expires) ||
        row.size() < state_len) {
      return false;
    }
    put(key, row.substr(0, state_len), expires);
    row.remove_prefix(state_len);
  }
  return true;
}

}  // namespace sluice::sqlite_plugin::journal
