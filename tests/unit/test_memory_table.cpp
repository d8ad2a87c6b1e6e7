// The memory plugin's bucket table (plugins/memory/bucket_table.h) against std::unordered_map,
// with the collisions that random hashes rarely produce forced by crafted key hashes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <unordered_map>
#include <vector>

#include "bucket_table.h"

namespace sluice::memory_plugin {

// Reaches the buckets, to break the table on purpose.
struct BucketTableTestAccess {
  static uint32_t& used(BucketTable& t, std::size_t b) { return t.buckets_[b].used; }
  static Entry& entry(BucketTable& t, std::size_t b, unsigned i) {
    return t.buckets_[b].entries[i];
  }
  static std::size_t first(KeyHash k, std::size_t count) { return BucketTable::first(k, count); }
  static std::size_t second(KeyHash k, std::size_t count) { return BucketTable::second(k, count); }
};

namespace {

uint64_t value(KeyHash k) { return (uint64_t{k.hi} << 32) | k.lo; }
KeyHash key(uint64_t v) { return {static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)}; }

// The first bucket is taken from the high 32 bits: keys sharing them share it in a table of
// any size (a high half of all ones: the last bucket).
KeyHash colliding(uint32_t home_class, uint32_t lo) {
  constexpr uint32_t kHomes[] = {0, 0x80000000u, 0xffffffffu};
  return {lo, kHomes[home_class % 3]};
}

// In a table of 8 buckets (the smallest), a key with this high half has bucket b first.
KeyHash in_bucket(uint32_t b, uint32_t lo) { return {lo, b << 29}; }

Slot slot_for(uint64_t v) {
  Slot s{};
  s.meta = static_cast<uint32_t>(v * 2654435761u) | 1u;
  std::memcpy(s.bytes, &v, sizeof v);
  return s;
}

bool same(const Slot& a, const Slot& b) {
  return a.meta == b.meta && std::memcmp(a.bytes, b.bytes, sizeof a.bytes) == 0;
}

class Model {
 public:
  // Every key of the reference is found with its slot, and the sizes agree.
  void expect_matches(BucketTable& t) const {
    ASSERT_EQ(t.size(), ref_.size());
    for (const auto& [v, s] : ref_) {
      const Entry* e = t.find(key(v));
      ASSERT_NE(e, nullptr) << v;
      ASSERT_TRUE(same(e->slot, s)) << v;
    }
  }

  // One random step: insert, look up or erase a key drawn by `draw`.
  template <typename Draw>
  void step(BucketTable& t, std::mt19937_64& rng, double insert_share, Draw draw) {
    const uint64_t v = value(draw(rng));
    const auto it = ref_.find(v);
    Entry* e = t.find(key(v));
    ASSERT_EQ(e != nullptr, it != ref_.end()) << v;
    if (it == ref_.end()) {
      if (std::uniform_real_distribution<>(0, 1)(rng) < insert_share) {
        Entry* inserted = t.insert(key(v));
        ASSERT_EQ(inserted->key, key(v));
        inserted->slot = slot_for(v);
        ref_.emplace(v, inserted->slot);
      }
      return;
    }
    ASSERT_TRUE(same(e->slot, it->second));
    if (std::uniform_real_distribution<>(0, 1)(rng) >= insert_share) {
      t.erase(e);
      ref_.erase(it);
    }
  }

  // Erases a random existing key (so that shrinking phases make progress).
  void erase_some(BucketTable& t, std::mt19937_64& rng) {
    if (ref_.empty()) return;
    auto it = ref_.begin();
    std::advance(it, std::uniform_int_distribution<std::size_t>(
                         0, std::min<std::size_t>(ref_.size() - 1, 16))(rng));
    Entry* e = t.find(key(it->first));
    ASSERT_NE(e, nullptr);
    t.erase(e);
    ref_.erase(it);
  }

  std::size_t size() const { return ref_.size(); }

 private:
  std::unordered_map<uint64_t, Slot> ref_;
};

#define EXPECT_INVARIANTS(t) EXPECT_EQ((t).check_invariants(), "")

TEST(MemoryTable, EmptyTableFindsNothingAndTakesNoMemory) {
  BucketTable t;
  EXPECT_EQ(t.find(key(0)), nullptr);
  EXPECT_EQ(t.find(key(~uint64_t{0})), nullptr);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.memory_bytes(), 0u);
  t.prefetch(key(42));
  EXPECT_INVARIANTS(t);
}

