// The faulty plugin on its own, loaded through the host's loader and wrapping the memory
// plugin: configuration errors, forwarding, seeded failures, latency off the caller's thread,
// hangs that end at close or when the control file lifts them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "numbered.h"
#include "plugin_driver.h"
#include "sluice/storage.h"
#include "sluice/storage_plugin.h"

namespace sluice {
namespace {

using namespace std::chrono_literals;

Result<std::unique_ptr<Storage>> load(const StorageConfig& config) {
  return testing::load_plugin("faulty", config);
}

// One fixed-window item (limit 2 per minute) and what its completion said.
struct Call {
  explicit Call(std::string k) : key(std::move(k)) {
    item.key = key.data();
    item.key_len = static_cast<uint32_t>(key.size());
    item.op = SLUICE_OP_CONSUME;
    item.params.algorithm = SLUICE_ALG_FIXED_WINDOW;
    item.params.limit = 2;
    item.params.window_ms = 60'000;
    item.cost = 1;
    item.state_capacity = 64;
    batch.now_ms = 1'700'000'000'000;
    batch.count = 1;
    batch.items = &item;
    batch.results = &result;
  }
  void submit(Storage& s) { s.submit(batch, &testing::Completion::done, &completion); }
  bool wait(std::chrono::milliseconds timeout) { return completion.wait_for(timeout); }
  bool finished() const { return completion.finished(); }
  sluice_status status() const { return completion.status(); }
  std::string message() const { return completion.message(); }
  std::thread::id thread() const { return completion.thread(); }

