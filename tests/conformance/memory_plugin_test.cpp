// What only the memory plugin promises, beyond the conformance suite: its configuration, the
// key cap and its eviction order, no allocation once warm, at most 64 bytes per key, and a
// prefetch hint that changes nothing.
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <new>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "count_allocations.h"
#include "plugin_driver.h"
#include "sluice/algorithms.h"
#include "sluice/storage.h"

// Every operator new in the process is counted (the plugin's included: it resolves to the
// replacements in count_allocations.h).

namespace sluice {
namespace {

constexpr int64_t kStart = 1'700'000'000'000;

Result<std::unique_ptr<Storage>> open_memory(const StorageConfig& config) {
  return testing::load_plugin("memory", config);
}

std::unique_ptr<Storage> must_open(const StorageConfig& config) {
  auto s = open_memory(config);
  EXPECT_TRUE(s.ok()) << s.status().message();
  return s.ok() ? std::move(s).value() : nullptr;
}

sluice_limit_params fixed_window(int64_t limit, int64_t window_ms) {
  sluice_limit_params p{};
  p.algorithm = SLUICE_ALG_FIXED_WINDOW;
  p.limit = limit;
  p.window_ms = window_ms;
  return p;
}

sluice_item consume(const std::string& key, const sluice_limit_params& p) {
  sluice_item it{};
  it.key = key.data();
  it.key_len = static_cast<uint32_t>(key.size());
  it.op = SLUICE_OP_CONSUME;
  it.params = p;
  it.cost = 1;
  it.state_capacity = static_cast<uint32_t>(algo::state_capacity(p));
  return it;
}

// The memory plugin completes inline, so the status is known when submit returns (a batch
// still pending counts as an internal error).
sluice_status run(Storage& s, const sluice_item* items, size_t n, sluice_item_result* results,
                  int64_t now_ms) {
  testing::Completion completion;
  s.submit(sluice_batch{now_ms, n, items, results}, &testing::Completion::done, &completion);
  return completion.finished() ? completion.status() : SLUICE_ERR_INTERNAL;
}

uint64_t stat(const Storage& s, const char* field) {
  return nlohmann::json::parse(s.stats_json()).at(field).get<uint64_t>();
}

// A 16-byte subject, as in the memory target.
std::string subject(uint64_t i) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "user-%011llu", static_cast<unsigned long long>(i));
  return std::string(buf, 16);
}

// Every bad setting is refused with a sentence that names it.
TEST(MemoryPlugin, BadConfigurationIsRefused) {
  const std::pair<StorageConfig, std::string> cases[] = {
      {{{"shards", "0"}}, "shards"},      {{{"shards", "many"}}, "many"},
      {{{"shards", "70000"}}, "shards"},  {{{"max_keys", "-1"}}, "max_keys"},
      {{{"max_keys", "12abc"}}, "12abc"}, {{{"sweep_slots", ""}}, "sweep_slots"},
      {{{"bogus", "1"}}, "bogus"},
  };
  for (const auto& [config, needle] : cases) {
    auto s = open_memory(config);
    ASSERT_FALSE(s.ok()) << needle;
    EXPECT_NE(s.status().message().find(needle), std::string::npos) << s.status().message();
  }
  EXPECT_TRUE(open_memory({{"shards", "3"}, {"max_keys", "10"}, {"sweep_slots", "0"}}).ok());
}

// At the cap, live keys are evicted (and counted) so that the key count stays bounded.
TEST(MemoryPlugin, KeyCapEvictsLiveKeys) {
  auto s = must_open({{"shards", "4"}, {"max_keys", "100"}});
  ASSERT_TRUE(s);
  const auto p = fixed_window(10, 3'600'000);
  for (int i = 0; i < 1000; ++i) {
    const std::string k = subject(i);
    const sluice_item it = consume(k, p);
    sluice_item_result r{};
    ASSERT_EQ(run(*s, &it, 1, &r, kStart), SLUICE_OK);
  }
  EXPECT_LE(stat(*s, "keys"), 100u + 4u);  // overshoot: at most one key per empty shard
  EXPECT_GE(stat(*s, "evictions"), 1000u - 104u);
}

