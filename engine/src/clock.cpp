#include "sluice/clock.h"

#include <chrono>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "tsc.h"

namespace sluice {

namespace detail {

int64_t wall_ns() {
  using namespace std::chrono;
  return duration_cast<nanoseconds>(system_clock::now().time_since_epoch()).count();
}

namespace {

// A counter reading and a clock reading that belong together: the clock is read between two
// counter reads and matched with their midpoint, and of three such pairs the tightest is kept.
// A pair that a preemption split (the thread descheduled between the reads) would skew the
// rate measured from it, or every time extrapolated from it, by the length of the pause.
struct Pair {
  uint64_t ticks;
  int64_t ns;
};
template <typename ReadNs>
Pair read_pair(ReadNs read_ns) {
  Pair best{0, 0};
  uint64_t best_gap = UINT64_MAX;
  for (int attempt = 0; attempt < 3; ++attempt) {
    const uint64_t before = Tsc::read();
    const int64_t ns = read_ns();
    const uint64_t after = Tsc::read();
    if (after - before < best_gap) {
      best_gap = after - before;
      best = {before + (after - before) / 2, ns};
    }
  }
  return best;
}

int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Tsc::Tsc() {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0x80000000, &a, &b, &c, &d) == 0 || a < 0x80000007) return;
  __get_cpuid(0x80000007, &a, &b, &c, &d);
  if ((d & (1u << 8)) == 0) return;  // no invariant TSC
  // 2 ms of calibration once per process: over the 1 ms a clock anchor is extrapolated, an
  // error of 0.1 % in the rate is one microsecond.
  const Pair start = read_pair(steady_ns);
  while (steady_ns() - start.ns < 2'000'000) {
  }
  const Pair end = read_pair(steady_ns);
  if (end.ticks <= start.ticks) return;
  ns_per_tick_ =
      static_cast<double>(end.ns - start.ns) / static_cast<double>(end.ticks - start.ticks);
  ticks_per_ms_ = static_cast<uint64_t>(1e6 / ns_per_tick_);
  usable_ = ticks_per_ms_ > 0;
#endif
}

const Tsc& Tsc::instance() {
  static const Tsc tsc;
  return tsc;
}

namespace {
thread_local Pair t_anchor{0, 0};  // this thread's (counter, wall time) to extrapolate from
}  // namespace

int64_t unix_ms_at_tsc(uint64_t ticks) {
  const Tsc& tsc = Tsc::instance();
  Pair& a = t_anchor;
  // Unsigned: a counter that went backwards (another core's TSC, a migrated VM) looks like a
  // long interval and renews the anchor too.
  const uint64_t since = ticks - a.ticks;
  if (since >= tsc.ticks_per_ms()) {
    a = read_pair(wall_ns);
    // `ticks` was read before the anchor: answering the anchor's time is at most that late.
    return a.ns / 1'000'000;
  }
  return (a.ns + static_cast<int64_t>(static_cast<double>(since) * tsc.ns_per_tick())) / 1'000'000;
}

}  // namespace detail

int64_t SystemClock::now_ms() const {
  if (detail::Tsc::instance().usable()) return detail::unix_ms_at_tsc(detail::Tsc::read());
  return detail::wall_ns() / 1'000'000;
}

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

}  // namespace sluice
