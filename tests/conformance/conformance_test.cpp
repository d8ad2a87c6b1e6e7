// The storage plugin conformance suite. Every plugin must give the same answers as the
// reference model (the core's transitions over a plain map) and keep the batch rules of
// storage_plugin.h under concurrency. The plugin, its configuration and its optional features
// come from the build (sluice_add_conformance) or from the environment:
//   SLUICE_CONFORMANCE_PLUGIN=sqlite SLUICE_CONFORMANCE_CONFIG="path=/tmp/x.db"
//   ./conformance_memory
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "limit_params.h"
#include "plugin_driver.h"
#include "reference_model.h"
#include "sluice/algorithms.h"
#include "sluice/clock.h"
#include "sluice/engine.h"
#include "sluice/policy.h"
#include "sluice/storage.h"
#include "sluice/storage_plugin.h"

namespace sluice::conformance {
namespace {

constexpr int64_t kStart = 1'700'000'000'000;

struct PluginUnderTest {
  std::string name;
  std::string config_text;
  std::set<std::string> features;
};

// So that gtest names the plugin in failure messages instead of dumping bytes.
void PrintTo(const PluginUnderTest& p, std::ostream* out) {
  *out << p.name << " [" << p.config_text << "]";
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> parts;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, sep)) {
    if (!part.empty()) parts.push_back(part);
  }
  return parts;
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : fallback;
}

PluginUnderTest plugin_under_test() {
  PluginUnderTest p;
  const std::string env_plugin = env_or("SLUICE_CONFORMANCE_PLUGIN", "");
  // A plugin named in the environment brings its own configuration and features.
  const bool from_env = !env_plugin.empty();
  p.name = from_env ? env_plugin : SLUICE_CONFORMANCE_DEFAULT_PLUGIN;
  p.config_text =
      env_or("SLUICE_CONFORMANCE_CONFIG", from_env ? "" : SLUICE_CONFORMANCE_DEFAULT_CONFIG);
  for (auto& f : split(env_or("SLUICE_CONFORMANCE_FEATURES",
                              from_env ? "" : SLUICE_CONFORMANCE_DEFAULT_FEATURES),
                       ',')) {
    p.features.insert(f);
  }
  return p;
}

using sluice::testing::params;

// An item over `key`, which must outlive it.
sluice_item item(const std::string& key, sluice_op op, const sluice_limit_params& p,
                 int64_t cost = 1) {
  sluice_item it{};
  it.key = key.data();
  it.key_len = static_cast<uint32_t>(key.size());
  it.op = op;
  it.params = p;
  it.cost = cost;
  it.state_capacity = static_cast<uint32_t>(algo::state_capacity(p));
  return it;
}

sluice_item lease(const std::string& key, sluice_op op, const sluice_limit_params& p, uint64_t id,
                  int64_t expires_ms, int64_t cost = 1) {
  sluice_item it = item(key, op, p, cost);
  it.lease_id = id;
  it.lease_expires_ms = expires_ms;
  return it;
}

sluice_item shadow(sluice_item it) {
  it.shadow = 1;
  return it;
}

std::string describe(const sluice_item_result& r) {
  std::ostringstream out;
  out << "{allowed " << r.allowed << ", limit " << r.limit << ", remaining " << r.remaining
      << ", reset_after " << r.reset_after_ms << ", retry_after " << r.retry_after_ms << "}";
  return out.str();
}

bool same(const sluice_item_result& a, const sluice_item_result& b) {
  return a.allowed == b.allowed && a.limit == b.limit && a.remaining == b.remaining &&
         a.reset_after_ms == b.reset_after_ms && a.retry_after_ms == b.retry_after_ms;
}

const sluice_algorithm kAllAlgorithms[] = {
    SLUICE_ALG_FIXED_WINDOW, SLUICE_ALG_SLIDING_WINDOW, SLUICE_ALG_SLIDING_WINDOW_COUNTER,
    SLUICE_ALG_TOKEN_BUCKET, SLUICE_ALG_GCRA,           SLUICE_ALG_CONCURRENCY};

// Algorithms whose CONSUME takes capacity (concurrency's CONSUME only looks).
const sluice_algorithm kConsumingAlgorithms[] = {SLUICE_ALG_FIXED_WINDOW, SLUICE_ALG_SLIDING_WINDOW,
                                                 SLUICE_ALG_SLIDING_WINDOW_COUNTER,
                                                 SLUICE_ALG_TOKEN_BUCKET, SLUICE_ALG_GCRA};

std::string algorithm_label(sluice_algorithm alg) { return std::string(algo::algorithm_name(alg)); }

class PluginConformance : public ::testing::TestWithParam<PluginUnderTest> {
 protected:
  void SetUp() override {
    StorageConfig config;
    for (const auto& pair : split(GetParam().config_text, ',')) {
      const auto eq = pair.find('=');
      ASSERT_NE(eq, std::string::npos) << "configuration entry '" << pair << "' is not KEY=VALUE";
      config.emplace_back(pair.substr(0, eq), pair.substr(eq + 1));
    }
    auto loaded = testing::load_plugin(GetParam().name, config, plugin_dirs());
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    storage_ = std::move(loaded).value();
    // Keys unique to this test run, so that plugins sharing a backend (Redis, a SQLite file)
    // start every test from nothing.
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::random_device rd;
    // One hash tag per test: on Redis Cluster a batch's keys must share a slot.
    prefix_ = std::string("conf:{") + info->name() + ":" + std::to_string(rd()) + "}:";
  }

  static std::vector<std::string> plugin_dirs() {
    std::vector<std::string> dirs;
    if (const char* env = std::getenv("SLUICE_PLUGIN_DIR"); env != nullptr && *env != '\0') {
      dirs.emplace_back(env);
    }
    dirs.emplace_back(SLUICE_PLUGIN_DIR);
    return dirs;
  }

  bool has_feature(const std::string& f) const { return GetParam().features.count(f) != 0; }
  std::string key(const std::string& suffix) const { return prefix_ + suffix; }

