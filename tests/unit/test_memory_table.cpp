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

// Reaches the `passed` counters, to break them on purpose.
struct BucketTableTestAccess {
  static uint32_t& passed(BucketTable& t, std::size_t b) { return t.buckets_[b].passed; }
};

namespace {

uint64_t value(KeyHash k) { return (uint64_t{k.hi} << 32) | k.lo; }
KeyHash key(uint64_t v) { return {static_cast<uint32_t>(v), static_cast<uint32_t>(v >> 32)}; }

// The home bucket is taken from the high 32 bits: keys sharing them share a home in a table
// of any size, and a high half of all ones homes in the last bucket (so probes wrap around).
KeyHash colliding(uint32_t home_class, uint32_t lo) {
  constexpr uint32_t kHomes[] = {0, 0x80000000u, 0xffffffffu};
  return {lo, kHomes[home_class % 3]};
}

// In a table of 8 buckets (the smallest), a key with this high half homes in bucket b.
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
    std::advance(it, std::uniform_int_distribution<std::size_t>(0, std::min<std::size_t>(ref_.size() - 1, 16))(rng));
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

// Keys homed in the last bucket overflow into the first ones.
TEST(MemoryTable, ProbesWrapAroundTheEnd) {
  BucketTable t;
  std::vector<Entry*> entries;
  for (uint32_t i = 0; i < 5; ++i) {
    entries.push_back(t.insert(in_bucket(7, i)));
    entries.back()->slot = slot_for(i);
  }
  ASSERT_EQ(t.bucket_count(), 8u);
  EXPECT_NE(t.entry(0, 0), nullptr);  // the third key went round
  EXPECT_INVARIANTS(t);
  for (uint32_t i = 0; i < 5; ++i) EXPECT_EQ(t.find(in_bucket(7, i)), entries[i]);
  t.erase(entries[0]);
  EXPECT_INVARIANTS(t);
  EXPECT_EQ(t.find(in_bucket(7, 4)), entries[4]);
}

// Holes left by erasures may leave every bucket with keys passing it; a lookup of an absent
// key must still end. The churn below reaches that state (asserted) and looks keys up in it.
TEST(MemoryTable, LookupEndsWhenEveryBucketIsPassed) {
  BucketTable t;
  Model m;
  std::mt19937_64 rng(7);
  int all_passed = 0;
  for (int i = 0; i < 20000; ++i) {
    // Stay at most 12 keys, under the smallest table's growth limit (13).
    if (m.size() >= 12) {
      m.erase_some(t, rng);
    } else {
      m.step(t, rng, 0.6, [](std::mt19937_64& r) {
        return in_bucket(static_cast<uint32_t>(r() % 8), static_cast<uint32_t>(r() % 4));
      });
    }
    ASSERT_EQ(t.bucket_count(), 8u);
    bool every = true;
    for (std::size_t b = 0; b < 8; ++b) every = every && BucketTableTestAccess::passed(t, b) != 0;
    if (every) {
      ++all_passed;
      EXPECT_EQ(t.find(in_bucket(3, 1000)), nullptr);
    }
    ASSERT_EQ(t.check_invariants(), "") << "step " << i;
  }
  EXPECT_GT(all_passed, 0);
  m.expect_matches(t);
}

// Long random sequences with growth and shrinking, for random and heavily colliding keys.
TEST(MemoryTable, RandomOperationsMatchAReference) {
  struct Case {
    const char* name;
    double colliding_share;
    std::size_t peak;
  };
  for (const Case c : {Case{"random", 0.0, 30000}, Case{"mixed", 0.1, 4000},
                       Case{"colliding", 1.0, 600}}) {
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

// Between 57% and 85% full once grown: at most 56 bytes of table per key.
TEST(MemoryTable, LoadStaysWithinBounds) {
  BucketTable t;
  for (uint64_t v = 1; v <= 200000; ++v) {
    t.insert(key(v * 0x9e3779b97f4a7c15ull));
    if (v >= 1000) {
      const double load = static_cast<double>(t.size()) /
                          static_cast<double>(t.bucket_count() * BucketTable::kEntriesPerBucket);
      ASSERT_GT(load, 0.56) << v;
      ASSERT_LE(load, 0.85) << v;
      ASSERT_EQ(t.memory_bytes(), t.bucket_count() * 64);
    }
  }
  EXPECT_INVARIANTS(t);
}

// The checker is what the tests above rely on: it must catch broken counters, such as an
// erase that forgot to decrement those its key incremented, and unreachable keys.
TEST(MemoryTable, InvariantCheckCatchesBrokenCounters) {
  BucketTable t;
  std::vector<Entry*> entries;
  for (uint32_t i = 0; i < 6; ++i) entries.push_back(t.insert(in_bucket(2, i)));
  ASSERT_EQ(t.bucket_count(), 8u);
  EXPECT_INVARIANTS(t);
  ASSERT_EQ(BucketTableTestAccess::passed(t, 2), 4u);  // the keys in buckets 3 and 4
  ASSERT_EQ(BucketTableTestAccess::passed(t, 3), 2u);

  // An erase of the key in bucket 4 that forgot the counters of buckets 2 and 3.
  Entry* last = t.find(in_bucket(2, 5));
  t.erase(last);
  ++BucketTableTestAccess::passed(t, 2);
  ++BucketTableTestAccess::passed(t, 3);
  EXPECT_NE(t.check_invariants().find("keys passing it"), std::string::npos)
      << t.check_invariants();
  --BucketTableTestAccess::passed(t, 2);
  --BucketTableTestAccess::passed(t, 3);
  EXPECT_INVARIANTS(t);

  // A key that a lookup would not walk to.
  BucketTableTestAccess::passed(t, 3) = 0;
  EXPECT_NE(t.check_invariants(), "");
  EXPECT_EQ(t.find(in_bucket(2, 4)), nullptr);
}

}  // namespace
}  // namespace sluice::memory_plugin
