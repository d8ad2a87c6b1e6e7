// sluiced end to end: real daemons on temporary sockets, spoken to over RESP.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

using resp::Value;

// Long windows (1d), and for the one-minute limit a sliding window (a log, whose edge moves
// with each request), keep the counting tests clear of window boundaries: a fixed minute
// turning between two checks of a test would reset the count it reads.
constexpr const char* kPolicy = R"(version: 1
default_tier: free
unknown_resource: deny
tiers:
  free: {multiplier: 1}
  premium: {multiplier: 5}
api_keys:
  gold-key: premium
resources:
  predict:
    limits:
      - {name: per_minute, algorithm: sliding_window, limit: 10, window: 1m}
  heavy:
    limits:
      - {name: per_day, algorithm: fixed_window, limit: 10, window: 1d}
    warmup: {factor: 0.2, start: warm}
  bulk:
    limits:
      - {name: per_day, algorithm: fixed_window, limit: 3000, window: 1d}
  pipe:
    limits:
      - {name: per_day, algorithm: fixed_window, limit: 1000000, window: 1d}
  slots:
    limits:
      - {name: in_flight, algorithm: concurrency, limit: 2, window: 1m}
  layered:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 4, window: 1m}
      - {name: per_day, algorithm: fixed_window, limit: 100, window: 1d}
      - {name: trial, algorithm: fixed_window, limit: 1, window: 1h, shadow: true}
)";

bool allowed(const Value& v) {
  return v.type == Value::Type::kArray && v.elements.size() >= 6 && v.elements[0].integer == 1;
}
int64_t field(const Value& v, size_t i) {
  return v.type == Value::Type::kArray && v.elements.size() > i ? v.elements[i].integer : -999;
}

class Sluiced : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>(kPolicy);
    ASSERT_TRUE(daemon_->ok()) << daemon_->log();
  }
  std::unique_ptr<Daemon> daemon_;
};

// The seed article's curl loop: 11 requests against 10 per minute; the 11th is refused with
// a retry-after, and the reply carries the contract's six fields.
TEST_F(Sluiced, SeedScenarioElevenRequests) {
  Client c = daemon_->client();
  for (int i = 0; i < 10; ++i) {
    Value v = call(c, {"SL.CHECK", "predict", "127.0.0.1"});
    ASSERT_TRUE(allowed(v)) << v.to_string();
    EXPECT_EQ(field(v, 1), 10);
    EXPECT_EQ(field(v, 2), 9 - i);
    EXPECT_EQ(field(v, 4), 0);
    EXPECT_EQ(v.elements[5].str, "per_minute");
  }
  Value denied = call(c, {"SL.CHECK", "predict", "127.0.0.1"});
  ASSERT_EQ(denied.elements.size(), 9u) << denied.to_string();
  EXPECT_EQ(field(denied, 0), 0);
  EXPECT_EQ(field(denied, 2), 0);
  EXPECT_GT(field(denied, 4), 0);
  EXPECT_LE(field(denied, 4), 60000);
  EXPECT_EQ(denied.elements[5].str, "per_minute");
  // Another client is counted apart.
  EXPECT_TRUE(allowed(call(c, {"SL.CHECK", "predict", "10.0.0.2"})));
}

// A premium key (or an explicit TIER) gets five times the limits.
TEST_F(Sluiced, PremiumTierGetsFiveTimes) {
  Client c = daemon_->client();
  for (int i = 0; i < 50; ++i) {
    Value v = call(c, {"SL.CHECK", "predict", "carol", "KEY", "gold-key"});
    ASSERT_TRUE(allowed(v)) << i << " " << v.to_string();
    EXPECT_EQ(field(v, 1), 50);
  }
  EXPECT_FALSE(allowed(call(c, {"SL.CHECK", "predict", "carol", "KEY", "gold-key"})));
  Value v = call(c, {"SL.CHECK", "predict", "dave", "TIER", "premium"});
  EXPECT_EQ(field(v, 1), 50);
  EXPECT_EQ(call(c, {"SL.CHECK", "predict", "dave", "TIER", "gold"}).error_code(), "WRONGARGS");
}

