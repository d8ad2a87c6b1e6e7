// Monotonic time for timeouts, and waiting for it. Unlike Clock (wall time, which can be
// stepped), a Timer only moves forward. The engine's storage watchdog waits on one; tests
// inject a ManualTimer and move it by hand, so timeout tests neither sleep nor depend on how
// fast the machine is.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <utility>
#include <vector>

#include "sluice/export.h"
#include "sluice/mutex.h"

namespace sluice {

class SLUICE_API Timer {
 public:
  virtual ~Timer() = default;
  virtual int64_t now_ns() const = 0;
  // Blocks on `cv`, whose mutex `lock` holds, until it is notified or this timer reaches
  // `deadline_ns`. May return early: callers read the time again.
  virtual void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                          int64_t deadline_ns) const = 0;
};

// std::chrono::steady_clock.
class SLUICE_API SteadyTimer final : public Timer {
 public:
  int64_t now_ns() const override;
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  int64_t deadline_ns) const override;
  static SteadyTimer& instance();
};

// Moves only when advanced; advancing wakes every thread waiting on it. A waiter must not be
// destroyed while another thread advances the timer.
class SLUICE_API ManualTimer final : public Timer {
 public:
  int64_t now_ns() const override { return now_.load(std::memory_order_acquire); }
  void wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                  int64_t deadline_ns) const override;
  void advance_ms(int64_t ms);

 private:
  std::atomic<int64_t> now_{0};
  mutable Mutex mu_;
  mutable std::vector<std::pair<std::mutex*, std::condition_variable*>> waiters_
      SLUICE_GUARDED_BY(mu_);
};

}  // namespace sluice
