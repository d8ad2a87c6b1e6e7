// Engine::prepare / submit_prepared: decide() in two steps, so that a caller holding several
// requests (a pipeline) lets the storage start loading all of their keys before any is
// decided. The answers must be exactly those of decide() one at a time.
#include <gtest/gtest.h>

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "engine_test_support.h"
#include "sluice/stats.h"

namespace sluice {
namespace {

using namespace sluice::testing;

struct Done {
  int calls = 0;
  static void on(void* user, DecisionCall&) { ++static_cast<Done*>(user)->calls; }
};

PolicySpec two_resources() {
  auto p = base_policy();
  p.resources = {
      make_resource("predict", {make_limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 3, 60'000)}),
      make_resource("generate", {make_limit("per_second", SLUICE_ALG_FIXED_WINDOW, 4, 1'000),
                                 make_limit("smooth", SLUICE_ALG_GCRA, 2, 1'000, 2),
                                 make_limit("tokens", SLUICE_ALG_TOKEN_BUCKET, 50, 60'000, 0, false,
                                            "tokens")})};
  return p;
}

TEST(EnginePipeline, GivesTheAnswersOfOneDecisionAtATime) {
  ManualClock clock;
  Engine one(memory_storage(), compile_or_die(two_resources()), EngineOptions{&clock});
  Engine piped(memory_storage(), compile_or_die(two_resources()), EngineOptions{&clock});

  // Subjects repeat inside a pipeline, so later requests must see the earlier ones' counts
  // although all were prepared before the first was decided.
  std::vector<DecisionRequest> requests;
  const std::array<const char*, 3> subjects = {"alice", "bob", "alice"};
  for (int i = 0; i < 24; ++i) {
    requests.push_back(req(i % 3 == 0 ? "generate" : "predict",
                           subjects[static_cast<size_t>(i) % 3], 1 + i % 7,
                           i % 5 == 0 ? "premium" : ""));
  }
  constexpr size_t kDepth = 8;
  for (int round = 0; round < 3; ++round) {
    for (size_t start = 0; start < requests.size(); start += kDepth) {
      std::array<DecisionCall, kDepth> calls;
      std::array<bool, kDepth> pending{};
      Done done;
      for (size_t k = 0; k < kDepth; ++k)
        pending[k] =
            piped.prepare(DecisionKind::kCheck, requests[start + k], calls[k], &Done::on, &done);
      EXPECT_EQ(done.calls, 0) << "nothing is decided before it is submitted";
      for (size_t k = 0; k < kDepth; ++k) {
        ASSERT_TRUE(pending[k]);
        piped.submit_prepared(calls[k]);
        EXPECT_EQ(done.calls, static_cast<int>(k + 1));
        const Decision want = one.decide_sync(DecisionKind::kCheck, requests[start + k]);
        const Decision& got = calls[k].decision();
        SCOPED_TRACE(::testing::Message() << "round " << round << " request " << start + k);
        EXPECT_EQ(got.allowed, want.allowed);
        EXPECT_EQ(got.limit, want.limit);
        EXPECT_EQ(got.remaining, want.remaining);
        EXPECT_EQ(got.retry_after_ms, want.retry_after_ms);
        EXPECT_EQ(got.reset_after_ms, want.reset_after_ms);
        EXPECT_EQ(got.rule(), want.rule());
      }
    }
    clock.advance(400);
  }
  EXPECT_EQ(piped.stats().totals().allowed, one.stats().totals().allowed);
  EXPECT_EQ(piped.stats().totals().denied, one.stats().totals().denied);
  EXPECT_GT(one.stats().totals().denied, 0u) << "the sequence must reach the limits";
}

TEST(EnginePipeline, InvalidRequestsCompleteWhenPrepared) {
  ManualClock clock;
  Engine engine(memory_storage(), compile_or_die(two_resources()), EngineOptions{&clock});
  DecisionCall call;
  Done done;
  EXPECT_FALSE(engine.prepare(DecisionKind::kCheck, req("predict", ""), call, &Done::on, &done));
  EXPECT_EQ(done.calls, 1);
  EXPECT_EQ(call.decision().source, DecisionSource::kError);
  EXPECT_FALSE(
      engine.prepare(DecisionKind::kCheck, req("predict", "s", 1, "gold"), call, &Done::on, &done));
  EXPECT_EQ(done.calls, 2);
  // A tier without limits needs no storage either.
  EXPECT_FALSE(engine.prepare(DecisionKind::kCheck, req("predict", "s", 1, "internal"), call,
                              &Done::on, &done));
  EXPECT_EQ(done.calls, 3);
  EXPECT_TRUE(call.decision().allowed);
}

// A plugin that records what it is told: prefetched and submitted keys.
struct Recorder {
  std::vector<std::vector<std::string>> prefetched, submitted;
  static std::vector<std::string> keys(const sluice_batch* b) {
    std::vector<std::string> k;
    for (size_t i = 0; i < b->count; ++i) k.emplace_back(b->items[i].key, b->items[i].key_len);
    return k;
  }
};
Recorder* g_recorder = nullptr;

sluice_storage_plugin recording_plugin(uint32_t struct_size) {
  sluice_storage_plugin t{};
  t.abi_version = SLUICE_ABI_VERSION;
  t.struct_size = struct_size;
  t.name = "recording";
  t.version = "test";
  t.open = [](const sluice_host_api*, const char* const*, const char* const*, size_t,
              sluice_plugin_handle** out, char*, size_t) {
    *out = reinterpret_cast<sluice_plugin_handle*>(g_recorder);
    return SLUICE_OK;
  };
  t.submit = [](sluice_plugin_handle* h, const sluice_batch* b, sluice_completion_fn done,
                void* u) {
    reinterpret_cast<Recorder*>(h)->submitted.push_back(Recorder::keys(b));
    for (size_t i = 0; i < b->count; ++i) {
      b->results[i] = sluice_item_result{};
      b->results[i].allowed = 1;
    }
    done(u, SLUICE_OK, nullptr);
  };
  t.close = [](sluice_plugin_handle*) {};
  t.capabilities = SLUICE_CAP_COMPLETES_INLINE;
  t.prefetch = [](sluice_plugin_handle* h, const sluice_batch* b) {
    reinterpret_cast<Recorder*>(h)->prefetched.push_back(Recorder::keys(b));
  };
  return t;
}

TEST(EnginePipeline, PrepareTellsTheStorageTheKeysThatSubmitBrings) {
  Recorder rec;
  g_recorder = &rec;
  static sluice_storage_plugin table = recording_plugin(sizeof(sluice_storage_plugin));
  auto storage = Storage::open_table(&table, {});
  ASSERT_TRUE(storage.ok());
  ManualClock clock;
  Engine engine(std::move(storage).value(), compile_or_die(two_resources()), EngineOptions{&clock});
  std::array<DecisionCall, 2> calls;
  ASSERT_TRUE(
      engine.prepare(DecisionKind::kCheck, req("generate", "alice"), calls[0], nullptr, nullptr));
  ASSERT_TRUE(
      engine.prepare(DecisionKind::kCheck, req("predict", "bob"), calls[1], nullptr, nullptr));
  ASSERT_EQ(rec.prefetched.size(), 2u);
  EXPECT_TRUE(rec.submitted.empty());
  EXPECT_EQ(rec.prefetched[0].size(), 3u);  // one key per limit
  engine.submit_prepared(calls[1]);         // any order
  engine.submit_prepared(calls[0]);
  ASSERT_EQ(rec.submitted.size(), 2u);
  EXPECT_EQ(rec.submitted[0], rec.prefetched[1]);
  EXPECT_EQ(rec.submitted[1], rec.prefetched[0]);
  EXPECT_TRUE(calls[0].decision().allowed);

  // decide() alone hints nothing: the hint only pays when something runs before the submit.
  engine.decide_sync(DecisionKind::kCheck, req("predict", "carol"));
  EXPECT_EQ(rec.prefetched.size(), 2u);
  EXPECT_EQ(rec.submitted.size(), 3u);
  g_recorder = nullptr;
}

TEST(EnginePipeline, APluginBuiltForAbi11IsNeverAskedToPrefetch) {
  Recorder rec;
  g_recorder = &rec;
  // The table ends before `prefetch`: whatever the field holds is not the plugin's.
  static sluice_storage_plugin table =
      recording_plugin(static_cast<uint32_t>(offsetof(sluice_storage_plugin, prefetch)));
  auto storage = Storage::open_table(&table, {});
  ASSERT_TRUE(storage.ok());
  ManualClock clock;
  Engine engine(std::move(storage).value(), compile_or_die(two_resources()), EngineOptions{&clock});
  DecisionCall call;
  ASSERT_TRUE(engine.prepare(DecisionKind::kCheck, req("predict", "bob"), call, nullptr, nullptr));
  engine.submit_prepared(call);
  EXPECT_TRUE(rec.prefetched.empty());
  EXPECT_EQ(rec.submitted.size(), 1u);
  g_recorder = nullptr;
}

}  // namespace
}  // namespace sluice
