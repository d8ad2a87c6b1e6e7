// Drives the SQLite plugin through its C ABI the way the engine does, with the host's real
// algorithms and a log that tests can read. Files live in a fresh directory per test.
#pragma once

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "journal.h"
#include "plugin_driver.h"
#include "sluice/algorithms.h"
#include "sluice/storage_plugin.h"

namespace sluice::sqlite_test {

namespace fs = std::filesystem;

inline constexpr int64_t kT0 = 1'700'000'000'000;  // a fixed "now" for tests that need no time

// Lines the plugin logged, for every instance in this process.
class LogSink {
 public:
  static LogSink& instance() {
    static LogSink sink;
    return sink;
  }
  void add(int level, const char* message) {
    std::lock_guard lk(mu_);
    lines_.emplace_back(level, message ? message : "");
  }
  bool contains(const std::string& needle) const {
    std::lock_guard lk(mu_);
    for (const auto& [level, line] : lines_) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  std::string all() const {
    std::lock_guard lk(mu_);
    std::string out;
    for (const auto& [level, line] : lines_) out += std::to_string(level) + " " + line + "\n";
    return out;
  }
  void clear() {
    std::lock_guard lk(mu_);
    lines_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::vector<std::pair<int, std::string>> lines_;
};

inline const sluice_host_api* test_host() {
  static const sluice_host_api host = [] {
    sluice_host_api h = *algo::host_api();
    h.log = [](int level, const char* message) { LogSink::instance().add(level, message); };
    return h;
  }();
  return &host;
}

inline const sluice_storage_plugin* plugin_table() {
  static const sluice_storage_plugin* table = [] {
    const std::string path = std::string(SLUICE_PLUGIN_DIR) + "/sqlite.so";
    void* dl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
      ADD_FAILURE() << "cannot load " << path << ": " << dlerror();
      return static_cast<const sluice_storage_plugin*>(nullptr);
    }
    auto entry = reinterpret_cast<sluice_plugin_entry_fn>(dlsym(dl, SLUICE_PLUGIN_ENTRY_SYMBOL));
    return entry ? entry() : nullptr;
  }();
  return table;
}

// The item points into `key`, which must outlive it (a literal always does).
inline sluice_item make_item(std::string_view key, sluice_op op, int64_t limit,
                             int64_t window_ms = 3'600'000, int64_t cost = 1,
                             sluice_algorithm alg = SLUICE_ALG_FIXED_WINDOW) {
  sluice_item item{};
  item.key = key.data();
  item.key_len = static_cast<uint32_t>(key.size());
  item.op = op;
  item.params.algorithm = alg;
  item.params.limit = limit;
  item.params.window_ms = window_ms;
  item.cost = cost;
  item.state_capacity = static_cast<uint32_t>(algo::state_capacity(item.params));
  return item;
}

struct Outcome {
  sluice_status status = SLUICE_ERR_INTERNAL;
  std::string message;
  std::vector<sluice_item_result> results;
  std::thread::id completed_on;
};

using Config = std::vector<std::pair<std::string, std::string>>;

// One open plugin instance.
class Instance {
 public:
  Instance() = default;
  ~Instance() { close(); }
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  // Returns the open status; `error` receives the plugin's sentence.
  sluice_status open(const Config& config, std::string* error = nullptr) {
    close();
    std::vector<const char*> keys, values;
    for (const auto& [k, v] : config) {
      keys.push_back(k.c_str());
      values.push_back(v.c_str());
    }
    char err[512] = {0};
    const sluice_status st = plugin_table()->open(test_host(), keys.data(), values.data(),
                                                  config.size(), &handle_, err, sizeof err);
    if (error) *error = err;
    return st;
  }
  void close() {
    if (handle_) plugin_table()->close(handle_);
    handle_ = nullptr;
  }
  bool is_open() const { return handle_ != nullptr; }