// Warm-up cuts the limit to a fifth until READY.
TEST_F(Sluiced, WarmupReducesLimitUntilReady) {
  Client c = daemon_->client();
  Client admin = daemon_->client(true);
  ASSERT_EQ(call(admin, {"SL.WARMUP", "heavy", "START"}).str, "OK");
  Value status = call(admin, {"SL.WARMUP", "heavy", "STATUS"});
  ASSERT_EQ(status.elements.size(), 10u) << status.to_string();
  EXPECT_EQ(status.elements[3].integer, 1);  // warming
  EXPECT_EQ(status.elements[5].str, "0.2");
  EXPECT_TRUE(allowed(call(c, {"SL.CHECK", "heavy", "erin"})));
  Value second = call(c, {"SL.CHECK", "heavy", "erin"});
  EXPECT_TRUE(allowed(second));
  EXPECT_EQ(field(second, 1), 2);
  EXPECT_FALSE(allowed(call(c, {"SL.CHECK", "heavy", "erin"})));

  ASSERT_EQ(call(admin, {"SL.WARMUP", "heavy", "READY"}).str, "OK");
  Value after = call(c, {"SL.CHECK", "heavy", "erin"});
  EXPECT_TRUE(allowed(after)) << after.to_string();
  EXPECT_EQ(field(after, 1), 10);
  EXPECT_EQ(call(admin, {"SL.WARMUP", "predict", "START"}).error_code(), "WRONGARGS");
  EXPECT_EQ(call(admin, {"SL.WARMUP", "nope", "STATUS"}).error_code(), "NORESOURCE");
}

// 10 000 pipelined requests in one write come back complete and in request order.
TEST_F(Sluiced, PipelinedRequestsAnsweredInOrder) {
  Client c = daemon_->client();
  std::string batch;
  resp::Writer w(batch);
  constexpr int kRequests = 10000;
  for (int i = 0; i < kRequests; ++i) {
    if (i % 2 == 0) {
      w.command({"ECHO", std::to_string(i)});
    } else {
      w.command({"SL.CHECK", "pipe", "ordered"});
    }
  }
  ASSERT_TRUE(c.send(batch));
  int64_t expected_remaining = 1000000 - 1;
  for (int i = 0; i < kRequests; ++i) {
    Value v;
    ASSERT_TRUE(c.read(v)) << c.error() << " at " << i;
    if (i % 2 == 0) {
      ASSERT_EQ(v.str, std::to_string(i));
    } else {
      ASSERT_EQ(field(v, 2), expected_remaining) << i;
      --expected_remaining;
    }
  }
}

// Consecutive decisions of one read are prepared together and decided afterwards (so that
// the storage loads their keys at once): they must still count one after another and be
// answered in request order, with bad requests and PINGs answered where they stand.
TEST_F(Sluiced, ConsecutiveDecisionsOfAPipelineCountInOrder) {
  Client c = daemon_->client();
  std::string batch;
  resp::Writer w(batch);
  constexpr int kRequests = 3000;
  auto kind = [](int i) { return i % 37 == 5 ? 'p' : i % 11 == 3 ? 'e' : 'c'; };
  for (int i = 0; i < kRequests; ++i) {
    switch (kind(i)) {
      case 'p':
        w.command({"PING"});
        break;
      case 'e':
        w.command({"SL.CHECK", "pipe"});
        break;  // no subject
      default:
        w.command({"SL.CHECK", "pipe", i % 2 ? "odd" : "even"});
        break;
    }
  }
  ASSERT_TRUE(c.send(batch));
  int64_t remaining[2] = {1000000 - 1, 1000000 - 1};
  for (int i = 0; i < kRequests; ++i) {
    Value v;
    ASSERT_TRUE(c.read(v)) << c.error() << " at " << i;
    switch (kind(i)) {
      case 'p':
        ASSERT_EQ(v.str, "PONG") << i;
        break;
      case 'e':
        ASSERT_EQ(v.error_code(), "WRONGARGS") << i;
        break;
      default:
        ASSERT_EQ(field(v, 2), remaining[i % 2]) << i;
        --remaining[i % 2];
        break;
    }
  }
}

// The decision socket never serves admin commands; the admin socket does.
TEST_F(Sluiced, AdminCommandsRefusedOnDecisionSocket) {
  Client c = daemon_->client();
  for (auto cmd : {"SL.POLICY", "SL.STATS", "SL.WARMUP", "SL.INSPECT", "SL.RESET", "SL.AUDIT"}) {
    Value v = call(c, {cmd, "GET"});
    EXPECT_EQ(v.error_code(), "NOPERM") << cmd << " " << v.to_string();
  }
  Client admin = daemon_->client(true);
  Value policy = call(admin, {"SL.POLICY", "GET"});
  ASSERT_EQ(policy.elements.size(), 2u) << policy.to_string();
  EXPECT_EQ(policy.elements[1].str, kPolicy);
  EXPECT_EQ(call(c, {"NOSUCH"}).error_code(), "ERR");
  EXPECT_EQ(call(c, {"PING"}).str, "PONG");
}

