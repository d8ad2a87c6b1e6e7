// The memory plugin on its own, through its C function table.
//
// Speed (Google Benchmark): one-item CONSUME and three-item batches over 1 M distinct 16-byte
// subjects (fixed_window), and one-item CONSUME over 1,000 hot keys, from one and two threads:
//   build/bin/bench_memory_plugin --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// Memory: bytes per tracked key, from RSS, for 1 M keys (16-byte subjects, fixed_window state),
// side by side with Redis holding the same number of keys, measured from its INFO used_memory
// (one bare `SET key 1` per key, and `SET key 1 PX 60000`, a counter with an expiry as a Redis
// rate limiter keeps it). Redis is started here on a private Unix socket and fed with
// `redis-cli --pipe`:
//   build/bin/bench_memory_plugin --memory [--keys N] [--algorithm NAME] [--no-redis]
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sluice/algorithms.h"
#include "sluice/storage.h"

extern char** environ;

namespace {

using namespace sluice;

constexpr size_t kSubjects = 1'000'000;
constexpr size_t kSubjectLength = 16;
constexpr int64_t kNow = 1'700'000'000'000;

void write_subject(uint64_t i, char* out) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "user-%011llu",
                static_cast<unsigned long long>(i % 100'000'000'000ull));
  std::memcpy(out, buf, kSubjectLength);
}

sluice_limit_params fixed_window() {
  sluice_limit_params p{};
  p.algorithm = SLUICE_ALG_FIXED_WINDOW;
  p.limit = 1'000'000'000;
  p.window_ms = 60'000;
  return p;
}

sluice_item consume(const char* key, const sluice_limit_params& p) {
  sluice_item it{};
  it.key = key;
  it.key_len = kSubjectLength;
  it.op = SLUICE_OP_CONSUME;
  it.params = p;
  it.cost = 1;
  it.state_capacity = static_cast<uint32_t>(algo::state_capacity(p));
  return it;
}

void ignore_completion(void*, sluice_status, const char*) {}

std::unique_ptr<Storage> open_memory(const StorageConfig& config) {
  auto s = Storage::load("memory", {SLUICE_PLUGIN_DIR}, config);
  if (!s.ok()) {
    std::fprintf(stderr, "cannot open the memory plugin: %s\n", s.status().message().c_str());
    std::exit(1);
  }
  return std::move(s).value();
}

// ---- speed ------------------------------------------------------------------------------

struct SpeedFixture {
  std::unique_ptr<Storage> storage = open_memory({});
  std::vector<char> subjects = std::vector<char>(kSubjects * kSubjectLength);
  sluice_limit_params params = fixed_window();

