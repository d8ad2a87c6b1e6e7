// The memory plugin's hash table: key hash -> slot, at most two cache lines per lookup, both
// known from the key alone.
//
// Why not boost::unordered_flat_map (which the store used before): a lookup there reads a
// group's metadata bytes, then the element they point to, in another cache line. With a
// million keys both are usually DRAM misses, and the second cannot start before the first
// returns, so a lookup costs two memory latencies. Nor can a caller prefetch a key's element
// before the lookup: only the table knows where it is.
//
// Layout: an array of 64-byte buckets, each aligned on a cache line:
//
//     | used (4) | unused (4) | entry 0: KeyHash (8) + Slot (20) | entry 1: KeyHash + Slot |
//
// Every key has two candidate buckets, both functions of its hash alone (two multiply-high
// reductions, so bucket counts need not be powers of two; the low 32 bits also pick the
// store's shard). A key lives in one of its two (bucketized cuckoo hashing): a lookup reads
// those two lines and nothing else, and prefetch(hash) can start loading both before the lookup
// without reading the table. Insertion puts a key in a free entry of either bucket; when both
// are full it evicts an entry to that entry's other bucket, and so on (a random walk of at most
// kMaxKicks moves). A table rarely fails to place a key below 87% full; it is kept under 80%
// and grows when a walk does fail. Erasing clears a bit: there are no tombstones, and probe
// lengths cannot degrade with churn. `used` has one bit per entry: any 64-bit value, 0
// included, is a valid key hash.
//
// Size: the table grows by half when more than 80% of its entries are used, so it is between
// 53% and 80% full (40 to 60 bytes per key), and rebuilds to fit when under 1/8 full. Blocks
// come from PageAllocator, so a rebuild returns the old block's memory to the system.
//
// Not thread-safe, except prefetch(): the store guards each table with its shard's lock.
#pragma once

#include <algorithm>
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
    const uint64_t want = bits(key);
    if (Entry* e = match(buckets_[first(key, count_)], want)) return e;
    return match(buckets_[second(key, count_)], want);
  }

  // Adds a key that is not in the table, with a zeroed slot. May move other entries to their
  // other bucket, or rebuild the table (which moves every entry): pointers to entries do not
  // survive an insert. Throws std::bad_alloc when it cannot grow.
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

  // Brings the key's two buckets towards the cache. Safe without the lock that guards the
  // table, concurrently with anything: it reads only the published (block, count) pair, and a
  // pair torn by a concurrent rebuild merely aims the prefetch at a wrong address, which a CPU
  // prefetch never faults on.
  void prefetch(KeyHash key) const {
    const Bucket* block = published_block_.load(std::memory_order_relaxed);
    const std::size_t count = published_count_.load(std::memory_order_relaxed);
    __builtin_prefetch(block + first(key, count));
    __builtin_prefetch(block + second(key, count));
  }

  // For tests: an empty string when every invariant holds, else the first one broken (each
  // entry in one of its two buckets and found there, no key twice, the size, the load).
  std::string check_invariants() const;

 private:
  struct alignas(64) Bucket {
    uint32_t used;  // bit i: entries[i] holds a key
    uint32_t unused;
    Entry entries[kEntriesPerBucket];
  };
  static_assert(sizeof(Bucket) == 64);
  friend struct BucketTableTestAccess;

  static constexpr std::size_t kMinBuckets = 8;
  static constexpr unsigned kMaxKicks = 500;
  static constexpr unsigned kMaxLoadPercent = 80;
  // Below this a table is not worth rebuilding to shrink.
  static constexpr std::size_t kShrinkMinBuckets = 256;

  static uint64_t bits(KeyHash key) {
    uint64_t v;
    std::memcpy(&v, &key, sizeof v);
    return v;
  }
  // The two candidate buckets: the high half reduced to the count, and a remix of the whole
  // hash (every bit of the key moves it) reduced the same way.
  static std::size_t first(KeyHash key, std::size_t count) {
    return static_cast<std::size_t>((uint64_t{key.hi} * count) >> 32);
  }
  static std::size_t second(KeyHash key, std::size_t count) {
    uint64_t x = bits(key);
    x ^= x >> 32;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 32;
    return static_cast<std::size_t>(((x & 0xffffffffu) * count) >> 32);
  }
  // The entry of `bucket` holding `want`, or null; both entries are compared into one mask,
  // without a branch each (which of the two holds a key is a coin toss).
  static Entry* match(Bucket& bucket, uint64_t want) {
    const unsigned hit = (unsigned{bits(bucket.entries[1].key) == want} << 1 |
                          unsigned{bits(bucket.entries[0].key) == want}) &
                         bucket.used;
    return hit != 0 ? &bucket.entries[hit >> 1] : nullptr;  // a key is in one entry at most
  }
  bool owns_block() const { return buckets_ != &empty_bucket_; }
  // Moves every entry (and `extra`, an entry not in the table, when not null) into a new block
  // of at least `count` buckets, larger if a key cannot be placed, and frees the old one.
  void rebuild(std::size_t count, const Entry* extra = nullptr);
  // Puts `e` into its buckets, moving others along (see the top of this file). false when
  // the walk ran out of moves: `e` then holds an entry that is no longer in the table.
  bool place(Entry& e);
  std::size_t grown() const { return std::max(kMinBuckets, count_ + count_ / 2); }

  // An empty table is one shared, never written bucket, so that find() needs no test for it.
  static Bucket empty_bucket_;

  Bucket* buckets_ = &empty_bucket_;
  std::size_t count_ = 1;
  std::size_t size_ = 0;
  std::size_t max_size_ = 0;               // grow beyond this
  uint64_t walk_ = 0x2545f4914f6cdd1dull;  // xorshift state: which entry a walk evicts
  // buckets_ and count_ again, for prefetch(); stored on every rebuild.
  std::atomic<const Bucket*> published_block_{&empty_bucket_};
  std::atomic<std::size_t> published_count_{1};
};

}  // namespace sluice::memory_plugin
