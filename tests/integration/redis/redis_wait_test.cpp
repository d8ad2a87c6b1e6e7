// WAIT across a fleet: two sluiced instances share a one-slot limit in one Redis. A waiter on
// one instance is admitted after a release on the other, found by the periodic re-decision
// (at most every 100 ms), not by a wake-up: instances do not tell each other about releases.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "redis_server.h"
#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kPolicy = R"(default_tier: free
tiers:
  free: {}
resources:
  gpu:
    limits:
      - {name: slots, algorithm: concurrency, limit: 1, window: 1m, per: resource}
)";

std::string command(std::initializer_list<std::string_view> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out += a;
    out += "\r\n";
  }
  return out;
}

class RedisWait : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis_.start());
    for (int i = 0; i < 2; ++i) {
      daemons_.push_back(std::make_unique<Daemon>(
          kPolicy, std::vector<std::string>{"--storage", "redis", "--storage-config",
                                            "url=" + redis_.url()}));
      ASSERT_TRUE(daemons_.back()->ok()) << daemons_.back()->log();
    }
  }
  RedisServer redis_;
  std::vector<std::unique_ptr<Daemon>> daemons_;
};

// Released on instance A, admitted on instance B within the re-decision period (loosely bounded
// here: a shared machine).
TEST_F(RedisWait, AWaiterOnAnotherInstanceIsAdmittedAfterARelease) {
  Client a = daemons_[0]->client();
  Client b = daemons_[1]->client();
  resp::Value lease = call(a, {"SL.ACQUIRE", "gpu", "holder"});
  ASSERT_EQ(lease.elements.size(), 11u) << lease.to_string();
  ASSERT_EQ(lease.elements[0].integer, 1);
  ASSERT_TRUE(b.send(command({"SL.ACQUIRE", "gpu", "waiter", "WAIT", "5000"})));
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  const auto released = Clock::now();
  ASSERT_EQ(call(a, {"SL.RELEASE", lease.elements[6].str}).integer, 1);
  resp::Value admitted;
  ASSERT_TRUE(b.read(admitted)) << b.error();
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - released).count();
  ASSERT_EQ(admitted.elements.size(), 13u) << admitted.to_string();
  EXPECT_EQ(admitted.elements[0].integer, 1);
  EXPECT_EQ(admitted.elements.back().str, "admitted");
  std::printf("admitted on the other instance %lld ms after the release\n",
              static_cast<long long>(ms));
  EXPECT_LT(ms, 1000);
}

// Nobody releases: the waiter on the other instance is denied at its deadline.
TEST_F(RedisWait, DeniedAtTheDeadlineAcrossTheFleet) {
  Client a = daemons_[0]->client();
  Client b = daemons_[1]->client();
  ASSERT_EQ(call(a, {"SL.ACQUIRE", "gpu", "holder"}).elements[0].integer, 1);
  const auto sent = Clock::now();
  resp::Value v = call(b, {"SL.ACQUIRE", "gpu", "waiter", "WAIT", "300"});
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent).count();
  EXPECT_EQ(v.elements[0].integer, 0) << v.to_string();
  EXPECT_EQ(v.elements.back().str, "deadline");
  EXPECT_GE(ms, 250);
  EXPECT_LT(ms, 2000);
}

}  // namespace
}  // namespace sluice::testing
