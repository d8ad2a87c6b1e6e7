// SL.POLICY SIMULATE's replay speed (issue 17: 15 minutes at 1,000 requests/s, 900,000
// recorded requests, in <= 2 s on one core), and what recording costs a decision.
//
//   build/bin/bench_simulate --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <array>
#include <string>
#include <vector>

#include "dispatcher.h"
#include "recorder.h"
#include "simulate.h"
#include "sluice/clock.h"
#include "sluice/engine.h"
#include "sluice/policy.h"
#include "sluice/storage.h"

namespace {

using sluice::server::Recorded;
using sluice::server::Recorder;

constexpr std::string_view kDraft = R"(version: 1
default_tier: free
tiers:
  free: {multiplier: 1}
  premium: {multiplier: 5}
resources:
  predict:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 50, window: 1m}
      - {name: per_second, algorithm: token_bucket, limit: 5, window: 1s, burst: 10}
  chat:
    limits:
      - {name: per_minute, algorithm: sliding_window_counter, limit: 30, window: 1m}
  embed:
    limits:
      - {name: pace, algorithm: gcra, limit: 20, window: 1s}
)";

// 15 minutes at 1,000 requests/s over 2,000 subjects and three resources.
const Recorder& traffic() {
  static Recorder* rec = [] {
    auto* r = new Recorder({900, size_t{512} << 20, 1});
    std::vector<std::string> subjects;
    for (int i = 0; i < 2000; ++i) subjects.push_back("client-" + std::to_string(i));
    const char* resources[] = {"predict", "chat", "embed"};
    uint64_t x = 88172645463325252ULL;
    for (int64_t i = 0; i < 900'000; ++i) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      Recorded q;
      q.time_ms = 1'700'000'000'000 + i;  // one per millisecond
      q.kind = Recorded::Kind::kCheck;
      q.allowed = true;
      q.resource = resources[x % 3];
      q.subject = subjects[(x >> 8) % subjects.size()];
      q.tier = (x >> 20) % 10 == 0 ? "premium" : "";
      q.live_rule = "per_minute";
      r->record(q);
    }
    return r;
  }();
  return *rec;
}

void BM_Replay900k(benchmark::State& state) {
  const auto copy = traffic().copy(1'700'000'900'000, 0);
  auto parsed = sluice::parse_policy(kDraft, "<bench>");
  auto draft = sluice::CompiledPolicy::compile(std::move(*parsed.policy), 1).value();
  for (auto _ : state) {
    std::string out = sluice::server::simulate(copy, draft, 0);
    benchmark::DoNotOptimize(out);
  }
  state.counters["requests"] = static_cast<double>(copy.records.size());
  state.counters["requests/s"] = benchmark::Counter(static_cast<double>(copy.records.size()),
                                                    benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_Replay900k)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

// Copying 900,000 records out of the rings (what SIMULATE does before the replay).
void BM_Copy900k(benchmark::State& state) {
  const Recorder& rec = traffic();
  for (auto _ : state) {
    auto copy = rec.copy(1'700'000'900'000, 0);
    benchmark::DoNotOptimize(copy);
  }
}
BENCHMARK(BM_Copy900k)->Unit(benchmark::kMillisecond)->Iterations(1)->UseRealTime();

// One record appended, the cost a recorded decision pays on its worker thread.
void BM_RecordOne(benchmark::State& state) {
  Recorder rec({900, size_t{64} << 20, 1});
  Recorded q;
  q.kind = Recorded::Kind::kCheck;
  q.resource = "predict";
  q.subject = "client-1234";
  q.live_rule = "per_minute";
  int64_t t = 0;
  for (auto _ : state) {
    q.time_ms = ++t;
    rec.record(q);
  }
}
BENCHMARK(BM_RecordOne);

// The command layer as a session drives it, on the memory plugin: pipelines of 16 SL.CHECKs
// over 100,000 subjects, with recording off (0) and on (1), side by side in one run.
void BM_DispatchPipeline16(benchmark::State& state) {
  struct Owner final : sluice::server::Dispatcher::Owner {
    void hold() override {}
    void wake() override {}
  } owner;
  auto storage = sluice::Storage::load("memory", {SLUICE_PLUGIN_DIR}, {});
  if (!storage.ok()) return state.SkipWithError(storage.status().message().c_str());
  auto parsed = sluice::parse_policy(kDraft, "<bench>");
  auto policy = sluice::CompiledPolicy::compile(std::move(*parsed.policy), 1).value();
  sluice::Engine engine(std::move(storage).value(), policy);
  sluice::server::ServerContext ctx;
  ctx.engine = &engine;
  Recorder recorder({900, state.range(0) == 2 ? size_t{256} << 10 : size_t{64} << 20, 1});
  if (state.range(0) != 0) ctx.recorder = &recorder;
  std::string out;
  sluice::server::Dispatcher d(ctx, false, sluice::server::Peer{}, out, owner);
  std::vector<std::string> subjects;
  for (int i = 0; i < 100'000; ++i) subjects.push_back("client-" + std::to_string(i));
  size_t next = 0;
  for (auto _ : state) {
    for (int i = 0; i < 16; ++i) {
      const std::array<std::string_view, 3> argv = {"SL.CHECK", "chat",
                                                    subjects[next++ % subjects.size()]};
      d.execute(argv);
    }
    d.submit_staged();
    out.clear();
  }
  state.SetItemsProcessed(state.iterations() * 16);
}
BENCHMARK(BM_DispatchPipeline16)->Arg(0)->Arg(1)->Arg(2);

}  // namespace

BENCHMARK_MAIN();
