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
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
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
  // Records (ABI 1.4); thread-safe, see sluice_storage_plugin::record_put. Like batches they
  // complete at once in interval mode and after the writer's next commit in commit mode.
  void record_put(std::string_view key, std::string_view value, int64_t expires_at_ms,
                  int64_t now_ms, sluice_record_fn done, void* user_data);
  void record_get(std::string_view key, int64_t now_ms, sluice_record_fn done, void* user_data);
  void record_delete(std::string_view key, int64_t now_ms, sluice_record_fn done, void* user_data);
  // Thread-safe. Waits for one full writer cycle that began after the call.
  sluice_status flush(int64_t timeout_ms, std::string& error);
  std::string stats_json() const;

 private:
  // A tracked key's slot, kept to 64 bytes so that a decision touches about as much memory as
  // the memory plugin's does: the key's bytes live in a block of their own that only the
  // writer reads (folds, expiry, rewrites); a decision identifies its key by a 128-bit XXH3
  // hash, seeded at random per open. The low 64 bits are the map's key and pick the shard, the
  // high 64 bits (`check`) must match too. Keys whose low halves collide (about n^2 / 2^65 for
  // n keys) get separate slots: the later one moves to the next step of its probe sequence
  // (see probe()). Only keys equal in all 128 bits would share a state, as every pair of keys
  // whose 64-bit hashes collide does in the memory plugin (docs/plugins.md, "Key hashes"):
  // about n^2 / 2^129, 1.5e-27 for a million keys, and nobody can aim for it without the seed.
  // Comparing the key's bytes instead cost a cache miss on the out-of-line key per decision
  // (as much as the slot's own), which is what keeping the key out of the slot is meant to
  // save.
  static constexpr size_t kInlineState = 16;  // fixed_window, token_bucket, gcra
  struct Entry {
    char* key = nullptr;  // malloc'd: uint32_t length, then the key's bytes
    uint64_t check = 0;   // the high 64 bits of the key's hash
    int64_t expires_at_ms = 0;
    // Where this key's put record sits in its shard's journal buffer, valid while
    // journal_gen equals the shard's: a key decided again before the writer's next turn
    // rewrites that record instead of appending another.
    uint32_t journal_gen = 0;
    uint32_t journal_offset = 0;
    uint32_t state_len = 0;
    bool unfolded = false;  // changed since its shard was last folded into the table
    // Up to kInlineState bytes of state; a larger state is a malloc'd block whose pointer
    // and capacity (uint32_t) are stored here.
    unsigned char state[kInlineState] = {};
  };
  struct IdentityHash {
    // The map's keys are already XXH3 hashes; the table still mixes them (not declared
    // avalanching) because the shard index comes from the same hash.
    size_t operator()(uint64_t h) const { return h; }
  };
  // The table's slots start on a cache-line boundary, so that each 64-byte slot is one line
  // (with malloc's 16-byte alignment three in four would straddle two).
  template <typename T>
  struct LineAllocator {
    using value_type = T;
    LineAllocator() = default;
    template <typename U>
    LineAllocator(const LineAllocator<U>&) {}  // NOLINT(google-explicit-constructor)
    T* allocate(size_t n) {
      return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64}));
    }
    void deallocate(T* p, size_t) { ::operator delete (p, std::align_val_t{64}); }
    friend bool operator==(const LineAllocator&, const LineAllocator&) { return true; }
  };
  using Map = boost::unordered_flat_map<uint64_t, Entry, IdentityHash, std::equal_to<uint64_t>,
                                        LineAllocator<std::pair<const uint64_t, Entry>>>;

  struct alignas(64) Shard {
    mutable std::mutex mu;
    // All guarded by mu.
    Map map;
    uint32_t max_probe = 0;           // the furthest probe() step any key of this shard took
    std::string journal;              // records of the changes since the writer last took them
    size_t journal_records = 0;       // how many records `journal` holds
    uint32_t journal_gen = 1;         // bumped (never to 0) each time the writer takes `journal`
    std::vector<std::string> erased;  // keys erased since this shard was last folded
  };
  struct Pending {
    sluice_completion_fn done = nullptr;
    void* user_data = nullptr;
    // A record operation's completion instead of `done`, and the value it hands over.
    sluice_record_fn record_done = nullptr;
    std::optional<std::string> value;
    void complete(sluice_status status, const char* message) const;
  };
  struct StoredRecord {
    std::string value;
    int64_t expires_at_ms = 0;
  };
  static constexpr size_t kShards = 64;

  struct Hash {
    uint64_t lo;  // the map key (step 0 of the probe sequence) and the shard
    uint64_t hi;  // Entry::check
  };
  Hash hash(std::string_view key) const;
  static size_t shard_of(const Hash& h) {
    return static_cast<size_t>(((h.lo >> 32) * kShards) >> 32);
  }
  // The map key of a key whose hash is h at step i of its probe sequence.
  static uint64_t probe(uint64_t h, uint32_t i) { return h + i * 0x9E3779B97F4A7C15ull; }
  static std::string_view key_of(const Entry& e);
  static const unsigned char* state_of(const Entry& e);
  static void set_state(Entry& e, const unsigned char* data, size_t len);
  static void free_entry(Entry& e);
  static Row row_of(const Entry& e);
  // The key's entry, or end().
  static Map::iterator find(Shard& shard, const Hash& h);
  // A new entry for a key find() did not find.
  static Map::iterator insert(Shard& shard, const Hash& h, std::string_view key);
  static void clear(Shard& shard);
  void apply_batch(const sluice_batch& batch);
  void apply_item(Shard& shard, const Hash& h, const sluice_item& item, int64_t now_ms, bool commit,
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
  void expire_records(int64_t now_ms);
  // Completes a record operation now (interval mode) or after the next commit (commit mode).
  void finish_record(sluice_record_fn done, void* user_data, std::optional<std::string> value);
  // Writes the records changed since the last cycle (all of them after a failure).
  Error write_records();
  void record_failure(const std::string& sentence);
  void record_success();
  bool unavailable(std::string& message) const;
  void log(int level, const std::string& message) const;

  const sluice_host_api* host_;
  const Config config_;
  const uint64_t seed_;  // of the key hashes, random per open: nobody can aim for a collision
  // Bits of the map key kept: all of them, except in tests that force collisions through
  // SLUICE_SQLITE_TEST_HASH_BITS (the probe sequence is otherwise next to unreachable).
  uint64_t map_key_mask_ = ~uint64_t{0};
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

  // Records: the truth in memory, like the counters; the changes the writer has not taken yet
  // (a key's new record, or nullopt for an erase).
  mutable std::mutex records_mu_;
  std::unordered_map<std::string, StoredRecord> records_;                        // records_mu_
  std::unordered_map<std::string, std::optional<StoredRecord>> record_changes_;  // records_mu_
  bool records_resync_ = false;  // writer thread only: rewrite the whole records table

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
