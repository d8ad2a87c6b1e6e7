// SL.POLICY SIMULATE against a real sluiced: known traffic is recorded, a draft is replayed on
// it, and the reply counts what the draft would have decided differently, while the live
// counters and policy stay as they were.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

using resp::Value;
using json = nlohmann::json;

std::string policy_with_limit(int per_minute) {
  return "version: 1\n"
         "default_tier: free\n"
         "tiers:\n"
         "  free: {multiplier: 1}\n"
         "resources:\n"
         "  predict:\n"
         "    limits:\n"
         // A sliding window: no window boundary can fall inside the test's traffic.
         "      - {name: per_minute, algorithm: sliding_window, limit: " +
         std::to_string(per_minute) + ", window: 1m}\n";
}

bool allowed(const Value& v) {
  return v.type == Value::Type::kArray && !v.elements.empty() && v.elements[0].integer == 1;
}

class Simulate : public ::testing::Test {
 protected:
  // Sends 10 SL.CHECKs for each of three subjects; returns how many were admitted.
  int send_traffic() {
    Client c = daemon_->client();
    int admitted = 0;
    for (const char* subject : {"alice", "bob", "carol"}) {
      for (int i = 0; i < 10; ++i) admitted += allowed(call(c, {"SL.CHECK", "predict", subject}));
    }
    return admitted;
  }
  json simulate(const std::string& draft) {
    Client admin = daemon_->client(true);
    const Value v = call(admin, {"SL.POLICY", "SIMULATE", draft});
    EXPECT_EQ(v.type, Value::Type::kBulk) << v.to_string();
    return json::parse(v.str, nullptr, false);
  }
  Value peek(const char* subject) {
    Client c = daemon_->client();
    return call(c, {"SL.PEEK", "predict", subject});
  }

  std::unique_ptr<Daemon> daemon_;
};

TEST_F(Simulate, ALowerLimitCountsWhatItWouldHaveDenied) {
  daemon_ = std::make_unique<Daemon>(policy_with_limit(10));
  ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  ASSERT_EQ(send_traffic(), 30);
  const Value before = peek("alice");
  Client admin = daemon_->client(true);
  const Value version_before = call(admin, {"SL.POLICY", "GET"});

  const json r = simulate(policy_with_limit(5));
  ASSERT_FALSE(r.is_discarded());
  EXPECT_EQ(r["requests"], 30) << r.dump();
  EXPECT_EQ(r["denied_now"], 0);
  EXPECT_EQ(r["denied_draft"], 15);
  EXPECT_EQ(r["newly_denied"], 15);
  EXPECT_EQ(r["newly_allowed"], 0);
  EXPECT_EQ(r["subjects_newly_denied"], 3);
  ASSERT_EQ(r["top_newly_denied"].size(), 3u);
  EXPECT_EQ(r["top_newly_denied"][0]["newly_denied"], 5);
  ASSERT_EQ(r["breakdown"].size(), 1u) << r.dump();
  EXPECT_EQ(r["breakdown"][0]["resource"], "predict");
  EXPECT_EQ(r["breakdown"][0]["tier"], "free");
  EXPECT_EQ(r["breakdown"][0]["rule"], "per_minute");
  EXPECT_EQ(r["period"]["counters"], "empty at the start of the period");

  // Nothing live changed: the same decision and remaining count, the same policy and version.
  const Value after = peek("alice");
  ASSERT_EQ(after.elements.size(), before.elements.size());
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(after.elements[i].integer, before.elements[i].integer);
  EXPECT_EQ(call(admin, {"SL.POLICY", "GET"}).to_string(), version_before.to_string());
}

// Token limits are replayed with the recorded named costs: 10 checks of 100 output tokens each
// fit 1000 output tokens a minute, and a draft of 500 would have denied half of them.
TEST_F(Simulate, NamedCostsAreReplayed) {
  auto tokens_policy = [](int out_tpm) {
    return "version: 1\ndefault_tier: free\ntiers: {free: {multiplier: 1}}\nresources:\n"
           "  chat:\n    limits:\n"
           "      - {name: rpm, algorithm: sliding_window, limit: 100, window: 1m}\n"
           "      - {name: out_tpm, algorithm: sliding_window, limit: " +
           std::to_string(out_tpm) + ", window: 1m, cost: output_tokens}\n";
  };
  daemon_ = std::make_unique<Daemon>(tokens_policy(1000));
  ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  Client c = daemon_->client();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(allowed(call(c, {"SL.CHECK", "chat", "alice", "COST", "input_tokens", "50", "COST",
                                 "output_tokens", "100"})));
  }
  const json r = simulate(tokens_policy(500));
  ASSERT_FALSE(r.is_discarded());
  EXPECT_EQ(r["requests"], 10) << r.dump();
  EXPECT_EQ(r["newly_denied"], 5) << r.dump();
  EXPECT_EQ(r["errors_draft"], 0) << r.dump();
  int out_tpm_denied = 0;
  for (const auto& b : r["breakdown"]) {
    if (b["rule"] == "out_tpm") out_tpm_denied = b["newly_denied"];
  }
  EXPECT_EQ(out_tpm_denied, 5) << r.dump();
}

