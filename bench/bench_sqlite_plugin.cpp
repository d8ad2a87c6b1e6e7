// The SQLite plugin beside the memory plugin, through their C function tables, as a server
// thread drives them: one-item CONSUME (fixed_window) over 1 M distinct 16-byte subjects, or
// over 1,000 hot ones, each thread keeping up to 256 decisions in flight (what a pipelining
// client gives a connection).
//   build/bin/bench_sqlite_plugin --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
// Backends: memory, sqlite durability=interval (interval_ms=50) and durability=commit (group
// commit, synchronous=full), each file in a fresh directory under $TMPDIR.
//
// Size: bytes of the database file per key, after N keys are written and the file closed:
//   build/bin/bench_sqlite_plugin --size [--keys N]
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sluice/algorithms.h"
#include "sluice/storage.h"

namespace {

using namespace sluice;
namespace fs = std::filesystem;

constexpr size_t kSubjectLength = 16;
constexpr int64_t kNow = 1'700'000'000'000;
constexpr size_t kInFlight = 256;
size_t g_keys = 1'000'000;

void write_subject(uint64_t i, char* out) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "user-%011llu", static_cast<unsigned long long>(i));
  std::memcpy(out, buf, kSubjectLength);
}

sluice_item consume(const char* key) {
  sluice_limit_params p{};
  p.algorithm = SLUICE_ALG_FIXED_WINDOW;
  p.limit = 1'000'000'000;
  p.window_ms = 3'600'000;
  sluice_item it{};
  it.key = key;
  it.key_len = kSubjectLength;
  it.op = SLUICE_OP_CONSUME;
  it.params = p;
  it.cost = 1;
  it.state_capacity = static_cast<uint32_t>(algo::state_capacity(p));
  return it;
}

std::unique_ptr<Storage> open_or_die(const std::string& name, const StorageConfig& config) {
  auto s = Storage::load(name, {SLUICE_PLUGIN_DIR}, config);
  if (!s.ok()) {
    std::fprintf(stderr, "cannot open %s: %s\n", name.c_str(), s.status().message().c_str());
    std::exit(1);
  }
  return std::move(s).value();
}

fs::path fresh_dir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("sluice-bench-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<char>& subjects() {
  static std::vector<char> s = [] {
    std::vector<char> v(g_keys * kSubjectLength);
    for (size_t i = 0; i < g_keys; ++i) write_subject(i, &v[i * kSubjectLength]);
    return v;
  }();
  return s;
}

