// What one client cannot take from another, over the wire, on each of the three storage
// plugins: a counter through names that once built the same storage key, a lease through a
// token derived from its own, a slot or a charge beyond the wire bounds (docs/protocol.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "redis_server.h"
#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

using resp::Value;

constexpr const char* kPolicy = R"(version: 1
default_tier: free
unknown_resource: default_limits
default_limits:
  - {name: per_hour, algorithm: fixed_window, limit: 1, window: 1h}
lease_ttl: 30s
tiers:
  free: {multiplier: 1}
resources:
  gpu:
    limits:
      - {name: in_flight, algorithm: concurrency, limit: 4, window: 30s}
  generate:
    limits:
      - {name: tokens, algorithm: token_bucket, limit: 1000, window: 1h, cost: tokens}
)";

class Boundaries : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::vector<std::string> args = {"--storage", GetParam()};
    if (GetParam() == "redis") {
      ASSERT_TRUE(redis_.start());
      args.insert(args.end(), {"--storage-config", "url=" + redis_.url()});
    }
    if (GetParam() == "sqlite") {
      args.insert(args.end(), {"--storage-config", "path=" + scratch_.path + "/counters.db"});
    }
    daemon_ = std::make_unique<Daemon>(kPolicy, args);
    ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  }

  struct Scratch {
    std::string path;
    Scratch() {
      char tmpl[] = "/tmp/sluice-bounds-XXXXXX";
      path = ::mkdtemp(tmpl);
    }
    ~Scratch() { std::filesystem::remove_all(path); }
  };

  Scratch scratch_;
  RedisServer redis_;
  std::unique_ptr<Daemon> daemon_;
};

bool allowed(const Value& v) { return !v.elements.empty() && v.elements[0].integer == 1; }

// The issue's pair: ("predict", "2001:db8::1") and ("predict:2001", "db8::1") built the same
// key "{predict:2001:db8::1}per_hour". The second name is refused; the first keeps its counter.
TEST_P(Boundaries, AmbiguousResourceNamesAreRefused) {
  Client c = daemon_->client();
  ASSERT_TRUE(allowed(call(c, {"SL.CHECK", "predict", "2001:db8::1"})));
  const Value forged = call(c, {"SL.CHECK", "predict:2001", "db8::1"});
  EXPECT_EQ(forged.error_code(), "WRONGARGS") << forged.to_string();
  EXPECT_NE(forged.str.find("resource name"), std::string::npos) << forged.str;
  const Value again = call(c, {"SL.CHECK", "predict", "2001:db8::1"});
  EXPECT_FALSE(allowed(again)) << again.to_string();
  EXPECT_EQ(again.elements[5].str, "per_hour");
}

// Property: for pairs built from the characters keys are made of, every pair the daemon
// accepts is allowed on its first request (1 per hour): no two pairs share a counter.
TEST_P(Boundaries, AcceptedPairsNeverShareACounter) {
  Client c = daemon_->client();
  const std::string alphabet = "ab:{}#/.";
  std::mt19937 rng(4242);
  std::set<std::pair<std::string, std::string>> seen;
  int accepted = 0, refused = 0;
  while (seen.size() < 600) {
    auto word = [&] {
      std::string w(1 + rng() % 3, ' ');
      for (char& ch : w) ch = alphabet[rng() % alphabet.size()];
      return w;
    };
    const std::string resource = word(), subject = word();
    if (!seen.insert({resource, subject}).second) continue;
    const Value v = call(c, {"SL.CHECK", resource, subject});
    if (v.is_error()) {
      ASSERT_EQ(v.error_code(), "WRONGARGS") << v.to_string();
      ++refused;
      continue;
    }
    ++accepted;
    ASSERT_TRUE(allowed(v)) << "(" << resource << ", " << subject
                            << ") found its counter spent by another pair: " << v.to_string();
  }
  EXPECT_GT(accepted, 50);
  EXPECT_GT(refused, 50);
}

