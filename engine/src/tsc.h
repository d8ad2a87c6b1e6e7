// The x86 time-stamp counter as a cheap clock, for the decision hot path (internal header).
//
// A vDSO clock_gettime costs ~20 ns a read on this project's machines, rdtsc ~9. A decision
// needs the wall time (its `now_ms`) and a start time for the latency histogram; with the TSC
// one read gives both. The TSC is used only where the CPU says it ticks at a constant rate
// across power states (invariant TSC); elsewhere everything falls back to the system clocks.
#pragma once

#include <cstdint>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace sluice::detail {

class Tsc {
 public:
  // Measured once per process (2 ms against steady_clock) on first use.
  static const Tsc& instance();

  bool usable() const { return usable_; }
  static uint64_t read() {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return 0;
#endif
  }
  double ns_per_tick() const { return ns_per_tick_; }
  uint64_t ticks_per_ms() const { return ticks_per_ms_; }

 private:
  Tsc();
  bool usable_ = false;
  double ns_per_tick_ = 1.0;
  uint64_t ticks_per_ms_ = 0;
};

// Milliseconds since the Unix epoch at TSC reading `ticks` (taken by this thread just now),
// extrapolated from a per-thread anchor on the system clock that is renewed every millisecond:
// as exact as system_clock to well under a millisecond, at the cost of a multiplication.
// Only for when Tsc::instance().usable().
int64_t unix_ms_at_tsc(uint64_t ticks);

// The system clock itself (CLOCK_REALTIME), in nanoseconds since the Unix epoch.
int64_t wall_ns();

}  // namespace sluice::detail
