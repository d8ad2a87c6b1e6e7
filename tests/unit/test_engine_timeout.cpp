// The storage timeout: a plugin that completes on its own thread and does not answer in time
// gets its decisions answered by the engine (fail-open or fail-closed), and its late answers
// are dropped without touching the caller's reused DecisionCall. The watchdog runs on a
// ManualTimer: the tests move time by hand and never wait for it to pass.
#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "engine_test_support.h"
#include "sluice/stats.h"
#include "sluice/timer.h"

namespace sluice {
namespace {

using namespace sluice::testing;

// A plugin that queues batches and completes them on its own thread, either at once or only
// when released. It answers every item "allowed, remaining 7" so a result is recognisable.
struct HeldPlugin {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<const sluice_batch*, std::pair<sluice_completion_fn, void*>>> queue;
  bool hold = false;
  bool stop = false;
  std::thread worker;

  HeldPlugin() {
    worker = std::thread([this] {
      std::unique_lock lock(mu);
      while (true) {
        cv.wait(lock, [this] { return stop || (!hold && !queue.empty()); });
        if (queue.empty()) return;  // stopping
        auto [batch, done] = queue.front();
        queue.pop_front();
        lock.unlock();
        for (size_t i = 0; i < batch->count; ++i) batch->results[i] = {1, 0, 10, 7, 0, 0};
        done.first(done.second, SLUICE_OK, nullptr);
        lock.lock();
      }
    });
  }
  void set_hold(bool h) {
    std::lock_guard lock(mu);
    hold = h;
    cv.notify_all();
  }
  void release() { set_hold(false); }
  void shutdown() {
    {
      std::lock_guard lock(mu);
      stop = true;
      hold = false;
    }
    cv.notify_all();
    worker.join();
  }
  size_t queued() {
    std::lock_guard lock(mu);
    return queue.size();
  }

  static HeldPlugin* instance;
  static const sluice_storage_plugin* table() {
    static const sluice_storage_plugin t = [] {
      sluice_storage_plugin x{};
      x.abi_version = SLUICE_ABI_VERSION;
      x.struct_size = sizeof(sluice_storage_plugin);
      x.name = "held";
      x.version = "test";
      x.open = [](const sluice_host_api*, const char* const*, const char* const*, size_t,
                  sluice_plugin_handle** out, char*, size_t) {
        *out = reinterpret_cast<sluice_plugin_handle*>(instance);
        return SLUICE_OK;
      };
      x.submit = [](sluice_plugin_handle* h, const sluice_batch* b, sluice_completion_fn done,
                    void* user) {
        auto* p = reinterpret_cast<HeldPlugin*>(h);
        std::lock_guard lock(p->mu);
        p->queue.push_back({b, {done, user}});
        p->cv.notify_all();
      };
      x.close = [](sluice_plugin_handle* h) { reinterpret_cast<HeldPlugin*>(h)->shutdown(); };
      x.capabilities = 0;  // completes on its own thread
      return x;
    }();
    return &t;
  }
};
HeldPlugin* HeldPlugin::instance = nullptr;

// Counts completed decisions; until() blocks for them (no time involved).
struct Wait {
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  static void fn(void* u, DecisionCall&) {
    auto* w = static_cast<Wait*>(u);
    std::lock_guard lock(w->mu);
    ++w->done;
    w->cv.notify_all();
  }
  void until(int n) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done >= n; });
  }
  int count() {
    std::lock_guard lock(mu);
    return done;
  }
};

class EngineTimeoutTest : public ::testing::Test {
 protected:
  void start(StorageFailureMode mode, int64_t timeout_ms) {
    plugin_ = new HeldPlugin();  // closed (joined) by the engine's Storage; freed in TearDown
    HeldPlugin::instance = plugin_;
    auto p = base_policy();
    p.on_storage_failure = mode;
    p.resources = {
        make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 10, 60'000)})};
    auto storage = Storage::open_table(HeldPlugin::table(), {});
    ASSERT_TRUE(storage.ok());
    EngineOptions options{&clock_};
    options.storage_timeout_ms = timeout_ms;
    options.timer = &timer_;
    engine_ = std::make_unique<Engine>(std::move(storage).value(), compile_or_die(p), options);
  }
  void TearDown() override {
    engine_.reset();
    delete plugin_;
  }

  ManualClock clock_;
  ManualTimer timer_;
  HeldPlugin* plugin_ = nullptr;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTimeoutTest, AsyncAnswersArriveBeforeTheTimeout) {
  start(StorageFailureMode::kFailClosed, 5'000);
  auto d = engine_->decide_sync(DecisionKind::kCheck, req("predict", "s"));
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.remaining, 7);
  EXPECT_EQ(d.source, DecisionSource::kLimits);
}

TEST_F(EngineTimeoutTest, HungStorageFailsClosedAtTheTimeout) {
  start(StorageFailureMode::kFailClosed, 50);
  plugin_->set_hold(true);
  DecisionCall call;
  Wait wait;
  engine_->decide(DecisionKind::kCheck, req("predict", "s"), call, &Wait::fn, &wait);
  timer_.advance_ms(49);
  EXPECT_EQ(wait.count(), 0) << "answered before its timeout";
  timer_.advance_ms(1);
  wait.until(1);
  const Decision& d = call.decision();
  EXPECT_FALSE(d.allowed);
  EXPECT_EQ(d.source, DecisionSource::kStorageFailure);
  EXPECT_EQ(d.error, StatusCode::kTimeout);
  EXPECT_NE(d.error_message.find("50 ms"), std::string::npos);
  EXPECT_EQ(engine_->stats().totals().storage_errors, 1u);
}

TEST_F(EngineTimeoutTest, HungStorageFailsOpenAndLateAnswersAreDropped) {
  start(StorageFailureMode::kFailOpen, 30);
  plugin_->set_hold(true);
  DecisionCall call;
  Wait wait;
  engine_->decide(DecisionKind::kCheck, req("predict", "first"), call, &Wait::fn, &wait);
  timer_.advance_ms(30);
  wait.until(1);
  EXPECT_TRUE(call.decision().allowed);
  EXPECT_EQ(call.decision().source, DecisionSource::kStorageFailure);
  // The caller reuses its call at once; the plugin is still holding the first batch.
  engine_->decide(DecisionKind::kCheck, req("predict", "second"), call, &Wait::fn, &wait);
  EXPECT_EQ(plugin_->queued(), 2u);
  plugin_->release();  // the late answer of the first batch arrives, then the second's
  wait.until(2);
  EXPECT_EQ(call.decision().source, DecisionSource::kLimits);
  EXPECT_EQ(call.decision().remaining, 7);
  EXPECT_EQ(wait.done, 2);  // the late answer of the first batch completed nothing
}

}  // namespace
}  // namespace sluice