// At the cap, expired keys near the clock hand go before live ones: replacing a hundred expired
// keys evicts (almost) no live key. Without the preference every insert would evict.
TEST(MemoryPlugin, KeyCapEvictsExpiredKeysFirst) {
  auto s = must_open({{"shards", "1"}, {"max_keys", "100"}, {"sweep_slots", "0"}});
  ASSERT_TRUE(s);
  const auto p = fixed_window(10, 1000);
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 100; ++i) {
      const std::string k = subject(round * 1000 + i);
      const sluice_item it = consume(k, p);
      sluice_item_result r{};
      ASSERT_EQ(run(*s, &it, 1, &r, kStart + round * 60'000), SLUICE_OK);
    }
  }
  EXPECT_LE(stat(*s, "evictions"), 10u);
  EXPECT_LE(stat(*s, "keys"), 100u);
  EXPECT_GE(stat(*s, "expired"), 90u);
}

// Once its keys exist and its thread buffers have grown, the plugin allocates nothing.
TEST(MemoryPlugin, WarmHotPathDoesNotAllocate) {
  auto s = must_open({{"shards", "8"}});
  ASSERT_TRUE(s);
  const auto fixed = fixed_window(1'000'000, 3'600'000);
  sluice_limit_params log = fixed;
  log.algorithm = SLUICE_ALG_SLIDING_WINDOW;
  log.limit = 64;
  std::vector<std::string> keys;
  for (int i = 0; i < 64; ++i) keys.push_back(subject(i));
  auto round = [&](int64_t now) {
    for (size_t i = 0; i + 2 < keys.size(); ++i) {
      const sluice_item one = consume(keys[i], fixed);
      sluice_item_result r[3];
      ASSERT_EQ(run(*s, &one, 1, r, now), SLUICE_OK);
      const sluice_item batch[3] = {consume(keys[i], fixed), consume(keys[i + 1], fixed),
                                    consume(keys[i + 2], log)};
      ASSERT_EQ(run(*s, batch, 3, r, now), SLUICE_OK);
    }
  };
  // Warm-up spans a full sliding window, so the logs have reached their steady size.
  for (int t = 0; t < 200; ++t) round(kStart + t * 60'000);
  const uint64_t before = testing::allocations();
  for (int t = 200; t < 400; ++t) round(kStart + t * 60'000);
  EXPECT_EQ(testing::allocations() - before, 0u);
}

long resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long size = 0, resident = 0;
  statm >> size >> resident;
  return resident * sysconf(_SC_PAGESIZE);
}

// The memory target: at most 64 bytes per tracked key at a million keys (16-byte
// subjects, fixed_window), measured from RSS. bench_memory_plugin --memory prints the figure.
TEST(MemoryPlugin, AMillionKeysTakeAtMost64BytesEach) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's shadow memory and quarantine inflate RSS";
#endif
  constexpr int kKeys = 1'000'000;
  auto s = must_open({});
  ASSERT_TRUE(s);
  const auto p = fixed_window(100, 60'000);
  std::string k = subject(0);
  sluice_item it = consume(k, p);
  sluice_item_result r{};
  ASSERT_EQ(run(*s, &it, 1, &r, kStart), SLUICE_OK);
  const long before = resident_bytes();
  for (int i = 1; i <= kKeys; ++i) {
    k = subject(i);
    it.key = k.data();
    run(*s, &it, 1, &r, kStart);
  }
  const long after = resident_bytes();
  EXPECT_EQ(stat(*s, "keys"), static_cast<uint64_t>(kKeys) + 1);
  const double per_key = static_cast<double>(after - before) / kKeys;
  RecordProperty("bytes_per_key", std::to_string(per_key));
  EXPECT_LE(per_key, 64.0);
}

// When keys go idle, the sweep removes them and the tables shrink: the memory goes back.
TEST(MemoryPlugin, MemoryReturnsAfterKeysExpire) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer's shadow memory and quarantine inflate RSS";
#endif
  constexpr int kKeys = 300'000;
  auto s = must_open({{"shards", "2"}, {"sweep_slots", "64"}});
  ASSERT_TRUE(s);
  const auto p = fixed_window(100, 1000);
  std::string k = subject(kKeys);
  sluice_item it = consume(k, p);
  sluice_item_result r{};
  ASSERT_EQ(run(*s, &it, 1, &r, kStart), SLUICE_OK);
  const long before = resident_bytes();
  for (int i = 0; i < kKeys; ++i) {
    k = subject(i);
    it.key = k.data();
    run(*s, &it, 1, &r, kStart);
  }
  const long grown = resident_bytes() - before;
  ASSERT_GT(grown, 4'000'000);
  const std::string busy = "busy-subject-0000";
  it.key = busy.data();
  for (int i = 0; i < 100'000 && stat(*s, "keys") > 1; ++i) run(*s, &it, 1, &r, kStart + 60'000);
  EXPECT_LE(stat(*s, "keys"), 1u);
  EXPECT_LT(resident_bytes() - before, grown / 10);
}

