// Injectable time. Everything that decides reads time through a Clock so that tests drive a
// simulated clock and never sleep.
#pragma once

#include <atomic>
#include <cstdint>

#include "sluice/export.h"

namespace sluice {

class SLUICE_API Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch. Wall time, so that persisted state (SQLite) and shared
  // state (Redis) mean the same after a restart or on another host.
  virtual int64_t now_ms() const = 0;
};

class SLUICE_API SystemClock final : public Clock {
 public:
  int64_t now_ms() const override;
  static SystemClock& instance();
};

// A clock that moves only when told to. Thread-safe.
class SLUICE_API ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_ms = 1'700'000'000'000) : now_(start_ms) {}
  int64_t now_ms() const override { return now_.load(std::memory_order_relaxed); }
  void set(int64_t ms) { now_.store(ms, std::memory_order_relaxed); }
  void advance(int64_t ms) { now_.fetch_add(ms, std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace sluice
