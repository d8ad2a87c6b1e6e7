// The memory plugin's records (ABI 1.4): small values by key, each with an expiry, in one
// hash map under one mutex. Only lease commands use records, a few per request at most, so
// the map is kept simple rather than fast; expired records are dropped by a pass over the map
// at most once a second of the host's time.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace sluice::memory_plugin {

class RecordTable {
 public:
  // Thread-safe, all three; values are copied in and out, so no lock is held by a caller.
  void put(std::string_view key, std::string_view value, int64_t expires_at_ms, int64_t now_ms);
  std::optional<std::string> get(std::string_view key, int64_t now_ms);
  std::optional<std::string> remove(std::string_view key, int64_t now_ms);
  size_t size() const;

 private:
  struct Record {
    std::string value;
    int64_t expires_at_ms = 0;
  };
  void sweep(int64_t now_ms);  // requires mu_

  mutable std::mutex mu_;
  std::unordered_map<std::string, Record> records_;  // guarded by mu_
  int64_t next_sweep_ms_ = 0;                        // guarded by mu_
};

}  // namespace sluice::memory_plugin
