// The recorder behind SL.POLICY SIMULATE: records come back whole and in time order, the
// oldest are overwritten when memory runs out, the time bound holds, and threads' rings merge.
#include <gtest/gtest.h>

#include <string>
#include <thread>

#include "recorder.h"

namespace sluice::server {
namespace {

Recorded request(int64_t t, std::string_view subject, bool allowed = true) {
  Recorded r;
  r.time_ms = t;
  r.kind = Recorded::Kind::kCheck;
  r.allowed = allowed;
  r.cost = 3;
  r.resource = "predict";
  r.subject = subject;
  r.tier = "premium";
  r.api_key = "k-1";
  r.live_rule = "per_minute";
  return r;
}

TEST(Recorder, RecordsComeBackWholeInTimeOrder) {
  Recorder rec({900, 1 << 20, 1});
  rec.record(request(1'000, "alice"));
  rec.record(request(2'000, "bob", false));
  const auto copy = rec.copy(3'000, 0);
  ASSERT_EQ(copy.records.size(), 2u);
  const Recorded& b = copy.records[1];
  EXPECT_EQ(b.time_ms, 2'000);
  EXPECT_EQ(b.subject, "bob");
  EXPECT_FALSE(b.allowed);
  EXPECT_EQ(b.cost, 3);
  EXPECT_EQ(b.resource, "predict");
  EXPECT_EQ(b.tier, "premium");
  EXPECT_EQ(b.api_key, "k-1");
  EXPECT_EQ(b.live_rule, "per_minute");
  EXPECT_EQ(copy.from_ms, 1'000);
  EXPECT_EQ(copy.to_ms, 2'000);
}

// Named costs come back with their units and the bare cost (0 when only units were named).
TEST(Recorder, NamedCostsComeBack) {
  Recorder rec({900, 1 << 20, 1});
  Recorded r = request(1'000, "carol");
  r.cost = 0;
  r.named.add("input_tokens", 1200);
  r.named.add("output_tokens", 0);
  rec.record(r);
  Recorded plain = request(1'500, "dave");
  plain.cost = 1;
  rec.record(plain);
  const auto copy = rec.copy(3'000, 0);
  ASSERT_EQ(copy.records.size(), 2u);
  const Recorded& c = copy.records[0];
  EXPECT_EQ(c.cost, 0);
  ASSERT_EQ(c.named.count, 2);
  EXPECT_EQ(c.named.items[0].unit, "input_tokens");
  EXPECT_EQ(c.named.items[0].amount, 1200);
  EXPECT_EQ(c.named.items[1].unit, "output_tokens");
  EXPECT_EQ(c.named.items[1].amount, 0);
  EXPECT_EQ(c.subject, "carol");
  EXPECT_EQ(c.api_key, "k-1");
  EXPECT_EQ(copy.records[1].cost, 1);
  EXPECT_EQ(copy.records[1].named.count, 0);
}

// A ring far smaller than the traffic keeps the newest records, each intact, with no gap.
TEST(Recorder, TheOldestAreOverwrittenWhenMemoryRunsOut) {
  Recorder rec({900, 0, 1});  // the smallest ring there is
  constexpr int kRecords = 20'000;
  for (int i = 0; i < kRecords; ++i) {
    rec.record(request(i, "subject-" + std::to_string(i) + std::string(i % 300, 'x')));
  }
  const auto copy = rec.copy(kRecords, 0);
  ASSERT_GT(copy.records.size(), 1u);
  ASSERT_LT(copy.records.size(), static_cast<size_t>(kRecords));
  EXPECT_EQ(copy.records.back().time_ms, kRecords - 1);
  for (size_t i = 0; i < copy.records.size(); ++i) {
    const Recorded& r = copy.records[i];
    const int64_t t = r.time_ms;
    EXPECT_EQ(r.subject, "subject-" + std::to_string(t) + std::string(t % 300, 'x'));
    if (i > 0) {
      EXPECT_EQ(t, copy.records[i - 1].time_ms + 1) << "a gap in the newest records";
    }
  }
  EXPECT_LE(copy.storage.size(), rec.ring_bytes());
}

TEST(Recorder, OnlyTheRequestedSecondsAreReplayed) {
  Recorder rec({60, 1 << 20, 1});
  for (int64_t t = 0; t <= 100'000; t += 1'000) rec.record(request(t, "s"));
  EXPECT_EQ(rec.copy(100'000, 10).records.size(), 11u);  // 90 s .. 100 s
  EXPECT_EQ(rec.copy(100'000, 0).records.size(), 61u);   // the recorder's own bound: 60 s
  EXPECT_EQ(rec.copy(100'000, 3'600).records.size(), 61u);
}

TEST(Recorder, ThreadsRecordApartAndMergeByTime) {
  Recorder rec({900, 1 << 20, 2});
  std::thread odd([&] {
    for (int64_t t = 1; t < 2'000; t += 2) rec.record(request(t, "odd"));
  });
  for (int64_t t = 0; t < 2'000; t += 2) rec.record(request(t, "even"));
  odd.join();
  const auto copy = rec.copy(2'000, 0);
  ASSERT_EQ(copy.records.size(), 2'000u);
  for (size_t i = 0; i < copy.records.size(); ++i) {
    EXPECT_EQ(copy.records[i].time_ms, static_cast<int64_t>(i));
    EXPECT_EQ(copy.records[i].subject, i % 2 ? "odd" : "even");
  }
}

}  // namespace
}  // namespace sluice::server