// The plugin's own table, loaded from the build tree (the process keeps the library open).
const sluice_storage_plugin* memory_table() {
  void* lib = dlopen(SLUICE_PLUGIN_DIR "/memory.so", RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return nullptr;
  auto entry = reinterpret_cast<sluice_plugin_entry_fn>(dlsym(lib, SLUICE_PLUGIN_ENTRY_SYMBOL));
  return entry != nullptr ? entry() : nullptr;
}

// The hint does nothing while the tables fit in a core's cache (16,384 keys): the tests of
// what it does first store more keys than that, for an hour.
constexpr uint64_t kHintedKeys = 20'000;
void fill(Storage& s) {
  const auto p = fixed_window(10, 3'600'000);
  for (uint64_t i = 0; i < kHintedKeys; ++i) {
    const std::string k = subject(100'000 + i);
    const sluice_item it = consume(k, p);
    sluice_item_result r{};
    ASSERT_EQ(run(s, &it, 1, &r, kStart), SLUICE_OK);
  }
}

// The plugin offers the ABI 1.2 prefetch hint, and a batch that submit would refuse (no items,
// a key length without a key, an unknown op, an oversized state) does it no harm.
TEST(MemoryPlugin, PrefetchOfABadBatchIsHarmless) {
  const sluice_storage_plugin* table = memory_table();
  ASSERT_NE(table, nullptr) << dlerror();
  ASSERT_GE(table->struct_size, offsetof(sluice_storage_plugin, prefetch) + sizeof table->prefetch);
  ASSERT_NE(table->prefetch, nullptr);
  auto opened = Storage::open_table(table, {{"shards", "4"}});
  ASSERT_TRUE(opened.ok()) << opened.status().message();
  Storage& s = *opened.value();
  fill(s);

  const std::string good = "{r:alice}per-second";
  sluice_item items[4] = {
      consume(good, fixed_window(5, 1000)), consume(good, fixed_window(5, 1000)),
      consume(good, fixed_window(5, 1000)), consume(good, fixed_window(5, 1000))};
  items[0].key = nullptr;  // a length without a key
  items[1].op = 99;
  items[2].state_capacity = UINT32_MAX;
  items[3].key = nullptr;  // the empty key
  items[3].key_len = 0;
  sluice_item_result results[4]{};
  table->prefetch(nullptr, nullptr);
  s.prefetch(sluice_batch{kStart, 3, nullptr, results});
  s.prefetch(sluice_batch{kStart, 4, items, nullptr});
  s.prefetch(sluice_batch{kStart, 0, nullptr, nullptr});
  EXPECT_EQ(run(s, items, 4, results, kStart), SLUICE_ERR_INVALID);
  EXPECT_EQ(stat(s, "keys"), kHintedKeys);  // the hint stored nothing

  // A good key after all that still counts from zero.
  const sluice_item one = consume(good, fixed_window(5, 1000));
  s.prefetch(sluice_batch{kStart, 1, &one, results});
  ASSERT_EQ(run(s, &one, 1, results, kStart), SLUICE_OK);
  EXPECT_EQ(results[0].remaining, 4);
}

// Hinting every batch before it is submitted (and hinting batches never submitted) gives the
// same answers as not hinting, through growth, expiry and the sweep, for tagged and untagged
// keys and batches over several shards.
TEST(MemoryPlugin, PrefetchThenSubmitGivesTheSameResults) {
  const sluice_storage_plugin* table = memory_table();
  ASSERT_NE(table, nullptr) << dlerror();
  auto hinted = Storage::open_table(table, {{"shards", "4"}, {"sweep_slots", "4"}});
  auto plain = Storage::open_table(table, {{"shards", "4"}, {"sweep_slots", "4"}});
  ASSERT_TRUE(hinted.ok() && plain.ok());
  fill(*hinted.value());
  fill(*plain.value());
  const auto per_second = fixed_window(3, 1000);
  sluice_limit_params bucket{};
  bucket.algorithm = SLUICE_ALG_TOKEN_BUCKET;
  bucket.limit = 5;
  bucket.window_ms = 10'000;
  for (int step = 0; step < 20000; ++step) {
    const int64_t now = kStart + step * 7;
    const std::string a = "{r:" + std::to_string(step % 997) + "}a";
    const std::string b = "{r:" + std::to_string(step % 997) + "}b";
    const std::string c = subject(static_cast<uint64_t>(step % 1499));
    const sluice_item items[3] = {consume(a, per_second), consume(b, bucket),
                                  consume(c, per_second)};
    const size_t n = 1 + step % 3;
    sluice_item_result with[3]{}, without[3]{};
    const std::string other = subject(1'000'000 + step);
    const sluice_item never = consume(other, per_second);
    hinted.value()->prefetch(sluice_batch{now, 1, &never, with});
    hinted.value()->prefetch(sluice_batch{now, n, items, with});
    ASSERT_EQ(run(*hinted.value(), items, n, with, now), SLUICE_OK);
    ASSERT_EQ(run(*plain.value(), items, n, without, now), SLUICE_OK);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(with[i].allowed, without[i].allowed) << step << " " << i;
      ASSERT_EQ(with[i].remaining, without[i].remaining) << step << " " << i;
      ASSERT_EQ(with[i].retry_after_ms, without[i].retry_after_ms) << step << " " << i;
    }
  }
  // (The counts of keys and of expired ones may differ: the sweep is paced per thread, not
  // per store, so the two stores sweep at different moments.)
  EXPECT_GT(stat(*hinted.value(), "expired"), 0u);
}

// The hint takes no lock: while one thread's submits grow, sweep and shrink the tables,
// another thread's hints on the same keys must be harmless (ThreadSanitizer checks the races).
TEST(MemoryPlugin, PrefetchRacesWithTableRebuildsHarmlessly) {
  auto s = must_open({{"shards", "2"}, {"sweep_slots", "64"}});
  ASSERT_TRUE(s);
  const auto p = fixed_window(100, 1000);
  std::atomic<bool> done{false};
  std::thread hinter([&] {
    uint64_t i = 0;
    while (!done.load(std::memory_order_relaxed)) {
      const std::string k = subject(i++ % 50'000);
      const sluice_item it = consume(k, p);
      s->prefetch(sluice_batch{kStart, 1, &it, nullptr});
    }
  });
  // Growth to 50,000 keys, then their expiry and the tables' shrinking, twice.
  for (int round = 0; round < 2; ++round) {
    const int64_t now = kStart + round * 60'000;
    for (uint64_t i = 0; i < 50'000; ++i) {
      const std::string k = subject(i);
      const sluice_item it = consume(k, p);
      sluice_item_result r{};
      ASSERT_EQ(run(*s, &it, 1, &r, now), SLUICE_OK);
    }
    const std::string busy = "busy-subject-0000";
    const sluice_item it = consume(busy, p);
    sluice_item_result r{};
    for (int i = 0; i < 100'000 && stat(*s, "keys") > 1; ++i) run(*s, &it, 1, &r, now + 30'000);
  }
  done = true;
  hinter.join();
  EXPECT_LE(stat(*s, "keys"), 1u);
  EXPECT_LT(stat(*s, "table_bytes"), 64u * 1024);
}

}  // namespace
}  // namespace sluice
