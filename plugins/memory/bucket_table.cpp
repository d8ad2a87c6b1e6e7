#include "bucket_table.h"

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "page_allocator.h"

namespace sluice::memory_plugin {

BucketTable::Bucket BucketTable::empty_bucket_{};

BucketTable::~BucketTable() {
  if (owns_block()) PageAllocator<Bucket>().deallocate(buckets_, count_);
}

Entry* BucketTable::insert(KeyHash key) {
  if (size_ >= max_size_) rebuild(grown());
  Entry pending{key, Slot{}};
  // A failed walk leaves some entry (perhaps another key) out of the table: the rebuild
  // takes it along.
  if (!place(pending)) rebuild(grown(), &pending);
  return find(key);
}

bool BucketTable::place(Entry& e) {
  auto free_entry = [this](std::size_t b) -> int {
    const uint32_t used = buckets_[b].used;
    return (used & 1u) == 0 ? 0 : (used & 2u) == 0 ? 1 : -1;
  };
  auto put = [this](std::size_t b, int i, const Entry& entry) {
    buckets_[b].entries[i] = entry;
    buckets_[b].used |= 1u << i;
    ++size_;
  };
  std::size_t b1 = first(e.key, count_), b2 = second(e.key, count_);
  if (const int i = free_entry(b1); i >= 0) return put(b1, i, e), true;
  if (const int i = free_entry(b2); i >= 0) return put(b2, i, e), true;
  // Both full: evict a random entry of one of them to its other bucket, and so on.
  std::size_t b = b1;
  for (unsigned kick = 0; kick < kMaxKicks; ++kick) {
    walk_ ^= walk_ << 13;
    walk_ ^= walk_ >> 7;
    walk_ ^= walk_ << 17;
    if (kick == 0 && (walk_ & 2u) != 0) b = b2;
    std::swap(e, buckets_[b].entries[walk_ & 1u]);
    b1 = first(e.key, count_);
    b2 = second(e.key, count_);
    b = b == b1 ? b2 : b1;
    if (const int i = free_entry(b); i >= 0) return put(b, i, e), true;
  }
  return false;
}

void BucketTable::erase(Entry* entry) {
  // Buckets are cache-line aligned, so the entry's bucket is found from its address.
  const auto offset = static_cast<std::size_t>(reinterpret_cast<const unsigned char*>(entry) -
                                               reinterpret_cast<const unsigned char*>(buckets_));
  Bucket& bucket = buckets_[offset / sizeof(Bucket)];
  bucket.used &= ~(1u << static_cast<unsigned>(entry - bucket.entries));
  --size_;
}

bool BucketTable::shrink_if_sparse() {
  if (count_ < kShrinkMinBuckets || size_ * 8 >= count_ * kEntriesPerBucket) return false;
  // Two thirds full afterwards: far from both the growth and the shrink threshold.
  rebuild(std::max(kMinBuckets, size_ * 3 / (2 * kEntriesPerBucket) + 1));
  return true;
}

void BucketTable::rebuild(std::size_t count, const Entry* extra) {
  PageAllocator<Bucket> alloc;
  Bucket* const old = buckets_;
  const std::size_t old_count = count_, old_size = size_;
  for (;;) {
    // Placing into the new block only reads the old one, so a failed attempt loses nothing.
    buckets_ = alloc.allocate(count);
    std::uninitialized_value_construct_n(buckets_, count);
    count_ = count;
    size_ = 0;
    bool placed = true;
    for (std::size_t b = 0; b < old_count && placed; ++b) {
      for (unsigned i = 0; i < kEntriesPerBucket && placed; ++i) {
        if ((old[b].used >> i & 1u) == 0) continue;
        Entry e = old[b].entries[i];
        placed = place(e);
      }
    }
    if (placed && extra != nullptr) {
      Entry e = *extra;
      placed = place(e);
    }
    if (placed) break;
    alloc.deallocate(buckets_, count);
    // Only keys sharing both buckets at every size could fail for ever; 64-bit seeded hashes
    // do not do that, but a table must not grow without end if they did.
    if (count > 64 * (old_size + 2)) throw std::length_error("memory plugin: cannot place keys");
    count += count / 2;
  }
  max_size_ = count_ * kEntriesPerBucket * kMaxLoadPercent / 100;
  if (old != &empty_bucket_) alloc.deallocate(old, old_count);
  published_block_.store(buckets_, std::memory_order_relaxed);
  published_count_.store(count_, std::memory_order_relaxed);
}

std::string BucketTable::check_invariants() const {
  if (published_block_.load(std::memory_order_relaxed) != buckets_ ||
      published_count_.load(std::memory_order_relaxed) != count_) {
    return "the published block or count is stale";
  }
  auto* self = const_cast<BucketTable*>(this);
  std::size_t size = 0;
  for (std::size_t at = 0; at < count_; ++at) {
    const Bucket& bucket = buckets_[at];
    if (bucket.used >> kEntriesPerBucket != 0)
      return "bucket " + std::to_string(at) + " has stray used bits";
    for (unsigned i = 0; i < kEntriesPerBucket; ++i) {
      Entry* e = self->entry(at, i);
      if (e == nullptr) continue;
      ++size;
      if (at != first(e->key, count_) && at != second(e->key, count_)) {
        return "the key in bucket " + std::to_string(at) + " is in neither of its buckets";
      }
      // find() returns the first copy: a key stored twice fails here for its second copy.
      if (self->find(e->key) != e) {
        return "the key in bucket " + std::to_string(at) + " is not the one a lookup finds";
      }
    }
  }
  if (size != size_) return "size() is " + std::to_string(size_) + ", not " + std::to_string(size);
  if (size_ > max_size_) return "more keys than the load limit";
  return {};
}

}  // namespace sluice::memory_plugin
