// Who is blocked now: the most denied subjects per window (last 1, 5 and 15 minutes) with the
// tier and rule of their latest denial, and bounds that hold whatever the traffic.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "sluice/stats.h"

namespace sluice {
namespace {

constexpr int64_t kT0 = 1'700'000'000'000;  // a multiple of 10 s

const Stats::Blocked* find(const std::vector<Stats::Blocked>& v, const std::string& subject) {
  for (const auto& b : v)
    if (b.subject == subject) return &b;
  return nullptr;
}

TEST(StatsBlockedNow, WindowsKeepOnlyRecentDenials) {
  Stats stats;
  for (int i = 0; i < 5; ++i) stats.record_blocked("predict", "x", "free", "per_minute", kT0);
  stats.record_blocked("predict", "y", "free", "per_minute", kT0 + 1'000);
  // x's latest denial is by another rule for another tier: the window shows the latest.
  stats.record_blocked("predict", "x", "premium", "per_day", kT0 + 2'000);
  uint64_t denials = 0;
  auto now = stats.blocked_now(kT0 + 5'000, 60, &denials);
  ASSERT_EQ(now.size(), 2u);
  EXPECT_EQ(denials, 7u);
  EXPECT_EQ(now[0].subject, "x");
  EXPECT_EQ(now[0].count, 6u);
  EXPECT_EQ(now[0].error, 0u);
  EXPECT_EQ(now[0].tier, "premium");
  EXPECT_EQ(now[0].rule, "per_day");
  EXPECT_EQ(now[1].subject, "y");
  // Seventy seconds later the last minute is empty, the last five still count them.
  EXPECT_TRUE(stats.blocked_now(kT0 + 70'000, 60).empty());
  ASSERT_EQ(stats.blocked_now(kT0 + 70'000, 300).size(), 2u);
  // A client that stopped long ago is gone from every window, not second forever.
  stats.record_blocked("predict", "z", "free", "per_minute", kT0 + 16 * 60'000);
  auto later = stats.blocked_now(kT0 + 16 * 60'000, 900);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].subject, "z");
}

TEST(StatsBlockedNow, SumsAcrossBucketsExactlyWhileFewSubjects) {
  Stats stats;
  for (int s = 0; s < 300; ++s) {  // 300 s, one denial of "a" per second, of "b" every 3rd
    stats.record_blocked("r", "a", "free", "rule", kT0 + s * 1'000);
    if (s % 3 == 0) stats.record_blocked("r", "b", "free", "rule", kT0 + s * 1'000);
  }
  const auto five = stats.blocked_now(kT0 + 299'000, 300);
  ASSERT_EQ(five.size(), 2u);
  EXPECT_EQ(five[0].count, 300u);
  EXPECT_EQ(five[1].count, 100u);
  EXPECT_EQ(five[0].error + five[1].error, 0u);
  const auto one = stats.blocked_now(kT0 + 299'000, 60);
  EXPECT_EQ(one[0].count, 60u);  // the last six 10-second buckets
}

TEST(StatsBlockedNow, BoundsHoldUnderManyDistinctSubjects) {
  // 40 heavy subjects among 5,000 one-off ones: every listed subject's true count lies in
  // [count, count + error], the heavy ones are all listed, and errors stay within the
  // stated bound (denials in the window / kTopSubjects per bucket summed).
  Stats stats;
  std::mt19937 rng(7);
  std::map<std::string, uint64_t> truth;
  for (int i = 0; i < 12'000; ++i) {
    const int64_t t = kT0 + i * 20;  // 240 s
    std::string subject =
        (rng() % 3 == 0) ? "heavy" + std::to_string(rng() % 40) : "once" + std::to_string(i);
    ++truth[subject];
    stats.record_blocked("r", subject, "free", "rule", t);
  }
  uint64_t denials = 0;
  const auto listed = stats.blocked_now(kT0 + 239'999, 300, &denials);
  EXPECT_EQ(denials, 12'000u);
  ASSERT_FALSE(listed.empty());
  for (const auto& b : listed) {
    const uint64_t real = truth.at(b.subject);
    EXPECT_LE(b.count, real) << b.subject;
    EXPECT_GE(b.count + b.error, real) << b.subject;
    EXPECT_LE(b.error, denials / Stats::kTopSubjects) << b.subject;
  }
  for (int h = 0; h < 40; ++h)
    EXPECT_NE(find(listed, "heavy" + std::to_string(h)), nullptr) << "heavy" << h;
}

TEST(StatsBlockedNow, StatsJsonHasTheThreeWindows) {
  Stats stats;
  stats.record_blocked("predict", "x", "free", "per_minute", kT0);
  const auto doc = nlohmann::json::parse(stats.to_json(kT0 + 1'000));
  for (const char* w : {"60s", "300s", "900s"}) {
    const auto& window = doc.at("blocked_now").at(w);
    EXPECT_EQ(window.at("denials"), 1);
    ASSERT_EQ(window.at("subjects").size(), 1u) << w;
    const auto& s = window.at("subjects")[0];
    EXPECT_EQ(s.at("subject"), "x");
    EXPECT_EQ(s.at("tier"), "free");
    EXPECT_EQ(s.at("rule"), "per_minute");
    EXPECT_EQ(s.at("count"), 1);
    EXPECT_EQ(s.at("error"), 0);
  }
  EXPECT_EQ(doc.at("top_blocked").size(), 1u);  // the all-time list stays
}

}  // namespace
}  // namespace sluice
