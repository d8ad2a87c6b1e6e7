// In-process decision cost with the memory plugin: Engine::decide on one thread, for a
// one-limit and a four-limit resource, over 1 M distinct subjects (the figure issue 2 asks for)
// and, as a reference that isolates the engine's own work from memory latency, over 1 000.
// Run:
//   build/bin/bench_decide --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// SLUICE_BENCH_SHARDS=<n> sets the memory plugin's shard count (default: the plugin's).
//
// Each subject is 16 bytes ("subject-" and 8 hex digits of its number), built in a local
// buffer on every iteration the way a server has the request's bytes at hand, so the loop
// itself reads no memory that would add cache misses of its own. Subjects are visited with
// a stride of 7919 (prime, so every subject comes once per round); the store hashes the
// keys, so consecutive decisions land on unrelated table slots.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "sluice/engine.h"
#include "sluice/policy.h"
#include "sluice/storage.h"

namespace {

using namespace sluice;

constexpr size_t kStride = 7919;

LimitSpec limit(std::string name, sluice_algorithm alg, int64_t n, int64_t window_ms) {
  LimitSpec l;
  l.name = std::move(name);
  l.algorithm = alg;
  l.limit = n;
  l.window_ms = window_ms;
  return l;
}

// "subject-" followed by the 8 hex digits of i: 16 bytes, distinct for i < 2^32.
struct Subject {
  char bytes[16] = {'s', 'u', 'b', 'j', 'e', 'c', 't', '-'};
  std::string_view set(size_t i) {
    static constexpr char kHex[] = "0123456789abcdef";
    for (int d = 0; d < 8; ++d) bytes[8 + d] = kHex[(i >> (28 - 4 * d)) & 15];
    return {bytes, sizeof bytes};
  }
};

void noop(void*, DecisionCall&) {}

// One engine per (resource, subject count), so that the store holds exactly the keys of that
// benchmark: 1 M keys for one limit, 4 M for four. Every subject is decided once up front, so
// the timed loop decides on tracked keys (no insertions, no rehash).
Engine& engine_for(const std::string& resource, size_t subjects) {
  static std::map<std::pair<std::string, size_t>, std::unique_ptr<Engine>> engines;
  auto& slot = engines[{resource, subjects}];
  if (slot) return *slot;

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
  if (const char* shards = std::getenv("SLUICE_BENCH_SHARDS"))
    config.emplace_back("shards", shards);
  auto storage = Storage::load("memory", {SLUICE_PLUGIN_DIR}, config);
  if (!policy.ok() || !storage.ok()) {
    std::fprintf(stderr, "setup failed: %s %s\n", policy.status().message().c_str(),
                 storage.status().message().c_str());
    std::abort();
  }
  slot = std::make_unique<Engine>(std::move(storage).value(), policy.value());

  DecisionCall call;
  DecisionRequest req;
  req.resource = resource;
  Subject s;
  for (size_t i = 0; i < subjects; ++i) {
    req.subject = s.set(i);
    slot->decide(DecisionKind::kCheck, req, call, &noop, nullptr);
    if (!call.decision().allowed) {
      std::fprintf(stderr, "warm-up decision denied: %s\n", call.decision().error_message.c_str());
      std::abort();
    }
  }
  return *slot;
}

void run(benchmark::State& state, const std::string& resource) {
  const auto subjects = static_cast<size_t>(state.range(0));
  Engine& engine = engine_for(resource, subjects);
  DecisionCall call;
  DecisionRequest req;
  req.resource = resource;
  Subject s;
  const size_t step = kStride % subjects;
  size_t i = 0;
  for (auto _ : state) {
    req.subject = s.set(i);
    i += step;
    if (i >= subjects) i -= subjects;
    engine.decide(DecisionKind::kCheck, req, call, &noop, nullptr);
    benchmark::DoNotOptimize(call.decision().allowed);
  }
  if (!call.decision().allowed) state.SkipWithError("a decision was denied");
  state.SetItemsProcessed(state.iterations());
  state.counters["keys"] = static_cast<double>(subjects);
}

// A pipeline of kDepth requests decided through Engine::prepare / submit_prepared, as a
// server decides the requests it found together in a connection's buffer: every request is
// prepared (and the storage told its keys) before the first is submitted, so the memory
// loads of the kDepth requests overlap. `ns_per_decision` is the figure to compare with the
// one-at-a-time runs above; the time column is per pipeline of kDepth decisions.
constexpr size_t kDepth = 16;

void run_pipelined(benchmark::State& state, const std::string& resource) {
  const auto subjects = static_cast<size_t>(state.range(0));
  Engine& engine = engine_for(resource, subjects);
  std::array<DecisionCall, kDepth> calls;
  std::array<Subject, kDepth> names;
  std::array<bool, kDepth> pending{};
  DecisionRequest req;
  req.resource = resource;
  const size_t step = kStride % subjects;
  size_t i = 0;
  for (auto _ : state) {
    for (size_t k = 0; k < kDepth; ++k) {
      req.subject = names[k].set(i);
      i += step;
      if (i >= subjects) i -= subjects;
      pending[k] = engine.prepare(DecisionKind::kCheck, req, calls[k], &noop, nullptr);
    }
    for (size_t k = 0; k < kDepth; ++k) {
      if (pending[k]) engine.submit_prepared(calls[k]);
      benchmark::DoNotOptimize(calls[k].decision().allowed);
    }
  }
  for (const auto& call : calls) {
    if (!call.decision().allowed) state.SkipWithError("a decision was denied");
  }
  const auto decisions = static_cast<double>(state.iterations() * kDepth);
  state.SetItemsProcessed(static_cast<int64_t>(decisions));
  state.counters["ns_per_decision"] =
      benchmark::Counter(decisions, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["keys"] = static_cast<double>(subjects);
}

void BM_Decide_OneLimit(benchmark::State& state) { run(state, "predict"); }
void BM_Decide_FourLimits(benchmark::State& state) { run(state, "generate"); }
void BM_DecidePipelined_OneLimit(benchmark::State& state) { run_pipelined(state, "predict"); }
void BM_DecidePipelined_FourLimits(benchmark::State& state) { run_pipelined(state, "generate"); }

// The floor under the 1 M-key figures: one load from a random line of a 64 MiB block (the
// size of the store's tables at 1 M keys, 4 KiB pages like them) whose address depends on the
// previous load, so nothing overlaps. A decision on an untracked-in-cache key pays at least
// one of these for the slot, after the table's control bytes (often a second one).
void BM_DependentLoad_64MiB(benchmark::State& state) {
  constexpr size_t kLines = (size_t{64} << 20) / 64;
  struct alignas(64) Line {
    uint32_t next;
  };
  static std::vector<Line> lines = [] {
    std::vector<Line> v(kLines);
    std::vector<uint32_t> order(kLines);
    for (size_t i = 0; i < kLines; ++i) order[i] = static_cast<uint32_t>(i);
    // Every line in a random order, each pointing at the next: one cycle through all of them.
    std::shuffle(order.begin(), order.end(), std::mt19937_64(42));
    for (size_t i = 0; i < kLines; ++i) v[order[i]].next = order[(i + 1) % kLines];
    return v;
  }();
  uint32_t at = 0;
  for (auto _ : state) {
    at = lines[at].next;
    benchmark::DoNotOptimize(at);
  }
  state.SetItemsProcessed(state.iterations());
}

// SL.ACQUIRE then SL.RELEASE of one lease on a one-limit resource, with the lease kept as a
// storage record (the memory plugin's records, ABI 1.4: arg 1) or in the engine's registry as
// with a plugin of ABI 1.3 (arg 0; the same plugin seen through a table that stops before the
// record functions). The difference is what keeping leases in storage costs a lease on the
// memory plugin; SL.CHECK is not involved (BM_Decide_* above measure it).
Storage* g_leases_inner = nullptr;

const sluice_storage_plugin* abi13_view() {
  static const sluice_storage_plugin table = [] {
    sluice_storage_plugin t{};
    t.abi_version = SLUICE_ABI_VERSION;
    t.struct_size = static_cast<uint32_t>(offsetof(sluice_storage_plugin, record_put));
    t.name = "memory-abi-1.3";
    t.version = "bench";
    t.open = [](const sluice_host_api*, const char* const*, const char* const*, size_t,
                sluice_plugin_handle** out, char*, size_t) {
      *out = reinterpret_cast<sluice_plugin_handle*>(g_leases_inner);
      return SLUICE_OK;
    };
    t.submit = [](sluice_plugin_handle* h, const sluice_batch* b, sluice_completion_fn done,
                  void* user) { reinterpret_cast<Storage*>(h)->submit(*b, done, user); };
    t.close = [](sluice_plugin_handle*) {};
    t.capabilities = SLUICE_CAP_COMPLETES_INLINE;
    return t;
  }();
  return &table;
}

void BM_AcquireRelease(benchmark::State& state) {
  const bool records = state.range(0) != 0;
  static std::unique_ptr<Storage> inner;
  auto policy = [] {
    PolicySpec p;
    p.default_tier = "free";
    TierSpec free_tier;
    free_tier.name = "free";
    p.tiers = {free_tier};
    ResourceSpec r;
    r.name = "predict";
    r.limits = {limit("per_minute", SLUICE_ALG_FIXED_WINDOW, 1'000'000'000, 60'000)};
    p.resources = {r};
    return CompiledPolicy::compile(p, 1).value();
  }();
  auto storage = Storage::load("memory", {SLUICE_PLUGIN_DIR}, {});
  if (!storage.ok()) std::abort();
  std::unique_ptr<Engine> engine;
  if (records) {
    engine = std::make_unique<Engine>(std::move(storage).value(), policy);
  } else {
    inner = std::move(storage).value();
    g_leases_inner = inner.get();
    engine = std::make_unique<Engine>(Storage::open_table(abi13_view(), {}).value(), policy);
  }
  DecisionCall acquire, release;
  DecisionRequest req;
  req.resource = "predict";
  req.subject = "subject-00000001";
  for (auto _ : state) {
    engine->decide(DecisionKind::kAcquire, req, acquire, &noop, nullptr);
    engine->release(acquire.decision().lease, std::nullopt, release, &noop, nullptr);
    benchmark::DoNotOptimize(release.decision().allowed);
  }
  if (!release.decision().allowed) state.SkipWithError("a lease was not released");
  state.SetItemsProcessed(state.iterations());
  engine.reset();
  inner.reset();
}

BENCHMARK(BM_Decide_OneLimit)->Arg(1'000'000)->Arg(1'000)->MinTime(1.0);
BENCHMARK(BM_Decide_FourLimits)->Arg(1'000'000)->Arg(1'000)->MinTime(1.0);
BENCHMARK(BM_DecidePipelined_OneLimit)->Arg(1'000'000)->Arg(1'000)->MinTime(1.0);
BENCHMARK(BM_DecidePipelined_FourLimits)->Arg(1'000'000)->Arg(1'000)->MinTime(1.0);
BENCHMARK(BM_DependentLoad_64MiB)->MinTime(1.0);
BENCHMARK(BM_AcquireRelease)->Arg(0)->Arg(1)->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
