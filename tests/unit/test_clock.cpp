// SystemClock reads the time-stamp counter and extrapolates from a per-thread anchor on the
// system clock (engine/src/tsc.h): it must agree with std::chrono::system_clock to the
// millisecond, on every thread, however often or rarely it is read.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "sluice/clock.h"

namespace {

int64_t system_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Reads both clocks for `duration` of real time, `spin` iterations apart; returns the share of
// reads that fell outside [system before, system after]. Exact extrapolation never leaves it;
// the anchor's own read lags its counter read by a few tens of nanoseconds, which moves a
// millisecond boundary for a few reads in 100,000. A rate off by a tenth leaves it for ~5 %.
double out_of_step_share(std::chrono::milliseconds duration, int spin) {
  const auto& clock = sluice::SystemClock::instance();
  const auto end = std::chrono::steady_clock::now() + duration;
  int bad = 0, reads = 0;
  std::atomic<int> sink{0};
  while (std::chrono::steady_clock::now() < end) {
    const int64_t before = system_ms();
    const int64_t ours = clock.now_ms();
    const int64_t after = system_ms();
    if (ours < before || ours > after) ++bad;
    ++reads;
    for (int i = 0; i < spin; ++i) sink.fetch_add(1, std::memory_order_relaxed);
  }
  return static_cast<double>(bad) / reads;
}

constexpr double kTolerated = 0.002;

TEST(SystemClock, AgreesWithTheSystemClockWhenReadBackToBack) {
  EXPECT_LT(out_of_step_share(std::chrono::milliseconds(100), 0), kTolerated);
}

TEST(SystemClock, AgreesWithTheSystemClockWhenReadNowAndThen) {
  // Reads a few hundred microseconds apart cross the anchor's one-millisecond renewal in
  // every phase.
  EXPECT_LT(out_of_step_share(std::chrono::milliseconds(200), 20'000), kTolerated);
}

TEST(SystemClock, AgreesWithTheSystemClockOnEveryThread) {
  std::vector<std::thread> threads;
  std::vector<double> share(4);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back(
        [&share, t] { share[t] = out_of_step_share(std::chrono::milliseconds(100), t * 500); });
  }
  for (auto& th : threads) th.join();
  for (double s : share) EXPECT_LT(s, kTolerated);
}

}  // namespace