// A prepared database with every key written once, shared by the sqlite backends.
const fs::path& seeded_dir() {
  static fs::path dir = [] {
    fs::path d = fresh_dir("seed");
    auto s = open_or_die("sqlite", {{"path", (d / "counters.db").string()}});
    for (size_t i = 0; i < g_keys; ++i) {
      const sluice_item it = consume(&subjects()[i * kSubjectLength]);
      sluice_item_result r;
      s->submit(
          sluice_batch{kNow, 1, &it, &r}, [](void*, sluice_status, const char*) {}, nullptr);
    }
    if (!s->flush(600'000).ok()) std::exit(1);
    return d;
  }();
  return dir;
}

enum Backend { kMemory, kInterval, kCommit };

Storage& backend(Backend b) {
  static std::unique_ptr<Storage> opened[3];
  if (!opened[b]) {
    if (b == kMemory) {
      opened[b] = open_or_die("memory", {});
      for (size_t i = 0; i < g_keys; ++i) {
        const sluice_item it = consume(&subjects()[i * kSubjectLength]);
        sluice_item_result r;
        opened[b]->submit(
            sluice_batch{kNow, 1, &it, &r}, [](void*, sluice_status, const char*) {}, nullptr);
      }
    } else {
      // Each sqlite backend gets its own copy of the seeded file, loaded at open.
      const fs::path dir = fresh_dir(b == kInterval ? "interval" : "commit");
      fs::copy_file(seeded_dir() / "counters.db", dir / "counters.db");
      opened[b] = open_or_die("sqlite", {{"path", (dir / "counters.db").string()},
                                         {"durability", b == kInterval ? "interval" : "commit"}});
    }
  }
  return *opened[b];
}

// One thread's pipeline: a ring of batches, each slot reused once its decision completed.
struct Pipeline {
  struct Slot {
    sluice_item item;
    sluice_item_result result;
    std::atomic<bool> busy{false};
  };
  Slot slots[kInFlight];
  std::atomic<uint64_t> failures{0};

  static void done(void* user, sluice_status status, const char*) {
    auto* slot = static_cast<Slot*>(user);
    if (status != SLUICE_OK) std::abort();
    slot->busy.store(false, std::memory_order_release);
  }
  void submit(Storage& s, size_t n, const char* key) {
    Slot& slot = slots[n % kInFlight];
    while (slot.busy.load(std::memory_order_acquire)) std::this_thread::yield();
    slot.item = consume(key);
    slot.busy.store(true, std::memory_order_relaxed);
    s.submit(sluice_batch{kNow, 1, &slot.item, &slot.result}, &done, &slot);
  }
  void drain() {
    for (Slot& slot : slots) {
      while (slot.busy.load(std::memory_order_acquire)) std::this_thread::yield();
    }
  }
};

uint64_t commits(Storage& s) {
  const std::string json = s.stats_json();
  const auto at = json.find("\"commits\":");
  return at == std::string::npos ? 0 : std::strtoull(json.c_str() + at + 10, nullptr, 10);
}

// range(0): backend; range(1): keys drawn from (all g_keys, or the first 1,000: a hot set,
// where write-behind writes each key once per interval however often it is decided).
void BM_Decide(benchmark::State& state) {
  Storage& s = backend(static_cast<Backend>(state.range(0)));
  const size_t keyspace = state.range(1) == 0 ? g_keys : std::min<size_t>(1000, g_keys);
  auto pipeline = std::make_unique<Pipeline>();
  const uint64_t commits_before = state.thread_index() == 0 ? commits(s) : 0;
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  size_t n = 0;
  for (auto _ : state) {
    pipeline->submit(s, n++, &subjects()[(i % keyspace) * kSubjectLength]);
    i += 104'729;
  }
  pipeline->drain();
  state.SetItemsProcessed(state.iterations());
  if (state.thread_index() == 0 && state.range(0) != kMemory) {
    state.counters["commits/s"] = benchmark::Counter(
        static_cast<double>(commits(s) - commits_before), benchmark::Counter::kIsRate);
  }
  std::string label = state.range(0) == kMemory     ? "memory"
                      : state.range(0) == kInterval ? "sqlite interval"
                                                    : "sqlite commit";
  state.SetLabel(label + (state.range(1) == 0 ? ", all keys" : ", 1000 hot keys"));
}
BENCHMARK(BM_Decide)
    ->ArgNames({"backend", "hot"})
    ->ArgsProduct({{kMemory, kInterval, kCommit}, {0, 1}})
    ->Threads(1)
    ->Threads(2)
    ->Threads(4)
    ->UseRealTime();

int measure_size() {
  const fs::path dir = fresh_dir("size");
  const std::string db = (dir / "counters.db").string();
  {
    auto s = open_or_die("sqlite", {{"path", db}});
    for (size_t i = 0; i < g_keys; ++i) {
      const sluice_item it = consume(&subjects()[i * kSubjectLength]);
      sluice_item_result r;
      s->submit(
          sluice_batch{kNow, 1, &it, &r}, [](void*, sluice_status, const char*) {}, nullptr);
    }
    if (!s->flush(600'000).ok()) return 1;
  }
  const auto bytes = fs::file_size(db);
  std::printf(
      "sqlite: %zu keys (16-byte subjects, fixed_window state): %ju bytes, %.1f bytes/key\n",
      g_keys, static_cast<uintmax_t>(bytes), static_cast<double>(bytes) / g_keys);
  fs::remove_all(dir);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool size = false;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--size") {
      size = true;
    } else if (a == "--keys" && i + 1 < argc) {
      g_keys = std::strtoull(argv[++i], nullptr, 10);
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (size) return measure_size();
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  for (const char* name : {"seed", "interval", "commit"}) {
    fs::remove_all(fs::temp_directory_path() /
                   ("sluice-bench-" + std::string(name) + "-" + std::to_string(::getpid())));
  }
  return 0;
}