  // Submits and waits; returns the plugin's status (and message).
  sluice_status submit(const std::vector<sluice_item>& items,
                       std::vector<sluice_item_result>& results, int64_t now_ms,
                       std::string* message = nullptr) {
    results.assign(items.size(), sluice_item_result{});
    return testing::submit_and_wait(
        *storage_, sluice_batch{now_ms, items.size(), items.data(), results.data()}, message);
  }

  std::vector<sluice_item_result> run(const std::vector<sluice_item>& items, int64_t now_ms) {
    std::vector<sluice_item_result> results;
    std::string message;
    const sluice_status status = submit(items, results, now_ms, &message);
    EXPECT_EQ(status, SLUICE_OK) << message;
    return results;
  }

  sluice_item_result run_one(const sluice_item& it, int64_t now_ms) { return run({it}, now_ms)[0]; }

  uint64_t stat(const std::string& field) {
    const auto json = nlohmann::json::parse(storage_->stats_json(), nullptr, false);
    if (json.is_discarded() || !json.contains(field)) {
      ADD_FAILURE() << "stats_json has no '" << field << "': " << storage_->stats_json();
      return 0;
    }
    return json.at(field).get<uint64_t>();
  }

  std::unique_ptr<Storage> storage_;
  std::string prefix_;
};

// Random sequences of every op over a few keys, with time jumping forward in small and large
// steps, give exactly the reference's answers — for every algorithm.
TEST_P(PluginConformance, RandomSequencesMatchReference) {
  constexpr int kSeeds = 12;
  constexpr int kSteps = 250;
  for (sluice_algorithm alg : kAllAlgorithms) {
    for (int seed = 0; seed < kSeeds; ++seed) {
      SCOPED_TRACE(algorithm_label(alg) + " seed " + std::to_string(seed));
      std::mt19937_64 rng(static_cast<uint64_t>(seed) * 7919 + alg);
      auto pick = [&](int64_t lo, int64_t hi) {
        return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
      };
      ReferenceModel reference;
      const std::string base = key(algorithm_label(alg) + ":" + std::to_string(seed) + ":");
      std::vector<std::string> keys = {base + "a", base + "b", base + "c"};
      std::vector<sluice_limit_params> key_params;
      for (size_t k = 0; k < keys.size(); ++k) {
        const int64_t limit = pick(1, 8);
        const int64_t windows[] = {1000, 2500, 60000};
        const bool bursty = alg == SLUICE_ALG_TOKEN_BUCKET || alg == SLUICE_ALG_GCRA;
        key_params.push_back(params(alg, limit, windows[pick(0, 2)],
                                    bursty ? pick(0, 1) * (limit + pick(0, 4)) : 0));
      }
      std::vector<uint64_t> live_leases;
      uint64_t next_lease = 1;
      int64_t now = kStart + pick(0, 999);
      for (int step = 0; step < kSteps; ++step) {
        const int64_t roll = pick(0, 99);
        const int64_t window = key_params[0].window_ms;
        if (roll < 60) {
          now += pick(0, window / 4);
        } else if (roll >= 92) {
          now += window + pick(0, window);  // past every window and expiry
        }
        // 70% single items, else 2-3 distinct keys.
        std::vector<size_t> chosen = {0, 1, 2};
        std::shuffle(chosen.begin(), chosen.end(), rng);
        chosen.resize(pick(0, 9) < 7 ? 1 : static_cast<size_t>(pick(2, 3)));
        std::vector<sluice_item> items;
        for (size_t k : chosen) {
          const sluice_limit_params& p = key_params[k];
          const int64_t op_roll = pick(0, 99);
          sluice_item it;
          if (alg == SLUICE_ALG_CONCURRENCY) {
            if (op_roll < 45) {
              it = lease(keys[k], SLUICE_OP_LEASE_ACQUIRE, p, next_lease,
                         now + pick(1, p.window_ms), pick(1, 2));
              live_leases.push_back(next_lease++);
            } else if (op_roll < 70) {
              const bool known = !live_leases.empty() && pick(0, 4) != 0;
              const uint64_t id = known ? live_leases[static_cast<size_t>(pick(
                                              0, static_cast<int64_t>(live_leases.size()) - 1))]
                                        : 1'000'000 + next_lease;
              it = lease(keys[k], SLUICE_OP_LEASE_RELEASE, p, id, 0);
            } else if (op_roll < 85) {
              it = item(keys[k], SLUICE_OP_CONSUME, p, pick(1, 2));
            } else if (op_roll < 96) {
              it = item(keys[k], SLUICE_OP_PEEK, p, 1);
            } else {
              it = item(keys[k], SLUICE_OP_RESET, p, 0);
            }
          } else {
            if (op_roll < 65) {
              // Now and then a cost no window can ever admit.
              it =
                  item(keys[k], SLUICE_OP_CONSUME, p,
                       pick(0, 19) == 0 ? p.limit + std::max<int64_t>(p.burst, 0) + 1 : pick(1, 3));
            } else if (op_roll < 80) {
              it = item(keys[k], SLUICE_OP_PEEK, p, pick(1, 2));
            } else if (op_roll < 96) {
              it = item(keys[k], SLUICE_OP_ADJUST, p, pick(-2, 3));
            } else {
              it = item(keys[k], SLUICE_OP_RESET, p, 0);
            }
          }
          if (pick(0, 9) == 0) it.shadow = 1;
          items.push_back(it);
        }
        std::vector<sluice_item_result> expected(items.size());
        reference.submit(sluice_batch{now, items.size(), items.data(), expected.data()});
        const auto actual = run(items, now);
        for (size_t i = 0; i < items.size(); ++i) {
          if (!same(actual[i], expected[i])) {
            ADD_FAILURE() << "step " << step << " item " << i << " (op " << items[i].op << ", key "
                          << std::string(items[i].key, items[i].key_len) << ", cost "
                          << items[i].cost << ", shadow " << items[i].shadow << ", batch of "
                          << items.size() << ", now +" << (now - kStart) << " ms): plugin "
                          << describe(actual[i]) << ", reference " << describe(expected[i]);
            return;
          }
        }
      }
    }
  }
}

