// Reading a large policy in process: yaml-cpp's node tree alone; yaml-cpp's and libyaml's
// events alone (the floor for a reader on either event API); then sluice's whole reader (text
// to validated spec), then compiling. The node tree and the reader print the heap their result
// holds (heap_growth_mib: for the reader, the spec it returns; what it parsed is gone by then).
// Policies of N resources, one flow-style line each, as bench/policy_scale.py sends them to a
// running sluiced. One iteration per run (100,000 resources take seconds); repeat for a median:
//   build/bin/bench_policy --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>
#include <yaml.h>

#include <sstream>
#include <string>

#include "sluice/policy.h"

namespace {

std::string policy_of(int resources) {
  std::string text =
      "version: 1\ndefault_tier: free\ntiers:\n  free: {multiplier: 1}\n"
      "  premium: {multiplier: 5}\n  internal: {unlimited: true}\nresources:\n";
  for (int i = 0; i < resources; ++i) {
    text += "  model-";
    text += std::to_string(i);
    text += ": {limits: [{name: per_minute, algorithm: fixed_window, limit: 60, window: 1m}]}\n";
  }
  return text;
}

// Bytes malloc has handed out and not had back (arenas and mmapped blocks): unlike resident
// memory it does not hide what a repetition reuses from the one before.
double heap_mib() {
  const struct mallinfo2 m = ::mallinfo2();
  return static_cast<double>(m.uordblks + m.hblkhd) / (1024.0 * 1024.0);
}

void BM_YamlCppLoad(benchmark::State& state) {
  const std::string text = policy_of(static_cast<int>(state.range(0)));
  double growth = 0;
  for (auto _ : state) {
    const double before = heap_mib();
    YAML::Node root = YAML::Load(text);
    growth = heap_mib() - before;
    benchmark::DoNotOptimize(root);
  }
  state.counters["yaml_mb"] = static_cast<double>(text.size()) / 1e6;
  state.counters["heap_growth_mib"] = growth;
}

// yaml-cpp's scanner and parser alone: events handed to a handler that keeps nothing. The
// floor for any reader built on yaml-cpp's events.
void BM_YamlCppEvents(benchmark::State& state) {
  class Discard : public YAML::EventHandler {
   public:
    size_t events = 0;
    void OnDocumentStart(const YAML::Mark&) override {}
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark&, YAML::anchor_t) override { ++events; }
    void OnAlias(const YAML::Mark&, YAML::anchor_t) override { ++events; }
    void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  const std::string&) override {
      ++events;
    }
    void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                         YAML::EmitterStyle::value) override {
      ++events;
    }
    void OnSequenceEnd() override {}
    void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                    YAML::EmitterStyle::value) override {
      ++events;
    }
    void OnMapEnd() override {}
  };
  const std::string text = policy_of(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    std::istringstream in(text);
    YAML::Parser parser(in);
    Discard handler;
    parser.HandleNextDocument(handler);
    benchmark::DoNotOptimize(handler.events);
  }
}

// libyaml's parser alone, each event freed as it comes.
void BM_LibyamlEvents(benchmark::State& state) {
  const std::string text = policy_of(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()),
                                 text.size());
    size_t events = 0;
    for (bool end = false; !end; ++events) {
      yaml_event_t event;
      if (yaml_parser_parse(&parser, &event) == 0) {
        state.SkipWithError("libyaml refuses the policy");
        break;
      }
      end = event.type == YAML_STREAM_END_EVENT;
      yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);
    benchmark::DoNotOptimize(events);
  }
}

void BM_ParsePolicy(benchmark::State& state) {
  const std::string text = policy_of(static_cast<int>(state.range(0)));
  double growth = 0;
  for (auto _ : state) {
    const double before = heap_mib();
    sluice::PolicyParseResult parsed = sluice::parse_policy(text, "bench.yaml");
    growth = heap_mib() - before;
    if (!parsed.ok()) state.SkipWithError("the policy does not parse");
    benchmark::DoNotOptimize(parsed);
  }
  state.counters["heap_growth_mib"] = growth;
}

void BM_CompilePolicy(benchmark::State& state) {
  const sluice::PolicyParseResult parsed =
      sluice::parse_policy(policy_of(static_cast<int>(state.range(0))), "bench.yaml");
  if (!parsed.ok()) return state.SkipWithError("the policy does not parse");
  for (auto _ : state) {
    auto compiled = sluice::CompiledPolicy::compile(*parsed.policy, 1);
    if (!compiled.ok()) state.SkipWithError("the policy does not compile");
    benchmark::DoNotOptimize(compiled);
  }
}

BENCHMARK(BM_YamlCppLoad)->Arg(10'000)->Arg(100'000)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_YamlCppEvents)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LibyamlEvents)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ParsePolicy)->Arg(10'000)->Arg(100'000)->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_CompilePolicy)
    ->Arg(10'000)
    ->Arg(100'000)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
