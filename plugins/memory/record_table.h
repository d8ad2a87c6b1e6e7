// The memory plugin's records (ABI 1.4): small values by key, each with an expiry, in one
// hash map under one mutex. Only lease commands use records, a few per request at most, so
// the map is kept simple rather than fast; expired records are dropped by a pass over the map
// at most once a second of the host's time.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sluice::memory_plugin {

class RecordTable {
 public:
  // Thread-safe, all of them; values are copied in and out, so no lock is held by a caller.
  void put(std::string_view key, std::string_view value, int64_t expires_at_ms, int64_t now_ms);
  // Copies the live record's value into `out` (its capacity reused); false when there is none.
  bool get(std::string_view key, int64_t now_ms, std::string& out);
  // Removes the record; moves its value into `out` and returns true when it was live.
  bool remove(std::string_view key, int64_t now_ms, std::string& out);
  size_t size() const;

 private:
  struct Record {
    std::string value;
    int64_t expires_at_ms = 0;
  };
  void sweep(int64_t now_ms);  // requires mu_

  struct KeyHash {  // finds by string_view, so that a lookup allocates no key
    using is_transparent = void;
    size_t operator()(std::string_view k) const { return std::hash<std::string_view>{}(k); }
  };

  mutable std::mutex mu_;
  std::unordered_map<std::string, Record, KeyHash, std::equal_to<>> records_;  // guarded by mu_
  int64_t next_sweep_ms_ = 0;                                                  // guarded by mu_
};

}  // namespace sluice::memory_plugin
