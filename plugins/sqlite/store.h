// One open SQLite plugin instance: the authoritative state in a sharded in-memory map, and a
// writer thread that moves changes to the file (write-behind or group commit), expires idle
// keys in small batches and reconnects with backoff after a failure.
#pragma once

#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config.h"
#include "database.h"
#include "sluice/storage_plugin.h"

namespace sluice::sqlite_plugin {

class Store {
 public:
  Store(const sluice_host_api* host, Config config);
  ~Store();  // flushes, stops the writer, completes what is pending
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Opens and loads the file and starts the writer. A file that cannot be used now is not an
  // error: it is logged, batches fail with SLUICE_ERR_UNAVAILABLE and the writer retries.
  void start();

  // Thread-safe; see sluice_storage_plugin::submit.
  void submit(const sluice_batch& batch, sluice_completion_fn done, void* user_data);
  // Thread-safe. Waits for one full writer cycle that began after the call.
  sluice_status flush(int64_t timeout_ms, std::string& error);
  std::string stats_json() const;

 private:
  struct Entry {
    std::string state;
    int64_t expires_at_ms = 0;
    bool dirty = false;  // changed since the writer last took it
  };
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct StringEq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  };
  struct alignas(64) Shard {
    mutable std::mutex mu;
    boost::unordered_flat_map<std::string, Entry, StringHash, StringEq> map;  // guarded by mu
    // Keys changed since the writer's last snapshot; a key absent from `map` is an erase.
    std::vector<std::string> changed;  // guarded by mu
  };
  struct Pending {
    sluice_completion_fn done;
    void* user_data;
  };
  static constexpr size_t kShards = 64;

  static size_t shard_of(std::string_view key) { return StringHash{}(key) % kShards; }
  void apply_batch(const sluice_batch& batch);
  void apply_item(Shard& shard, const sluice_item& item, int64_t now_ms, bool commit,
                  sluice_item_result& result);
  void mark_changed(Shard& shard, std::string_view key, Entry* entry);

  void writer_loop();
  // One writer cycle: reconnect if needed, expire a batch, write what changed.
  Error cycle(bool force_retry);
  Error connect();
  std::vector<Row> take_changes();
  void give_back(const std::vector<Row>& rows);
  void mark_all_changed();
  int64_t pending_changes() const;
  Error expire_some();
  void record_failure(const std::string& sentence);
  void record_success();
  bool unavailable(std::string& message) const;
  void log(int level, const std::string& message) const;

  const sluice_host_api* host_;
  const Config config_;
  Database db_;               // writer thread only (and start() before the writer exists)
  bool loaded_ = false;       // writer thread only: the file's rows are in the map
  size_t expiry_cursor_ = 0;  // writer thread only: the shard the sweep looks at next
  std::chrono::steady_clock::time_point next_expiry_{};       // writer thread only
  std::chrono::steady_clock::time_point next_lag_warning_{};  // writer thread only

  Shard shards_[kShards];

  std::atomic<bool> healthy_{false};
  std::atomic<int64_t> latest_now_ms_{0};  // now_ms of the latest batch; drives expiry
  std::atomic<int64_t> keys_{0};
  std::atomic<int64_t> last_write_ms_{0};  // how long the last write of changes took
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> rows_written_{0};
  std::atomic<uint64_t> write_errors_{0};
  std::atomic<uint64_t> expired_{0};
  std::atomic<uint64_t> rejected_{0};
  std::atomic<int64_t> db_size_bytes_{-1};

  mutable std::mutex mu_;  // guards everything below
  std::condition_variable wake_;
  std::condition_variable flushed_;
  std::vector<Pending> pending_;  // commit mode: decided, waiting for their commit
  bool stop_ = false;
  uint64_t flush_requested_ = 0;
  uint64_t flush_done_ = 0;
  Error flush_error_;
  std::string last_error_;
  std::chrono::milliseconds backoff_{0};
  std::chrono::steady_clock::time_point next_retry_{};

  std::thread writer_;
};

}  // namespace sluice::sqlite_plugin
