// The shared test support checks itself: a daemon that does not come up is reported with its
// log, a restart keeps the sockets and the arguments, and the plugin driver returns what the
// completion said, from whichever thread it ran on.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "plugin_driver.h"
#include "sluice/algorithms.h"
#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kPolicy = R"(version: 1
default_tier: free
tiers:
  free: {multiplier: 1}
resources:
  predict:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}
)";

std::string cmdline(pid_t pid) {
  std::string text = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  for (char& c : text) c = c == '\0' ? ' ' : c;
  return text;
}

// A policy sluiced refuses: the fixture is not ready, no process is left, the log says why.
TEST(DaemonFixture, ARefusedStartIsReportedWithTheLog) {
  Daemon d("resources: [");
  EXPECT_FALSE(d.ok());
  EXPECT_EQ(d.pid(), -1);
  EXPECT_NE(d.log().find("refused"), std::string::npos) << d.log();
}

// restart() stops the daemon and starts a new one with the first arguments, on the same
// sockets; the build tree's plugin folder is always passed.
TEST(DaemonFixture, RestartKeepsTheSocketsAndTheArguments) {
  Daemon d(kPolicy, {"--max-connections", "7"});
  ASSERT_TRUE(d.ok()) << d.log();
  const pid_t first = d.pid();
  const std::string socket = d.socket_path();
  ASSERT_TRUE(d.restart()) << d.log();
  EXPECT_NE(d.pid(), first);
  EXPECT_EQ(d.socket_path(), socket);
  const std::string args = cmdline(d.pid());
  EXPECT_NE(args.find("--max-connections 7"), std::string::npos) << args;
  EXPECT_NE(args.find("--plugin-dir " + Daemon::plugin_dir()), std::string::npos) << args;
  Client c = d.client();
  EXPECT_EQ(call(c, {"PING"}).str, "PONG");
  EXPECT_EQ(d.stop(), 0) << d.log();
}

// A completion that has not run times out; one run on another thread wakes the waiter with
// its status, message and thread.
TEST(PluginDriver, CompletionReportsWhatRanAndWhere) {
  Completion c;
  EXPECT_FALSE(c.wait_for(10ms));
  EXPECT_FALSE(c.finished());
  std::thread other([&] { Completion::done(&c, SLUICE_ERR_TIMEOUT, "too slow"); });
  const std::thread::id other_id = other.get_id();
  EXPECT_EQ(c.wait(), SLUICE_ERR_TIMEOUT);
  other.join();
  EXPECT_EQ(c.message(), "too slow");
  EXPECT_EQ(c.thread(), other_id);
  EXPECT_EQ(c.calls(), 1);
}

// submit_and_wait returns the plugin's results, and its refusal with the sentence.
TEST(PluginDriver, SubmitAndWaitReturnsStatusMessageAndResults) {
  auto loaded = load_plugin("memory");
  ASSERT_TRUE(loaded.ok()) << loaded.status().message();
  Storage& storage = *loaded.value();
  const std::string key = "k";
  sluice_item item{};
  item.key = key.data();
  item.key_len = static_cast<uint32_t>(key.size());
  item.op = SLUICE_OP_CONSUME;
  item.params.algorithm = SLUICE_ALG_FIXED_WINDOW;
  item.params.limit = 1;
  item.params.window_ms = 60'000;
  item.cost = 1;
  item.state_capacity = static_cast<uint32_t>(algo::state_capacity(item.params));
  const int64_t now = 1'700'000'000'000;
  Outcome first = submit_and_wait(storage, now, {item});
  ASSERT_EQ(first.status, SLUICE_OK) << first.message;
  ASSERT_EQ(first.results.size(), 1u);
  EXPECT_EQ(first.results[0].allowed, 1);
  EXPECT_EQ(submit_and_wait(storage, now, {item}).results[0].allowed, 0);
  item.op = 99;
  const Outcome refused = submit_and_wait(storage, now, {item});
  EXPECT_NE(refused.status, SLUICE_OK);
  EXPECT_FALSE(refused.message.empty());
}

}  // namespace
}  // namespace sluice::testing
