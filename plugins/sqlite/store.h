// One open SQLite plugin instance: the authoritative state in a sharded in-memory map, and a
// writer thread that moves changes to the file (write-behind or group commit) as one journal
// row per cycle, folds the journal into the per-key table now and then, expires idle keys in
// small batches and reconnects with backoff after a failure.
#pragma once

#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <memory>
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
  // Bytes kept inside the map's slot up to N of them, so that a decision's lookup touches the
  // slot alone instead of one more heap block each for the key and the state.
  template <size_t N>
  class InlineBytes {
   public:
    InlineBytes() = default;
    explicit InlineBytes(std::string_view s) { assign(s); }
    InlineBytes(const InlineBytes& o) { assign(o); }
    InlineBytes& operator=(const InlineBytes& o) {
      if (this != &o) assign(o);
      return *this;
    }
    InlineBytes(InlineBytes&& o) noexcept
        : size_(o.size_), capacity_(o.capacity_), heap_(std::move(o.heap_)) {
      std::memcpy(inline_, o.inline_, N);
      o.size_ = o.capacity_ = 0;
    }
    InlineBytes& operator=(InlineBytes&& o) noexcept {
      size_ = o.size_;
      capacity_ = o.capacity_;
      heap_ = std::move(o.heap_);
      std::memcpy(inline_, o.inline_, N);
      o.size_ = o.capacity_ = 0;
      return *this;
    }
    void assign(std::string_view s) {
      char* to = inline_;
      if (s.size() > N) {
        if (s.size() > capacity_) {
          heap_ = std::make_unique<char[]>(s.size());
          capacity_ = s.size();
        }
        to = heap_.get();
      }
      if (!s.empty()) std::memmove(to, s.data(), s.size());
      size_ = s.size();
    }
    const char* data() const { return size_ <= N ? inline_ : heap_.get(); }
    size_t size() const { return size_; }
    operator std::string_view() const {
      return {data(), size_};
    }  // NOLINT(google-explicit-constructor)

   private:
    size_t size_ = 0;
    size_t capacity_ = 0;  // of heap_, used above N
    std::unique_ptr<char[]> heap_;
    char inline_[N] = {};
  };
  // Engine keys are "{resource:subject}rule"; states 16 to 32 bytes for most algorithms.
  using Key = InlineBytes<48>;
  using State = InlineBytes<32>;

  struct Entry {
    State state;
    int64_t expires_at_ms = 0;
    // Where this key's put record sits in its shard's journal buffer, valid while
    // journal_gen equals the shard's: a key decided again before the writer's next turn
    // rewrites that record instead of appending another.
    uint32_t journal_gen = 0;
    uint32_t journal_offset = 0;
    bool unfolded = false;  // changed since its shard was last folded into the table
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
    // All guarded by mu.
    boost::unordered_flat_map<Key, Entry, StringHash, StringEq> map;
    std::string journal;              // records of the changes since the writer last took them
    size_t journal_records = 0;       // how many records `journal` holds
    uint32_t journal_gen = 1;         // bumped (never to 0) each time the writer takes `journal`
    std::vector<std::string> erased;  // keys erased since this shard was last folded
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
  static void record_put(Shard& shard, std::string_view key, Entry& entry);
  static void record_erase(Shard& shard, std::string_view key);

  void writer_loop();
  // One writer cycle: reconnect if needed, expire a batch, append what changed to the journal
  // and take the fold a step further. `final` folds the whole journal (the last cycle).
  Error cycle(bool force_retry, bool final);
  Error connect();
  // Moves every shard's journal records to the end of journal_blob_.
  void take_journal();
  Error write_journal();
  // Folds the next shards of the current round into the table, starting a round when due.
  Error fold_step(bool final);
  // Writes the whole in-memory table in place of the file's content.
  Error resync();
  int64_t pending_changes() const;
  void expire_some();
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
  // Writer thread only: the journal and its fold.
  std::string journal_blob_;  // the next journal row being assembled
  size_t journal_blob_records_ = 0;
  int64_t last_journal_id_ = 0;   // id of the newest journal row in the file
  bool resync_ = false;           // the file must be rewritten from memory (see resync())
  bool folding_ = false;          // a fold round is under way
  size_t fold_cursor_ = 0;        // the shard the round folds next
  int64_t fold_upto_ = 0;         // the round drops the journal rows up to this id
  int64_t fold_round_bytes_ = 0;  // journal bytes the round folds
  std::chrono::steady_clock::time_point next_fold_{};

  Shard shards_[kShards];

  std::atomic<bool> healthy_{false};
  std::atomic<int64_t> latest_now_ms_{0};  // now_ms of the latest batch; drives expiry
  std::atomic<int64_t> keys_{0};
  std::atomic<int64_t> last_write_ms_{0};  // how long the last write of changes took
  std::atomic<uint64_t> commits_{0};
  std::atomic<uint64_t> rows_written_{0};
  std::atomic<int64_t> unwritten_records_{0};  // taken from the shards, not yet in the file
  std::atomic<int64_t> journal_bytes_{0};      // journal rows in the file not yet folded
  std::atomic<uint64_t> folds_{0};
  std::atomic<uint64_t> folded_rows_{0};
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