TEST(MemoryTable, ZeroIsAKeyLikeAnyOther) {
  BucketTable t;
  Entry* e = t.insert(key(0));
  e->slot = slot_for(0);
  EXPECT_EQ(t.find(key(0)), e);
  EXPECT_EQ(t.find(key(1)), nullptr);
  EXPECT_INVARIANTS(t);
  t.erase(e);
  EXPECT_EQ(t.find(key(0)), nullptr);
  EXPECT_EQ(t.size(), 0u);
  EXPECT_INVARIANTS(t);
}

// Five keys whose first bucket is the same (it holds two): the others go to their second
// buckets, moving keys there along when those are full, and all stay found.
TEST(MemoryTable, KeysSharingABucketSpillIntoTheirSecondOnes) {
  BucketTable t;
  for (uint32_t i = 0; i < 5; ++i) t.insert(in_bucket(7, i))->slot = slot_for(i);
  ASSERT_EQ(t.bucket_count(), 8u);
  EXPECT_INVARIANTS(t);
  for (uint32_t i = 0; i < 5; ++i) {
    const Entry* e = t.find(in_bucket(7, i));
    ASSERT_NE(e, nullptr) << i;
    EXPECT_TRUE(same(e->slot, slot_for(i))) << i;
  }
  t.erase(t.find(in_bucket(7, 0)));
  EXPECT_INVARIANTS(t);
  EXPECT_EQ(t.find(in_bucket(7, 0)), nullptr);
  EXPECT_NE(t.find(in_bucket(7, 4)), nullptr);
}

// A small table filled to its limit over and over moves keys between their two buckets now
// and then (asserted): whatever moved is still found with its own slot.
TEST(MemoryTable, KeysMovedByInsertionsKeepTheirSlots) {
  BucketTable t;
  Model m;
  std::mt19937_64 rng(7);
  int moved = 0;
  for (int i = 0; i < 20000; ++i) {
    // Stay at most 12 keys, the smallest table's growth limit.
    if (m.size() >= 12) {
      m.erase_some(t, rng);
    } else {
      std::vector<std::pair<uint64_t, const Entry*>> before;
      for (std::size_t b = 0; b < t.bucket_count(); ++b)
        for (unsigned j = 0; j < BucketTable::kEntriesPerBucket; ++j)
          if (const Entry* e = t.entry(b, j)) before.emplace_back(value(e->key), e);
      m.step(t, rng, 0.6, [](std::mt19937_64& r) { return key(r() % 64 * 0x9e3779b97f4a7c15ull); });
      for (const auto& [v, at] : before) {
        const Entry* now = t.find(key(v));
        if (now != nullptr && now != at) {
          ++moved;
          break;
        }
      }
    }
    ASSERT_EQ(t.check_invariants(), "") << "step " << i;
  }
  EXPECT_GT(moved, 20);
  m.expect_matches(t);
}

// Long random sequences with growth and shrinking, for random and heavily colliding keys.
TEST(MemoryTable, RandomOperationsMatchAReference) {
  struct Case {
    const char* name;
    double colliding_share;
    std::size_t peak;
  };
  for (const Case c :
       {Case{"random", 0.0, 30000}, Case{"mixed", 0.1, 4000}, Case{"colliding", 1.0, 600}}) {
    SCOPED_TRACE(c.name);
    BucketTable t;
    Model m;
    std::mt19937_64 rng(42);
    // Draws from a bounded universe so that lookups and erasures hit existing keys.
    const uint64_t universe = c.peak * 2;
    auto draw = [&](std::mt19937_64& r) {
      const uint64_t n = r() % universe;
      if (n == 0) return key(0);
      if (std::uniform_real_distribution<>(0, 1)(r) < c.colliding_share) {
        return colliding(static_cast<uint32_t>(n), static_cast<uint32_t>(n));
      }
      return key(n * 0x9e3779b97f4a7c15ull);  // spread over all 64 bits
    };
    std::size_t largest = 0, shrinks = 0;
    for (int round = 0; round < 3; ++round) {
      // Grow towards the peak, then churn, then empty the table down to a few keys.
      while (m.size() < c.peak) {
        for (int i = 0; i < 64; ++i) m.step(t, rng, 0.8, draw);
        ASSERT_EQ(t.check_invariants(), "");
      }
      largest = std::max(largest, t.bucket_count());
      for (std::size_t i = 0; i < c.peak * 4; ++i) m.step(t, rng, 0.5, draw);
      ASSERT_EQ(t.check_invariants(), "");
      while (m.size() > 10) {
        for (int i = 0; i < 64; ++i) m.erase_some(t, rng);
        if (t.shrink_if_sparse()) ++shrinks;
        ASSERT_EQ(t.check_invariants(), "");
      }
      m.expect_matches(t);
    }
    EXPECT_GE(largest * BucketTable::kEntriesPerBucket, c.peak);
    if (largest >= 256) {
      EXPECT_GT(shrinks, 0u);
      EXPECT_LT(t.bucket_count(), largest / 4);
    }
  }
}

