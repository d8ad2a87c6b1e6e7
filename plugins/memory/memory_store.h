// The memory plugin's store: opaque state blobs by key, in sharded open-addressing maps, with
// the host's transitions applied under one lock per shard.
//
// Memory layout (the point of this file): a tracked key costs one 28-byte entry (key hash and
// slot) in a BucketTable (bucket_table.h), two entries to a cache line, and the table's free
// entries: 32 to 56 bytes per key.
//  - The key itself is not stored, only a 64-bit seeded hash of it. Two keys collide (and share
//    state) with probability about n^2 / 2^65: 3e-8 for a million keys, 3e-6 for ten million.
//  - States up to 16 bytes (fixed_window, token_bucket, gcra) live inside the slot; larger ones
//    (sliding_window_counter, sliding_window logs, concurrency leases) in a malloc block of their
//    own, described by the slot's 16 bytes (length, capacity, pointer).
//  - The expiry is 27 bits of 2-second units since the store's epoch (about 8.5 years of
//    uptime). Later expiries saturate to "never", which is still correct — the transitions
//    treat stale state as stale — only reclamation then depends on max_keys.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "bucket_table.h"
#include "record_table.h"
#include "sluice/storage_plugin.h"

namespace sluice::memory_plugin {

struct StoreOptions {
  uint32_t shards = 16;      // the plugin opens with 4 per hardware thread, at least 16
  uint64_t max_keys = 0;     // 0 = no cap
  uint32_t sweep_slots = 1;  // slots examined for expiry per batch, in its shard and in another
};

// A key's Slot (bucket_table.h) holds its state: `meta` bits 0..4 are the state length 1..16
// when inline, kOutOfLine when `bytes` describes a block; bits 5..31 the expiry (see above).

class Store {
 public:
  Store(const sluice_host_api* host, const StoreOptions& options, uint64_t seed);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Runs one batch to completion. Thread-safe. Returns OK or an error with a sentence in
  // `error` (batch contents are then unspecified for errors found after validation).
  sluice_status submit(const sluice_batch& batch, std::string& error);

  // Brings the table buckets of the batch's keys towards the cache, without taking any lock
  // or changing anything; nothing while the store is small enough to stay in cache (see
  // kPrefetchMinKeys). Items submit would refuse are skipped.
  void prefetch(const sluice_batch& batch) const;

  struct Counters {
    uint64_t keys, evictions, expired, shards, table_bytes;
  };
  Counters counters() const;

  // Records (ABI 1.4), apart from the keys' table.
  RecordTable& records() { return records_; }

  struct ThreadState;  // per-thread buffers and counters, see memory_store.cpp

 private:
  struct alignas(64) Shard {
    mutable std::mutex mu;
    BucketTable table;       // guarded by mu, except its prefetch()
    std::size_t cursor = 0;  // guarded by mu: the next bucket the sweep looks at
    uint64_t evictions = 0;  // guarded by mu
    uint64_t expired = 0;    // guarded by mu
  };

  // A transition's outcome on a copy of the state, not yet stored.
  struct Applied {
    const unsigned char* buf;
    std::size_t len;       // the new state's length (0 = remove the key)
    std::size_t capacity;  // what buf could hold
    int64_t expires_at_ms;
  };

  struct StateView {
    unsigned char* data;
    std::size_t len;
    bool inline_state;  // data is the slot's 16 bytes
  };

  // Where a key lives: its hash inside the shard, and the shard. Keys that start with a
  // Redis-style hash tag ("{tag}...") are sharded by the tag; `last` remembers the previous
  // tag of a batch so that keys sharing it hash it once.
  struct Tag {
    const unsigned char* bytes = nullptr;
    std::size_t len = 0;
    uint64_t hash = 0;
  };
  struct Place {
    KeyHash hash;
    uint32_t shard;
  };
  Place place(const sluice_item& item, Tag& last) const;
  uint32_t shard_of(uint32_t h) const;
  int64_t epoch_for(int64_t now_ms);

  // The current state of a key (its entry, or null): empty when absent or expired.
  StateView view(Entry* entry, int64_t now_ms) const;
  // What the item would get (commit=0) from the key's entry; nothing changes.
  void evaluate(ThreadState& t, Entry* entry, const sluice_item& item, int64_t now_ms,
                sluice_item_result& result);
  // Applies the item (commit=1) and stores the new state when the transition wrote one.
  void commit(ThreadState& t, Shard& shard, KeyHash key, const sluice_item& item, int64_t now_ms,
              sluice_item_result& result);
  // Stores (or removes) an applied transition's state when the item's outcome changes state.
  void write_back(Shard& shard, Entry* entry, KeyHash key, const sluice_item& item, int64_t now_ms,
                  const sluice_item_result& result, const Applied& a);
  void store_state(Slot& slot, const unsigned char* data, std::size_t len, int64_t expires_at_ms);
  bool validate(const sluice_batch& batch, std::string& error) const;
  void run_one(ThreadState& t, const sluice_item& item, int64_t now_ms, sluice_item_result& result,
               uint32_t own_sweep);
  void run_locked_batch(ThreadState& t, const sluice_batch& batch, int64_t now_ms,
                        uint32_t own_sweep);
  void erase(Shard& shard, Entry* entry);
  void make_room(Shard& shard, int64_t now_ms);
  std::size_t sweep(Shard& shard, int64_t now_ms, uint32_t slots);
  void maybe_sweep_other_shard(uint32_t tick, int64_t now_ms);

  uint32_t encode_expiry(int64_t expires_at_ms) const;
  bool is_expired(uint32_t meta, int64_t now_ms) const;

  const sluice_host_api* host_;
  const StoreOptions options_;
  const uint64_t seed_;
  std::unique_ptr<Shard[]> shards_;
  std::atomic<uint64_t> keys_{0};
  std::atomic<uint32_t> sweep_turn_{0};
  // Set from the first batch's clock (minus a margin for threads whose clock reads lag), so
  // that expiries fit 27 bits and simulated clocks work as well as the wall clock.
  std::atomic<int64_t> epoch_ms_{kNoEpoch};
  static constexpr int64_t kNoEpoch = INT64_MIN;
  RecordTable records_;
};

}  // namespace sluice::memory_plugin
