// The crash test of issue 4 against real daemons: clients decide through sluiced with the
// SQLite plugin, the daemon is killed with SIGKILL while they run, and a new daemon on the
// same file must not give back more than the interval's consumption (none in commit mode).
#include <gtest/gtest.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

constexpr int kSubjects = 16;
constexpr int kClients = 4;
constexpr int64_t kLimit = 100'000'000;

// A day's window so that the run never crosses a window boundary in practice.
constexpr const char* kPolicy = R"(version: 1
default_tier: free
unknown_resource: deny
tiers:
  free: {multiplier: 1}
resources:
  crash:
    limits:
      - {name: per_day, algorithm: fixed_window, limit: 100000000, window: 1d}
)";

int64_t mono_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1'000'000;
}

std::string subject(int i) { return "subject-" + std::to_string(i); }

struct Admission {
  int subject;
  int64_t remaining;
  int64_t at_ms;
};

class SqliteDaemonCrash : public ::testing::TestWithParam<std::string> {};

TEST_P(SqliteDaemonCrash, KillNineLosesAtMostTheInterval) {
  constexpr int64_t kIntervalMs = 50;
  constexpr int64_t kSchedulingSlackMs = 400;
  char tmpl[] = "/tmp/sluice-sqlite-daemon-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::vector<std::string> storage = {
      "--storage",        "sqlite",
      "--storage-config", "path=" + dir + "/counters.db",
      "--storage-config", "durability=" + GetParam(),
      "--storage-config", "interval_ms=" + std::to_string(kIntervalMs)};
  Daemon daemon(kPolicy, storage);
  ASSERT_TRUE(daemon.ok()) << daemon.log();

  std::mutex mu;
  std::vector<Admission> admissions;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      Client client = daemon.client();
      std::vector<Admission> mine;
      for (int n = c; !stop; n += kClients) {
        const int s = n % kSubjects;
        const resp::Value v = call(client, {"SL.CHECK", "crash", subject(s)});
        if (v.type != resp::Value::Type::kArray || v.elements.size() < 6) break;  // killed
        if (v.elements[0].integer == 1) mine.push_back({s, v.elements[2].integer, mono_ms()});
      }
      std::lock_guard lk(mu);
      admissions.insert(admissions.end(), mine.begin(), mine.end());
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  const int64_t killed_ms = mono_ms();
  EXPECT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
  stop = true;
  for (auto& t : clients) t.join();
  ASSERT_GT(admissions.size(), 100u) << daemon.log();

  std::array<int64_t, kSubjects> lowest;
  std::array<int64_t, kSubjects> recent{};
  lowest.fill(kLimit);
  for (const Admission& a : admissions) {
    lowest[a.subject] = std::min(lowest[a.subject], a.remaining);
    if (a.at_ms >= killed_ms - kIntervalMs - kSchedulingSlackMs) ++recent[a.subject];
  }

  ASSERT_TRUE(daemon.start(storage)) << daemon.log();
  Client client = daemon.client();
  int64_t total_lost = 0;
  for (int s = 0; s < kSubjects; ++s) {
    const resp::Value v = call(client, {"SL.CHECK", "crash", subject(s)});
    ASSERT_EQ(v.type, resp::Value::Type::kArray) << v.to_string();
    const int64_t left = v.elements[2].integer + 1;  // before this check took one
    const int64_t lost = left - lowest[s];
    total_lost += std::max<int64_t>(lost, 0);
    EXPECT_LT(left, kLimit) << "nothing of " << subject(s) << " survived the crash";
    if (GetParam() == "commit") {
      EXPECT_LE(lost, 0) << subject(s) << ": an answered decision was not committed";
    } else {
      EXPECT_LE(lost, recent[s]) << subject(s) << " lost more than the interval's consumption";
    }
  }
  std::printf("%s: %zu admissions before the kill, %lld given back after the restart\n",
              GetParam().c_str(), admissions.size(), static_cast<long long>(total_lost));
  daemon.stop();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// A clean stop (SIGTERM) writes everything: the restarted daemon continues exactly.
TEST_P(SqliteDaemonCrash, CleanRestartKeepsEveryDecision) {
  char tmpl[] = "/tmp/sluice-sqlite-daemon-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::vector<std::string> storage = {
      "--storage", "sqlite", "--storage-config", "path=" + dir + "/counters.db", "--storage-config",
      "durability=" + GetParam(),
      // A minute: only the stop itself can have written the last decisions.
      "--storage-config", "interval_ms=60000"};
  Daemon daemon(kPolicy, storage);
  ASSERT_TRUE(daemon.ok()) << daemon.log();
  {
    Client client = daemon.client();
    for (int i = 0; i < 500; ++i) {
      ASSERT_EQ(call(client, {"SL.CHECK", "crash", "alice"}).elements.size(), 9u);
    }
  }
  EXPECT_EQ(daemon.stop(SIGTERM), 0) << daemon.log();
  ASSERT_TRUE(daemon.start(storage)) << daemon.log();
  Client client = daemon.client();
  const resp::Value v = call(client, {"SL.CHECK", "crash", "alice"});
  ASSERT_EQ(v.type, resp::Value::Type::kArray) << v.to_string();
  EXPECT_EQ(v.elements[2].integer, kLimit - 501);
  daemon.stop();
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

// A daemon whose file cannot be opened (its directory is missing) keeps running, follows the
// policy's fail_closed, and starts counting once the directory exists.
TEST(SqliteDaemonFaults, MissingDirectoryFailsClosedThenRecovers) {
  char tmpl[] = "/tmp/sluice-sqlite-daemon-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string state_dir = dir + "/state";
  std::string policy = kPolicy;
  policy.insert(policy.find("tiers:"), "on_storage_failure: fail_closed\n");
  Daemon daemon(policy,
                {"--storage", "sqlite", "--storage-config", "path=" + state_dir + "/counters.db",
                 "--storage-config", "retry_max_ms=200"});
  ASSERT_TRUE(daemon.ok()) << daemon.log();
  Client client = daemon.client();
  const resp::Value refused = call(client, {"SL.CHECK", "crash", "alice"});
  ASSERT_EQ(refused.type, resp::Value::Type::kArray) << refused.to_string();
  EXPECT_EQ(refused.elements[0].integer, 0);
  EXPECT_EQ(refused.elements[5].str, "(storage)");
  EXPECT_NE(daemon.log().find("check that its directory exists"), std::string::npos)
      << daemon.log();

  std::filesystem::create_directories(state_dir);
  bool counted = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!counted && std::chrono::steady_clock::now() < deadline) {
    const resp::Value v = call(client, {"SL.CHECK", "crash", "alice"});
    counted = v.type == resp::Value::Type::kArray && v.elements[0].integer == 1 &&
              v.elements[1].integer == kLimit;
    if (!counted) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(counted) << daemon.log();
  EXPECT_EQ(daemon.stop(SIGTERM), 0) << daemon.log();
  EXPECT_TRUE(std::filesystem::exists(state_dir + "/counters.db"));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

INSTANTIATE_TEST_SUITE_P(Durability, SqliteDaemonCrash, ::testing::Values("interval", "commit"));

}  // namespace
}  // namespace sluice::testing