// Between 53% and 80% full once grown: at most 60 bytes of table per key.
TEST(MemoryTable, LoadStaysWithinBounds) {
  BucketTable t;
  for (uint64_t v = 1; v <= 200000; ++v) {
    t.insert(key(v * 0x9e3779b97f4a7c15ull));
    if (v >= 1000) {
      const double load = static_cast<double>(t.size()) /
                          static_cast<double>(t.bucket_count() * BucketTable::kEntriesPerBucket);
      ASSERT_GT(load, 0.52) << v;
      ASSERT_LE(load, 0.80) << v;
      ASSERT_EQ(t.memory_bytes(), t.bucket_count() * 64);
    }
  }
  EXPECT_INVARIANTS(t);
}

// The checker is what the tests above rely on: it must catch a key outside its two buckets
// (where no lookup looks), a key stored twice, and a wrong size.
TEST(MemoryTable, InvariantCheckCatchesMisplacedKeys) {
  BucketTable t;
  const KeyHash k = in_bucket(2, 1);
  t.insert(k)->slot = slot_for(1);
  ASSERT_EQ(t.bucket_count(), 8u);
  EXPECT_INVARIANTS(t);
  // A bucket that is neither of k's two.
  std::size_t elsewhere = 0;
  while (elsewhere == BucketTableTestAccess::first(k, 8) ||
         elsewhere == BucketTableTestAccess::second(k, 8))
    ++elsewhere;
  Entry* e = t.find(k);
  const Entry saved = *e;
  const auto at = static_cast<std::size_t>(
      (reinterpret_cast<const unsigned char*>(e) -
       reinterpret_cast<const unsigned char*>(&BucketTableTestAccess::entry(t, 0, 0))) /
      64);
  const auto at_i = static_cast<unsigned>(e == t.entry(at, 1));

  // Moved where no lookup looks (an insertion that forgot to follow the key's buckets).
  BucketTableTestAccess::entry(t, elsewhere, 0) = saved;
  BucketTableTestAccess::used(t, elsewhere) |= 1u;
  BucketTableTestAccess::used(t, at) &= ~(1u << at_i);
  EXPECT_EQ(t.find(k), nullptr);
  EXPECT_NE(t.check_invariants().find("neither of its buckets"), std::string::npos)
      << t.check_invariants();
  // Lost (a walk that dropped the key it evicted).
  BucketTableTestAccess::used(t, elsewhere) &= ~1u;
  EXPECT_NE(t.check_invariants().find("size()"), std::string::npos) << t.check_invariants();
  BucketTableTestAccess::used(t, at) |= 1u << at_i;
  EXPECT_INVARIANTS(t);
  t.erase(t.find(k));

  // Stored twice, in both of its buckets (an eviction that copied instead of moving).
  t.insert(k)->slot = slot_for(1);
  EXPECT_INVARIANTS(t);
  const std::size_t other = t.find(k) == t.entry(BucketTableTestAccess::first(k, 8), 0) ||
                                    t.find(k) == t.entry(BucketTableTestAccess::first(k, 8), 1)
                                ? BucketTableTestAccess::second(k, 8)
                                : BucketTableTestAccess::first(k, 8);
  ASSERT_NE(BucketTableTestAccess::first(k, 8), BucketTableTestAccess::second(k, 8));
  const unsigned free_i = (BucketTableTestAccess::used(t, other) & 1u) == 0 ? 0 : 1;
  BucketTableTestAccess::entry(t, other, free_i) = saved;
  BucketTableTestAccess::used(t, other) |= 1u << free_i;
  EXPECT_NE(t.check_invariants(), "");
}

}  // namespace
}  // namespace sluice::memory_plugin
