// What a client may not take: another subject's counter through an ambiguous key, another
// client's lease through a predictable or derived token, a lease or charge beyond the wire
// bounds. Engine with the memory plugin and a ManualClock; the other plugins get the same
// requests in tests/integration (key space) and tests/conformance (bounds).
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "engine_test_support.h"

namespace sluice {
namespace {

using namespace sluice::testing;

class EngineBoundaries : public ::testing::Test {
 protected:
  void start(PolicySpec spec) {
    engine_ = std::make_unique<Engine>(memory_storage(), compile_or_die(std::move(spec)),
                                       EngineOptions{&clock_});
  }
  Decision decide(DecisionKind kind, std::string_view resource, std::string_view subject,
                  int64_t cost = 1, int64_t ttl_ms = 0) {
    DecisionRequest r = req(resource, subject, cost);
    r.lease_ttl_ms = ttl_ms;
    return engine_->decide_sync(kind, r);
  }

  ManualClock clock_{1'700'000'000'000};
  std::unique_ptr<Engine> engine_;
};

PolicySpec default_limits_policy() {
  auto p = base_policy();
  p.unknown_resource = UnknownResourceMode::kDefaultLimits;
  p.default_limits = {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 1, 60'000)};
  return p;
}

// ("predict", "2001:db8::1") and ("predict:2001", "db8::1") once shared the key
// "{predict:2001:db8::1}per_minute". A requested name that a policy could not hold is refused
// before any key is built, so the first keeps its counter.
TEST_F(EngineBoundaries, AResourceNameThatCouldNotBeInAPolicyIsRefused) {
  start(default_limits_policy());
  ASSERT_TRUE(decide(DecisionKind::kCheck, "predict", "2001:db8::1").allowed);
  for (std::string_view name : {"predict:2001", "a{b", "a}b", "with space", "caf\xc3\xa9"}) {
    const Decision d = decide(DecisionKind::kCheck, name, "db8::1");
    EXPECT_EQ(d.source, DecisionSource::kError) << name;
    EXPECT_EQ(d.error, StatusCode::kInvalid) << name;
    EXPECT_NE(d.error_message.find("resource name"), std::string::npos) << d.error_message;
  }
  // The valid pair's own counter is untouched; other valid names count on their own.
  const Decision again = decide(DecisionKind::kCheck, "predict", "2001:db8::1");
  EXPECT_FALSE(again.allowed);
  EXPECT_EQ(again.source, DecisionSource::kLimits);
  EXPECT_TRUE(decide(DecisionKind::kCheck, "predict.2001", "db8::1").allowed);
}

// Property: over names and subjects built from the characters keys are made of, every
// accepted (resource, subject) pair starts with its own fresh counter of 1 per minute.
TEST_F(EngineBoundaries, AcceptedPairsNeverShareACounter) {
  start(default_limits_policy());
  const std::string alphabet = "ab:{}#/._-";
  std::mt19937 rng(20261204);
  std::set<std::pair<std::string, std::string>> seen;
  int accepted = 0;
  for (int i = 0; i < 4000; ++i) {
    auto word = [&](size_t max_len) {
      std::string w(1 + rng() % max_len, ' ');
      for (char& c : w) c = alphabet[rng() % alphabet.size()];
      return w;
    };
    const std::string resource = word(4), subject = word(4);
    if (!seen.insert({resource, subject}).second) continue;
    const Decision d = decide(DecisionKind::kCheck, resource, subject);
    if (d.source == DecisionSource::kError) continue;
    ++accepted;
    ASSERT_TRUE(d.allowed) << "(" << resource << ", " << subject
                           << ") found its counter already spent by another pair";
  }
  EXPECT_GT(accepted, 500);
}

PolicySpec lease_policy() {
  auto p = base_policy();
  p.lease_ttl_ms = 30'000;
  p.resources = {
      make_resource("gpu", {make_limit("in_flight", SLUICE_ALG_CONCURRENCY, 4, 30'000)})};
  return p;
}

// Two holders: the second cannot release (or settle) the first's lease with its own token,
// with the first's id and the second's secret, or with any token derived from its own.
TEST_F(EngineBoundaries, OnlyTheHolderCanReleaseALease) {
  start(lease_policy());
  const Decision first = decide(DecisionKind::kAcquire, "gpu", "alice");
  const Decision second = decide(DecisionKind::kAcquire, "gpu", "mallory");
  ASSERT_TRUE(first.allowed && second.allowed);
  EXPECT_NE(first.lease.secret, second.lease.secret);

  std::vector<LeaseToken> forged;
  LeaseToken t = second.lease;
  t.id = first.lease.id;  // the victim's id, known or guessed, with the attacker's secret
  forged.push_back(t);
  for (uint64_t delta : {1ull, 2ull, 0x9e3779b97f4a7c15ull}) {  // neighbours of its own
    t = second.lease;
    t.id += delta;
    forged.push_back(t);
    t = second.lease;
    t.id -= delta;
    forged.push_back(t);
    t = second.lease;
    t.secret[0] += delta;
    forged.push_back(t);
  }
  for (const LeaseToken& token : forged) {
    for (std::optional<int64_t> actual : {std::optional<int64_t>{}, std::optional<int64_t>{1000}}) {
      const Decision r = engine_->release_sync(token, actual);
      EXPECT_FALSE(r.allowed) << token.to_string();
      EXPECT_EQ(r.error, StatusCode::kNotFound);
    }
  }
  EXPECT_EQ(engine_->active_leases(), 2u);  // both leases are still held
  EXPECT_TRUE(engine_->release_sync(first.lease, std::nullopt).allowed);
  EXPECT_TRUE(engine_->release_sync(second.lease, std::nullopt).allowed);
}

// Tokens survive their text form, and the secrets of many leases are distinct.
TEST_F(EngineBoundaries, TokensRoundTripAndSecretsDiffer) {
  start(lease_policy());
  std::set<std::array<uint64_t, 2>> secrets;
  for (int i = 0; i < 200; ++i) {
    const Decision d = decide(DecisionKind::kAcquire, "gpu", "s" + std::to_string(i));
    ASSERT_TRUE(d.allowed);
    const std::string text = d.lease.to_string();
    ASSERT_EQ(text.size(), LeaseToken::kTextLength);
    const auto parsed = LeaseToken::parse(text);
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(parsed->id, d.lease.id);
    EXPECT_EQ(parsed->secret, d.lease.secret);
    secrets.insert(d.lease.secret);
  }
  EXPECT_EQ(secrets.size(), 200u);
}

// A client TTL is capped by lease_ttl_max (default: lease_ttl); the refusal names the bound.
TEST_F(EngineBoundaries, LeaseTtlIsCappedByThePolicy) {
  auto p = lease_policy();
  start(p);
  EXPECT_TRUE(decide(DecisionKind::kAcquire, "gpu", "s", 1, 30'000).allowed);
  Decision over = decide(DecisionKind::kAcquire, "gpu", "s", 1, 30'001);
  EXPECT_EQ(over.source, DecisionSource::kError);
  EXPECT_NE(over.error_message.find("1 to 30000 ms"), std::string::npos) << over.error_message;
  over = decide(DecisionKind::kAcquire, "gpu", "s", 1, INT64_MAX);
  EXPECT_EQ(over.source, DecisionSource::kError);

  p.lease_ttl_max_ms = 3'600'000;
  engine_->set_policy(compile_or_die(p, 2));
  const Decision hour = decide(DecisionKind::kAcquire, "gpu", "s", 1, 3'600'000);
  ASSERT_TRUE(hour.allowed);
  EXPECT_EQ(hour.lease_ttl_ms, 3'600'000);
  EXPECT_EQ(decide(DecisionKind::kAcquire, "gpu", "s", 1, 3'600'001).source,
            DecisionSource::kError);
  // Past its TTL the slot is free again, whoever forgot it.
  clock_.advance(3'600'001);
  EXPECT_EQ(engine_->active_leases(), 0u);
}

// COST and ACTUAL: accepted at the bound, refused past it, and nothing is consumed by a
// refused request.
TEST_F(EngineBoundaries, CostAndActualAreBounded) {
  auto p = base_policy();
  p.resources = {make_resource("generate", {make_limit("tokens", SLUICE_ALG_TOKEN_BUCKET, 1000,
                                                       60'000, 0, false, "tokens")})};
  start(p);
  const Decision at_bound = decide(DecisionKind::kCheck, "generate", "s", kMaxCost);
  EXPECT_EQ(at_bound.source, DecisionSource::kLimits);
  EXPECT_FALSE(at_bound.allowed);  // far above the limit: denied, not an error
  const Decision past = decide(DecisionKind::kCheck, "generate", "s", kMaxCost + 1);
  EXPECT_EQ(past.source, DecisionSource::kError);
  EXPECT_NE(past.error_message.find("1 to 1000000000000"), std::string::npos);
  EXPECT_EQ(decide(DecisionKind::kPeek, "generate", "s", 1).remaining, 999);

  const Decision lease = decide(DecisionKind::kAcquire, "generate", "s", 100);
  ASSERT_TRUE(lease.allowed);
  const Decision too_much = engine_->release_sync(lease.lease, kMaxCost + 1);
  EXPECT_EQ(too_much.error, StatusCode::kInvalid);
  EXPECT_NE(too_much.error_message.find("0 to 1000000000000"), std::string::npos);
  // The refused settlement left the lease in place: its holder can still settle it.
  EXPECT_TRUE(engine_->release_sync(lease.lease, 50).allowed);
  EXPECT_EQ(decide(DecisionKind::kPeek, "generate", "s", 1).remaining, 949);

  // A settlement at the bound charges at most one capacity beyond the estimate: the subject
  // is denied for about a window (the 1000-token bucket refills in 60 s), not for centuries.
  const Decision big = decide(DecisionKind::kAcquire, "generate", "s", 100);
  ASSERT_TRUE(big.allowed);
  ASSERT_TRUE(engine_->release_sync(big.lease, kMaxCost).allowed);
  const Decision after = decide(DecisionKind::kPeek, "generate", "s", 1);
  EXPECT_FALSE(after.allowed);
  EXPECT_GT(after.retry_after_ms, 0);
  EXPECT_LE(after.retry_after_ms, 2 * 60'000);
  clock_.advance(after.retry_after_ms);
  EXPECT_TRUE(decide(DecisionKind::kCheck, "generate", "s", 1).allowed);
}

}  // namespace
}  // namespace sluice
