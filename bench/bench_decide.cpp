// In-process decision cost with the memory plugin: Engine::decide over 1 M distinct subjects
// (16-byte subjects), for a one-limit and a four-limit resource. Run:
//   build/bench/bench_decide --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "sluice/engine.h"
#include "sluice/policy.h"
#include "sluice/storage.h"

namespace {

using namespace sluice;

constexpr size_t kSubjects = 1'000'000;

LimitSpec limit(std::string name, sluice_algorithm alg, int64_t n, int64_t window_ms) {
  LimitSpec l;
  l.name = std::move(name);
  l.algorithm = alg;
  l.limit = n;
  l.window_ms = window_ms;
  return l;
}

struct Fixture {
  std::unique_ptr<Engine> engine;
  std::vector<std::string> subjects;

  Fixture() {
    PolicySpec p;
    p.default_tier = "free";
    TierSpec free_tier;
    free_tier.name = "free";
    p.tiers = {free_tier};
    ResourceSpec one;
    one.name = "predict";
    one.limits = {limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 1'000'000'000, 60'000)};
    ResourceSpec four;
    four.name = "generate";
    four.limits = {limit("per_second", SLUICE_ALG_FIXED_WINDOW, 1'000'000'000, 1'000),
                   limit("per_minute", SLUICE_ALG_SLIDING_WINDOW_COUNTER, 1'000'000'000, 60'000),
                   limit("tokens", SLUICE_ALG_TOKEN_BUCKET, 1'000'000'000, 60'000),
                   limit("smooth", SLUICE_ALG_GCRA, 1'000'000'000, 1'000)};
    p.resources = {one, four};
    auto policy = CompiledPolicy::compile(p, 1);
    StorageConfig config;
    if (const char* shards = std::getenv("SLUICE_BENCH_SHARDS")) config.emplace_back("shards", shards);
    auto storage = Storage::load("memory", {SLUICE_PLUGIN_DIR}, config);
    if (!policy.ok() || !storage.ok()) {
      std::fprintf(stderr, "setup failed: %s %s\n", policy.status().message().c_str(),
                   storage.status().message().c_str());
      std::abort();
    }
    engine = std::make_unique<Engine>(std::move(storage).value(), policy.value());
    subjects.reserve(kSubjects);
    char buf[32];
    for (size_t i = 0; i < kSubjects; ++i) {
      std::snprintf(buf, sizeof buf, "subject-%08zu", i);  // 16 bytes
      subjects.emplace_back(buf);
    }
  }
};

Fixture& fixture() {
  static Fixture f;
  return f;
}

void noop(void*, DecisionCall&) {}

void run(benchmark::State& state, std::string_view resource) {
  auto& f = fixture();
  DecisionCall call;
  DecisionRequest req;
  req.resource = resource;
  std::mt19937_64 rng(42);
  // Touch every key once so the benchmark measures decisions on tracked keys.
  for (const auto& s : f.subjects) {
    req.subject = s;
    f.engine->decide(DecisionKind::kCheck, req, call, &noop, nullptr);
  }
  size_t i = 0;
  for (auto _ : state) {
    req.subject = f.subjects[(i++ * 7919) % kSubjects];  // strided: defeats the caches
    f.engine->decide(DecisionKind::kCheck, req, call, &noop, nullptr);
    benchmark::DoNotOptimize(call.decision().allowed);
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Decide_OneLimit_1MKeys(benchmark::State& state) { run(state, "predict"); }
void BM_Decide_FourLimits_1MKeys(benchmark::State& state) { run(state, "generate"); }

BENCHMARK(BM_Decide_OneLimit_1MKeys)->MinTime(1.0);
BENCHMARK(BM_Decide_FourLimits_1MKeys)->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