// A policy with an error is refused by APPLY and by SIGHUP; the old one keeps serving. A good
// file is then picked up by SIGHUP.
TEST_F(Sluiced, BadPolicyRefusedByApplyAndSighup) {
  Client c = daemon_->client();
  Client admin = daemon_->client(true);
  const int64_t version = call(admin, {"SL.POLICY", "GET"}).elements[0].integer;
  std::string bad = kPolicy;
  bad.replace(bad.find("limit: 10, window: 1m"), 9, "limit: -5");
  Value refused = call(admin, {"SL.POLICY", "APPLY", bad});
  EXPECT_EQ(refused.error_code(), "INVALID") << refused.to_string();
  EXPECT_NE(refused.str.find("<admin>:12:"), std::string::npos) << refused.str;
  EXPECT_EQ(call(admin, {"SL.POLICY", "VALIDATE", bad}).error_code(), "INVALID");

  write_file(daemon_->policy_path(), bad);
  daemon_->signal(SIGHUP);
  // The reload is logged with file:line:column; wait for it.
  bool logged = false;
  for (int i = 0; i < 500 && !logged; ++i) {
    logged = daemon_->log().find("policy.yaml:12:") != std::string::npos;
    if (!logged) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(logged) << daemon_->log();
  EXPECT_EQ(call(admin, {"SL.POLICY", "GET"}).elements[0].integer, version);
  EXPECT_EQ(field(call(c, {"SL.CHECK", "predict", "frank"}), 1), 10);

  std::string better = kPolicy;
  better.replace(better.find("limit: 10, window: 1m"), 9, "limit: 20");
  write_file(daemon_->policy_path(), better);
  daemon_->signal(SIGHUP);
  int64_t limit = 0;
  for (int i = 0; i < 500 && limit != 20; ++i) {
    limit = field(call(c, {"SL.PEEK", "predict", "gina"}), 1);
    if (limit != 20) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(limit, 20);
  EXPECT_EQ(call(admin, {"SL.POLICY", "GET"}).elements[0].integer, version + 1);
}

// Odd things at the policy path on SIGHUP: a FIFO (opening it once blocked the daemon until
// something wrote to it), a directory (once "the policy is empty") and a 24 MiB file (once
// applied: SIGHUP had no cap). Each is refused in one log line naming what was found, the
// running policy stays, and new connections are served meanwhile.
TEST_F(Sluiced, OddPolicyFilesAreRefusedWithoutBlocking) {
  Client admin = daemon_->client(true);
  const int64_t version = call(admin, {"SL.POLICY", "GET"}).elements[0].integer;
  const std::string path = daemon_->policy_path();
  auto refused_with = [&](const std::string& why) {
    daemon_->signal(SIGHUP);
    bool logged = false;
    for (int i = 0; i < 500 && !logged; ++i) {
      logged = daemon_->log().find(why) != std::string::npos;
      if (!logged) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(logged) << why << "\n" << daemon_->log();
    // A new connection is answered: the reload did not stall the daemon.
    Client fresh = daemon_->client();
    EXPECT_EQ(call(fresh, {"PING"}).str, "PONG");
    EXPECT_EQ(call(admin, {"SL.POLICY", "GET"}).elements[0].integer, version);
    // SL.POLICY RELOAD gives the same answer.
    const Value reload = call(admin, {"SL.POLICY", "RELOAD"});
    EXPECT_TRUE(reload.is_error());
    EXPECT_NE(reload.str.find(why), std::string::npos) << reload.str;
  };

  std::filesystem::remove(path);
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  refused_with("is a FIFO, not a regular file");
  std::filesystem::remove(path);
  std::filesystem::create_directory(path);
  refused_with("is a directory, not a regular file");
  std::filesystem::remove(path);
  std::string huge = kPolicy;
  huge += "# " + std::string(24u << 20, 'x') + "\n";
  write_file(path, huge);
  refused_with("is larger than 16777216 bytes");

  // Every record of the log is one line that starts with its time.
  std::istringstream lines(daemon_->log());
  std::string line;
  while (std::getline(lines, line)) {
    EXPECT_TRUE(line.size() > 4 && line.compare(0, 2, "20") == 0) << "continuation line: " << line;
  }
  // A good file is picked up again.
  write_file(path, kPolicy + std::string("# edited\n"));
  daemon_->signal(SIGHUP);
  int64_t now = version;
  for (int i = 0; i < 500 && now == version; ++i) {
    now = call(admin, {"SL.POLICY", "GET"}).elements[0].integer;
    if (now == version) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(now, version + 1);
}

// APPLY with a stale EXPECT is a CONFLICT; with the current one it installs, writes the file
// and records the change in the audit log; counters of unchanged limits carry over.
TEST_F(Sluiced, ApplyWithExpectAndAudit) {
  Client c = daemon_->client();
  Client admin = daemon_->client(true);
  ASSERT_TRUE(allowed(call(c, {"SL.CHECK", "bulk", "hank"})));
  const int64_t version = call(admin, {"SL.POLICY", "GET"}).elements[0].integer;
  std::string next = kPolicy;
  next.replace(next.find("premium: {multiplier: 5}"), 24, "premium: {multiplier: 6}");
  const std::string stale = std::to_string(version - 1);
  EXPECT_EQ(call(admin, {"SL.POLICY", "APPLY", next, "EXPECT", stale}).error_code(), "CONFLICT");
  Value applied = call(admin, {"SL.POLICY", "APPLY", next, "EXPECT", std::to_string(version)});
  ASSERT_EQ(applied.type, Value::Type::kInteger) << applied.to_string();
  EXPECT_EQ(applied.integer, version + 1);
  EXPECT_EQ(read_file(daemon_->policy_path()), next);
  EXPECT_EQ(field(call(c, {"SL.CHECK", "predict", "ivy", "TIER", "premium"}), 1), 60);
  EXPECT_EQ(field(call(c, {"SL.CHECK", "bulk", "hank"}), 2), 3000 - 2);  // counter kept

  Value audit = call(admin, {"SL.AUDIT", "1"});
  ASSERT_EQ(audit.elements.size(), 1u) << audit.to_string();
  const std::string& entry = audit.elements[0].str;
  EXPECT_NE(entry.find("\"command\":\"SL.POLICY APPLY\""), std::string::npos) << entry;
  EXPECT_NE(entry.find("\"new_version\":" + std::to_string(version + 1)), std::string::npos);
  EXPECT_NE(entry.find("multiplier"), std::string::npos) << entry;
  EXPECT_NE(read_file(daemon_->audit_path()).find("SL.POLICY APPLY"), std::string::npos);
}

// Many clients at once on one subject: exactly the limit is allowed, not one more or less.
TEST_F(Sluiced, ConcurrentClientsGiveExactTotals) {
  constexpr int kClients = 8, kEach = 500;
  std::atomic<int> granted{0}, errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&] {
      Client c = daemon_->client();
      for (int i = 0; i < kEach; ++i) {
        Value v = call(c, {"SL.CHECK", "bulk", "shared"});
        if (v.type != Value::Type::kArray) ++errors;
        if (allowed(v)) ++granted;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(granted.load(), 3000);
}

// Malformed frames get an error and a closed connection; another client keeps getting
// correct decisions throughout.
TEST_F(Sluiced, MalformedFramesDoNotDisturbOthers) {
  std::atomic<bool> done{false};
  std::atomic<int> wrong{0}, answered{0};
  std::thread steady([&] {
    Client c = daemon_->client();
    int64_t expected = 1000000 - 1;
    while (!done.load()) {
      Value v = call(c, {"SL.CHECK", "pipe", "steady"});
      if (field(v, 2) != expected--) ++wrong;
      ++answered;
    }
  });
  // The steady client is served before the broken frames start and after they end (on a
  // loaded machine its thread may not have run at all during the 140 broken connections).
  auto served_beyond = [&](int n) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (answered.load() <= n && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
    return answered.load() > n;
  };
  EXPECT_TRUE(served_beyond(0));
  const std::vector<std::string> broken = {
      "*1\r\n$abc\r\n",         "*2\r\n:5\r\n",          "*x\r\n",
      "*1\r\n$3\r\nabcdef\r\n", "ECHO \"unbalanced\r\n", "*1\r\n$999999999999\r\n",
      std::string(70000, 'A'),
  };
  for (int round = 0; round < 20; ++round) {
    for (const std::string& frame : broken) {
      Client bad = daemon_->client();
      ASSERT_TRUE(bad.send(frame));
      Value v;
      ASSERT_TRUE(bad.read(v)) << bad.error();
      EXPECT_EQ(v.error_code(), "ERR");
      EXPECT_NE(v.str.find("protocol error"), std::string::npos) << v.str;
      EXPECT_FALSE(bad.read(v));  // closed by the server
    }
  }
  EXPECT_TRUE(served_beyond(answered.load()));
  done = true;
  steady.join();
  EXPECT_EQ(wrong.load(), 0);
}

// A client that does not read its replies is paused, not buffered without bound; it gets
// every reply once it reads, and others are served meanwhile.
TEST_F(Sluiced, SlowReaderIsPausedNotDropped) {
  constexpr int kPings = 400000;  // 2.8 MB of replies, more than the 1 MiB output cap
  Client slow = daemon_->client();
  std::thread writer([&] {
    std::string chunk;
    for (int i = 0; i < 1000; ++i) chunk += "PING\r\n";
    for (int i = 0; i < kPings / 1000; ++i) slow.send(chunk);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Client other = daemon_->client();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(call(other, {"PING"}).str, "PONG");
  int received = 0;
  Value v;
  while (received < kPings && slow.read(v)) {
    if (v.str != "PONG") break;
    ++received;
  }
  writer.join();
  EXPECT_EQ(received, kPings) << slow.error();
}

// Leases: a concurrency limit admits two, SL.RELEASE frees a slot once.
TEST_F(Sluiced, AcquireAndRelease) {
  Client c = daemon_->client();
  Value a = call(c, {"SL.ACQUIRE", "slots", "job", "TTL", "30000"});
  ASSERT_EQ(a.elements.size(), 11u) << a.to_string();
  EXPECT_TRUE(allowed(a));
  EXPECT_FALSE(a.elements[6].str.empty());
  EXPECT_EQ(a.elements[7].integer, 30000);
  EXPECT_TRUE(allowed(call(c, {"SL.ACQUIRE", "slots", "job"})));
  Value full = call(c, {"SL.ACQUIRE", "slots", "job"});
  EXPECT_FALSE(allowed(full));
  EXPECT_EQ(full.elements[6].str, "");
  Value released = call(c, {"SL.RELEASE", a.elements[6].str});
  EXPECT_EQ(released.integer, 1) << released.to_string();
  EXPECT_EQ(call(c, {"SL.RELEASE", a.elements[6].str}).error_code(), "NOLEASE");
  EXPECT_TRUE(allowed(call(c, {"SL.ACQUIRE", "slots", "job"})));
}

// A decision reply ends with the tier that was applied, the deciding limit's window and every
// enforced limit's answer (a shadow limit is not listed), so HTTP headers need no policy file.
TEST_F(Sluiced, DecisionReplyCarriesTierWindowAndLimits) {
  Client c = daemon_->client();
  Value v = call(c, {"SL.CHECK", "layered", "ann", "KEY", "gold-key"});
  ASSERT_EQ(v.elements.size(), 9u) << v.to_string();
  EXPECT_EQ(v.elements[5].str, "per_minute");
  EXPECT_EQ(v.elements[6].str, "premium");
  EXPECT_EQ(v.elements[7].integer, 60000);
  const auto& limits = v.elements[8].elements;
  ASSERT_EQ(limits.size(), 2u) << v.to_string();
  EXPECT_EQ(limits[0].elements[0].str, "per_minute");
  EXPECT_EQ(limits[0].elements[1].integer, 20);  // premium multiplies by 5
  EXPECT_EQ(limits[0].elements[2].integer, 19);
  EXPECT_GT(limits[0].elements[3].integer, 0);
  EXPECT_EQ(limits[0].elements[4].integer, 60000);
  EXPECT_EQ(limits[1].elements[0].str, "per_day");
  EXPECT_EQ(limits[1].elements[1].integer, 500);
  EXPECT_EQ(limits[1].elements[2].integer, 499);
  EXPECT_EQ(limits[1].elements[4].integer, 86400000);

  Value peek = call(c, {"SL.PEEK", "layered", "bo"});
  ASSERT_EQ(peek.elements.size(), 9u) << peek.to_string();
  EXPECT_EQ(peek.elements[6].str, "free");
  Value acquire = call(c, {"SL.ACQUIRE", "layered", "bo"});
  ASSERT_EQ(acquire.elements.size(), 11u) << acquire.to_string();
  EXPECT_EQ(acquire.elements[8].str, "free");
  EXPECT_EQ(acquire.elements[9].integer, 60000);
  EXPECT_EQ(acquire.elements[10].elements.size(), 2u);

  Value unknown = call(c, {"SL.CHECK", "nope", "bo"});  // no limit decided: none listed
  ASSERT_EQ(unknown.elements.size(), 9u) << unknown.to_string();
  EXPECT_EQ(unknown.elements[7].integer, 0);
  EXPECT_TRUE(unknown.elements[8].elements.empty());
}

// Unknown resources follow the policy (deny) and INSPECT/RESET work on the admin socket.
TEST_F(Sluiced, UnknownResourceInspectAndReset) {
  Client c = daemon_->client();
  Client admin = daemon_->client(true);
  Value unknown = call(c, {"SL.CHECK", "nope", "kim"});
  EXPECT_FALSE(allowed(unknown));
  EXPECT_EQ(unknown.elements[5].str, "(unknown-resource)");
  for (int i = 0; i < 10; ++i) call(c, {"SL.CHECK", "predict", "lee"});
  Value inspect = call(admin, {"SL.INSPECT", "predict", "lee"});
  ASSERT_EQ(inspect.elements.size(), 2u) << inspect.to_string();
  EXPECT_EQ(field(inspect.elements[0], 0), 0);
  ASSERT_EQ(inspect.elements[1].elements.size(), 1u);
  EXPECT_EQ(inspect.elements[1].elements[0].elements[0].str, "per_minute");
  EXPECT_EQ(call(admin, {"SL.INSPECT", "nope", "lee"}).error_code(), "NORESOURCE");
  EXPECT_EQ(call(admin, {"SL.RESET", "predict", "lee"}).str, "OK");
  EXPECT_TRUE(allowed(call(c, {"SL.CHECK", "predict", "lee"})));
  Value stats = call(admin, {"SL.STATS", "10"});
  EXPECT_NE(stats.str.find("\"series\""), std::string::npos);
  EXPECT_NE(stats.str.find("\"policy_version\""), std::string::npos);
}

// SIGTERM: what was already sent is answered, then sluiced exits 0 and removes its sockets.
TEST_F(Sluiced, SigtermAnswersPendingAndExitsZero) {
  Client c = daemon_->client();
  Client queued = daemon_->client();  // connected, maybe not accepted yet when SIGTERM comes
  ASSERT_EQ(call(c, {"PING"}).str, "PONG");
  std::string batch;
  resp::Writer w(batch);
  for (int i = 0; i < 2000; ++i) w.command({"SL.CHECK", "pipe", "last"});
  ASSERT_TRUE(c.send(batch));
  ASSERT_TRUE(queued.send("PING\r\n"));
  daemon_->signal(SIGTERM);
  for (int i = 0; i < 2000; ++i) {
    Value v;
    ASSERT_TRUE(c.read(v)) << c.error() << " after " << i;
    ASSERT_EQ(field(v, 2), 1000000 - 1 - i);
  }
  Value pong;
  EXPECT_TRUE(queued.read(pong) && pong.str == "PONG") << queued.error();
  // Signal 0 sends nothing: wait for the exit the first SIGTERM started (a second SIGTERM could
  // land after the daemon has stopped handling signals, which is slow under sanitizers).
  EXPECT_EQ(daemon_->stop(0), 0) << daemon_->log();
  EXPECT_FALSE(std::filesystem::exists(daemon_->socket_path()));
}

// A second sluiced on a live socket is refused with a clear message; the first keeps serving.
TEST_F(Sluiced, LiveSocketRefused) {
  const std::string log = daemon_->dir() + "/second.log";
  pid_t second =
      Daemon::spawn({Daemon::binary(), "--policy", daemon_->policy_path(), "--socket",
                     daemon_->socket_path(), "--admin-socket", daemon_->dir() + "/admin2.sock",
                     "--state-dir", daemon_->dir() + "/second"},
                    log);
  int status = 0;
  ::waitpid(second, &status, 0);
  EXPECT_EQ(Daemon::decode(status), 1);
  EXPECT_NE(read_file(log).find("another process"), std::string::npos) << read_file(log);
  Client still = daemon_->client();
  EXPECT_EQ(call(still, {"PING"}).str, "PONG");
}

// Connection cap: the connection over it gets BUSY.
TEST(SluicedLimits, ConnectionCapAndIdleTimeout) {
  Daemon d(kPolicy, {"--max-connections", "3", "--idle-timeout", "1"});
  ASSERT_TRUE(d.ok()) << d.log();
  Client a = d.client();
  // Wait until the readiness probes have gone.
  for (int i = 0; i < 200; ++i) {
    if (call(a, {"SL.INFO"}).str.find("connections:1\r\n") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Client b = d.client(), c = d.client();
  EXPECT_EQ(call(b, {"PING"}).str, "PONG");
  ASSERT_TRUE(c.send("*2\r\n$4\r\nPI"));  // half a frame, then silence
  Client over = d.client();
  Value v;
  ASSERT_TRUE(over.read(v)) << over.error();
  EXPECT_EQ(v.error_code(), "BUSY");
  // Idle connections are closed after the timeout (1 s, swept every second).
  std::this_thread::sleep_for(std::chrono::milliseconds(2600));
  EXPECT_FALSE(a.read(v));
  c.set_timeout(std::chrono::seconds(2));
  EXPECT_FALSE(c.read(v));  // the half frame did not keep it open: closed, not silent
  EXPECT_EQ(c.error(), "connection closed by the server");
  Client fresh = d.client();
  EXPECT_EQ(call(fresh, {"PING"}).str, "PONG");
}

// A stale socket file (left by a crash) is removed at start.
TEST(SluicedLimits, StaleSocketIsReplaced) {
  Daemon d(kPolicy);
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d.stop(SIGKILL), 128 + SIGKILL);  // leaves both socket files behind
  ASSERT_TRUE(std::filesystem::exists(d.socket_path()));
  ASSERT_TRUE(d.start()) << d.log();
  Client c = d.client();
  EXPECT_EQ(call(c, {"PING"}).str, "PONG");
  EXPECT_NE(d.log().find("removed stale socket"), std::string::npos);
}

// --metrics-listen serves Prometheus text and /healthz.
TEST(SluicedLimits, MetricsEndpoint) {
  int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  ::close(probe);
  Daemon d(kPolicy, {"--metrics-listen", "127.0.0.1:" + std::to_string(port)});
  ASSERT_TRUE(d.ok()) << d.log();
  Client c = d.client();
  call(c, {"SL.CHECK", "predict", "mo"});
  auto get = [&](const std::string& path) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return std::string();
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    ::send(fd, req.data(), req.size(), 0);
    std::string body;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) body.append(buf, static_cast<size_t>(n));
    ::close(fd);
    return body;
  };
  const std::string metrics = get("/metrics");
  EXPECT_NE(metrics.find("200 OK"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("sluice_decisions_total{resource=\"predict\""), std::string::npos);
  EXPECT_NE(metrics.find("sluice_connections"), std::string::npos);
  EXPECT_NE(get("/healthz").find("ok policy_version="), std::string::npos);
  EXPECT_NE(get("/nope").find("404"), std::string::npos);
}

}  // namespace
}  // namespace sluice::testing

namespace sluice::testing {
namespace {

// With the Redis plugin decisions complete on the plugin's thread, out of step with the
// connection; pipelined replies must still come back in request order with exact counts.
TEST(SluicedRedis, AsyncCompletionsKeepRequestOrder) {
  if (::system("command -v redis-server >/dev/null 2>&1") != 0) GTEST_SKIP() << "no redis-server";
  char tmpl[] = "/tmp/sluice-it-redis-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string redis_sock = dir + "/redis.sock";
  const std::string ctl = std::string(SLUICE_SOURCE_DIR) + "/scripts/redis-test-server";
  ASSERT_EQ(::system((ctl + " start " + redis_sock + " >/dev/null").c_str()), 0);
  {
    Daemon d(kPolicy, {"--storage", "redis", "--storage-config", "socket=" + redis_sock});
    ASSERT_TRUE(d.ok()) << d.log();
    Client c = d.client();
    std::string batch;
    resp::Writer w(batch);
    constexpr int kRequests = 4000;
    for (int i = 0; i < kRequests; ++i) {
      if (i % 2 == 0) {
        w.command({"ECHO", std::to_string(i)});
      } else {
        w.command({"SL.CHECK", "bulk", "redis-order"});
      }
    }
    ASSERT_TRUE(c.send(batch));
    int granted = 0;
    for (int i = 0; i < kRequests; ++i) {
      Value v;
      ASSERT_TRUE(c.read(v)) << c.error() << " at " << i;
      if (i % 2 == 0) {
        ASSERT_EQ(v.str, std::to_string(i));
      } else {
        ASSERT_EQ(v.elements.size(), 9u) << v.to_string();
        ASSERT_EQ(field(v, 2), 3000 - 1 - granted) << i;
        if (allowed(v)) ++granted;
      }
    }
    EXPECT_EQ(granted, 2000);
    EXPECT_EQ(d.stop(SIGTERM), 0) << d.log();
  }
  ::system((ctl + " stop " + redis_sock + " >/dev/null").c_str());
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace sluice::testing

namespace sluice::testing {
namespace {

// sluicectl's exit codes are what scripts rely on: 0 allowed/ok, 1 denied, 2 usage, 3 error.
TEST(Sluicectl, ExitCodesForScripts) {
  Daemon d(kPolicy);
  ASSERT_TRUE(d.ok()) << d.log();
  std::string out;
  for (int i = 0; i < 10; ++i) ASSERT_EQ(sluicectl(d, {"check", "predict", "ned"}, out), 0) << out;
  EXPECT_NE(out.find("allowed limit=10 remaining=0"), std::string::npos) << out;
  EXPECT_NE(out.find("rule=per_minute tier=free window_ms=60000\n"), std::string::npos) << out;
  EXPECT_EQ(out.find("lease="), std::string::npos) << out;  // a check holds no lease
  EXPECT_EQ(sluicectl(d, {"acquire", "slots", "ned"}, out), 0) << out;
  EXPECT_NE(out.find("tier=free window_ms=60000 lease="), std::string::npos) << out;
  EXPECT_EQ(sluicectl(d, {"check", "predict", "ned"}, out), 1);
  EXPECT_NE(out.find("denied"), std::string::npos) << out;
  EXPECT_EQ(sluicectl(d, {"check", "predict"}, out), 2);
  EXPECT_EQ(sluicectl(d, {"check", "predict", "ned", "--tier", "gold"}, out), 3);
  EXPECT_EQ(sluicectl(d, {"release", std::string(48, '1')}, out), 1);
  EXPECT_EQ(sluicectl(d, {"warmup", "heavy", "start"}, out), 0) << out;
  EXPECT_EQ(sluicectl(d, {"stats"}, out), 0) << out;
  EXPECT_NE(out.find("predict"), std::string::npos) << out;
  write_file(d.dir() + "/bad.yaml", "default_tier: nope\n");
  EXPECT_EQ(sluicectl(d, {"policy", "validate", d.dir() + "/bad.yaml"}, out), 3);
  EXPECT_NE(out.find(d.dir() + "/bad.yaml:"), std::string::npos) << out;
  EXPECT_EQ(sluicectl(d, {"policy", "apply", d.policy_path(), "--expect", "999"}, out), 3);
  EXPECT_NE(out.find("CONFLICT"), std::string::npos) << out;
  EXPECT_EQ(sluicectl(d, {"policy", "apply", d.policy_path()}, out), 0) << out;
  EXPECT_NE(out.find("applied: policy version"), std::string::npos) << out;
  const int stopped = d.stop();
  EXPECT_EQ(stopped, 0);
  EXPECT_EQ(sluicectl(d, {"ping"}, out), 3);
  EXPECT_NE(out.find("cannot connect"), std::string::npos) << out;
}

// Named costs, charges and named ACTUALs from the command line.
TEST(Sluicectl, ChargesAndNamedCosts) {
  Daemon d(R"(version: 1
default_tier: free
tiers: {free: {multiplier: 1}}
resources:
  chat:
    limits:
      - {name: out_tpm, algorithm: fixed_window, limit: 500, window: 1m, cost: output_tokens}
)");
  ASSERT_TRUE(d.ok()) << d.log();
  std::string out;
  EXPECT_EQ(sluicectl(d, {"check", "chat", "amy", "--cost", "output_tokens=600"}, out), 1) << out;
  EXPECT_NE(out.find("denied limit=500 remaining=500"), std::string::npos) << out;
  ASSERT_EQ(sluicectl(d, {"acquire", "chat", "amy", "--cost", "output_tokens=100"}, out), 0) << out;
  const size_t at = out.find("lease=");
  ASSERT_NE(at, std::string::npos) << out;
  const std::string lease = out.substr(at + 6, 48);
  EXPECT_EQ(sluicectl(d, {"charge", lease, "output_tokens=300"}, out), 0) << out;
  EXPECT_NE(out.find("allowed limit=500 remaining=200 "), std::string::npos) << out;
  EXPECT_EQ(sluicectl(d, {"charge", lease, "output_tokens=300"}, out), 1) << out;
  EXPECT_NE(out.find("denied limit=500 remaining=200 "), std::string::npos) << out;
  EXPECT_EQ(sluicectl(d, {"release", lease, "--actual", "output_tokens=250"}, out), 0) << out;
  EXPECT_EQ(sluicectl(d, {"charge", lease, "5"}, out), 1) << out;  // released: NOLEASE
  EXPECT_EQ(sluicectl(d, {"peek", "chat", "amy", "--cost", "output_tokens=0"}, out), 0) << out;
  EXPECT_NE(out.find("remaining=250 "), std::string::npos) << out;
  EXPECT_EQ(sluicectl(d, {"charge", lease, "Bad=1"}, out), 3) << out;  // WRONGARGS
}

}  // namespace
}  // namespace sluice::testing

namespace sluice::testing {
namespace {

// Connects to `path` as `uid` (a forked child that drops privileges) and returns the first
// reply line to PING, or "connect failed".
std::string ping_as(uid_t uid, const std::string& path) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    std::string result = "connect failed";
    if (::setgid(uid) == 0 && ::setuid(uid) == 0) {
      Client c;
      c.set_timeout(std::chrono::seconds(5));
      Value v;
      if (c.connect(path)) result = c.call({"PING"}, v) ? v.str : "no reply";
    }
    (void)!::write(pipefd[1], result.data(), result.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[256];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  ::waitpid(pid, nullptr, 0);
  return out;
}

// The admin socket refuses a uid that is neither the daemon's nor root (SO_PEERCRED), unless
// --admin-allow-uid lists it. Needs root to act as another user.
TEST(SluicedAdmin, PeerUidIsChecked) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to connect as another uid";
  constexpr uid_t kNobody = 65534;
  for (bool allowed_uid : {false, true}) {
    std::vector<std::string> extra;
    if (allowed_uid) extra = {"--admin-allow-uid", std::to_string(kNobody)};
    Daemon d(kPolicy, extra);
    ASSERT_TRUE(d.ok()) << d.log();
    // Open the file permissions so that only the peer-credential check stands in the way.
    ::chmod(d.dir().c_str(), 0755);
    ::chmod(d.admin_socket_path().c_str(), 0666);
    const std::string reply = ping_as(kNobody, d.admin_socket_path());
    if (allowed_uid) {
      EXPECT_EQ(reply, "PONG");
    } else {
      EXPECT_NE(reply.find("NOPERM uid 65534"), std::string::npos) << reply;
    }
  }
}

}  // namespace
}  // namespace sluice::testing
