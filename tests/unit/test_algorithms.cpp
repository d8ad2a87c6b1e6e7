// Hand-checked scenarios for every rate-limit algorithm, with explicit times.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "limit_params.h"
#include "sluice/algorithms.h"
#include "sluice/clock.h"

namespace {

using sluice::ManualClock;

// A minute boundary, so fixed windows of 1 s, 10 s and 60 s all start here.
constexpr int64_t kT0 = 1'699'999'980'000;
static_assert(kT0 % 60'000 == 0);

using sluice::testing::params;

// One key's stored state, as a plugin would keep it, driven by a ManualClock.
class Key {
 public:
  explicit Key(sluice_limit_params p, ManualClock& clock) : p_(p), clock_(clock) {
    buf_.resize(sluice::algo::state_capacity(p));
  }

  sluice_item_result call(sluice_op op, int64_t cost = 1, bool commit = true, uint64_t lease_id = 0,
                          int64_t lease_expires_ms = 0) {
    sluice_item item{};
    item.key = "k";
    item.key_len = 1;
    item.op = op;
    item.params = p_;
    item.cost = cost;
    item.lease_id = lease_id;
    item.lease_expires_ms = lease_expires_ms;
    item.state_capacity = static_cast<uint32_t>(buf_.size());
    sluice_item_result r{};
    len_ = sluice::algo::apply(item, clock_.now_ms(), buf_.data(), len_, commit, r, expires_);
    EXPECT_LE(len_, buf_.size());
    return r;
  }
  sluice_item_result consume(int64_t cost = 1) { return call(SLUICE_OP_CONSUME, cost); }
  sluice_item_result peek(int64_t cost = 1) { return call(SLUICE_OP_PEEK, cost); }
  sluice_item_result adjust(int64_t cost) { return call(SLUICE_OP_ADJUST, cost); }
  sluice_item_result acquire(uint64_t id, int64_t cost = 1, int64_t expires_ms = 0) {
    return call(SLUICE_OP_LEASE_ACQUIRE, cost, true, id, expires_ms);
  }
  sluice_item_result release(uint64_t id) { return call(SLUICE_OP_LEASE_RELEASE, 0, true, id); }

  std::vector<uint8_t> bytes() const { return {buf_.begin(), buf_.begin() + len_}; }
  size_t len() const { return len_; }
  int64_t expires() const { return expires_; }
  void set_bytes(const std::vector<uint8_t>& b) {
    if (buf_.size() < b.size()) buf_.resize(b.size());
    std::memcpy(buf_.data(), b.data(), b.size());
    len_ = b.size();
  }

 private:
  sluice_limit_params p_;
  ManualClock& clock_;
  std::vector<uint8_t> buf_;
  size_t len_ = 0;
  int64_t expires_ = 0;
};

const sluice_algorithm kAll[] = {
    SLUICE_ALG_FIXED_WINDOW, SLUICE_ALG_SLIDING_WINDOW, SLUICE_ALG_SLIDING_WINDOW_COUNTER,
    SLUICE_ALG_TOKEN_BUCKET, SLUICE_ALG_GCRA,           SLUICE_ALG_CONCURRENCY};

// ---- fixed_window ----------------------------------------------------------------------

// 10 per minute: ten pass, the eleventh waits exactly until the window ends.
TEST(FixedWindow, TenPerMinuteThenDeniedUntilWindowEnd) {
  ManualClock clock(kT0 + 5'000);
  Key key(params(SLUICE_ALG_FIXED_WINDOW, 10, 60'000), clock);
  for (int i = 0; i < 10; ++i) {
    const auto r = key.consume();
    ASSERT_EQ(r.allowed, 1) << i;
    EXPECT_EQ(r.limit, 10);
    EXPECT_EQ(r.remaining, 9 - i);
    EXPECT_EQ(r.retry_after_ms, 0);
    EXPECT_EQ(r.reset_after_ms, 55'000);
  }
  const auto denied = key.consume();
  EXPECT_EQ(denied.allowed, 0);
  EXPECT_EQ(denied.remaining, 0);
  EXPECT_EQ(denied.retry_after_ms, 55'000);
  EXPECT_EQ(denied.reset_after_ms, 55'000);
  EXPECT_EQ(key.expires(), kT0 + 60'000);

  clock.set(kT0 + 59'999);
  EXPECT_EQ(key.consume().allowed, 0);
  clock.set(kT0 + 60'000);
  const auto next = key.consume();
  EXPECT_EQ(next.allowed, 1);
  EXPECT_EQ(next.remaining, 9);
  EXPECT_EQ(next.reset_after_ms, 60'000);
}

// Costs add up; a request that does not fit changes nothing, a smaller one still passes.
TEST(FixedWindow, CostsAddUp) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_FIXED_WINDOW, 10, 1'000), clock);
  EXPECT_EQ(key.consume(4).remaining, 6);
  EXPECT_EQ(key.consume(4).remaining, 2);
  const auto before = key.bytes();
  const auto denied = key.consume(3);
  EXPECT_EQ(denied.allowed, 0);
  EXPECT_EQ(denied.remaining, 2);
  EXPECT_EQ(denied.retry_after_ms, 1'000);
  EXPECT_EQ(key.bytes(), before);
  EXPECT_EQ(key.consume(2).remaining, 0);
}

// A cost the limit can never admit gets retry -1, not a wait.
TEST(FixedWindow, CostAboveLimitIsNeverAdmitted) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_FIXED_WINDOW, 10, 1'000), clock);
  const auto r = key.consume(11);
  EXPECT_EQ(r.allowed, 0);
  EXPECT_EQ(r.retry_after_ms, -1);
  EXPECT_EQ(r.remaining, 10);
  EXPECT_EQ(key.len(), 0u);
}

// ADJUST refunds and charges extra, never below zero; an over-charged window denies.
TEST(FixedWindow, AdjustRefundsAndCharges) {
  ManualClock clock(kT0 + 100);
  Key key(params(SLUICE_ALG_FIXED_WINDOW, 10, 1'000), clock);
  key.consume(5);
  EXPECT_EQ(key.adjust(-3).remaining, 8);
  const auto over = key.adjust(10);
  EXPECT_EQ(over.allowed, 1);
  EXPECT_EQ(over.remaining, 0);
  const auto denied = key.consume(1);
  EXPECT_EQ(denied.allowed, 0);
  EXPECT_EQ(denied.retry_after_ms, 900);
  EXPECT_EQ(key.adjust(-100).remaining, 10);
  EXPECT_EQ(key.len(), 0u);  // an empty counter is a fresh key
}

// ---- sliding_window (exact log) ---------------------------------------------------------

// 3 per second: the fourth waits until the oldest admission is exactly one window old.
TEST(SlidingWindow, WaitsForOldestEntryToLeave) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_SLIDING_WINDOW, 3, 1'000), clock);
  EXPECT_EQ(key.consume().allowed, 1);
  clock.set(kT0 + 400);
  EXPECT_EQ(key.consume().allowed, 1);
  clock.set(kT0 + 800);
  const auto third = key.consume();
  EXPECT_EQ(third.allowed, 1);
  EXPECT_EQ(third.remaining, 0);
  EXPECT_EQ(third.reset_after_ms, 1'000);
  clock.set(kT0 + 900);
  const auto denied = key.consume();
  EXPECT_EQ(denied.allowed, 0);
  EXPECT_EQ(denied.retry_after_ms, 100);
  clock.set(kT0 + 999);
  EXPECT_EQ(key.consume().allowed, 0);
  clock.set(kT0 + 1'000);  // the admission at kT0 is no longer in (now - 1000, now]
  EXPECT_EQ(key.consume().allowed, 1);
  const auto again = key.consume();
  EXPECT_EQ(again.allowed, 0);
  EXPECT_EQ(again.retry_after_ms, 400);
}

// Unlike a fixed window, a burst at the end of one window blocks the start of the next.
TEST(SlidingWindow, NoDoubleBurstAcrossBoundary) {
  ManualClock clock(kT0 + 999);
  Key key(params(SLUICE_ALG_SLIDING_WINDOW, 5, 1'000), clock);
  EXPECT_EQ(key.consume(5).allowed, 1);
  clock.set(kT0 + 1'000);
  const auto r = key.consume();
  EXPECT_EQ(r.allowed, 0);
  EXPECT_EQ(r.retry_after_ms, 999);
}

// Admissions in the same millisecond share one log entry; a big cost waits for enough entries.
TEST(SlidingWindow, MergesSameMillisecondAndWaitsForEnoughRoom) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_SLIDING_WINDOW, 10, 1'000), clock);
  key.consume(2);
  key.consume(2);
  EXPECT_EQ(key.len(), 8u + 16u);
  clock.set(kT0 + 300);
  key.consume(3);
  clock.set(kT0 + 600);
  key.consume(3);
  EXPECT_EQ(key.len(), 8u + 3 * 16u);
  // Full (10). Cost 6 needs the entries of kT0 (4) and kT0+300 (3) gone.
  const auto r = key.consume(6);
  EXPECT_EQ(r.allowed, 0);
  EXPECT_EQ(r.retry_after_ms, 700);
  EXPECT_EQ(r.reset_after_ms, 1'000);
}

// A refund removes the newest admissions; an extra charge is logged now.
TEST(SlidingWindow, AdjustRefundsNewestFirst) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_SLIDING_WINDOW, 4, 1'000), clock);
  key.consume(2);
  clock.set(kT0 + 500);
  key.consume(2);
  EXPECT_EQ(key.adjust(-3).remaining, 3);
  EXPECT_EQ(key.len(), 8u + 16u);  // only one unit at kT0 is left
  EXPECT_EQ(key.adjust(5).remaining, 0);
  const auto r = key.consume(1);
  EXPECT_EQ(r.allowed, 0);
  EXPECT_EQ(r.retry_after_ms, 1'000);  // the 5 charged at kT0+500 must leave first
}

// ---- sliding_window_counter -------------------------------------------------------------

// The previous window is weighted by its share still inside the sliding window.
TEST(SlidingWindowCounter, WeightsPreviousWindow) {
  ManualClock clock(kT0 + 500);
  Key key(params(SLUICE_ALG_SLIDING_WINDOW_COUNTER, 10, 1'000), clock);
  EXPECT_EQ(key.consume(10).allowed, 1);
  clock.set(kT0 + 1'250);  // previous 10 weighted 0.75 -> 7.5 used
  const auto first = key.consume();
  EXPECT_EQ(first.allowed, 1);
  EXPECT_EQ(first.remaining, 1);  // 10 - 7.5 - 1 = 1.5
  EXPECT_EQ(key.consume().allowed, 1);
  const auto denied = key.consume();
  EXPECT_EQ(denied.allowed, 0);
  // 10*(1000-e)/1000 + 2 + 1 <= 10  <=>  e >= 300
  EXPECT_EQ(denied.retry_after_ms, 50);
  clock.set(kT0 + 1'299);
  EXPECT_EQ(key.consume().allowed, 0);
  clock.set(kT0 + 1'300);
  EXPECT_EQ(key.consume().allowed, 1);
}

// Counts that fit (32 bits, 31 for the current window) are stored in 16 bytes (inline in a
// plugin's slot), larger ones in 24; either encoding reads back to the same answers, including
// the 24-byte states written before the compact one existed.
TEST(SlidingWindowCounter, CompactStateUnlessCountsNeedMoreThan32Bits) {
  ManualClock clock(kT0 + 500);
  Key small(params(SLUICE_ALG_SLIDING_WINDOW_COUNTER, 10, 1'000), clock);
  ASSERT_EQ(small.consume(7).allowed, 1);
  EXPECT_EQ(small.len(), 16u);

  constexpr int64_t kBig = int64_t{1} << 40;
  Key big(params(SLUICE_ALG_SLIDING_WINDOW_COUNTER, kBig, 1'000), clock);
  ASSERT_EQ(big.consume(int64_t{5} << 32).allowed, 1);
  EXPECT_EQ(big.len(), 24u);
  clock.set(kT0 + 1'250);  // the big count is now the previous window's, weighted 0.75
  const auto r = big.consume(1);
  EXPECT_EQ(r.allowed, 1);
  EXPECT_EQ(r.remaining, kBig - (int64_t{15} << 30) - 1);
  EXPECT_EQ(big.len(), 24u);

  // The same small state in the wide encoding: window start, prev, cur as int64.
  clock.set(kT0 + 500);
  std::vector<uint8_t> wide(24);
  const int64_t fields[3] = {kT0, 0, 7};
  std::memcpy(wide.data(), fields, sizeof fields);
  Key old(params(SLUICE_ALG_SLIDING_WINDOW_COUNTER, 10, 1'000), clock);
  old.set_bytes(wide);
  for (int i = 0; i < 4; ++i) {
    const auto a = small.consume(), b = old.consume();
    EXPECT_EQ(a.allowed, b.allowed) << i;
    EXPECT_EQ(a.remaining, b.remaining) << i;
    EXPECT_EQ(a.retry_after_ms, b.retry_after_ms) << i;
  }
  EXPECT_EQ(old.bytes(), small.bytes()) << "rewritten in the compact encoding";
}

// Within one aligned window it never admits more than the limit, and a full window waits
// into the next one until the weighted count leaves room.
TEST(SlidingWindowCounter, NeverMoreThanLimitPerWindow) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_SLIDING_WINDOW_COUNTER, 10, 1'000), clock);
  for (int i = 0; i < 10; ++i) ASSERT_EQ(key.consume().allowed, 1);
  clock.set(kT0 + 600);
  const auto denied = key.consume();
  EXPECT_EQ(denied.allowed, 0);
  // Next window: 10*(1000-e)/1000 + 1 <= 10  <=>  e >= 100.
  EXPECT_EQ(denied.retry_after_ms, 500);
  EXPECT_EQ(denied.reset_after_ms, 1'400);  // both windows gone at kT0 + 2000
  clock.set(kT0 + 1'099);
  EXPECT_EQ(key.consume().allowed, 0);
  clock.set(kT0 + 1'100);
  EXPECT_EQ(key.consume().allowed, 1);
}

// A refund larger than the current window's count reaches back into the previous one.
TEST(SlidingWindowCounter, AdjustReachesPreviousWindow) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_SLIDING_WINDOW_COUNTER, 10, 1'000), clock);
  key.consume(8);
  clock.set(kT0 + 1'000);  // previous 8 at full weight
  key.consume(2);
  EXPECT_EQ(key.adjust(-5).remaining, 5);  // current 0, previous 5
  EXPECT_EQ(key.adjust(-100).remaining, 10);
  EXPECT_EQ(key.len(), 0u);
}

// ---- token_bucket -----------------------------------------------------------------------

// Burst 5, refill 10/s: five at once, then one every 100 ms.
TEST(TokenBucket, BurstThenRefill) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_TOKEN_BUCKET, 10, 1'000, 5), clock);
  for (int i = 0; i < 5; ++i) {
    const auto r = key.consume();
    ASSERT_EQ(r.allowed, 1);
    EXPECT_EQ(r.limit, 5);
    EXPECT_EQ(r.remaining, 4 - i);
  }
  const auto denied = key.consume();
  EXPECT_EQ(denied.allowed, 0);
  EXPECT_EQ(denied.retry_after_ms, 100);
  EXPECT_EQ(denied.reset_after_ms, 500);
  clock.advance(99);
  EXPECT_EQ(key.consume().allowed, 0);
  clock.advance(1);
  EXPECT_EQ(key.consume().allowed, 1);
  clock.advance(250);  // 2.5 tokens back
  EXPECT_EQ(key.peek(0).remaining, 2);
  clock.advance(10'000);
  EXPECT_EQ(key.peek(0).remaining, 5);  // never above capacity
}

// 3 tokens per second refill exactly: the k-th token is back at ceil(1000k/3) ms, with no
// drift over many periods.
TEST(TokenBucket, FractionalRefillIsExact) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_TOKEN_BUCKET, 3, 1'000, 2), clock);
  ASSERT_EQ(key.consume(2).allowed, 1);
  const auto denied = key.consume();
  EXPECT_EQ(denied.retry_after_ms, 334);  // ceil(1000/3)
  int admitted = 2;
  while (clock.now_ms() <= kT0 + 30'000) {
    const auto r = key.consume();
    if (r.allowed) {
      ++admitted;
    } else {
      clock.advance(r.retry_after_ms);
    }
  }
  EXPECT_EQ(admitted, 92);  // 2 at once, then one per 1000/3 ms for 30 s
}

// Refunds never overfill; an extra charge leaves a debt that delays the next request.
TEST(TokenBucket, AdjustClampsAndAllowsDebt) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_TOKEN_BUCKET, 10, 1'000, 5), clock);
  key.consume(5);
  EXPECT_EQ(key.adjust(-2).remaining, 2);
  EXPECT_EQ(key.adjust(-100).remaining, 5);
  EXPECT_EQ(key.len(), 0u);
  EXPECT_EQ(key.adjust(7).remaining, 0);  // 2 tokens of debt
  const auto r = key.consume(1);
  EXPECT_EQ(r.allowed, 0);
  EXPECT_EQ(r.retry_after_ms, 300);  // 3 tokens at 10/s
}

// ---- gcra ----------------------------------------------------------------------------------

// 10/s with burst 1: one request per 100 ms emission interval.
TEST(Gcra, SpacesRequestsByEmissionInterval) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_GCRA, 10, 1'000, 1), clock);
  EXPECT_EQ(key.consume().allowed, 1);
  clock.advance(50);
  const auto denied = key.consume();
  EXPECT_EQ(denied.allowed, 0);
  EXPECT_EQ(denied.retry_after_ms, 50);
  EXPECT_EQ(denied.limit, 1);
  clock.advance(50);
  EXPECT_EQ(key.consume().allowed, 1);
}

// Burst 3: three at once, the fourth one emission interval later.
TEST(Gcra, BurstTolerance) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_GCRA, 10, 1'000, 3), clock);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(key.consume().allowed, 1);
  const auto denied = key.consume();
  EXPECT_EQ(denied.retry_after_ms, 100);
  EXPECT_EQ(denied.reset_after_ms, 300);
  EXPECT_EQ(key.consume(4).retry_after_ms, -1);
  clock.advance(300);
  EXPECT_EQ(key.consume(3).allowed, 1);
}

// 3 per second: a fractional emission interval, exact over many periods. (With burst 1 a
// request arriving at 334 instead of 333.3 ms would lose the difference, as it should.)
TEST(Gcra, FractionalIntervalIsExact) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_GCRA, 3, 1'000, 2), clock);
  std::vector<int64_t> times;
  while (clock.now_ms() <= kT0 + 3'000) {
    const auto r = key.consume();
    if (r.allowed) {
      times.push_back(clock.now_ms() - kT0);
    } else {
      clock.advance(r.retry_after_ms);
    }
  }
  EXPECT_EQ(times,
            (std::vector<int64_t>{0, 0, 334, 667, 1000, 1334, 1667, 2000, 2334, 2667, 3000}));
}

// A refund never gives more than the burst; an extra charge pushes the next slot out.
TEST(Gcra, AdjustRefundAndCharge) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_GCRA, 10, 1'000, 2), clock);
  key.consume(2);
  EXPECT_EQ(key.adjust(-1).remaining, 1);
  EXPECT_EQ(key.adjust(-10).remaining, 2);
  EXPECT_EQ(key.len(), 0u);
  key.adjust(4);
  const auto r = key.consume(1);
  EXPECT_EQ(r.retry_after_ms, 300);  // 4 charged, 2 tolerated: 3 intervals for one more
}

// ---- concurrency -------------------------------------------------------------------------

// Two slots: the third waits for the earliest lease to expire, or for a release.
TEST(Concurrency, AcquireReleaseAndExpiry) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_CONCURRENCY, 2, 30'000), clock);
  EXPECT_EQ(key.acquire(1, 1, kT0 + 10'000).allowed, 1);
  const auto second = key.acquire(2, 1, kT0 + 20'000);
  EXPECT_EQ(second.allowed, 1);
  EXPECT_EQ(second.remaining, 0);
  EXPECT_EQ(second.reset_after_ms, 20'000);
  const auto third = key.acquire(3, 1, kT0 + 30'000);
  EXPECT_EQ(third.allowed, 0);
  EXPECT_EQ(third.retry_after_ms, 10'000);
  EXPECT_EQ(key.consume().allowed, 0);  // CONSUME looks at the same slots

  EXPECT_EQ(key.release(1).allowed, 1);
  EXPECT_EQ(key.release(1).allowed, 0);  // already gone
  EXPECT_EQ(key.acquire(3, 1, kT0 + 30'000).allowed, 1);

  clock.set(kT0 + 20'000);  // lease 2 expired without a release
  const auto r = key.acquire(4, 1, kT0 + 40'000);
  EXPECT_EQ(r.allowed, 1);
  EXPECT_EQ(r.remaining, 0);
  EXPECT_EQ(key.len(), 8u + 2 * 24u);  // the expired lease was dropped
  EXPECT_EQ(key.expires(), kT0 + 40'000);
}

// CONSUME and PEEK only look; holding a slot takes LEASE_ACQUIRE.
TEST(Concurrency, ConsumeOnlyLooks) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_CONCURRENCY, 1, 30'000), clock);
  EXPECT_EQ(key.consume().allowed, 1);
  EXPECT_EQ(key.consume().allowed, 1);
  EXPECT_EQ(key.len(), 0u);
}

// Acquiring a held id renews it instead of taking a second slot; the default TTL is the window.
TEST(Concurrency, ReacquireRenewsAndDefaultTtl) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_CONCURRENCY, 3, 30'000), clock);
  EXPECT_EQ(key.acquire(7, 2).remaining, 1);
  EXPECT_EQ(key.expires(), kT0 + 30'000);
  clock.advance(1'000);
  const auto renewed = key.acquire(7, 3, kT0 + 50'000);
  EXPECT_EQ(renewed.allowed, 1);
  EXPECT_EQ(renewed.remaining, 0);
  EXPECT_EQ(key.expires(), kT0 + 50'000);
  EXPECT_EQ(key.acquire(8, 4).retry_after_ms, -1);
  EXPECT_EQ(key.adjust(5).remaining, 0);  // a no-op for concurrency
  EXPECT_EQ(key.release(7).remaining, 3);
  EXPECT_EQ(key.len(), 0u);
}

// ---- every algorithm ---------------------------------------------------------------------

class EveryAlgorithm : public ::testing::TestWithParam<sluice_algorithm> {};

// PEEK answers what CONSUME would and writes nothing, even when asked to commit.
TEST_P(EveryAlgorithm, PeekChangesNothing) {
  ManualClock clock(kT0 + 10);
  Key key(params(GetParam(), 3, 1'000), clock);
  key.call(SLUICE_OP_LEASE_ACQUIRE, 1, true, 1, kT0 + 5'000);
  clock.advance(3);
  const auto before = key.bytes();
  const auto peek = key.peek(2);
  EXPECT_EQ(key.bytes(), before);
  const auto real = key.consume(2);
  EXPECT_EQ(peek.allowed, real.allowed);
  EXPECT_EQ(peek.remaining, real.remaining);
  EXPECT_EQ(peek.reset_after_ms, real.reset_after_ms);
  if (GetParam() == SLUICE_ALG_CONCURRENCY) {  // only a lease holds a slot
    EXPECT_EQ(key.bytes(), before);
    key.call(SLUICE_OP_LEASE_ACQUIRE, 2, true, 2, kT0 + 5'000);
  }
  EXPECT_NE(key.bytes(), before);
  const auto full = key.peek(1);
  EXPECT_EQ(full.allowed, 0);
  EXPECT_GT(full.retry_after_ms, 0);
}

// commit = false writes nothing but answers exactly like the committed call.
TEST_P(EveryAlgorithm, NoCommitWritesNothing) {
  ManualClock clock(kT0 + 10);
  Key key(params(GetParam(), 5, 1'000), clock);
  key.call(SLUICE_OP_LEASE_ACQUIRE, 2, true, 1, kT0 + 5'000);
  for (const sluice_op op :
       {SLUICE_OP_LEASE_ACQUIRE, SLUICE_OP_ADJUST, SLUICE_OP_RESET, SLUICE_OP_LEASE_RELEASE}) {
    const auto before = key.bytes();
    const auto dry = key.call(op, op == SLUICE_OP_ADJUST ? -1 : 2, false, 2, kT0 + 6'000);
    EXPECT_EQ(key.bytes(), before) << op;
    Key copy(params(GetParam(), 5, 1'000), clock);
    copy.set_bytes(before);
    const auto wet = copy.call(op, op == SLUICE_OP_ADJUST ? -1 : 2, true, 2, kT0 + 6'000);
    EXPECT_EQ(dry.allowed, wet.allowed) << op;
    EXPECT_EQ(dry.remaining, wet.remaining) << op;
    EXPECT_EQ(dry.reset_after_ms, wet.reset_after_ms) << op;
    EXPECT_EQ(dry.retry_after_ms, wet.retry_after_ms) << op;
  }
}

// RESET forgets the key.
TEST_P(EveryAlgorithm, ResetForgets) {
  ManualClock clock(kT0);
  Key key(params(GetParam(), 2, 1'000), clock);
  key.call(SLUICE_OP_LEASE_ACQUIRE, 2, true, 1, kT0 + 5'000);
  EXPECT_EQ(key.peek(1).allowed, 0);
  const auto r = key.call(SLUICE_OP_RESET, 0);
  EXPECT_EQ(key.len(), 0u);
  EXPECT_EQ(r.remaining, 2);
  EXPECT_EQ(key.expires(), kT0);
  EXPECT_EQ(key.consume(2).allowed, 1);
}

// A blob of the wrong size or of another algorithm is a fresh key, never a crash.
TEST_P(EveryAlgorithm, ForeignStateIsFresh) {
  ManualClock clock(kT0 + 7);
  for (const size_t size : {1u, 5u, 15u, 17u, 23u, 31u, 33u}) {
    Key key(params(GetParam(), 4, 1'000), clock);
    key.set_bytes(std::vector<uint8_t>(size, 0xAB));
    const auto r = key.consume(1);
    EXPECT_EQ(r.allowed, 1) << size;
    // CONSUME holds nothing under concurrency.
    EXPECT_EQ(r.remaining, GetParam() == SLUICE_ALG_CONCURRENCY ? 4 : 3) << size;
  }
  for (const sluice_algorithm other : kAll) {
    if (other == GetParam()) continue;
    Key writer(params(other, 4, 1'000), clock);
    writer.call(SLUICE_OP_LEASE_ACQUIRE, 3, true, 1, kT0 + 5'000);
    Key key(params(GetParam(), 4, 1'000), clock);
    key.set_bytes(writer.bytes());
    const auto r = key.peek(4);
    EXPECT_EQ(r.allowed, 1) << sluice::algo::algorithm_name(other);
  }
}

// Parameters that cannot work are denied with retry -1, never a crash or a division by zero.
TEST_P(EveryAlgorithm, InvalidParametersAreDenied) {
  ManualClock clock(kT0);
  for (const auto& p : {params(GetParam(), 0, 1'000), params(GetParam(), 5, 0),
                        params(GetParam(), -3, 1'000), params(GetParam(), 5, 1'000, -1)}) {
    Key key(p, clock);
    const auto r = key.consume(1);
    EXPECT_EQ(r.allowed, 0);
    EXPECT_EQ(r.retry_after_ms, -1);
    EXPECT_EQ(key.len(), 0u);
  }
}

// Negative costs on a consuming op and unknown ops are refused without a change.
TEST_P(EveryAlgorithm, BadRequestsChangeNothing) {
  ManualClock clock(kT0);
  Key key(params(GetParam(), 5, 1'000), clock);
  key.call(SLUICE_OP_LEASE_ACQUIRE, 2, true, 1, kT0 + 5'000);
  const auto before = key.bytes();
  EXPECT_EQ(key.consume(-1).retry_after_ms, -1);
  EXPECT_EQ(key.call(static_cast<sluice_op>(99), 1).allowed, 0);
  EXPECT_EQ(key.bytes(), before);
}

// A clock stepping back never produces negative durations or a crash.
TEST_P(EveryAlgorithm, ClockSteppingBackIsHarmless) {
  ManualClock clock(kT0 + 5'000);
  Key key(params(GetParam(), 3, 1'000), clock);
  key.call(SLUICE_OP_LEASE_ACQUIRE, 3, true, 1, kT0 + 9'000);
  clock.set(kT0 + 4'500);
  const auto r = key.call(SLUICE_OP_LEASE_ACQUIRE, 1, true, 2, kT0 + 9'000);
  EXPECT_GE(r.reset_after_ms, 0);
  EXPECT_GE(r.remaining, 0);
  if (!r.allowed) {
    EXPECT_GT(r.retry_after_ms, 0);
  }
}

// A plugin offering less room than the algorithm needs gets a denial, not an overflow.
TEST_P(EveryAlgorithm, TooSmallCapacityIsDenied) {
  sluice_item item{};
  item.op = SLUICE_OP_CONSUME;
  item.params = params(GetParam(), 5, 1'000);
  item.cost = 1;
  item.state_capacity = 8;
  uint8_t buf[8] = {};
  sluice_item_result r{};
  int64_t expires = 0;
  EXPECT_EQ(sluice::algo::apply(item, kT0, buf, 0, true, r, expires), 0u);
  EXPECT_EQ(r.allowed, 0);
  EXPECT_EQ(r.retry_after_ms, -1);
}

std::string algorithm_test_name(const ::testing::TestParamInfo<sluice_algorithm>& param_info) {
  return std::string(sluice::algo::algorithm_name(param_info.param));
}

INSTANTIATE_TEST_SUITE_P(All, EveryAlgorithm, ::testing::ValuesIn(kAll), algorithm_test_name);

// ---- clock steps (docs/algorithms.md, "Clock steps") ------------------------------------

// The algorithms that count what was admitted; concurrency holds leases until their deadline.
class CountingAlgorithm : public ::testing::TestWithParam<sluice_algorithm> {};
const sluice_algorithm kCounting[] = {SLUICE_ALG_FIXED_WINDOW, SLUICE_ALG_SLIDING_WINDOW,
                                      SLUICE_ALG_SLIDING_WINDOW_COUNTER, SLUICE_ALG_TOKEN_BUCKET,
                                      SLUICE_ALG_GCRA};
constexpr int64_t kDay = 24 * 3600 * 1000;

// The wall clock is stepped a day ahead, the limit spent there, and the clock corrected: the
// state written in the wrong day is forgotten instead of denying for a day.
TEST_P(CountingAlgorithm, ACorrectedForwardStepIsForgotten) {
  ManualClock clock(kT0 + kDay);
  Key key(params(GetParam(), 3, 60'000), clock);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(key.consume().allowed, 1);
  ASSERT_EQ(key.consume().allowed, 0);
  clock.set(kT0 + 1'000);
  const auto r = key.consume();
  EXPECT_EQ(r.allowed, 1);
  EXPECT_EQ(r.remaining, 2);  // a fresh limit: the day-ahead admissions no longer count
  EXPECT_LE(r.reset_after_ms, 2 * 60'000);
}

// A step back smaller than a window admits nothing the limit had already given, and the
// denial it causes ends within two windows.
TEST_P(CountingAlgorithm, ASmallStepBackAdmitsNothingMore) {
  for (const int64_t back : {1, 10'000, 30'000, 59'000}) {
    SCOPED_TRACE("stepped back " + std::to_string(back) + " ms");
    ManualClock clock(kT0 + 30'000);
    Key key(params(GetParam(), 3, 60'000), clock);
    for (int i = 0; i < 3; ++i) ASSERT_EQ(key.consume().allowed, 1);
    clock.set(kT0 + 30'000 - back);
    const auto r = key.consume();
    EXPECT_EQ(r.allowed, 0);
    EXPECT_GT(r.retry_after_ms, 0);
    EXPECT_LE(r.retry_after_ms, 2 * 60'000);
    clock.advance(r.retry_after_ms);
    EXPECT_EQ(key.consume().allowed, 1) << "the retry-after is honest after a step back";
  }
}

// Whatever the history of steps, a denial never asks for more than two windows' wait.
TEST_P(CountingAlgorithm, NoStepMakesADenialLongerThanTwoWindows) {
  ManualClock clock(kT0);
  Key key(params(GetParam(), 4, 10'000), clock);
  const int64_t offsets[] = {0, kDay, 5'000, -kDay, 3 * kDay, 9'000, 20'000, -3'000, 7 * kDay, 1};
  for (const int64_t offset : offsets) {
    clock.set(kT0 + kDay + offset);  // around a base a day ahead, so no time is negative
    for (int i = 0; i < 6; ++i) {
      const auto r = key.consume(2);
      if (!r.allowed) {
        EXPECT_LE(r.retry_after_ms, 2 * 10'000) << "offset " << offset;
      }
      EXPECT_LE(r.reset_after_ms, 2 * 10'000) << "offset " << offset;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, CountingAlgorithm, ::testing::ValuesIn(kCounting),
                         algorithm_test_name);

// Settlement debt: token_bucket and gcra carry at most one burst beyond a spent burst, so a
// state can never lie further ahead than a forgotten one would.
TEST(ClockSteps, SettlementDebtIsCappedAtOneBurst) {
  for (const auto alg : {SLUICE_ALG_TOKEN_BUCKET, SLUICE_ALG_GCRA}) {
    SCOPED_TRACE(std::string(sluice::algo::algorithm_name(alg)));
    ManualClock clock(kT0);
    Key key(params(alg, 10, 1'000), clock);
    ASSERT_EQ(key.consume(10).allowed, 1);
    for (int i = 0; i < 5; ++i) key.adjust(10);  // five bursts of extra charges
    const auto r = key.peek(1);
    EXPECT_EQ(r.allowed, 0);
    EXPECT_EQ(r.reset_after_ms, 2'000);  // two bursts' refill, not six
    clock.advance(1'100);
    EXPECT_EQ(key.consume(1).allowed, 1);
  }
}

// ---- API surface ---------------------------------------------------------------------------

TEST(AlgorithmNames, RoundTrip) {
  for (const sluice_algorithm alg : kAll) {
    EXPECT_EQ(sluice::algo::parse_algorithm(sluice::algo::algorithm_name(alg)), alg);
  }
  EXPECT_EQ(sluice::algo::parse_algorithm("leaky_bucket"), std::nullopt);
  EXPECT_EQ(sluice::algo::parse_algorithm("Fixed_Window"), std::nullopt);
  EXPECT_EQ(sluice::algo::algorithm_name(static_cast<sluice_algorithm>(42)), "unknown");
}

// The log and the lease table grow with the limit, up to a fixed cap.
TEST(StateCapacity, BoundsGrowWithLimitUpToCap) {
  EXPECT_EQ(sluice::algo::state_capacity(params(SLUICE_ALG_FIXED_WINDOW, 100, 60'000)), 16u);
  EXPECT_EQ(sluice::algo::state_capacity(params(SLUICE_ALG_TOKEN_BUCKET, 100, 60'000)), 16u);
  EXPECT_EQ(sluice::algo::state_capacity(params(SLUICE_ALG_GCRA, 100, 60'000)), 16u);
  EXPECT_EQ(sluice::algo::state_capacity(params(SLUICE_ALG_SLIDING_WINDOW_COUNTER, 100, 60'000)),
            24u);
  EXPECT_EQ(sluice::algo::state_capacity(params(SLUICE_ALG_SLIDING_WINDOW, 100, 60'000)),
            8u + 100 * 16u);
  EXPECT_EQ(sluice::algo::state_capacity(params(SLUICE_ALG_SLIDING_WINDOW, 100, 10)),
            8u + 10 * 16u);  // at most one entry per millisecond
  EXPECT_EQ(sluice::algo::state_capacity(params(SLUICE_ALG_SLIDING_WINDOW, 1'000'000, 60'000)),
            8u + 4096 * 16u);
  EXPECT_EQ(sluice::algo::state_capacity(params(SLUICE_ALG_CONCURRENCY, 10, 60'000)),
            8u + 10 * 24u);
  EXPECT_EQ(sluice::algo::state_capacity(params(SLUICE_ALG_CONCURRENCY, 1'000'000, 60'000)),
            8u + 4096 * 24u);
}

// More admissions at distinct times than the log can hold fold the oldest forward: the log
// stays within its capacity and never admits more than the limit.
TEST(SlidingWindow, LogBeyondCapacityFoldsConservatively) {
  ManualClock clock(kT0);
  Key key(params(SLUICE_ALG_SLIDING_WINDOW, 10'000, 60'000), clock);
  int admitted = 0;
  for (int i = 0; i < 12'000; ++i) {
    if (key.consume().allowed) ++admitted;
    clock.advance(1);
  }
  EXPECT_EQ(admitted, 10'000);
  EXPECT_EQ(key.len(), 8u + 4096 * 16u);
}

// The host table forwards to apply and to the logger.
TEST(HostApi, ForwardsApplyAndLog) {
  const sluice_host_api* api = sluice::algo::host_api();
  ASSERT_NE(api, nullptr);
  EXPECT_EQ(api->abi_version, SLUICE_ABI_VERSION);
  EXPECT_EQ(api->struct_size, sizeof(sluice_host_api));
  sluice_item item{};
  item.op = SLUICE_OP_CONSUME;
  item.params = params(SLUICE_ALG_FIXED_WINDOW, 1, 1'000);
  item.cost = 1;
  item.state_capacity = 16;
  uint8_t buf[16] = {};
  sluice_item_result r{};
  int64_t expires = 0;
  size_t len = api->apply(&item, kT0, buf, 0, 1, &r, &expires);
  EXPECT_EQ(len, 16u);
  EXPECT_EQ(r.allowed, 1);
  EXPECT_EQ(expires, kT0 + 1'000);
  len = api->apply(&item, kT0, buf, len, 1, &r, &expires);
  EXPECT_EQ(r.allowed, 0);
  EXPECT_EQ(api->apply(nullptr, kT0, buf, len, 1, &r, &expires), len);
  api->log(0, "algorithms test: debug line");
  api->log(2, nullptr);
}

}  // namespace