  SpeedFixture() {
    for (size_t i = 0; i < kSubjects; ++i) write_subject(i, &subjects[i * kSubjectLength]);
    // Insert every key once, so that the timed loops measure the steady state.
    for (size_t i = 0; i < kSubjects; ++i) submit_one(i);
  }
  void submit_one(size_t i) {
    const sluice_item it = consume(&subjects[i * kSubjectLength], params);
    sluice_item_result r;
    storage->submit(sluice_batch{kNow, 1, &it, &r}, &ignore_completion, nullptr);
    benchmark::DoNotOptimize(r);
  }
};

SpeedFixture& speed_fixture() {
  static SpeedFixture f;
  return f;
}

void BM_ConsumeOneItem(benchmark::State& state) {
  SpeedFixture& f = speed_fixture();
  // Threads walk the key space with different strides, so that they meet on shards at random.
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  for (auto _ : state) {
    f.submit_one(i % kSubjects);
    i += 104'729;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ConsumeOneItem)->Threads(1)->Threads(2)->UseRealTime();

// The same over 1,000 hot keys: what the plugin costs when the table is in cache, i.e. without
// the DRAM misses that dominate over a million keys.
void BM_ConsumeOneItemHotKeys(benchmark::State& state) {
  SpeedFixture& f = speed_fixture();
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  for (auto _ : state) {
    f.submit_one(i % 1000);
    i += 104'729;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ConsumeOneItemHotKeys)->Threads(1)->Threads(2)->UseRealTime();

void BM_ConsumeBatchOfThree(benchmark::State& state) {
  SpeedFixture& f = speed_fixture();
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  sluice_item items[3];
  sluice_item_result results[3];
  for (auto _ : state) {
    for (size_t k = 0; k < 3; ++k) {
      items[k] = consume(&f.subjects[((i + k * 333'331) % kSubjects) * kSubjectLength], f.params);
    }
    f.storage->submit(sluice_batch{kNow, 3, items, results}, &ignore_completion, nullptr);
    benchmark::DoNotOptimize(results);
    i += 104'729;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ConsumeBatchOfThree)->Threads(1)->Threads(2)->UseRealTime();

// ---- memory -----------------------------------------------------------------------------

long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

double memory_plugin_bytes_per_key(size_t keys, sluice_algorithm alg) {
  auto storage = open_memory({});
  sluice_limit_params p = fixed_window();
  p.algorithm = alg;
  p.limit = 100;  // small logs and lease lists for sliding_window and concurrency
  char key[kSubjectLength];
  sluice_item_result r;
  write_subject(keys, key);  // one key first: thread buffers and the epoch are not per key
  sluice_item it = consume(key, p);
  if (alg == SLUICE_ALG_CONCURRENCY) {  // its CONSUME only looks; a lease is what it stores
    it.op = SLUICE_OP_LEASE_ACQUIRE;
    it.lease_id = 1;
    it.lease_expires_ms = kNow + 60'000;
  }
  storage->submit(sluice_batch{kNow, 1, &it, &r}, &ignore_completion, nullptr);
  const long before = resident_bytes();
  for (size_t i = 0; i < keys; ++i) {
    write_subject(i, key);
    storage->submit(sluice_batch{kNow, 1, &it, &r}, &ignore_completion, nullptr);
  }
  const long after = resident_bytes();
  std::printf("memory plugin: %s\n", storage->stats_json().c_str());
  return static_cast<double>(after - before) / static_cast<double>(keys);
}

// A redis-server of our own on a private socket; stopped on destruction.
class RedisServer {
 public:
  static std::optional<RedisServer> start() {
    RedisServer r;
    r.socket_ = "/tmp/sluice-bench-memory-" + std::to_string(getpid()) + ".sock";
    const std::string socket = r.socket_;
    std::vector<std::string> args = {"redis-server", "--port",     "0",      "--unixsocket",
                                     socket,         "--save",     "",       "--appendonly",
                                     "no",           "--loglevel", "warning"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t quiet;
    posix_spawn_file_actions_init(&quiet);
    posix_spawn_file_actions_addopen(&quiet, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&quiet, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    const int spawned =
        posix_spawnp(&r.pid_, "redis-server", &quiet, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&quiet);
    if (spawned != 0) return std::nullopt;
    for (int i = 0; i < 100; ++i) {
      if (r.command("PING").find("PONG") != std::string::npos) return r;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return std::nullopt;
  }
  RedisServer(RedisServer&& o) noexcept : pid_(o.pid_), socket_(std::move(o.socket_)) {
    o.pid_ = 0;
  }
  ~RedisServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
      std::remove(socket_.c_str());
    }
  }

  // One command through redis-cli; its output.
  std::string command(const std::string& args) const {
    const std::string cmd = "redis-cli -s " + socket_ + " " + args + " 2>/dev/null";
    std::string out;
    if (FILE* f = popen(cmd.c_str(), "r")) {
      char buf[4096];
      size_t n;
      while ((n = fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
      pclose(f);
    }
    return out;
  }

  long used_memory() const {
    const std::string info = command("INFO memory");
    const auto pos = info.find("used_memory:");
    return pos == std::string::npos ? -1
                                    : std::atol(info.c_str() + pos + std::strlen("used_memory:"));
  }

  // Mass insertion, as the Redis manual recommends it: RESP on redis-cli --pipe's stdin.
  bool set_keys(size_t keys, const char* prefix, bool with_expiry) const {
    const std::string cmd = "redis-cli -s " + socket_ + " --pipe >/dev/null 2>&1";
    FILE* f = popen(cmd.c_str(), "w");
    if (f == nullptr) return false;
    char key[kSubjectLength];
    for (size_t i = 0; i < keys; ++i) {
      write_subject(i, key);
      std::memcpy(key, prefix, 4);  // "user" or another 4-byte prefix: distinct key sets
      if (with_expiry) {
        std::fprintf(f, "*5\r\n$3\r\nSET\r\n$16\r\n%.16s\r\n$1\r\n1\r\n$2\r\nPX\r\n$5\r\n60000\r\n",
                     key);
      } else {
        std::fprintf(f, "*3\r\n$3\r\nSET\r\n$16\r\n%.16s\r\n$1\r\n1\r\n", key);
      }
    }
    return pclose(f) == 0;
  }

 private:
  RedisServer() = default;
  pid_t pid_ = 0;
  std::string socket_;
};

struct RedisFigures {
  double bare = 0, with_expiry = 0;
};

std::optional<RedisFigures> redis_bytes_per_key(size_t keys) {
  auto redis = RedisServer::start();
  if (!redis) {
    std::printf("redis: cannot start redis-server (is it installed?); skipped\n");
    return std::nullopt;
  }
  RedisFigures f;
  long before = redis->used_memory();
  if (!redis->set_keys(keys, "user", false)) return std::nullopt;
  long after = redis->used_memory();
  f.bare = static_cast<double>(after - before) / static_cast<double>(keys);
  redis->command("FLUSHALL SYNC");
  before = redis->used_memory();
  if (!redis->set_keys(keys, "rate", true)) return std::nullopt;
  after = redis->used_memory();
  f.with_expiry = static_cast<double>(after - before) / static_cast<double>(keys);
  std::string dbsize = redis->command("DBSIZE");
  while (!dbsize.empty() && (dbsize.back() == '\n' || dbsize.back() == '\r')) dbsize.pop_back();
  const std::string server = redis->command("INFO server");
  const auto v = server.find("redis_version:");
  const std::string version = v == std::string::npos
                                  ? "?"
                                  : server.substr(v + 14, server.find_first_of("\r\n", v) - v - 14);
  std::printf("redis-server %s: %s keys after the second run\n", version.c_str(), dbsize.c_str());
  return f;
}

int run_memory_comparison(size_t keys, bool with_redis, sluice_algorithm alg) {
  const double sluice_bytes = memory_plugin_bytes_per_key(keys, alg);
  std::printf("keys: %zu (16-byte subjects, %s, one admission each)\n", keys,
              std::string(algo::algorithm_name(alg)).c_str());
  std::printf("memory plugin (RSS delta):                   %6.1f bytes/key\n", sluice_bytes);
  if (!with_redis) return 0;
  const auto redis = redis_bytes_per_key(keys);
  if (!redis) return 1;
  std::printf("redis SET key 1 (used_memory delta):          %6.1f bytes/key  (x%.2f)\n",
              redis->bare, redis->bare / sluice_bytes);
  std::printf("redis SET key 1 PX 60000 (used_memory delta): %6.1f bytes/key  (x%.2f)\n",
              redis->with_expiry, redis->with_expiry / sluice_bytes);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool memory = false, with_redis = true;
  sluice_algorithm alg = SLUICE_ALG_FIXED_WINDOW;
  size_t keys = kSubjects;
  std::vector<char*> rest = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--memory") {
      memory = true;
    } else if (a == "--no-redis") {
      with_redis = false;
    } else if (a == "--algorithm" && i + 1 < argc) {
      const auto parsed = algo::parse_algorithm(argv[++i]);
      if (!parsed) {
        std::fprintf(stderr, "--algorithm: unknown algorithm '%s'\n", argv[i]);
        return 2;
      }
      alg = *parsed;
    } else if (a == "--keys" && i + 1 < argc) {
      keys = std::strtoull(argv[++i], nullptr, 10);
      if (keys == 0) {
        std::fprintf(stderr, "--keys needs a positive number\n");
        return 2;
      }
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (memory) return run_memory_comparison(keys, with_redis, alg);
  int rest_argc = static_cast<int>(rest.size());
  benchmark::Initialize(&rest_argc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rest_argc, rest.data())) return 2;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
