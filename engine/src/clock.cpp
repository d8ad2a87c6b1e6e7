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

Tsc::Tsc() {
#if defined(__x86_64__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0x80000000, &a, &b, &c, &d) == 0 || a < 0x80000007) return;
  __get_cpuid(0x80000007, &a, &b, &c, &d);
  if ((d & (1u << 8)) == 0) return;  // no invariant TSC
  // 2 ms of calibration once per process: over the 1 ms a clock anchor is extrapolated, an
  // error of 0.1 % in the rate is one microsecond.
  using std::chrono::steady_clock;
  const auto t0 = steady_clock::now();
  const uint64_t c0 = read();
  auto t1 = t0;
  while (t1 - t0 < std::chrono::milliseconds(2)) t1 = steady_clock::now();
  const uint64_t c1 = read();
  if (c1 <= c0) return;
  ns_per_tick_ = static_cast<double>(std::chrono::nanoseconds(t1 - t0).count()) /
                 static_cast<double>(c1 - c0);
  ticks_per_ms_ = static_cast<uint64_t>(1e6 / ns_per_tick_);
  usable_ = ticks_per_ms_ > 0;
#endif
}

const Tsc& Tsc::instance() {
  static const Tsc tsc;
  return tsc;
}

namespace {
struct Anchor {
  uint64_t ticks = 0;
  int64_t unix_ns = 0;
};
thread_local Anchor t_anchor;
}  // namespace

int64_t unix_ms_at_tsc(uint64_t ticks) {
  const Tsc& tsc = Tsc::instance();
  Anchor& a = t_anchor;
  // Unsigned: a counter that went backwards (another core's TSC, a migrated VM) looks like a
  // long interval and renews the anchor too.
  const uint64_t since = ticks - a.ticks;
  if (since >= tsc.ticks_per_ms()) {
    a.ticks = ticks;
    a.unix_ns = wall_ns();
    return a.unix_ns / 1'000'000;
  }
  return (a.unix_ns + static_cast<int64_t>(static_cast<double>(since) * tsc.ns_per_tick())) /
         1'000'000;
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
