// The Redis plugin gives exactly the answers of the engine's transitions: random sequences of
// batches (every op, shadow items, repeated keys, limit changes, small state capacities) are
// submitted to the Redis plugin and to the conformance suite's reference model (the C++
// transitions over a plain map), and every result field must agree.
#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "plugin_driver.h"
#include "redis_server.h"
#include "reference_model.h"
#include "sluice/algorithms.h"
#include "sluice/storage.h"

namespace sluice {
namespace {

using testing::RedisServer;

constexpr int64_t kStart = 1'700'000'000'000;

std::string describe(const sluice_item& it) {
  return "op=" + std::to_string(it.op) + " key=" + std::string(it.key, it.key_len) +
         " limit=" + std::to_string(it.params.limit) +
         " window=" + std::to_string(it.params.window_ms) +
         " burst=" + std::to_string(it.params.burst) + " cost=" + std::to_string(it.cost) +
         " lease=" + std::to_string(it.lease_id) +
         " expires=" + std::to_string(it.lease_expires_ms) +
         " shadow=" + std::to_string(it.shadow) + " cap=" + std::to_string(it.state_capacity);
}

std::string describe(const sluice_item_result& r) {
  std::ostringstream out;  // not "{" + std::to_string(...): see tests/support/numbered.h
  out << "{" << r.allowed << ", " << r.limit << ", " << r.remaining << ", " << r.reset_after_ms
      << ", " << r.retry_after_ms << "}";
  return out.str();
}

class RedisExactness : public ::testing::TestWithParam<sluice_algorithm> {
 protected:
  static void SetUpTestSuite() {
    server_ = new RedisServer();
    ASSERT_TRUE(server_->start()) << "redis-server did not start";
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }

  static std::unique_ptr<Storage> open(const std::string& name, const StorageConfig& config) {
    auto s = testing::load_plugin(name, config);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  static RedisServer* server_;
};
RedisServer* RedisExactness::server_ = nullptr;

// Random batches against both plugins; every answer must be identical.
TEST_P(RedisExactness, RandomBatchesMatchTheEngineTransitions) {
  const sluice_algorithm alg = GetParam();
  auto redis = open("redis", {{"url", server_->url()},
                              {"clock", "engine"},
                              {"ttl_grace_ms", "86400000"},
                              {"prefix", "exact" + std::to_string(alg) + ":"}});
  ASSERT_TRUE(redis);
  conformance::ReferenceModel reference;

  std::mt19937_64 rng(12345 + alg);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  const std::vector<std::string> keys = {"{r:a}x", "{r:b}x", "{r:a}y"};
  const std::vector<uint64_t> lease_ids = {1, 2, 3, 4, 0xFFFFFFFFFFFFFFF1ull};
  int64_t now = kStart + pick(0, 999);
  const int64_t window = alg == SLUICE_ALG_CONCURRENCY ? 2000 : 1000;
  int allowed = 0, denied = 0;
  for (int step = 0; step < 4000; ++step) {
    const int r = static_cast<int>(pick(0, 99));
    if (r < 40) {
      now += 0;
    } else if (r < 90) {
      now += pick(1, window / 5);
    } else if (r < 96) {
      now += pick(window / 5, window);
    } else if (r < 98) {  // a clock stepping back a little, as NTP may make it
      now -= pick(1, window / 5);
    } else {
      now += pick(window, 3 * window);
    }
    const size_t n = static_cast<size_t>(pick(0, 9) < 7 ? 1 : pick(2, 3));
    std::vector<sluice_item> items(n);
    for (auto& it : items) {
      it = sluice_item{};
      const std::string& key = keys[static_cast<size_t>(pick(0, 2))];
      it.key = key.data();
      it.key_len = static_cast<uint32_t>(key.size());
      it.params.algorithm = alg;
      it.params.limit = pick(0, 9) < 8 ? 8 : 4;  // a warm-up may scale a limit down
      it.params.window_ms = window;
      it.params.burst =
          (alg == SLUICE_ALG_TOKEN_BUCKET || alg == SLUICE_ALG_GCRA) && pick(0, 1) ? 12 : 0;
      const int o = static_cast<int>(pick(0, 99));
      if (alg == SLUICE_ALG_CONCURRENCY) {
        it.op = o < 45   ? SLUICE_OP_LEASE_ACQUIRE
                : o < 75 ? SLUICE_OP_LEASE_RELEASE
                : o < 85 ? SLUICE_OP_CONSUME
                : o < 93 ? SLUICE_OP_PEEK
                : o < 97 ? SLUICE_OP_ADJUST
                         : SLUICE_OP_RESET;
      } else {
        it.op = o < 70   ? SLUICE_OP_CONSUME
                : o < 80 ? SLUICE_OP_PEEK
                : o < 93 ? SLUICE_OP_ADJUST
                : o < 97 ? SLUICE_OP_LEASE_RELEASE
                : o < 99 ? SLUICE_OP_LEASE_ACQUIRE
                         : SLUICE_OP_RESET;
      }
      const int c = static_cast<int>(pick(0, 99));
      it.cost = c < 70 ? 1 : c < 85 ? pick(0, 3) : c < 95 ? pick(4, 13) : 0;
      if (it.op == SLUICE_OP_ADJUST) it.cost = pick(-4, 4);
      it.lease_id = lease_ids[static_cast<size_t>(pick(0, 4))];
      it.lease_expires_ms = pick(0, 9) == 0 ? now - pick(0, 5) : now + pick(1, 2 * window);
      it.shadow = pick(0, 9) == 0 ? 1 : 0;
      it.state_capacity = static_cast<uint32_t>(algo::state_capacity(it.params));
      // Small capacities make the sliding log fold entries and cap the lease table.
      if (pick(0, 3) == 0 && alg == SLUICE_ALG_SLIDING_WINDOW) it.state_capacity = 8 + 16 * 3;
      if (pick(0, 3) == 0 && alg == SLUICE_ALG_CONCURRENCY) it.state_capacity = 8 + 24 * 2;
    }
    std::vector<sluice_item_result> expected(n);
    reference.submit(sluice_batch{now, n, items.data(), expected.data()});
    const testing::Outcome got = testing::submit_and_wait(*redis, now, items);
    std::string context = "step " + std::to_string(step) + " now=" + std::to_string(now);
    for (const auto& it : items) context += "\n  " + describe(it);
    ASSERT_EQ(got.status, SLUICE_OK) << context << "\n  " << got.message;
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(describe(got.results[i]), describe(expected[i])) << context << "\n  item " << i;
      (expected[i].allowed ? allowed : denied)++;
    }
  }
  // The sequence must have exercised both answers.
  EXPECT_GT(allowed, 500);
  EXPECT_GT(denied, 300);
}

INSTANTIATE_TEST_SUITE_P(Algorithms, RedisExactness,
                         ::testing::Values(SLUICE_ALG_FIXED_WINDOW, SLUICE_ALG_SLIDING_WINDOW,
                                           SLUICE_ALG_SLIDING_WINDOW_COUNTER,
                                           SLUICE_ALG_TOKEN_BUCKET, SLUICE_ALG_GCRA,
                                           SLUICE_ALG_CONCURRENCY),
                         [](const ::testing::TestParamInfo<sluice_algorithm>& p) {
                           return std::string(algo::algorithm_name(p.param));
                         });

}  // namespace
}  // namespace sluice
