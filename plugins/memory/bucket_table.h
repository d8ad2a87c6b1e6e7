// The memory plugin's hash table: key hash -> slot, one cache line per lookup.
//
// Why not boost::unordered_flat_map (which the store used before): a lookup there reads a
// group's metadata bytes, then the element they point to, in another cache line. With a
// million keys both are usually DRAM misses, and the second cannot start before the first
// returns, so a lookup costs two memory latencies. Nor can a caller prefetch a key's element
// before the lookup: only the table knows where it is.
//
// Layout: an array of 64-byte buckets, each aligned on a cache line:
//
//     | passed (4) | used (4) | entry 0: KeyHash (8) + Slot (20) | entry 1: KeyHash + Slot |
//
// A key's home bucket is a function of its hash alone (the high 32 bits, reduced to the bucket
// count with a multiply-high, so counts need not be powers of two; the low 32 bits pick the
// store's shard and must not be reused here). Entries hold the whole key hash, so a lookup
// that finds its key in the home bucket has touched one cache line, and prefetch(hash) can
// bring that line in before the lookup without reading anything from the table.
//
// Collisions: a key whose home bucket is full goes to the next bucket with a free entry
// (linear probing, wrapping at the end). Each bucket's `passed` counts the stored keys whose
// home is at or before it and which live after it, i.e. the keys a lookup must walk past it to
// find. A lookup checks its home bucket and walks on only while `passed` is non-zero; insert
// increments the counters of the buckets it walks past, erase decrements the same ones. The
// counters are exact, so there are no tombstones and probe lengths do not degrade with churn.
// `used` has one bit per entry: any 64-bit value, 0 included, is a valid key hash.
//
// Size: the table grows by half when more than 85% of its entries are used, so it is between
// 57% and 85% full (32 to 56 bytes per key), and rebuilds to fit when under 1/8 full. Blocks
// come from PageAllocator, so a rebuild returns the old block's memory to the system.
//
// Not thread-safe, except prefetch(): the store guards each table with its shard's lock.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace sluice::memory_plugin {

// A 64-bit key hash split in two so that the slot needs only 4-byte alignment (28, not 32
// bytes per entry, which is what lets two entries and a header share a cache line).
struct KeyHash {
  uint32_t lo;
  uint32_t hi;
  bool operator==(const KeyHash&) const = default;
};

constexpr std::size_t kInlineCapacity = 16;

// A key's state, as the store encodes it (see memory_store.cpp); opaque to the table.
struct Slot {
  uint32_t meta;
  unsigned char bytes[kInlineCapacity];
};

struct Entry {
  KeyHash key;
  Slot slot;
};
static_assert(sizeof(Entry) == 28 && alignof(Entry) == 4, "a tracked key must stay 28 bytes");
static_assert(sizeof(KeyHash) == 8);

class BucketTable {
 public:
  static constexpr unsigned kEntriesPerBucket = 2;

  BucketTable() = default;
  ~BucketTable();
  BucketTable(const BucketTable&) = delete;
  BucketTable& operator=(const BucketTable&) = delete;

  // The key's entry, or null.
  Entry* find(KeyHash key) {
    std::size_t b = home(key, count_);
    // Erasures leave holes behind keys that walked past them, so every bucket may have a
    // non-zero `passed` at once: a walk round the whole table ends the search.
    const uint64_t want = bits(key);
    for (std::size_t left = count_;; b = next(b)) {
      Bucket& bucket = buckets_[b];
      // Both entries are compared into one mask, without a branch each: which of the two
      // holds the key is a coin toss that a branch predictor would lose half the time.
      const unsigned hit = (unsigned{bits(bucket.entries[1].key) == want} << 1 |
                            unsigned{bits(bucket.entries[0].key) == want}) &
                           bucket.used;
      if (hit != 0) return &bucket.entries[hit >> 1];  // a key is in one entry at most
      if (bucket.passed == 0 || --left == 0) return nullptr;
    }
  }

  // Adds a key that is not in the table, with a zeroed slot; may rebuild the table (which
  // moves every entry). Throws std::bad_alloc when it cannot grow.
  Entry* insert(KeyHash key);

  // Removes the entry; no other entry moves.
  void erase(Entry* entry);

  // Rebuilds the table to fit its keys if it is large and less than 1/8 full, so that the
  // memory of keys gone goes back to the system. Returns whether it did (entries moved).
  bool shrink_if_sparse();

  // Positional access, for scans that resume where they stopped: the entry `i` of bucket
  // `b` (b < bucket_count()), or null when that entry is free.
  Entry* entry(std::size_t b, unsigned i) {
    Bucket& bucket = buckets_[b];
    return (bucket.used >> i & 1u) != 0 ? &bucket.entries[i] : nullptr;
  }
  std::size_t bucket_count() const { return count_; }
  std::size_t size() const { return size_; }
  std::size_t memory_bytes() const { return owns_block() ? count_ * sizeof(Bucket) : 0; }

  // Brings the key's home bucket towards the cache. Safe without the lock that guards the
  // table, concurrently with anything: it reads only the published (block, count) pair, and a
  // pair torn by a concurrent rebuild merely aims the prefetch at a wrong address, which a CPU
  // prefetch never faults on.
  void prefetch(KeyHash key) const {
    const Bucket* block = published_block_.load(std::memory_order_relaxed);
    const std::size_t count = published_count_.load(std::memory_order_relaxed);
    __builtin_prefetch(block + home(key, count));
  }

  // For tests: an empty string when every invariant holds, else the first one broken (each
  // entry reachable from its home, every `passed` equal to its recomputed value, the size).
  std::string check_invariants() const;

 private:
  struct alignas(64) Bucket {
    uint32_t passed;  // keys whose home is at or before this bucket and which live after it
    uint32_t used;    // bit i: entries[i] holds a key
    Entry entries[kEntriesPerBucket];
  };
  static_assert(sizeof(Bucket) == 64);
  friend struct BucketTableTestAccess;

  static constexpr std::size_t kMinBuckets = 8;
  // Below this a table is not worth rebuilding to shrink.
  static constexpr std::size_t kShrinkMinBuckets = 256;

  static uint64_t bits(KeyHash key) {
    uint64_t v;
    std::memcpy(&v, &key, sizeof v);
    return v;
  }
  static std::size_t home(KeyHash key, std::size_t count) {
    return static_cast<std::size_t>((uint64_t{key.hi} * count) >> 32);
  }
  std::size_t next(std::size_t b) const { return b + 1 == count_ ? 0 : b + 1; }
  bool owns_block() const { return buckets_ != &empty_bucket_; }
  // Moves every entry into a new block of `count` buckets and frees the old one.
  void rebuild(std::size_t count);
  // insert() without the growth check.
  Entry* place(KeyHash key);

  // An empty table is one shared, never written bucket, so that find() needs no test for it.
  static Bucket empty_bucket_;

  Bucket* buckets_ = &empty_bucket_;
  std::size_t count_ = 1;
  std::size_t size_ = 0;
  std::size_t max_size_ = 0;  // grow beyond this
  // buckets_ and count_ again, for prefetch(); stored on every rebuild.
  std::atomic<const Bucket*> published_block_{&empty_bucket_};
  std::atomic<std::size_t> published_count_{1};
};

}  // namespace sluice::memory_plugin