  std::string key;
  sluice_item item{};
  sluice_item_result result{};
  sluice_batch batch{};
  testing::Completion completion;
};

std::string error_of(const StorageConfig& config) {
  auto s = load(config);
  return s.ok() ? std::string("(opened)") : s.status().message();
}

// Every configuration mistake is refused with one sentence naming it.
TEST(FaultyPlugin, ConfigurationErrorsAreClear) {
  EXPECT_NE(error_of({}).find("inner=NAME or inner=PATH is required"), std::string::npos);
  EXPECT_NE(error_of({{"inner", "nosuch"}}).find("inner plugin 'nosuch' not found"),
            std::string::npos);
  EXPECT_NE(error_of({{"inner", "memory"}, {"fail_rate", "2"}}).find("fail_rate must be"),
            std::string::npos);
  EXPECT_NE(error_of({{"inner", "memory"}, {"latency_ms", "-5"}}).find("latency_ms must be"),
            std::string::npos);
  EXPECT_NE(error_of({{"inner", "memory"}, {"hang", "yes"}}).find("hang must be 0 or 1"),
            std::string::npos);
  EXPECT_NE(
      error_of({{"inner", "memory"}, {"colour", "red"}}).find("unknown configuration key 'colour'"),
      std::string::npos);
  // inner.KEY reaches the inner plugin, whose own refusal is passed on.
  const std::string inner = error_of({{"inner", "memory"}, {"inner.colour", "red"}});
  EXPECT_NE(inner.find("refused to open"), std::string::npos) << inner;
  EXPECT_NE(inner.find("colour"), std::string::npos) << inner;
}

// With no fault configured, decisions are the inner plugin's; stats nest the inner's.
TEST(FaultyPlugin, ForwardsToTheInnerPlugin) {
  auto s = load({{"inner", "memory"}, {"inner_dir", SLUICE_PLUGIN_DIR}, {"inner.shards", "4"}});
  ASSERT_TRUE(s.ok()) << s.status().message();
  std::vector<int> allowed;
  for (int i = 0; i < 3; ++i) {
    Call c("k");
    c.submit(*s.value());
    ASSERT_TRUE(c.wait(1s));
    EXPECT_EQ(c.status(), SLUICE_OK);
    allowed.push_back(c.result.allowed);
  }
  EXPECT_EQ(allowed, (std::vector<int>{1, 1, 0}));
  const std::string stats = s.value()->stats_json();
  EXPECT_NE(stats.find("\"inner\":{"), std::string::npos) << stats;
  EXPECT_NE(stats.find("\"submitted\":3"), std::string::npos) << stats;
  EXPECT_EQ(s.value()->name(), "faulty");
}

// fail_rate fails about that share of batches, and the same seed fails the same ones.
TEST(FaultyPlugin, FailuresAreSeededAndProportional) {
  auto pattern = [](const char* seed) {
    auto s = load(
        {{"inner", "memory"}, {"fail_rate", "0.3"}, {"seed", seed}, {"fail_status", "timeout"}});
    EXPECT_TRUE(s.ok()) << s.status().message();
    std::vector<bool> failed;
    for (int i = 0; i < 2000; ++i) {
      Call c(sluice::testing::numbered("k", i));
      c.submit(*s.value());
      EXPECT_TRUE(c.finished());  // no latency configured: completes inline
      failed.push_back(c.status() != SLUICE_OK);
      if (c.status() != SLUICE_OK) {
        EXPECT_EQ(c.status(), SLUICE_ERR_TIMEOUT);
        EXPECT_EQ(c.message(), "faulty plugin: injected failure");
      }
    }
    return failed;
  };
  const auto a = pattern("42");
  const auto n = std::count(a.begin(), a.end(), true);
  // Binomial(2000, 0.3): mean 600, sd 20.5; +-5 sd.
  EXPECT_GT(n, 500);
  EXPECT_LT(n, 700);
  EXPECT_EQ(pattern("42"), a);
  EXPECT_NE(pattern("43"), a);
}

// Latency delays the completion on the plugin's thread; submit itself returns at once.
TEST(FaultyPlugin, LatencyNeverBlocksTheCaller) {
  auto s = load({{"inner", "memory"}, {"latency_ms", "150"}});
  ASSERT_TRUE(s.ok()) << s.status().message();
  std::vector<std::unique_ptr<Call>> calls;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) {
    calls.push_back(std::make_unique<Call>(sluice::testing::numbered("k", i)));
    calls.back()->submit(*s.value());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 100ms);
  for (auto& c : calls) {
    ASSERT_TRUE(c->wait(5s));
    EXPECT_EQ(c->status(), SLUICE_OK);
    EXPECT_NE(c->thread(), std::this_thread::get_id());
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 2s);  // the 50 delays overlap: they are not served one after another
}

// A hung backend holds batches until close, which completes each exactly once, with an error.
TEST(FaultyPlugin, HangEndsAtClose) {
  auto s = load({{"inner", "memory"}, {"hang", "1"}});
  ASSERT_TRUE(s.ok()) << s.status().message();
  Call c("k");
  c.submit(*s.value());
  EXPECT_FALSE(c.wait(300ms));
  s.value().reset();
  ASSERT_TRUE(c.finished());
  EXPECT_EQ(c.status(), SLUICE_ERR_UNAVAILABLE);
  EXPECT_NE(c.message().find("closed before answering"), std::string::npos);
}

// The control file changes the faults of a running plugin: a hang lifted releases what it held.
TEST(FaultyPlugin, ControlFileLiftsHangAndFailures) {
  const std::string dir = ::testing::TempDir() + "faulty-control-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const std::string control = dir + "/control";
  std::ofstream(control) << "hang=1\n";
  auto s = load({{"inner", "memory"}, {"control_file", control}});
  ASSERT_TRUE(s.ok()) << s.status().message();
  Call held("k");
  held.submit(*s.value());
  EXPECT_FALSE(held.wait(200ms));

  auto set = [&](const char* text) {
    std::ofstream(control + ".new") << text;
    std::filesystem::rename(control + ".new", control);
    std::this_thread::sleep_for(200ms);  // the file is polled every 20 ms
  };
  set("hang=0\n");
  ASSERT_TRUE(held.wait(2s));
  EXPECT_EQ(held.status(), SLUICE_OK);  // forwarded once the hang was lifted
  EXPECT_EQ(held.result.allowed, 1);

  set("fail_rate=1\n");
  Call failing("k");
  failing.submit(*s.value());
  ASSERT_TRUE(failing.wait(2s));
  EXPECT_EQ(failing.status(), SLUICE_ERR_UNAVAILABLE);

  set("fail_rate=0\n");
  Call recovered("k");
  recovered.submit(*s.value());
  ASSERT_TRUE(recovered.wait(2s));
  EXPECT_EQ(recovered.status(), SLUICE_OK);
  EXPECT_EQ(recovered.result.allowed, 1);  // the failed batch consumed nothing
  s.value().reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice
