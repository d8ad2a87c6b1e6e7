// The command layer of a connection without a socket: the Dispatcher a Session feeds. Replies
// keep request order whether decisions complete inline or on a plugin's thread; the command
// table's socket rule and arity are applied; decisions are staged until submitted.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "count_allocations.h"
#include "dispatcher.h"
#include "engine_test_support.h"
#include "sluice/resp.h"
#include "sluice/storage_plugin.h"
#include "wait_queue.h"

namespace sluice::server {
namespace {

using sluice::testing::base_policy;
using sluice::testing::compile_or_die;
using sluice::testing::make_limit;
using sluice::testing::make_resource;

// A store of states in a map that answers inside submit() or, with `threaded`, calls back from
// a thread of its own (as the SQLite and Redis plugins do).
struct MapStore {
  const sluice_host_api* host = nullptr;
  std::mutex mu;
  std::map<std::string, std::string> states;
  std::vector<std::thread> threads;

  void submit(const sluice_batch& batch) {
    std::lock_guard lock(mu);
    for (size_t i = 0; i < batch.count; ++i) {
      const sluice_item& item = batch.items[i];
      std::string& state = states[std::string(item.key, item.key_len)];
      std::string buf = state;
      buf.resize(std::max<size_t>(item.state_capacity, state.size()));
      int64_t expires = 0;
      const int commit = item.op == SLUICE_OP_PEEK ? 0 : 1;
      const size_t len = host->apply(&item, batch.now_ms, reinterpret_cast<uint8_t*>(buf.data()),
                                     state.size(), commit, &batch.results[i], &expires);
      if (commit) state.assign(buf.data(), len);
    }
  }
};

template <bool kThreaded>
const sluice_storage_plugin* map_store_table() {
  static const sluice_storage_plugin table = {
      SLUICE_ABI_VERSION,
      sizeof(sluice_storage_plugin),
      kThreaded ? "map-threaded" : "map",
      "1",
      [](const sluice_host_api* host, const char* const*, const char* const*, size_t,
         sluice_plugin_handle** out, char*, size_t) {
        auto* store = new MapStore();
        store->host = host;
        *out = reinterpret_cast<sluice_plugin_handle*>(store);
        return SLUICE_OK;
      },
      [](sluice_plugin_handle* h, const sluice_batch* batch, sluice_completion_fn done,
         void* user) {
        auto* store = reinterpret_cast<MapStore*>(h);
        store->submit(*batch);
        if (!kThreaded) return done(user, SLUICE_OK, nullptr);
        std::lock_guard lock(store->mu);
        store->threads.emplace_back([done, user] { done(user, SLUICE_OK, nullptr); });
      },
      nullptr,
      nullptr,
      [](sluice_plugin_handle* h) {
        auto* store = reinterpret_cast<MapStore*>(h);
        for (auto& t : store->threads) t.join();
        delete store;
      },
      kThreaded ? uint64_t{0} : uint64_t{SLUICE_CAP_COMPLETES_INLINE},
      nullptr,
  };
  return &table;
}

// Records what the Dispatcher asks of its owner.
struct TestOwner final : Dispatcher::Owner {
  std::mutex mu;
  std::condition_variable cv;
  int holds = 0;
  int wakes = 0;
  void hold() override { ++holds; }
  void wake() override {
    std::lock_guard lock(mu);
    ++wakes;
    cv.notify_all();
  }
  // Waits (without a time-based assumption beyond a generous bound) for a wake.
  bool wait_for_wake(int count) {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return wakes >= count; });
  }
};

