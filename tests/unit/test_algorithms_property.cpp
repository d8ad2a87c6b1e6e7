// Seeded random request sequences against straightforward reference models: no algorithm
// admits more than its definition allows, retry-after is exact (never early, never late),
// `remaining` is exact, and odd inputs (changing parameters, foreign bytes) never break the
// state bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "limit_params.h"
#include "sluice/algorithms.h"
#include "sluice/clock.h"

namespace {

__extension__ typedef __int128 i128;

constexpr int64_t kStart = 1'700'000'000'123;
constexpr int kSteps = 5'000;

using sluice::testing::params;

int64_t capacity_of(const sluice_limit_params& p) {
  const bool bucket = p.algorithm == SLUICE_ALG_TOKEN_BUCKET || p.algorithm == SLUICE_ALG_GCRA;
  return bucket && p.burst > 0 ? p.burst : p.limit;
}

std::string describe(const sluice_limit_params& p) {
  return std::string(sluice::algo::algorithm_name(static_cast<sluice_algorithm>(p.algorithm))) +
         " limit=" + std::to_string(p.limit) + " window=" + std::to_string(p.window_ms) +
         " burst=" + std::to_string(p.burst);
}

// One key's state as a plugin keeps it.
struct Store {
  sluice_limit_params p;
  std::vector<uint8_t> buf;
  size_t len = 0;
  int64_t expires = 0;

  explicit Store(sluice_limit_params params_in)
      : p(params_in), buf(sluice::algo::state_capacity(params_in)) {}

  sluice_item_result apply(sluice_op op, int64_t cost, int64_t now, bool commit = true,
                           uint64_t lease_id = 0, int64_t lease_expires_ms = 0) {
    sluice_item item{};
    item.op = op;
    item.params = p;
    item.cost = cost;
    item.lease_id = lease_id;
    item.lease_expires_ms = lease_expires_ms;
    item.state_capacity = static_cast<uint32_t>(buf.size());
    sluice_item_result r{};
    len = sluice::algo::apply(item, now, buf.data(), len, commit, r, expires);
    return r;
  }
  std::vector<uint8_t> bytes() const { return {buf.begin(), buf.begin() + len}; }
};

// Asks a copy, so the store itself is untouched whatever the algorithm does.
sluice_item_result probe(const Store& s, sluice_op op, int64_t cost, int64_t at,
                         uint64_t lease_id = 0, int64_t lease_expires_ms = 0) {
  Store copy = s;
  return copy.apply(op, cost, at, false, lease_id, lease_expires_ms);
}

// Checks every algorithm must pass after a consuming request `op` of `cost` at `now`
// answered `r`; `before` is the state bytes before the call.
void check_answer(const Store& s, sluice_op op, int64_t cost, int64_t now,
                  const sluice_item_result& r, const std::vector<uint8_t>& before,
                  uint64_t lease_id = 0, int64_t lease_expires_ms = 0) {
  const int64_t cap = capacity_of(s.p);
  ASSERT_EQ(r.limit, cap);
  ASSERT_GE(r.remaining, 0);
  ASSERT_LE(r.remaining, cap);
  ASSERT_GE(r.reset_after_ms, 0);
  ASSERT_LE(s.len, sluice::algo::state_capacity(s.p));
  if (cost > cap) {
    ASSERT_EQ(r.allowed, 0);
    ASSERT_EQ(r.retry_after_ms, -1);
  }
  if (r.allowed) {
    ASSERT_EQ(r.retry_after_ms, 0);
  } else {
    ASSERT_EQ(s.bytes(), before) << "a denial changed the state";
  }
  if (!r.allowed && r.retry_after_ms >= 0) {
    // Exact: admitted after exactly retry_after, not one millisecond earlier.
    ASSERT_GE(r.retry_after_ms, 1);
    const auto late = probe(s, op, cost, now + r.retry_after_ms, lease_id, lease_expires_ms);
    ASSERT_EQ(late.allowed, 1) << "retry_after " << r.retry_after_ms << " was early";
    const auto early = probe(s, op, cost, now + r.retry_after_ms - 1, lease_id, lease_expires_ms);
    ASSERT_EQ(early.allowed, 0) << "retry_after " << r.retry_after_ms << " was late";
  }
  // `remaining` is exactly what still fits now (for PEEK: after the consumption it previews).
  const uint64_t other_id = lease_id + 1'000'000;
  const sluice_op next = op == SLUICE_OP_PEEK ? SLUICE_OP_CONSUME : op;
  Store after = s;
  if (op == SLUICE_OP_PEEK && r.allowed) after.apply(SLUICE_OP_CONSUME, cost, now);
  if (r.remaining > 0) {
    ASSERT_EQ(probe(after, next, r.remaining, now, other_id, lease_expires_ms).allowed, 1)
        << "remaining " << r.remaining << " does not fit";
  }
  if (r.remaining < cap) {
    ASSERT_EQ(probe(after, next, r.remaining + 1, now, other_id, lease_expires_ms).allowed, 0)
        << "more than remaining " << r.remaining << " fits";
  }
  // After expires_at the state answers like a fresh key.
  if (s.len > 0) {
    const auto fresh = probe(s, SLUICE_OP_PEEK, 0, std::max(now, s.expires));
    ASSERT_EQ(fresh.remaining, cap) << "not fresh at expires_at " << s.expires;
    ASSERT_EQ(fresh.reset_after_ms, 0);
  }
}

// Random but reproducible request streams with a mix of bursts, pauses and clients that
// come back exactly at retry_after.
class Traffic {
 public:
  Traffic(uint32_t seed, const sluice_limit_params& p) : rng_(seed), p_(p) {}