// Two holders: the second cannot release or settle the first's lease with the first's id and
// its own secret, nor with its own token's neighbours.
TEST_P(Boundaries, OnlyTheHolderCanReleaseALease) {
  Client alice = daemon_->client(), mallory = daemon_->client();
  const Value a = call(alice, {"SL.ACQUIRE", "gpu", "alice"});
  const Value m = call(mallory, {"SL.ACQUIRE", "gpu", "mallory"});
  ASSERT_TRUE(allowed(a) && allowed(m)) << a.to_string() << m.to_string();
  const std::string victim = a.elements[6].str, own = m.elements[6].str;
  ASSERT_EQ(victim.size(), 48u);
  ASSERT_EQ(own.size(), 48u);

  std::vector<std::string> forged = {victim.substr(0, 16) + own.substr(16)};
  for (size_t at : {15u, 16u, 31u, 47u}) {  // one digit changed in id or secret
    std::string t = own;
    t[at] = t[at] == '0' ? '1' : '0';
    forged.push_back(t);
  }
  for (const std::string& token : forged) {
    EXPECT_EQ(call(mallory, {"SL.RELEASE", token}).error_code(), "NOLEASE") << token;
    EXPECT_EQ(call(mallory, {"SL.RELEASE", token, "ACTUAL", "1000"}).error_code(), "NOLEASE");
  }
  // Both leases are still held, and only their holders release them, once.
  EXPECT_EQ(call(alice, {"SL.RELEASE", victim}).integer, 1);
  EXPECT_EQ(call(mallory, {"SL.RELEASE", own}).integer, 1);
  EXPECT_EQ(call(mallory, {"SL.RELEASE", victim}).error_code(), "NOLEASE");
}

// COST, ACTUAL and TTL: the same answer at the bound on every plugin, WRONGARGS naming the
// bound past it, and a refused request consumes nothing.
TEST_P(Boundaries, NumbersAreBoundedOnTheWire) {
  Client c = daemon_->client();
  const Value at_bound = call(c, {"SL.CHECK", "generate", "s", "COST", "1000000000000"});
  ASSERT_FALSE(at_bound.is_error()) << at_bound.to_string();
  EXPECT_FALSE(allowed(at_bound));
  EXPECT_EQ(at_bound.elements[1].integer, 1000);
  const Value past = call(c, {"SL.CHECK", "generate", "s", "COST", "1000000000001"});
  EXPECT_EQ(past.error_code(), "WRONGARGS");
  EXPECT_NE(past.str.find("1 to 1000000000000"), std::string::npos) << past.str;
  EXPECT_EQ(call(c, {"SL.CHECK", "generate", "s", "COST", "9223372036854775807"}).error_code(),
            "WRONGARGS");
  EXPECT_EQ(call(c, {"SL.PEEK", "generate", "s"}).elements[2].integer, 999);

  // TTL: up to lease_ttl_max (here lease_ttl, 30 s).
  const Value held = call(c, {"SL.ACQUIRE", "gpu", "s", "TTL", "30000"});
  ASSERT_TRUE(allowed(held)) << held.to_string();
  const Value too_long = call(c, {"SL.ACQUIRE", "gpu", "s", "TTL", "30001"});
  EXPECT_EQ(too_long.error_code(), "WRONGARGS");
  EXPECT_NE(too_long.str.find("lease_ttl_max"), std::string::npos) << too_long.str;
  EXPECT_EQ(call(c, {"SL.ACQUIRE", "gpu", "s", "TTL", "9223372036854775807"}).error_code(),
            "WRONGARGS");

  // ACTUAL: refused past the bound, and the lease is still there to settle.
  const Value lease = call(c, {"SL.ACQUIRE", "generate", "s", "COST", "100"});
  ASSERT_TRUE(allowed(lease)) << lease.to_string();
  const Value huge = call(c, {"SL.RELEASE", lease.elements[6].str, "ACTUAL", "1000000000001"});
  EXPECT_EQ(huge.error_code(), "WRONGARGS");
  EXPECT_NE(huge.str.find("0 to 1000000000000"), std::string::npos) << huge.str;
  EXPECT_EQ(call(c, {"SL.RELEASE", lease.elements[6].str, "ACTUAL", "50"}).integer, 1);
  EXPECT_EQ(call(c, {"SL.PEEK", "generate", "s"}).elements[2].integer, 949);

  // ACTUAL at the bound: settled on every plugin, charging at most one capacity, so the
  // subject waits about one window (1000 tokens an hour), not 10^9 hours.
  const Value big = call(c, {"SL.ACQUIRE", "generate", "t", "COST", "100"});
  ASSERT_TRUE(allowed(big)) << big.to_string();
  EXPECT_EQ(call(c, {"SL.RELEASE", big.elements[6].str, "ACTUAL", "1000000000000"}).integer, 1);
  const Value after = call(c, {"SL.PEEK", "generate", "t"});
  ASSERT_FALSE(after.is_error()) << after.to_string();
  EXPECT_FALSE(allowed(after));
  EXPECT_GT(after.elements[4].integer, 0);
  EXPECT_LE(after.elements[4].integer, 2 * 3'600'000);
}

INSTANTIATE_TEST_SUITE_P(Plugins, Boundaries, ::testing::Values("memory", "sqlite", "redis"),
                         [](const ::testing::TestParamInfo<std::string>& plugin) {
                           return plugin.param;
                         });

}  // namespace
}  // namespace sluice::testing