// A batch of three limits where one denies changes none of them.
TEST_P(PluginConformance, DeniedBatchChangesNothing) {
  const auto a = key("a"), b = key("b"), c = key("c");
  const auto five = params(SLUICE_ALG_FIXED_WINDOW, 5, 60'000);
  const auto one = params(SLUICE_ALG_FIXED_WINDOW, 1, 60'000);
  const std::vector<sluice_item> batch = {item(a, SLUICE_OP_CONSUME, five),
                                          item(b, SLUICE_OP_CONSUME, one),
                                          item(c, SLUICE_OP_CONSUME, five)};
  auto first = run(batch, kStart);
  for (const auto& r : first) EXPECT_EQ(r.allowed, 1);
  auto second = run(batch, kStart + 1);
  EXPECT_EQ(second[0].allowed, 1);  // a alone would pass...
  EXPECT_EQ(second[1].allowed, 0);  // ...but b denies the batch
  EXPECT_GT(second[1].retry_after_ms, 0);
  EXPECT_EQ(second[2].allowed, 1);
  // Only the first batch consumed: two of five used after the next admission, not three.
  EXPECT_EQ(run_one(item(a, SLUICE_OP_CONSUME, five), kStart + 2).remaining, 3);
  EXPECT_EQ(run_one(item(c, SLUICE_OP_CONSUME, five), kStart + 2).remaining, 3);
}

// A shadow item never denies the batch; when it would deny it is reported denied and not
// consumed; when the batch is denied by another item it is not consumed either.
TEST_P(PluginConformance, ShadowItemsReportButNeverDeny) {
  const auto s = key("shadow"), n = key("normal"), full = key("full");
  const auto two = params(SLUICE_ALG_FIXED_WINDOW, 2, 60'000);
  const auto ten = params(SLUICE_ALG_FIXED_WINDOW, 10, 60'000);
  const auto one = params(SLUICE_ALG_FIXED_WINDOW, 1, 60'000);

  auto r1 = run({shadow(item(s, SLUICE_OP_CONSUME, two)), item(n, SLUICE_OP_CONSUME, ten)}, kStart);
  EXPECT_EQ(r1[0].allowed, 1);
  EXPECT_EQ(r1[1].allowed, 1);
  // Cost 2 does not fit the shadow limit (1 of 2 used): reported denied, batch still admitted.
  auto r2 =
      run({shadow(item(s, SLUICE_OP_CONSUME, two, 2)), item(n, SLUICE_OP_CONSUME, ten)}, kStart);
  EXPECT_EQ(r2[0].allowed, 0);
  EXPECT_EQ(r2[1].allowed, 1);
  EXPECT_EQ(r2[1].remaining, 8);
  // The denied shadow cost was not consumed: one unit is still free.
  EXPECT_EQ(run_one(item(s, SLUICE_OP_CONSUME, two), kStart).allowed, 1);

  // Denied by a normal item: the shadow item, which would pass, is not consumed.
  const auto five = params(SLUICE_ALG_FIXED_WINDOW, 5, 60'000);
  const auto s2 = key("shadow2");
  EXPECT_EQ(run_one(item(full, SLUICE_OP_CONSUME, one), kStart).allowed, 1);
  auto r3 =
      run({shadow(item(s2, SLUICE_OP_CONSUME, five)), item(full, SLUICE_OP_CONSUME, one)}, kStart);
  EXPECT_EQ(r3[0].allowed, 1);
  EXPECT_EQ(r3[1].allowed, 0);
  EXPECT_EQ(run_one(item(s2, SLUICE_OP_CONSUME, five), kStart).remaining, 4);
}

// A limit a request takes nothing from (a unit it does not name, docs/protocol.md "Costs")
// goes to storage as a shadow PEEK of cost 0: it reports the limit's state as it is, never
// writes, and never denies the batch, even when the limit is already past its end (an
// overrun settled by ADJUST).
TEST_P(PluginConformance, PeekOfNothingReportsWithoutDenying) {
  for (sluice_algorithm alg : kConsumingAlgorithms) {
    SCOPED_TRACE(algorithm_label(alg));
    const auto k = key("zero:" + algorithm_label(alg));
    const auto other = key("zero-other:" + algorithm_label(alg));
    const auto three = params(alg, 3, 60'000);
    run_one(item(k, SLUICE_OP_CONSUME, three), kStart);
    const auto consumed = run_one(item(k, SLUICE_OP_CONSUME, three), kStart);
    ASSERT_EQ(consumed.allowed, 1);
    const auto looked = run_one(shadow(item(k, SLUICE_OP_PEEK, three, 0)), kStart);
    EXPECT_EQ(looked.allowed, 1);
    EXPECT_EQ(looked.remaining, consumed.remaining);
    EXPECT_EQ(looked.limit, consumed.limit);
    // Past its end: the PEEK of nothing reports it, and the batch is still admitted.
    run_one(item(k, SLUICE_OP_ADJUST, three, 5), kStart);
    auto batch = run(
        {shadow(item(k, SLUICE_OP_PEEK, three, 0)), item(other, SLUICE_OP_CONSUME, three)}, kStart);
    EXPECT_EQ(batch[0].remaining, 0);
    EXPECT_EQ(batch[1].allowed, 1);
    EXPECT_EQ(batch[1].remaining, 2);
  }
}

// Named costs, charges while streaming and settlement through the engine, on this plugin: the
// items the engine sends for them (CONSUME past a reservation, the shadow PEEK of nothing,
// ADJUST at settlement) behave alike everywhere, the Redis Lua included. The sequence of
// issue 20: reserve 100 output tokens, charge 300, a charge of 300 more is refused, settle at
// 300, then exactly 200 more fit.
TEST_P(PluginConformance, EngineChargesAndSettlesLeases) {
  // The engine takes this test's plugin instance (a SQLite file has one writer).
  ASSERT_NE(storage_, nullptr);
  std::random_device rd;
  const std::string resource = "chat-" + std::to_string(rd());
  PolicySpec spec;
  spec.default_tier = "free";
  spec.tiers.push_back(TierSpec{.name = "free"});
  ResourceSpec r{.name = resource};
  r.prices = {{"output_tokens", 10'000'000}};  // $10 per million
  r.limits.push_back(LimitSpec{.name = "rpm",
                               .algorithm = SLUICE_ALG_SLIDING_WINDOW_COUNTER,
                               .limit = 100,
                               .window_ms = 60'000});
  r.limits.push_back(LimitSpec{.name = "in_tpm",
                               .algorithm = SLUICE_ALG_TOKEN_BUCKET,
                               .limit = 1000,
                               .window_ms = 60'000,
                               .unit = "input_tokens"});
  r.limits.push_back(LimitSpec{.name = "out_tpm",
                               .algorithm = SLUICE_ALG_FIXED_WINDOW,
                               .limit = 500,
                               .window_ms = 60'000,
                               .unit = "output_tokens"});
  r.limits.push_back(LimitSpec{.name = "budget",
                               .algorithm = SLUICE_ALG_FIXED_WINDOW,
                               .limit = 1'000'000,
                               .window_ms = 3'600'000,
                               .unit = "usd"});
  spec.resources.push_back(r);
  auto policy = CompiledPolicy::compile(spec, 1);
  ASSERT_TRUE(policy.ok()) << policy.status().message();
  ManualClock clock(kStart);
  Engine engine(std::move(storage_), policy.value(), EngineOptions{&clock});

  auto request = [&](int64_t in, int64_t out) {
    DecisionRequest q;
    q.resource = resource;
    q.subject = "streamer";
    q.cost = 0;
    if (in >= 0) q.named.add("input_tokens", in);
    if (out >= 0) q.named.add("output_tokens", out);
    return q;
  };
  struct Waiter {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    static void signal(void* user, DecisionCall&) {
      auto* w = static_cast<Waiter*>(user);
      std::lock_guard lock(w->mu);
      w->done = true;
      w->cv.notify_one();
    }
  };
  auto remaining = [&] {
    DecisionCall call;
    Waiter w;
    const DecisionRequest q = request(0, 0);
    engine.decide(DecisionKind::kInspect, q, call, &Waiter::signal, &w);
    std::unique_lock lock(w.mu);
    w.cv.wait(lock, [&] { return w.done; });
    std::vector<int64_t> out;
    for (size_t i = 0; i < call.limit_count(); ++i)
      out.push_back(call.limit_result(i).result.remaining);
    return out;
  };
  NamedCosts three_hundred;
  three_hundred.add("output_tokens", 300);

  // Denied by out_tpm: nothing of any unit is taken.
  const Decision denied = engine.decide_sync(DecisionKind::kCheck, request(100, 600));
  EXPECT_FALSE(denied.allowed);
  EXPECT_EQ(denied.rule(), "out_tpm");
  EXPECT_EQ(remaining(), (std::vector<int64_t>{99, 1000, 500, 1'000'000}));

  const Decision lease = engine.decide_sync(DecisionKind::kAcquire, request(-1, 100));
  ASSERT_TRUE(lease.allowed) << lease.error_message;
  const Decision charged = engine.charge_sync(lease.lease, 0, three_hundred);
  ASSERT_TRUE(charged.allowed) << charged.error_message;
  EXPECT_EQ(charged.remaining, 200);
  const Decision refused = engine.charge_sync(lease.lease, 0, three_hundred);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.rule(), "out_tpm");
  EXPECT_EQ(remaining(), (std::vector<int64_t>{98, 1000, 200, 1'000'000 - 3'000}));
  EXPECT_TRUE(engine.release_sync(lease.lease, std::nullopt).allowed);
  EXPECT_EQ(remaining(), (std::vector<int64_t>{98, 1000, 200, 1'000'000 - 3'000}));
  EXPECT_TRUE(engine.decide_sync(DecisionKind::kCheck, request(-1, 200)).allowed);
  EXPECT_FALSE(engine.decide_sync(DecisionKind::kCheck, request(-1, 1)).allowed);

  // Settling below the estimate refunds; ACTUAL of a unit overrides its usage.
  clock.advance(60'000);
  const Decision second = engine.decide_sync(DecisionKind::kAcquire, request(400, 300));
  ASSERT_TRUE(second.allowed);
  NamedCosts actual;
  actual.add("output_tokens", 120);
  EXPECT_TRUE(engine.release_sync(second.lease, std::nullopt, &actual).allowed);
  const auto after = remaining();
  EXPECT_EQ(after[2], 380);
  EXPECT_EQ(after[3], 1'000'000 - 3'000 - 2'000 - 1'200);  // this hour: 300 + 200 + 120 tokens
}

// Leases hold slots until released or expired; releasing an unknown lease is a no-op.
TEST_P(PluginConformance, LeasesAcquireReleaseAndExpire) {
  const auto k = key("lease");
  const auto two = params(SLUICE_ALG_CONCURRENCY, 2, 10'000);
  const int64_t ttl = 10'000;
  EXPECT_EQ(run_one(lease(k, SLUICE_OP_LEASE_ACQUIRE, two, 1, kStart + ttl), kStart).allowed, 1);
  EXPECT_EQ(run_one(lease(k, SLUICE_OP_LEASE_ACQUIRE, two, 2, kStart + ttl), kStart).allowed, 1);
  EXPECT_EQ(run_one(lease(k, SLUICE_OP_LEASE_ACQUIRE, two, 3, kStart + ttl), kStart).allowed, 0);
  EXPECT_EQ(run_one(item(k, SLUICE_OP_CONSUME, two), kStart).allowed, 0);  // no free slot
  EXPECT_EQ(run_one(item(k, SLUICE_OP_PEEK, two), kStart).allowed, 0);

  run_one(lease(k, SLUICE_OP_LEASE_RELEASE, two, 99, 0), kStart + 1);  // unknown: no-op
  EXPECT_EQ(
      run_one(lease(k, SLUICE_OP_LEASE_ACQUIRE, two, 3, kStart + 1 + ttl), kStart + 1).allowed, 0);
  run_one(lease(k, SLUICE_OP_LEASE_RELEASE, two, 1, 0), kStart + 2);
  EXPECT_EQ(
      run_one(lease(k, SLUICE_OP_LEASE_ACQUIRE, two, 3, kStart + 2 + ttl), kStart + 2).allowed, 1);
  EXPECT_EQ(
      run_one(lease(k, SLUICE_OP_LEASE_ACQUIRE, two, 4, kStart + 2 + ttl), kStart + 2).allowed, 0);

  // Lease 2 expires at kStart + ttl, lease 3 at kStart + 2 + ttl: after both, two slots are free.
  const int64_t later = kStart + 3 + ttl;
  EXPECT_EQ(run_one(lease(k, SLUICE_OP_LEASE_ACQUIRE, two, 5, later + ttl), later).allowed, 1);
  EXPECT_EQ(run_one(lease(k, SLUICE_OP_LEASE_ACQUIRE, two, 6, later + ttl), later).allowed, 1);
  EXPECT_EQ(run_one(lease(k, SLUICE_OP_LEASE_ACQUIRE, two, 7, later + ttl), later).allowed, 0);
}

// ADJUST always applies: a charge takes capacity, a refund gives it back.
TEST_P(PluginConformance, AdjustChargesAndRefunds) {
  const auto k = key("adjust");
  const auto ten = params(SLUICE_ALG_FIXED_WINDOW, 10, 60'000);
  EXPECT_EQ(run_one(item(k, SLUICE_OP_CONSUME, ten, 3), kStart).remaining, 7);
  EXPECT_EQ(run_one(item(k, SLUICE_OP_ADJUST, ten, 2), kStart).allowed, 1);
  EXPECT_EQ(run_one(item(k, SLUICE_OP_CONSUME, ten, 1), kStart).remaining, 4);
  EXPECT_EQ(run_one(item(k, SLUICE_OP_ADJUST, ten, -5), kStart).allowed, 1);
  EXPECT_EQ(run_one(item(k, SLUICE_OP_CONSUME, ten, 1), kStart).remaining, 8);
  // A charge beyond the limit still applies, and then denies.
  run_one(item(k, SLUICE_OP_ADJUST, ten, 20), kStart);
  EXPECT_EQ(run_one(item(k, SLUICE_OP_CONSUME, ten, 1), kStart).allowed, 0);
}

// RESET forgets the key for every algorithm.
TEST_P(PluginConformance, ResetForgetsTheKey) {
  for (sluice_algorithm alg : kConsumingAlgorithms) {
    SCOPED_TRACE(algorithm_label(alg));
    const auto k = key("reset:" + algorithm_label(alg));
    const auto fresh_key = key("fresh:" + algorithm_label(alg));
    const auto p = params(alg, 2, 60'000);
    run_one(item(k, SLUICE_OP_CONSUME, p), kStart);
    run_one(item(k, SLUICE_OP_CONSUME, p), kStart);
    EXPECT_EQ(run_one(item(k, SLUICE_OP_CONSUME, p), kStart).allowed, 0);
    run_one(item(k, SLUICE_OP_RESET, p, 0), kStart);
    const auto after = run_one(item(k, SLUICE_OP_CONSUME, p), kStart);
    const auto fresh = run_one(item(fresh_key, SLUICE_OP_CONSUME, p), kStart);
    EXPECT_TRUE(same(after, fresh)) << describe(after) << " vs fresh " << describe(fresh);
  }
}

// PEEK answers like CONSUME but never writes, alone or in a batch.
TEST_P(PluginConformance, PeekNeverWrites) {
  for (sluice_algorithm alg : kAllAlgorithms) {
    SCOPED_TRACE(algorithm_label(alg));
    const auto k = key("peek:" + algorithm_label(alg));
    const auto other = key("peek-other:" + algorithm_label(alg));
    const auto fresh_key = key("peek-fresh:" + algorithm_label(alg));
    const auto p = params(alg, 3, 60'000);
    const auto first = run_one(item(k, SLUICE_OP_PEEK, p), kStart);
    EXPECT_EQ(first.allowed, 1);
    for (int i = 0; i < 20; ++i) {
      const auto again = run_one(item(k, SLUICE_OP_PEEK, p), kStart);
      ASSERT_TRUE(same(again, first)) << describe(again) << " vs " << describe(first);
      run({item(k, SLUICE_OP_PEEK, p), item(other, SLUICE_OP_PEEK, p)}, kStart);
    }
    const auto after = run_one(item(k, SLUICE_OP_CONSUME, p), kStart);
    const auto fresh = run_one(item(fresh_key, SLUICE_OP_CONSUME, p), kStart);
    EXPECT_TRUE(same(after, fresh)) << describe(after) << " vs fresh " << describe(fresh);
  }
}

// After its expiry a key answers like a fresh one; with exact_key_count the plugin also drops
// it from its key count once the simulated clock has passed it.
TEST_P(PluginConformance, ExpiredKeysAreFresh) {
  const int64_t window = 1000;
  for (sluice_algorithm alg : kAllAlgorithms) {
    SCOPED_TRACE(algorithm_label(alg));
    const auto k = key("expire:" + algorithm_label(alg));
    const auto fresh_key = key("expire-fresh:" + algorithm_label(alg));
    const auto p = params(alg, 2, window);
    for (int i = 0; i < 3; ++i) {
      if (alg == SLUICE_ALG_CONCURRENCY) {
        run_one(lease(k, SLUICE_OP_LEASE_ACQUIRE, p, 10 + i, kStart + window), kStart);
      } else {
        run_one(item(k, SLUICE_OP_CONSUME, p), kStart);
      }
    }
    const int64_t later = kStart + 5 * window;
    const auto after = run_one(item(k, SLUICE_OP_CONSUME, p), later);
    const auto fresh = run_one(item(fresh_key, SLUICE_OP_CONSUME, p), later);
    EXPECT_TRUE(same(after, fresh)) << describe(after) << " vs fresh " << describe(fresh);
  }

  if (!has_feature("exact_key_count")) return;
  std::vector<std::string> keys;
  const auto p = params(SLUICE_ALG_FIXED_WINDOW, 5, window);
  const uint64_t before = stat("keys");
  for (int i = 0; i < 200; ++i) keys.push_back(key("many:" + std::to_string(i)));
  for (const auto& k : keys) run_one(item(k, SLUICE_OP_CONSUME, p), kStart + 10 * window);
  // Keys of the first half may already be swept; these 200 are all still live.
  EXPECT_GE(stat("keys"), keys.size());
  EXPECT_LE(stat("keys"), before + keys.size());
  // Traffic on one other key drives the incremental sweep.
  const auto busy = key("busy");
  const int64_t much_later = kStart + 1000 * window;
  for (int i = 0; i < 200'000 && stat("keys") > 0; i += 100) {
    for (int j = 0; j < 100; ++j) run_one(item(busy, SLUICE_OP_PEEK, p), much_later);
  }
  EXPECT_EQ(stat("keys"), 0u);
}

// The wall clock stepped a day ahead and corrected: what was admitted in the wrong day is
// forgotten, and a small step back admits nothing more. Every plugin (Redis's Lua included)
// gives the reference's answers (docs/algorithms.md, "Clock steps").
TEST_P(PluginConformance, ClockStepsHaveBoundedEffects) {
  constexpr int64_t kDay = 24 * 3600 * 1000;
  const int64_t window = 60'000;
  for (sluice_algorithm alg : kConsumingAlgorithms) {
    SCOPED_TRACE(algorithm_label(alg));
    ReferenceModel reference;
    const auto p = params(alg, 3, window);
    auto check = [&](const std::string& k, int64_t now) {
      const sluice_item it = item(k, SLUICE_OP_CONSUME, p);
      sluice_item_result expected{};
      reference.submit(sluice_batch{now, 1, &it, &expected});
      const auto actual = run_one(it, now);
      EXPECT_TRUE(same(actual, expected))
          << "at +" << (now - kStart) << " ms: plugin " << describe(actual) << ", reference "
          << describe(expected);
      return actual;
    };
    const auto ahead = key("step-ahead:" + algorithm_label(alg));
    for (int i = 0; i < 3; ++i) EXPECT_EQ(check(ahead, kStart + kDay).allowed, 1);
    EXPECT_EQ(check(ahead, kStart + kDay).allowed, 0);
    const auto corrected = check(ahead, kStart + 1'000);
    EXPECT_EQ(corrected.allowed, 1) << "the day ahead still counts after the correction";
    EXPECT_EQ(corrected.remaining, 2);

    const auto back = key("step-back:" + algorithm_label(alg));
    for (int i = 0; i < 3; ++i) EXPECT_EQ(check(back, kStart + 30'000).allowed, 1);
    const auto denied = check(back, kStart + 20'000);
    EXPECT_EQ(denied.allowed, 0) << "a step back of 10 s gave the limit again";
    EXPECT_GT(denied.retry_after_ms, 0);
    EXPECT_LE(denied.retry_after_ms, 2 * window);
  }
}

// calendar_window: the engine gives each item its window's start (burst) and length. Windows
// of 23 h, 25 h and 31 days follow one another; within one the count carries on, at the next
// start it begins again, and reset/retry point at the window's end. Every plugin (Redis's Lua
// included) gives the reference's answers, and the answers themselves are checked.
TEST_P(PluginConformance, CalendarWindowsFollowTheGivenBounds) {
  constexpr int64_t kHour = 3'600'000;
  const int64_t lengths[] = {23 * kHour, 25 * kHour, 31 * 24 * kHour, 24 * kHour};
  ReferenceModel reference;
  const auto k = key("calendar");
  auto check = [&](int64_t start, int64_t length, int64_t now, sluice_op op, int64_t cost) {
    sluice_limit_params p = params(SLUICE_ALG_CALENDAR_WINDOW, 3, length);
    p.burst = start;
    const sluice_item it = item(k, op, p, cost);
    sluice_item_result expected{};
    reference.submit(sluice_batch{now, 1, &it, &expected});
    const auto actual = run_one(it, now);
    EXPECT_TRUE(same(actual, expected)) << "at +" << (now - kStart) << " ms: plugin "
                                        << describe(actual) << ", reference " << describe(expected);
    return actual;
  };
  int64_t start = kStart;
  for (const int64_t length : lengths) {
    SCOPED_TRACE("window of " + std::to_string(length / kHour) + " h");
    const int64_t end = start + length;
    EXPECT_EQ(check(start, length, start + 10, SLUICE_OP_CONSUME, 2).allowed, 1);
    const auto last = check(start, length, end - 2 * kHour, SLUICE_OP_CONSUME, 1);
    EXPECT_EQ(last.allowed, 1);
    EXPECT_EQ(last.remaining, 0);
    EXPECT_EQ(last.reset_after_ms, 2 * kHour);
    const auto denied = check(start, length, end - kHour, SLUICE_OP_CONSUME, 1);
    EXPECT_EQ(denied.allowed, 0);
    EXPECT_EQ(denied.retry_after_ms, kHour) << "retry at the window's end, not a fixed length";
    EXPECT_EQ(check(start, length, end - 1, SLUICE_OP_ADJUST, -1).remaining, 1);
    start = end;
  }
  // Next window's bounds while the clock is a little behind (the previous window's start
  // comes with the item): the state from the window ahead keeps counting.
  const int64_t next = start + 24 * kHour;
  EXPECT_EQ(check(start, 24 * kHour, start + 5, SLUICE_OP_CONSUME, 3).allowed, 1);
  EXPECT_EQ(check(start - 24 * kHour, 24 * kHour, start - 5, SLUICE_OP_CONSUME, 1).allowed, 0);
  EXPECT_EQ(check(next, 24 * kHour, next, SLUICE_OP_CONSUME, 3).allowed, 1);
}

// Many threads against shared keys get exact totals: never more, never fewer than the limit.
TEST_P(PluginConformance, ConcurrentRequestsGiveExactTotals) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 300;
  struct Case {
    const char* name;
    sluice_limit_params p;
    int64_t expected;
  };
  const Case cases[] = {
      {"fixed_window", params(SLUICE_ALG_FIXED_WINDOW, 1000, 3'600'000), 1000},
      {"sliding_window_counter", params(SLUICE_ALG_SLIDING_WINDOW_COUNTER, 700, 3'600'000), 700},
      {"token_bucket", params(SLUICE_ALG_TOKEN_BUCKET, 500, 3'600'000), 500},
      {"gcra", params(SLUICE_ALG_GCRA, 600, 3'600'000), 600},
      {"concurrency", params(SLUICE_ALG_CONCURRENCY, 50, 3'600'000), 50},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const auto k = key(std::string("threads:") + c.name);
    std::atomic<int64_t> admitted{0};
    std::atomic<uint64_t> next_lease{1};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int i = 0; i < kPerThread; ++i) {
          const sluice_item it =
              c.p.algorithm == SLUICE_ALG_CONCURRENCY
                  ? lease(k, SLUICE_OP_LEASE_ACQUIRE, c.p, next_lease++, kStart + 3'600'000)
                  : item(k, SLUICE_OP_CONSUME, c.p);
          if (run_one(it, kStart).allowed == 1) ++admitted;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(admitted.load(), c.expected);
  }

  // Batches over two shared keys: the smaller limit decides, and the larger one is charged
  // exactly once per admitted batch.
  const auto small = key("threads:small"), large = key("threads:large");
  const auto p_small = params(SLUICE_ALG_FIXED_WINDOW, 300, 3'600'000);
  const auto p_large = params(SLUICE_ALG_FIXED_WINDOW, 1000, 3'600'000);
  std::atomic<int64_t> admitted{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const auto own = key("threads:own:" + std::to_string(t));
      for (int i = 0; i < kPerThread; ++i) {
        // Alternate the item order, so that lock ordering inside the plugin is exercised.
        std::vector<sluice_item> batch = {item(small, SLUICE_OP_CONSUME, p_small),
                                          item(large, SLUICE_OP_CONSUME, p_large),
                                          item(own, SLUICE_OP_CONSUME, p_large)};
        if (i % 2 == 1) std::reverse(batch.begin(), batch.end());
        const auto r = run(batch, kStart);
        if (std::all_of(r.begin(), r.end(), [](const auto& x) { return x.allowed == 1; }))
          ++admitted;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), 300);
  EXPECT_EQ(run_one(item(large, SLUICE_OP_CONSUME, p_large), kStart).remaining, 1000 - 300 - 1);
}

// Bad input gets an error status and a sentence, never a crash; the batch completes once.
TEST_P(PluginConformance, InvalidItemsAreRejected) {
  const auto k = key("invalid");
  sluice_item bad = item(k, SLUICE_OP_CONSUME, params(SLUICE_ALG_FIXED_WINDOW, 5, 1000));
  bad.op = 99;
  std::vector<sluice_item_result> results;
  std::string message;
  EXPECT_NE(submit({bad}, results, kStart, &message), SLUICE_OK);
  EXPECT_FALSE(message.empty());
  // The plugin is still fine afterwards.
  EXPECT_EQ(
      run_one(item(k, SLUICE_OP_CONSUME, params(SLUICE_ALG_FIXED_WINDOW, 5, 1000)), kStart).allowed,
      1);
}

// An unknown configuration key refuses to open with a sentence that names it.
TEST_P(PluginConformance, UnknownConfigKeyIsRefused) {
  StorageConfig config;
  for (const auto& pair : split(GetParam().config_text, ',')) {
    const auto eq = pair.find('=');
    config.emplace_back(pair.substr(0, eq), pair.substr(eq + 1));
  }
  config.emplace_back("no_such_setting", "1");
  auto loaded = testing::load_plugin(GetParam().name, config, plugin_dirs());
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("no_such_setting"), std::string::npos)
      << loaded.status().message();
}

// stats_json is one JSON object.
TEST_P(PluginConformance, StatsAreJson) {
  run_one(item(key("stats"), SLUICE_OP_CONSUME, params(SLUICE_ALG_FIXED_WINDOW, 5, 1000)), kStart);
  const auto json = nlohmann::json::parse(storage_->stats_json(), nullptr, false);
  EXPECT_TRUE(json.is_object()) << storage_->stats_json();
  if (has_feature("exact_key_count")) {
    EXPECT_GE(stat("keys"), 1u);
  }
}

// ---- records (ABI 1.4) ------------------------------------------------------------------

class RecordConformance : public PluginConformance {
 protected:
  void SetUp() override {
    PluginConformance::SetUp();
    if (storage_ == nullptr) return;
    // Records are optional in the ABI; a plugin that declares it keeps none is excused.
    if (has_feature("no_records")) GTEST_SKIP() << "the plugin keeps no records";
    ASSERT_TRUE(storage_->supports_records())
        << "the plugin has no record functions (declare FEATURES no_records if intended)";
  }
  testing::RecordOutcome put(const std::string& k, std::string_view value, int64_t expires_at_ms,
                             int64_t now_ms = kStart) {
    auto r = testing::record_put_and_wait(*storage_, k, value, expires_at_ms, now_ms);
    EXPECT_EQ(r.status, SLUICE_OK) << r.message;
    EXPECT_FALSE(r.value.has_value()) << "a put hands over no value";
    return r;
  }
  std::optional<std::string> get(const std::string& k, int64_t now_ms = kStart) {
    auto r = testing::record_get_and_wait(*storage_, k, now_ms);
    EXPECT_EQ(r.status, SLUICE_OK) << r.message;
    return r.value;
  }
  std::optional<std::string> remove(const std::string& k, int64_t now_ms = kStart) {
    auto r = testing::record_delete_and_wait(*storage_, k, now_ms);
    EXPECT_EQ(r.status, SLUICE_OK) << r.message;
    return r.value;
  }
  static constexpr int64_t kHour = 3'600'000;
};

// A record reads back as written, a put replaces it, a delete hands over its value once, and
// an unknown key is absent.
TEST_P(RecordConformance, PutGetReplaceDelete) {
  const auto k = key("record");
  EXPECT_EQ(get(k), std::nullopt);
  EXPECT_EQ(remove(k), std::nullopt);
  put(k, "first", kStart + kHour);
  EXPECT_EQ(get(k), "first");
  put(k, "second, longer than the first", kStart + kHour);
  EXPECT_EQ(get(k), "second, longer than the first");
  EXPECT_EQ(remove(k), "second, longer than the first");
  EXPECT_EQ(get(k), std::nullopt);
  EXPECT_EQ(remove(k), std::nullopt);
}

// A record is absent from its expiry on (by the host's clock, which may be simulated), and a
// put that is already expired leaves nothing.
TEST_P(RecordConformance, RecordsExpireAtTheGivenTime) {
  const auto k = key("expiring");
  put(k, "v", kStart + 1000);
  EXPECT_EQ(get(k, kStart + 999), "v");
  EXPECT_EQ(get(k, kStart + 1000), std::nullopt);
  EXPECT_EQ(remove(k, kStart + 5000), std::nullopt);  // an expired record is not handed over
  EXPECT_EQ(get(k, kStart + 5000), std::nullopt);

  const auto late = key("born-expired");
  put(late, "old", kStart + 1000);
  put(late, "gone", kStart, kStart);  // a replacement that expires at once
  EXPECT_EQ(get(late, kStart), std::nullopt);
  // A record written later in simulated time than an hour's real TTL would allow still lives.
  const auto far = key("far");
  put(far, "v", kStart + 48 * kHour, kStart + 47 * kHour);
  EXPECT_EQ(get(far, kStart + 48 * kHour - 1), "v");
}

// Values are bytes: NULs, every byte value, an empty value (present, not absent), 4 KiB.
TEST_P(RecordConformance, ValuesAreAnyBytes) {
  const std::string with_nuls("a\0b\0\xff\x01", 6);
  put(key("nuls"), with_nuls, kStart + kHour);
  EXPECT_EQ(get(key("nuls")), with_nuls);

  put(key("empty"), "", kStart + kHour);
  EXPECT_EQ(get(key("empty")), std::string());

  std::string big(4096, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131 + 7) & 0xff);
  put(key("big"), big, kStart + kHour);
  EXPECT_EQ(get(key("big")), big);
  EXPECT_EQ(remove(key("big")), big);
}

// Records and batch keys live apart: the same bytes as a limit's key are another thing.
TEST_P(RecordConformance, RecordsAndCountersDoNotMeet) {
  const auto k = key("shared-name");
  const auto p = params(SLUICE_ALG_FIXED_WINDOW, 5, 60'000);
  put(k, "record", kStart + kHour);
  EXPECT_EQ(run_one(item(k, SLUICE_OP_CONSUME, p, 2), kStart).remaining, 3);
  EXPECT_EQ(get(k), "record");
  EXPECT_EQ(remove(k), "record");
  // Still 3 left: a peek of 1 answers what remains after it.
  EXPECT_EQ(run_one(item(k, SLUICE_OP_PEEK, p, 1), kStart).remaining, 2);
}

// Of concurrent deletes of one record exactly one receives its value.
TEST_P(RecordConformance, ConcurrentDeletesHandTheValueToOne) {
  constexpr int kThreads = 8;
  for (int round = 0; round < 20; ++round) {
    const auto k = key("contested:" + std::to_string(round));
    put(k, "prize", kStart + kHour);
    std::atomic<int> winners{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        auto r = testing::record_delete_and_wait(*storage_, k, kStart);
        if (r.status == SLUICE_OK && r.value == "prize") ++winners;
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(winners.load(), 1) << "round " << round;
  }
}

// Keys and values beyond the ABI's bounds are refused with a sentence, once.
TEST_P(RecordConformance, OversizedKeysAndValuesAreRefused) {
  auto r = testing::record_put_and_wait(*storage_, std::string(SLUICE_RECORD_MAX_KEY + 1, 'k'), "v",
                                        kStart + kHour, kStart);
  EXPECT_EQ(r.status, SLUICE_ERR_INVALID);
  EXPECT_FALSE(r.message.empty());
  EXPECT_EQ(r.calls, 1);
  r = testing::record_put_and_wait(*storage_, key("huge"),
                                   std::string(SLUICE_RECORD_MAX_VALUE + 1, 'v'), kStart + kHour,
                                   kStart);
  EXPECT_EQ(r.status, SLUICE_ERR_INVALID);
  EXPECT_FALSE(r.message.empty());
  EXPECT_EQ(get(key("huge")), std::nullopt);
}

std::string test_name(const ::testing::TestParamInfo<PluginUnderTest>& info) {
  std::string name;
  for (char c : info.param.name) name += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

INSTANTIATE_TEST_SUITE_P(Plugin, PluginConformance, ::testing::Values(plugin_under_test()),
                         test_name);
INSTANTIATE_TEST_SUITE_P(Plugin, RecordConformance, ::testing::Values(plugin_under_test()),
                         test_name);

}  // namespace
}  // namespace sluice::conformance