  int64_t cost() {
    const int64_t cap = capacity_of(p_);
    const int pick = uniform(0, 99);
    if (pick < 60) return 1;
    if (pick < 97) return uniform(1, cap);
    return cap + uniform(1, 3);
  }
  // Time to the next request.
  int64_t step(int64_t last_retry) {
    const int64_t w = p_.window_ms;
    const int pick = uniform(0, 99);
    if (last_retry > 0 && pick < 25) return last_retry;
    if (pick < 45) return 0;
    if (pick < 65) return uniform(1, 3);
    if (pick < 85) return uniform(1, std::max<int64_t>(1, w / 4));
    if (pick < 97) return uniform(1, w);
    return uniform(w, 3 * w);
  }
  int64_t uniform(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }

 private:
  std::mt19937_64 rng_;
  sluice_limit_params p_;
};

std::vector<sluice_limit_params> parameter_sets(sluice_algorithm alg) {
  std::vector<sluice_limit_params> out;
  for (const int64_t limit : {1, 2, 3, 7, 10, 64}) {
    for (const int64_t window : {1, 3, 10, 999, 60'000}) {
      if (alg == SLUICE_ALG_TOKEN_BUCKET || alg == SLUICE_ALG_GCRA) {
        for (const int64_t burst : {int64_t{0}, int64_t{1}, int64_t{5}, 2 * limit}) {
          out.push_back(params(alg, limit, window, burst));
        }
      } else {
        out.push_back(params(alg, limit, window));
      }
    }
  }
  return out;
}

i128 floor_div(i128 a, i128 b) {
  i128 q = a / b;
  if (a % b != 0 && a < 0) --q;
  return q;
}

// ---- reference models -------------------------------------------------------------------
// Each gets every admission and, before each decision, says what the definition requires.

struct FixedWindowModel {
  static constexpr bool kExact = true;
  explicit FixedWindowModel(sluice_limit_params params_in) : p(params_in) {}
  sluice_limit_params p;
  std::map<int64_t, int64_t> per_window;
  bool admits(int64_t now, int64_t cost) const {
    const auto it = per_window.find(static_cast<int64_t>(floor_div(now, p.window_ms)));
    return (it == per_window.end() ? 0 : it->second) + cost <= p.limit;
  }
  void admitted(int64_t now, int64_t cost) {
    auto& sum = per_window[static_cast<int64_t>(floor_div(now, p.window_ms))];
    sum += cost;
    ASSERT_LE(sum, p.limit) << "aligned window over its limit";
  }
};

struct SlidingLogModel {
  static constexpr bool kExact = true;
  explicit SlidingLogModel(sluice_limit_params params_in) : p(params_in) {}
  sluice_limit_params p;
  std::deque<std::pair<int64_t, int64_t>> log;  // every admission, oldest first
  int64_t in_window(int64_t now) const {
    int64_t sum = 0;
    for (const auto& [t, c] : log) {
      if (t > now - p.window_ms) sum += c;
    }
    return sum;
  }
  bool admits(int64_t now, int64_t cost) const { return in_window(now) + cost <= p.limit; }
  void admitted(int64_t now, int64_t cost) {
    log.emplace_back(now, cost);
    // Any interval of length window that ends at an admission (the worst case).
    ASSERT_LE(in_window(now), p.limit) << "sliding window over its limit";
    while (!log.empty() && log.front().first <= now - p.window_ms) log.pop_front();
  }
};

struct SlidingCounterModel {
  static constexpr bool kExact = true;
  explicit SlidingCounterModel(sluice_limit_params params_in) : p(params_in) {}
  sluice_limit_params p;
  std::map<int64_t, int64_t> per_window;
  int64_t count(int64_t window) const {
    const auto it = per_window.find(window);
    return it == per_window.end() ? 0 : it->second;
  }
  // The definition: previous window weighted by (W - elapsed) / W, compared exactly.
  bool admits(int64_t now, int64_t cost) const {
    const int64_t w = p.window_ms;
    const int64_t idx = static_cast<int64_t>(floor_div(now, w));
    const int64_t elapsed = now - idx * w;
    return i128{count(idx - 1)} * (w - elapsed) + i128{count(idx) + cost} * w <= i128{p.limit} * w;
  }
  void admitted(int64_t now, int64_t cost) {
    auto& sum = per_window[static_cast<int64_t>(floor_div(now, p.window_ms))];
    sum += cost;
    ASSERT_LE(sum, p.limit) << "aligned window over its limit";
  }
};

// Token bucket and GCRA: whatever the decisions, admissions in any interval [a, b] stay
// within burst + limit * (b - a) / window. Checked for every pair of admissions in O(1) each
// by keeping the minimum of (admitted before i) * W - limit * t_i.
struct RateBoundModel {
  static constexpr bool kExact = false;  // a bound, not a decision rule
  explicit RateBoundModel(sluice_limit_params params_in) : p(params_in) {}
  bool admits(int64_t, int64_t) const { return true; }
  sluice_limit_params p;
  i128 total = 0;
  i128 best = 0;
  bool any = false;
  void admitted(int64_t now, int64_t cost) {
    const i128 w = p.window_ms;
    const i128 start_term = total * w - i128{p.limit} * now;
    if (!any || start_term < best) best = start_term;
    any = true;
    total += cost;
    const i128 burst = p.burst > 0 ? p.burst : p.limit;
    ASSERT_LE(total * w - i128{p.limit} * now, burst * w + best)
        << "more than burst + rate * elapsed admitted";
  }
};

template <class Model>
void run_counting(sluice_algorithm alg) {
  uint32_t seed = 1;
  for (const auto& p : parameter_sets(alg)) {
    SCOPED_TRACE(describe(p));
    Traffic traffic(seed++, p);
    Store store(p);
    Model model(p);
    int64_t now = kStart + traffic.uniform(0, 100'000);
    int64_t last_retry = 0;
    for (int i = 0; i < kSteps; ++i) {
      now += traffic.step(last_retry);
      const int64_t cost = traffic.cost();
      const auto before = store.bytes();
      const auto r = store.apply(SLUICE_OP_CONSUME, cost, now);
      if (Model::kExact && cost <= capacity_of(p)) {
        ASSERT_EQ(r.allowed == 1, model.admits(now, cost)) << "step " << i << " at " << now;
      }
      ASSERT_NO_FATAL_FAILURE(check_answer(store, SLUICE_OP_CONSUME, cost, now, r, before))
          << "step " << i;
      if (r.allowed) {
        ASSERT_NO_FATAL_FAILURE(model.admitted(now, cost));
      }
      last_retry = r.allowed ? 0 : std::max<int64_t>(0, r.retry_after_ms);
    }
  }
}

TEST(AlgorithmProperty, FixedWindow) { run_counting<FixedWindowModel>(SLUICE_ALG_FIXED_WINDOW); }
TEST(AlgorithmProperty, SlidingWindow) { run_counting<SlidingLogModel>(SLUICE_ALG_SLIDING_WINDOW); }
TEST(AlgorithmProperty, SlidingWindowCounter) {
  run_counting<SlidingCounterModel>(SLUICE_ALG_SLIDING_WINDOW_COUNTER);
}
TEST(AlgorithmProperty, TokenBucket) { run_counting<RateBoundModel>(SLUICE_ALG_TOKEN_BUCKET); }
TEST(AlgorithmProperty, Gcra) { run_counting<RateBoundModel>(SLUICE_ALG_GCRA); }

// Token bucket and GCRA are the same limit in two representations: with equal parameters
// they must answer every request identically.
TEST(AlgorithmProperty, TokenBucketAndGcraAgree) {
  uint32_t seed = 100;
  for (const auto& tb : parameter_sets(SLUICE_ALG_TOKEN_BUCKET)) {
    SCOPED_TRACE(describe(tb));
    auto gp = tb;
    gp.algorithm = SLUICE_ALG_GCRA;
    Traffic traffic(seed++, tb);
    Store bucket(tb), gcra(gp);
    int64_t now = kStart;
    int64_t last_retry = 0;
    for (int i = 0; i < kSteps; ++i) {
      now += traffic.step(last_retry);
      const int64_t cost = traffic.cost();
      const bool adjust = traffic.uniform(0, 9) == 0;
      const sluice_op op = adjust ? SLUICE_OP_ADJUST : SLUICE_OP_CONSUME;
      const int64_t c = adjust ? traffic.uniform(-cost, cost) : cost;
      const auto a = bucket.apply(op, c, now);
      const auto b = gcra.apply(op, c, now);
      ASSERT_EQ(a.allowed, b.allowed) << "step " << i;
      ASSERT_EQ(a.remaining, b.remaining) << "step " << i;
      ASSERT_EQ(a.retry_after_ms, b.retry_after_ms) << "step " << i;
      ASSERT_EQ(a.reset_after_ms, b.reset_after_ms) << "step " << i;
      ASSERT_EQ(bucket.expires, gcra.expires) << "step " << i;
      last_retry = a.allowed ? 0 : std::max<int64_t>(0, a.retry_after_ms);
    }
  }
}

// With refunds, extra charges, peeks and resets mixed in, the answers stay consistent:
// exact retry-after and remaining, PEEK writes nothing, state within its bound.
TEST(AlgorithmProperty, MixedOperationsStayConsistent) {
  uint32_t seed = 500;
  for (const sluice_algorithm alg :
       {SLUICE_ALG_FIXED_WINDOW, SLUICE_ALG_SLIDING_WINDOW, SLUICE_ALG_SLIDING_WINDOW_COUNTER,
        SLUICE_ALG_TOKEN_BUCKET, SLUICE_ALG_GCRA}) {
    for (const auto& p : parameter_sets(alg)) {
      SCOPED_TRACE(describe(p));
      Traffic traffic(seed++, p);
      Store store(p);
      int64_t now = kStart;
      int64_t last_retry = 0;
      for (int i = 0; i < kSteps / 2; ++i) {
        now += traffic.step(last_retry);
        const int64_t cost = traffic.cost();
        const auto before = store.bytes();
        const int pick = static_cast<int>(traffic.uniform(0, 99));
        if (pick < 20) {
          const int64_t c = traffic.uniform(-2 * cost, 2 * cost);
          const auto r = store.apply(SLUICE_OP_ADJUST, c, now);
          ASSERT_EQ(r.allowed, 1);
          ASSERT_GE(r.remaining, 0);
          ASSERT_LE(store.len, sluice::algo::state_capacity(p));
          continue;
        }
        if (pick < 21) {
          store.apply(SLUICE_OP_RESET, 0, now);
          ASSERT_EQ(store.len, 0u);
          continue;
        }
        const sluice_op op = pick < 35 ? SLUICE_OP_PEEK : SLUICE_OP_CONSUME;
        const auto r = store.apply(op, cost, now);
        if (op == SLUICE_OP_PEEK) {
          ASSERT_EQ(store.bytes(), before) << "PEEK wrote";
        }
        ASSERT_NO_FATAL_FAILURE(
            check_answer(store, op, cost, now, r, op == SLUICE_OP_PEEK ? store.bytes() : before))
            << "step " << i;
        last_retry = r.allowed ? 0 : std::max<int64_t>(0, r.retry_after_ms);
      }
    }
  }
}

// Concurrency against a table of leases: decisions match exactly, in-flight never exceeds
// the limit, expired leases free their slots, retry-after is exact.
TEST(AlgorithmProperty, Concurrency) {
  uint32_t seed = 900;
  for (const int64_t limit : {1, 2, 3, 5, 16}) {
    for (const int64_t ttl : {5, 100, 30'000}) {
      const auto p = params(SLUICE_ALG_CONCURRENCY, limit, ttl);
      SCOPED_TRACE(describe(p));
      Traffic traffic(seed++, p);
      Store store(p);
      std::map<uint64_t, std::pair<int64_t, int64_t>> leases;  // id -> (expires, cost)
      auto held = [&](int64_t now, uint64_t except) {
        int64_t sum = 0;
        for (const auto& [id, lease] : leases) {
          if (id != except && lease.first > now) sum += lease.second;
        }
        return sum;
      };
      int64_t now = kStart;
      int64_t last_retry = 0;
      for (int i = 0; i < kSteps; ++i) {
        now += traffic.step(last_retry);
        const uint64_t id = static_cast<uint64_t>(traffic.uniform(1, 12));
        const int64_t cost = traffic.cost();
        const auto before = store.bytes();
        const int pick = static_cast<int>(traffic.uniform(0, 99));
        if (pick < 25) {
          const bool live = leases.count(id) > 0 && leases[id].first > now;
          const auto r = store.apply(SLUICE_OP_LEASE_RELEASE, 0, now, true, id);
          ASSERT_EQ(r.allowed == 1, live) << "step " << i;
          leases.erase(id);
          ASSERT_LE(store.len, sluice::algo::state_capacity(p));
          continue;
        }
        const sluice_op op = pick < 85 ? SLUICE_OP_LEASE_ACQUIRE : SLUICE_OP_CONSUME;
        const int64_t expires = now + traffic.uniform(1, 2 * ttl);
        const auto r = store.apply(op, cost, now, true, id, expires);
        if (cost <= limit) {
          const bool fits = held(now, op == SLUICE_OP_LEASE_ACQUIRE ? id : 0) + cost <= limit;
          ASSERT_EQ(r.allowed == 1, fits) << "step " << i;
        }
        ASSERT_NO_FATAL_FAILURE(check_answer(store, op, cost, now, r, before, id, expires))
            << "step " << i;
        if (r.allowed && op == SLUICE_OP_LEASE_ACQUIRE) leases[id] = {expires, cost};
        ASSERT_LE(held(now, 0), limit);
        last_retry = r.allowed ? 0 : std::max<int64_t>(0, r.retry_after_ms);
      }
    }
  }
}

// Parameters that change under a key (tiers, warm-up ramps, a new policy) and foreign bytes
// never make a transition write beyond the capacity it was given or answer nonsense.
TEST(AlgorithmProperty, ChangingParametersAndGarbageAreSafe) {
  std::mt19937_64 rng(4242);
  auto uniform = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  constexpr size_t kGuard = 64;
  std::vector<uint8_t> buf(8 + 4096 * 24 + kGuard);
  size_t len = 0;
  int64_t now = kStart;
  for (int i = 0; i < 20'000; ++i) {
    now += uniform(0, 50);
    sluice_item item{};
    item.params = params(static_cast<sluice_algorithm>(uniform(1, 6)), uniform(1, 40),
                         uniform(1, 2'000), uniform(0, 3) == 0 ? uniform(1, 50) : 0);
    item.op = static_cast<uint32_t>(uniform(1, 6));
    item.cost = uniform(-5, 45);
    item.lease_id = static_cast<uint64_t>(uniform(1, 20));
    item.lease_expires_ms = now + uniform(-10, 3'000);
    const size_t cap = sluice::algo::state_capacity(item.params);
    item.state_capacity = static_cast<uint32_t>(cap);
    if (uniform(0, 199) == 0) {  // foreign bytes
      len = static_cast<size_t>(uniform(0, 64));
      for (size_t b = 0; b < len; ++b) buf[b] = static_cast<uint8_t>(uniform(0, 255));
    }
    const size_t room = std::max(len, cap);
    std::fill(buf.begin() + static_cast<std::ptrdiff_t>(room),
              buf.begin() + static_cast<std::ptrdiff_t>(room + kGuard), 0xEE);
    sluice_item_result r{};
    int64_t expires = 0;
    const size_t out =
        sluice::algo::apply(item, now, buf.data(), len, uniform(0, 3) != 0, r, expires);
    for (size_t b = room; b < room + kGuard; ++b) {
      ASSERT_EQ(buf[b], 0xEE) << "wrote past the state capacity at step " << i;
    }
    // A lease table larger than a shrunken limit's capacity can only shrink: leases are
    // never dropped before they expire.
    ASSERT_LE(out, room) << "step " << i;
    if (item.params.algorithm != SLUICE_ALG_CONCURRENCY) {
      ASSERT_TRUE(out == len || out <= cap) << "step " << i;
    }
    ASSERT_GE(r.remaining, 0);
    ASSERT_GE(r.reset_after_ms, 0);
    ASSERT_GE(r.retry_after_ms, -1);
    if (r.allowed) {
      ASSERT_EQ(r.retry_after_ms, 0);
    }
    len = out;
  }
}

}  // namespace