class DispatcherTest : public ::testing::Test {
 protected:
  void open(bool threaded) {
    auto spec = base_policy();
    spec.resources.push_back(
        make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 2, 60'000)}));
    auto storage =
        Storage::open_table(threaded ? map_store_table<true>() : map_store_table<false>(), {});
    ASSERT_TRUE(storage.ok()) << storage.status().message();
    EngineOptions options;
    options.clock = &clock_;
    engine_ = std::make_unique<Engine>(std::move(storage).value(), compile_or_die(spec), options);
    ctx_.engine = engine_.get();
  }

  // The replies in `out`, decoded.
  static std::vector<resp::Value> replies(const std::string& out) {
    std::vector<resp::Value> all;
    std::string_view rest(out);
    while (!rest.empty()) {
      resp::Value v;
      const auto r = resp::parse_value(rest, resp::Limits{}, v);
      if (r.status != resp::ParseStatus::kComplete) {
        ADD_FAILURE() << "not a whole reply: " << rest;
        break;
      }
      all.push_back(std::move(v));
      rest.remove_prefix(r.consumed);
    }
    return all;
  }

  void run(Dispatcher& d, std::vector<std::string_view> argv) { d.execute(argv); }

  // An SL.CHECK reply that admits.
  static bool allowed(const resp::Value& v) {
    return v.type == resp::Value::Type::kArray && !v.elements.empty() && v.elements[0].integer == 1;
  }

  ManualClock clock_{1'700'000'000'000};
  std::unique_ptr<Engine> engine_;
  ServerContext ctx_;
  TestOwner owner_;
  std::string out_;
};

TEST_F(DispatcherTest, RepliesKeepRequestOrderAndDecisionsAreStaged) {
  open(false);
  Dispatcher d(ctx_, false, Peer{}, out_, owner_);
  run(d, {"SL.CHECK", "predict", "alice"});
  run(d, {"SL.CHECK", "predict", "alice"});
  EXPECT_EQ(d.pending(), 2u) << "decisions wait to be submitted together";
  EXPECT_TRUE(out_.empty());
  run(d, {"PING"});  // anything else first submits what is staged
  run(d, {"SL.CHECK", "predict", "alice"});
  run(d, {"ECHO", "x"});
  run(d, {"FLUSHALL"});
  d.submit_staged();
  EXPECT_EQ(d.pending(), 0u);
  const auto r = replies(out_);
  ASSERT_EQ(r.size(), 6u) << out_;
  EXPECT_TRUE(allowed(r[0])) << r[0].to_string();  // allowed
  EXPECT_TRUE(allowed(r[1])) << r[1].to_string();
  EXPECT_EQ(r[2].str, "PONG");
  EXPECT_FALSE(allowed(r[3])) << r[3].to_string();  // the limit of 2 is spent
  EXPECT_EQ(r[4].str, "x");
  EXPECT_NE(r[5].str.find("unknown command 'FLUSHALL'"), std::string::npos) << r[5].to_string();
  EXPECT_EQ(owner_.holds, 0);
}

TEST_F(DispatcherTest, TheTableDecidesSocketAndArity) {
  open(false);
  Dispatcher decision(ctx_, false, Peer{}, out_, owner_);
  run(decision, {"SL.POLICY", "GET"});
  run(decision, {"PING", "a", "b"});
  run(decision, {"ECHO"});
  run(decision, {"sl.info", "x", "y"});
  const auto r = replies(out_);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_NE(r[0].str.find("NOPERM"), std::string::npos) << r[0].to_string();
  EXPECT_NE(r[1].str.find("WRONGARGS usage: PING [message]"), std::string::npos)
      << r[1].to_string();
  EXPECT_NE(r[2].str.find("WRONGARGS usage: ECHO message"), std::string::npos) << r[2].to_string();
  EXPECT_NE(r[3].str.find("WRONGARGS usage: SL.INFO"), std::string::npos) << r[3].to_string();

  out_.clear();
  Dispatcher admin(ctx_, true, Peer{}, out_, owner_);  // no Admin in this context
  run(admin, {"SL.POLICY", "GET"});
  run(admin, {"QUIT"});
  EXPECT_TRUE(admin.quit_requested());
  const auto a = replies(out_);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_NE(a[0].str.find("administration is disabled"), std::string::npos) << a[0].to_string();
  EXPECT_EQ(a[1].str, "OK");
}

// Decisions completed on a plugin's thread come back through wake(); replies that were ready
// earlier wait behind them, so the order is the requests' order.
TEST_F(DispatcherTest, CompletionsFromAPluginThreadKeepTheOrder) {
  open(true);
  Dispatcher d(ctx_, false, Peer{}, out_, owner_);
  run(d, {"SL.CHECK", "predict", "bob"});
  d.submit_staged();
  run(d, {"PING"});
  EXPECT_EQ(owner_.holds, 1);
  ASSERT_TRUE(owner_.wait_for_wake(1));
  EXPECT_TRUE(out_.empty()) << "PONG overtook the decision before it";
  EXPECT_TRUE(d.complete_async());
  const auto r = replies(out_);
  ASSERT_EQ(r.size(), 2u) << out_;
  EXPECT_TRUE(allowed(r[0])) << r[0].to_string();
  EXPECT_EQ(r[1].str, "PONG");
  EXPECT_EQ(d.pending(), 0u);
}

// Recording a decision for SL.POLICY SIMULATE allocates nothing once the connection and the
// thread's ring are warm: the request's strings go to buffers the slot reuses, the record to
// the ring.
TEST_F(DispatcherTest, RecordingAllocatesNothingOnceWarm) {
  // The memory plugin (which allocates nothing once warm either), not this file's map store.
  auto spec = base_policy();
  spec.resources.push_back(make_resource(
      "predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 1'000'000, 60'000)}));
  EngineOptions options;
  options.clock = &clock_;
  engine_ =
      std::make_unique<Engine>(sluice::testing::memory_storage(), compile_or_die(spec), options);
  ctx_.engine = engine_.get();
  Recorder recorder({900, size_t{1} << 20, 1});
  ctx_.recorder = &recorder;
  Dispatcher d(ctx_, false, Peer{}, out_, owner_);
  const std::string subjects[] = {"alice", "bob", "carol-with-a-longer-name"};
  auto pipeline = [&] {
    for (int i = 0; i < 16; ++i) {
      const std::array<std::string_view, 5> argv = {"SL.CHECK", "predict", subjects[i % 3], "COST",
                                                    "1"};
      d.execute(argv);
    }
    d.submit_staged();
    ASSERT_EQ(d.pending(), 0u);
    out_.clear();
  };
  pipeline();
  pipeline();
  const uint64_t before = testing::allocations();
  for (int i = 0; i < 500; ++i) pipeline();
  EXPECT_EQ(testing::allocations() - before, 0u);
  EXPECT_EQ(recorder.copy(clock_.now_ms() + 1, 0).records.size(), 502u * 16);
  ctx_.recorder = nullptr;
}

// WAIT through the command layer: a waiting SL.ACQUIRE keeps its place in the reply order; a
// release on another connection starts a round, the queue's news comes back through
// Owner::wake(), and the waiter is admitted and answered before the PING sent after it.
TEST_F(DispatcherTest, AWaiterIsAnsweredInOrderWhenASlotIsReleased) {
  auto spec = base_policy();
  spec.resources.push_back(
      make_resource("gpu", {make_limit("slots", SLUICE_ALG_CONCURRENCY, 1, 60'000)}));
  spec.resources.back().limits[0].per_resource = true;
  EngineOptions options;
  options.clock = &clock_;
  engine_ =
      std::make_unique<Engine>(sluice::testing::memory_storage(), compile_or_die(spec), options);
  ctx_.engine = engine_.get();
  WaitQueue queue;
  ctx_.waits = &queue;
  std::string holder_out;
  TestOwner holder_owner;
  Dispatcher holder(ctx_, false, Peer{}, holder_out, holder_owner);
  Dispatcher waiter(ctx_, false, Peer{}, out_, owner_);

  run(holder, {"SL.ACQUIRE", "gpu", "h"});
  holder.submit_staged();
  const auto lease = replies(holder_out);
  ASSERT_EQ(lease.size(), 1u);
  ASSERT_TRUE(allowed(lease[0]));
  run(waiter, {"SL.ACQUIRE", "gpu", "w", "WAIT", "10000"});
  run(waiter, {"PING"});
  waiter.submit_staged();
  EXPECT_EQ(waiter.pending(), 2u);
  EXPECT_TRUE(out_.empty());
  EXPECT_EQ(queue.total(), 1u);
  EXPECT_EQ(owner_.holds, 1);  // the waiting connection is kept alive

  run(holder, {"SL.RELEASE", lease[0].elements[6].str});
  ASSERT_TRUE(owner_.wait_for_wake(1));
  EXPECT_TRUE(waiter.complete_async());  // nothing left waiting
  const auto answers = replies(out_);
  ASSERT_EQ(answers.size(), 2u);
  ASSERT_TRUE(allowed(answers[0])) << answers[0].to_string();
  EXPECT_EQ(answers[0].elements.back().str, "admitted");
  EXPECT_EQ(answers[1].str, "PONG");
  EXPECT_EQ(queue.total(), 0u);
  ctx_.waits = nullptr;
}

// A request with WAIT that arrives while others wait for its resource goes behind them: it does
// not take the slot a release has just freed for the first waiter, even when its own decision
// would come first. When its deadline passes without a turn, it is decided once, as its answer.
TEST_F(DispatcherTest, ANewcomerDoesNotOvertakeTheWaiters) {
  auto spec = base_policy();
  spec.resources.push_back(
      make_resource("gpu", {make_limit("slots", SLUICE_ALG_CONCURRENCY, 1, 60'000)}));
  spec.resources.back().limits[0].per_resource = true;
  EngineOptions options;
  options.clock = &clock_;
  engine_ =
      std::make_unique<Engine>(sluice::testing::memory_storage(), compile_or_die(spec), options);
  ctx_.engine = engine_.get();
  WaitQueue queue;
  ctx_.waits = &queue;
  std::string holder_out, late_out;
  TestOwner holder_owner, late_owner;
  Dispatcher holder(ctx_, false, Peer{}, holder_out, holder_owner);
  Dispatcher first(ctx_, false, Peer{}, out_, owner_);
  Dispatcher late(ctx_, false, Peer{}, late_out, late_owner);

  run(holder, {"SL.ACQUIRE", "gpu", "h"});
  holder.submit_staged();
  const auto lease = replies(holder_out);
  ASSERT_EQ(lease.size(), 1u);
  run(first, {"SL.ACQUIRE", "gpu", "first", "WAIT", "10000"});
  first.submit_staged();
  ASSERT_EQ(queue.total(), 1u);

  // The release asks `first` to decide again; before its thread gets to it, `late` arrives.
  run(holder, {"SL.RELEASE", lease[0].elements[6].str});
  run(late, {"SL.ACQUIRE", "gpu", "late", "WAIT", "10000"});
  late.submit_staged();
  EXPECT_TRUE(late_out.empty());  // no decision of its own: it queued behind `first`
  EXPECT_EQ(queue.total(), 2u);

  ASSERT_TRUE(owner_.wait_for_wake(1));
  first.complete_async();
  const auto admitted = replies(out_);
  ASSERT_EQ(admitted.size(), 1u);
  EXPECT_TRUE(allowed(admitted[0])) << admitted[0].to_string();
  EXPECT_EQ(admitted[0].elements.back().str, "admitted");
  // `late` had its turn after `first` and was denied: it waits on.
  ASSERT_TRUE(late_owner.wait_for_wake(1));
  late.complete_async();
  EXPECT_TRUE(late_out.empty());
  EXPECT_EQ(queue.total(), 1u);

  // Its deadline, run early on the queue's clock: a denial at the deadline.
  queue.run_due(INT64_MAX / 2);
  ASSERT_TRUE(late_owner.wait_for_wake(2));
  EXPECT_TRUE(late.complete_async());
  const auto denied = replies(late_out);
  ASSERT_EQ(denied.size(), 1u);
  EXPECT_FALSE(allowed(denied[0]));
  EXPECT_EQ(denied[0].elements.back().str, "deadline");
  ctx_.waits = nullptr;
}

// A newcomer whose deadline passes before it ever had a turn is decided once then: that
// decision is its answer.
TEST_F(DispatcherTest, ANewcomerWithoutATurnIsDecidedAtItsDeadline) {
  auto spec = base_policy();
  spec.resources.push_back(
      make_resource("gpu", {make_limit("slots", SLUICE_ALG_CONCURRENCY, 1, 60'000)}));
  spec.resources.back().limits[0].per_resource = true;
  EngineOptions options;
  options.clock = &clock_;
  engine_ =
      std::make_unique<Engine>(sluice::testing::memory_storage(), compile_or_die(spec), options);
  ctx_.engine = engine_.get();
  WaitQueue queue;
  ctx_.waits = &queue;
  std::string late_out;
  TestOwner late_owner;
  Dispatcher first(ctx_, false, Peer{}, out_, owner_);
  Dispatcher late(ctx_, false, Peer{}, late_out, late_owner);
  run(first, {"SL.ACQUIRE", "gpu", "holder"});
  run(first, {"SL.ACQUIRE", "gpu", "first", "WAIT", "10000"});
  first.submit_staged();
  run(late, {"SL.ACQUIRE", "gpu", "late", "WAIT", "10000"});
  late.submit_staged();
  // The round `late` started tried `first` (denied) and ended: `late` never had its turn.
  ASSERT_TRUE(owner_.wait_for_wake(1));
  first.complete_async();
  EXPECT_TRUE(late_out.empty());
  queue.run_due(INT64_MAX / 2);
  ASSERT_TRUE(late_owner.wait_for_wake(1));
  EXPECT_TRUE(late.complete_async());
  const auto answer = replies(late_out);
  ASSERT_EQ(answer.size(), 1u);
  EXPECT_FALSE(allowed(answer[0]));
  EXPECT_EQ(answer[0].elements[5].str, "slots");  // a real decision, not a placeholder
  EXPECT_EQ(answer[0].elements.back().str, "deadline");
  first.abandon_waits();
  ctx_.waits = nullptr;
}

// Requests without WAIT allocate nothing once warm, even with the queues in place and a waiter
// queued on another resource.
TEST_F(DispatcherTest, RequestsWithoutWaitAllocateNothingOnceWarm) {
  auto spec = base_policy();
  spec.resources.push_back(make_resource(
      "predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 1'000'000, 60'000)}));
  spec.resources.push_back(
      make_resource("gpu", {make_limit("slots", SLUICE_ALG_CONCURRENCY, 1'000'000, 60'000)}));
  spec.resources.push_back(
      make_resource("full", {make_limit("slots", SLUICE_ALG_CONCURRENCY, 1, 60'000)}));
  spec.resources.back().limits[0].per_resource = true;
  EngineOptions options;
  options.clock = &clock_;
  engine_ =
      std::make_unique<Engine>(sluice::testing::memory_storage(), compile_or_die(spec), options);
  ctx_.engine = engine_.get();
  WaitQueue queue;
  ctx_.waits = &queue;
  std::string other_out;
  TestOwner other_owner;
  Dispatcher other(ctx_, false, Peer{}, other_out, other_owner);
  run(other, {"SL.ACQUIRE", "full", "h"});
  run(other, {"SL.ACQUIRE", "full", "w", "WAIT", "10000"});
  other.submit_staged();
  ASSERT_EQ(queue.total(), 1u);

  Dispatcher d(ctx_, false, Peer{}, out_, owner_);
  std::string lease;
  auto pipeline = [&] {
    for (int i = 0; i < 8; ++i) run(d, {"SL.CHECK", "predict", "alice"});
    run(d, {"SL.ACQUIRE", "gpu", "alice"});
    d.submit_staged();
    ASSERT_EQ(d.pending(), 0u);
    const auto all = replies(out_);
    lease = all.back().elements[6].str;
    out_.clear();
    run(d, {"SL.RELEASE", lease});
    ASSERT_EQ(d.pending(), 0u);
    out_.clear();
  };
  pipeline();
  pipeline();
  uint64_t allocated = 0;
  for (int i = 0; i < 200; ++i) {
    // replies() decodes into new strings: only the dispatcher's work is counted.
    const std::array<std::string_view, 3> check = {"SL.CHECK", "predict", "alice"};
    const std::array<std::string_view, 3> acquire = {"SL.ACQUIRE", "gpu", "alice"};
    uint64_t before = testing::allocations();
    for (int k = 0; k < 8; ++k) d.execute(check);
    d.submit_staged();
    allocated += testing::allocations() - before;
    // Granting a lease writes its record (a hash-map node in the memory plugin, as the lease
    // registry's was before records): not counted. Releasing it (reading and deleting the
    // record, then settling), while someone waits elsewhere, is.
    d.execute(acquire);
    d.submit_staged();
    const size_t at = out_.find("$48\r\n");  // the token, read in place
    ASSERT_NE(at, std::string::npos);
    const std::array<std::string_view, 2> release = {
        "SL.RELEASE", std::string_view(out_).substr(at + 5, LeaseToken::kTextLength)};
    before = testing::allocations();
    d.execute(release);
    allocated += testing::allocations() - before;
    ASSERT_EQ(d.pending(), 0u);
    ASSERT_NE(out_.find("\r\n:1\r\n", out_.size() - 6), std::string::npos) << out_;
    out_.clear();
  }
  EXPECT_EQ(allocated, 0u);
  EXPECT_EQ(queue.total(), 1u);
  other.abandon_waits();
  ctx_.waits = nullptr;
}

}  // namespace
}  // namespace sluice::server