// sluicectl policy simulate prints the comparison as a table, and --json the reply itself.
TEST_F(Simulate, SluicectlPrintsTheComparison) {
  daemon_ = std::make_unique<Daemon>(policy_with_limit(10));
  ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  ASSERT_EQ(send_traffic(), 30);
  const std::string draft = daemon_->dir() + "/draft.yaml";
  std::ofstream(draft) << policy_with_limit(5);
  std::string out;
  ASSERT_EQ(sluicectl(*daemon_, {"policy", "simulate", draft}, out), 0) << out;
  EXPECT_NE(out.find("30 recorded requests"), std::string::npos) << out;
  EXPECT_NE(out.find("15 newly denied (3 subjects), 0 newly allowed"), std::string::npos) << out;
  EXPECT_NE(out.find("predict   free  per_minute"), std::string::npos) << out;
  ASSERT_EQ(sluicectl(*daemon_, {"policy", "simulate", draft, "--json"}, out), 0) << out;
  EXPECT_EQ(json::parse(out, nullptr, false)["newly_denied"], 15) << out;
  std::ofstream(draft, std::ios::trunc) << "version: 1\nresources: [\n";
  EXPECT_EQ(sluicectl(*daemon_, {"policy", "simulate", draft}, out), 3) << out;
}

TEST_F(Simulate, AHigherLimitCountsWhatItWouldHaveAllowed) {
  daemon_ = std::make_unique<Daemon>(policy_with_limit(5));
  ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  ASSERT_EQ(send_traffic(), 15);
  const json r = simulate(policy_with_limit(10));
  ASSERT_FALSE(r.is_discarded());
  EXPECT_EQ(r["requests"], 30) << r.dump();
  EXPECT_EQ(r["denied_now"], 15);
  EXPECT_EQ(r["denied_draft"], 0);
  EXPECT_EQ(r["newly_denied"], 0);
  EXPECT_EQ(r["newly_allowed"], 15);
  EXPECT_EQ(r["subjects_newly_denied"], 0);
}

// Warm-up in the replay follows the live one: a model marked READY before the traffic is not
// replayed as if it were still warming (which would deny half of its requests), and one that
// warms up again during the traffic warms up in the replay too.
TEST_F(Simulate, WarmUpIsReplayedAsItHappened) {
  const std::string policy =
      "version: 1\n"
      "default_tier: free\n"
      "tiers:\n"
      "  free: {multiplier: 1}\n"
      "resources:\n"
      "  heavy:\n"
      "    limits:\n"
      "      - {name: per_minute, algorithm: sliding_window, limit: 10, window: 1m}\n"
      "    warmup: {factor: 0.5, start: cold}\n";
  daemon_ = std::make_unique<Daemon>(policy);
  ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  Client admin = daemon_->client(true);
  // Records are ordered by the engine's millisecond clock, which each thread reads on its own:
  // a command and a request on different threads within a millisecond may be replayed in
  // either order. A few milliseconds after each SL.WARMUP keep this test about warm-up.
  const auto settle = [] { std::this_thread::sleep_for(std::chrono::milliseconds(5)); };
  ASSERT_EQ(call(admin, {"SL.WARMUP", "heavy", "READY"}).str, "OK");
  settle();
  Client c = daemon_->client();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(allowed(call(c, {"SL.CHECK", "heavy", "alice"})));
  json r = simulate(policy);
  ASSERT_FALSE(r.is_discarded());
  EXPECT_EQ(r["requests"], 10) << r.dump();
  EXPECT_EQ(r["newly_denied"], 0) << "the replay warmed up a model that was ready: " << r.dump();

  // Warming again (half the limit: 5), bob is denied after 5 live; the replay agrees.
  settle();
  ASSERT_EQ(call(admin, {"SL.WARMUP", "heavy", "START"}).str, "OK");
  settle();
  int admitted = 0;
  for (int i = 0; i < 10; ++i) admitted += allowed(call(c, {"SL.CHECK", "heavy", "bob"}));
  ASSERT_EQ(admitted, 5);
  r = simulate(policy);
  EXPECT_EQ(r["requests"], 20) << r.dump();
  EXPECT_EQ(r["denied_now"], 5);
  EXPECT_EQ(r["newly_denied"], 0) << r.dump();
  EXPECT_EQ(r["newly_allowed"], 0) << r.dump();
}

TEST_F(Simulate, BadDraftsAndArgumentsAreRefused) {
  daemon_ = std::make_unique<Daemon>(policy_with_limit(10));
  ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  Client admin = daemon_->client(true);
  EXPECT_EQ(call(admin, {"SL.POLICY", "SIMULATE", "version: 1\nresources: [\n"}).error_code(),
            "INVALID");
  EXPECT_EQ(
      call(admin, {"SL.POLICY", "SIMULATE", policy_with_limit(5), "SECONDS", "0"}).error_code(),
      "WRONGARGS");
  Client c = daemon_->client();
  EXPECT_EQ(call(c, {"SL.POLICY", "SIMULATE", policy_with_limit(5)}).error_code(), "NOPERM");
}

TEST_F(Simulate, RecordingOffSaysSo) {
  daemon_ = std::make_unique<Daemon>(policy_with_limit(10),
                                     std::vector<std::string>{"--record-seconds", "0"});
  ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  send_traffic();
  Client admin = daemon_->client(true);
  const Value v = call(admin, {"SL.POLICY", "SIMULATE", policy_with_limit(5)});
  EXPECT_TRUE(v.is_error());
  EXPECT_NE(v.str.find("recording is off"), std::string::npos) << v.to_string();
}

}  // namespace
}  // namespace sluice::testing
