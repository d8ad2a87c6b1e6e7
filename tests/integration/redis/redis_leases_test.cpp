// Leases live in storage (issue 20 item 3): two sluiced instances on one Redis share them, so a
// lease acquired through one is charged and released through the other; a Redis that is gone
// makes SL.RELEASE answer STORAGE rather than NOLEASE.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "../lease_flow.h"
#include "redis_server.h"
#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

class RedisLeases : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(redis_.start());
    for (int i = 0; i < 2; ++i) {
      daemons_.push_back(std::make_unique<Daemon>(
          kLeasePolicy,
          std::vector<std::string>{"--storage", "redis", "--storage-config", "url=" + redis_.url(),
                                   "--storage-config", "reconnect_max_ms=50"}));
      ASSERT_TRUE(daemons_.back()->ok()) << daemons_.back()->log();
    }
  }
  Client a() const { return daemons_[0]->client(); }
  Client b() const { return daemons_[1]->client(); }

  RedisServer redis_;
  std::vector<std::unique_ptr<Daemon>> daemons_;
};

// Acquired on A, charged on B, refused on A, released on B, and A sees the settlement.
TEST_F(RedisLeases, ALeaseIsChargedAndReleasedThroughAnotherInstance) {
  run_lease_flow({.acquire_on = [&] { return a(); },
                  .first_charge_on = [&] { return b(); },
                  .second_charge_on = [&] { return a(); },
                  .release_on = [&] { return b(); },
                  .check_on = [&] { return a(); }});
}

// The lease's record is in Redis under the plugin's prefix; a token whose secret is not the
// lease's is told NOLEASE on either instance, and the lease stays its holder's.
TEST_F(RedisLeases, AWrongSecretIsAnUnknownLeaseEverywhere) {
  Client ca = a();
  const resp::Value acq = call(ca, {"SL.ACQUIRE", "r", "t", "COST", "output_tokens", "100"});
  ASSERT_GE(acq.elements.size(), 8u) << acq.to_string();
  const std::string lease = acq.elements[6].str;
  EXPECT_EQ(redis_.command("EXISTS sluice:lease:{" + lease.substr(0, 16) + "}"), "1");
  std::string forged = lease;
  forged.back() = forged.back() == '0' ? '1' : '0';
  Client cb = b();
  EXPECT_EQ(call(cb, {"SL.CHARGE", forged, "COST", "output_tokens", "5"}).error_code(), "NOLEASE");
  EXPECT_EQ(call(cb, {"SL.RELEASE", forged}).error_code(), "NOLEASE");
  EXPECT_EQ(call(ca, {"SL.RELEASE", forged}).error_code(), "NOLEASE");
  EXPECT_EQ(call(cb, {"SL.RELEASE", lease}).integer, 1);
  EXPECT_EQ(redis_.command("EXISTS sluice:lease:{" + lease.substr(0, 16) + "}"), "0");
}

// Without Redis a release cannot know the lease: STORAGE, not NOLEASE, so the client may retry.
TEST_F(RedisLeases, AReleaseWithoutRedisAnswersStorage) {
  Client ca = a();
  const resp::Value acq = call(ca, {"SL.ACQUIRE", "r", "u", "COST", "output_tokens", "100"});
  ASSERT_GE(acq.elements.size(), 8u) << acq.to_string();
  redis_.kill();
  const resp::Value r = call(ca, {"SL.RELEASE", acq.elements[6].str});
  EXPECT_EQ(r.error_code(), "STORAGE") << r.to_string();
}

}  // namespace
}  // namespace sluice::testing