  // Submits and waits for the completion.
  Outcome submit(const std::vector<sluice_item>& items, int64_t now_ms = kT0) {
    Outcome out;
    out.results.resize(items.size());
    const sluice_batch batch{now_ms, items.size(), items.data(), out.results.data()};
    testing::Completion completion;
    plugin_table()->submit(handle_, &batch, &testing::Completion::done, &completion);
    out.status = completion.wait();
    out.message = completion.message();
    out.completed_on = completion.thread();
    return out;
  }

  // One CONSUME of `cost` on a fixed window of `limit` per hour.
  Outcome consume(const std::string& key, int64_t limit, int64_t cost = 1, int64_t now = kT0) {
    return submit({make_item(key, SLUICE_OP_CONSUME, limit, 3'600'000, cost)}, now);
  }
  // What is left of that limit, or -1 when the plugin does not answer. PEEK reports what a
  // CONSUME of 1 would leave, so an admissible peek leaves one more than it says.
  int64_t remaining(const std::string& key, int64_t limit, int64_t now = kT0) {
    const Outcome o = submit({make_item(key, SLUICE_OP_PEEK, limit)}, now);
    if (o.status != SLUICE_OK) return -1;
    return o.results[0].allowed ? o.results[0].remaining + 1 : o.results[0].remaining;
  }

  sluice_status flush(int64_t timeout_ms = 10'000, std::string* error = nullptr) {
    char err[512] = {0};
    const sluice_status st = plugin_table()->flush(handle_, timeout_ms, err, sizeof err);
    if (error) *error = err;
    return st;
  }
  nlohmann::json stats() {
    char buf[4096];
    const size_t n = plugin_table()->stats_json(handle_, buf, sizeof buf);
    return nlohmann::json::parse(std::string(buf, std::min(n, sizeof buf - 1)));
  }

 private:
  sluice_plugin_handle* handle_ = nullptr;
};

// A fresh directory for one test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "t";
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    path_ =
        fs::temp_directory_path() / ("sluice-sqlite-" + std::to_string(::getpid()) + "-" + name);
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Polls `pred` (flushing the plugin, which also retries a failed file at once) for up to 10 s.
inline bool eventually(Instance& plugin, const std::function<bool()>& pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    plugin.flush(2000);
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// Keys a start-up would load from the file: the counters table, then the journal replayed
// over it. Read with a separate connection (needs exclusive=false); -1 if unreadable.
inline int64_t count_rows(const std::string& path) {
  sqlite3* db = nullptr;
  std::set<std::string> keys;
  bool ok = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK;
  const auto each = [&](const char* sql, const std::function<void(sqlite3_stmt*)>& fn) {
    sqlite3_stmt* st = nullptr;
    int rc = ok ? sqlite3_prepare_v2(db, sql, -1, &st, nullptr) : SQLITE_ERROR;
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
      fn(st);
      rc = SQLITE_OK;
    }
    ok = ok && rc == SQLITE_DONE;
    sqlite3_finalize(st);
  };
  const auto blob = [](sqlite3_stmt* st, int col) {
    const auto* p = static_cast<const char*>(sqlite3_column_blob(st, col));
    return std::string(p ? p : "", static_cast<size_t>(sqlite3_column_bytes(st, col)));
  };
  each("SELECT key FROM counters", [&](sqlite3_stmt* st) { keys.insert(blob(st, 0)); });
  each("SELECT records FROM journal ORDER BY id", [&](sqlite3_stmt* st) {
    ok = ok && sqlite_plugin::journal::replay(
                   blob(st, 0),
                   [&](std::string_view key, std::string_view, int64_t) { keys.emplace(key); },
                   [&](std::string_view key) { keys.erase(std::string(key)); });
  });
  sqlite3_close(db);
  return ok ? static_cast<int64_t>(keys.size()) : -1;
}

// Rows in one table of the file (needs exclusive=false); -1 if unreadable.
inline int64_t table_rows(const std::string& path, const std::string& table) {
  sqlite3* db = nullptr;
  int64_t n = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    const std::string sql = "SELECT count(*) FROM " + table;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

}  // namespace sluice::sqlite_test
