#include "bucket_table.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "page_allocator.h"

namespace sluice::memory_plugin {

BucketTable::Bucket BucketTable::empty_bucket_{};

BucketTable::~BucketTable() {
  if (owns_block()) PageAllocator<Bucket>().deallocate(buckets_, count_);
}

Entry* BucketTable::insert(KeyHash key) {
  if (size_ >= max_size_) rebuild(std::max(kMinBuckets, count_ + count_ / 2));
  return place(key);
}

Entry* BucketTable::place(KeyHash key) {
  // The load limit guarantees a free entry, so the walk ends.
  std::size_t b = home(key, count_);
  while (buckets_[b].used == (1u << kEntriesPerBucket) - 1) {
    ++buckets_[b].passed;
    b = next(b);
  }
  Bucket& bucket = buckets_[b];
  const unsigned i = (bucket.used & 1u) == 0 ? 0 : 1;
  bucket.used |= 1u << i;
  bucket.entries[i] = Entry{key, Slot{}};
  ++size_;
  return &bucket.entries[i];
}

void BucketTable::erase(Entry* entry) {
  // Buckets are cache-line aligned, so the entry's bucket is found from its address.
  const auto offset = static_cast<std::size_t>(reinterpret_cast<const unsigned char*>(entry) -
                                               reinterpret_cast<const unsigned char*>(buckets_));
  const std::size_t at = offset / sizeof(Bucket);
  Bucket& bucket = buckets_[at];
  const auto i = static_cast<unsigned>(entry - bucket.entries);
  for (std::size_t b = home(entry->key, count_); b != at; b = next(b)) --buckets_[b].passed;
  bucket.used &= ~(1u << i);
  --size_;
}

bool BucketTable::shrink_if_sparse() {
  if (count_ < kShrinkMinBuckets || size_ * 8 >= count_ * kEntriesPerBucket) return false;
  // Two thirds full afterwards: far from both the growth and the shrink threshold.
  rebuild(std::max(kMinBuckets, size_ * 3 / (2 * kEntriesPerBucket) + 1));
  return true;
}

void BucketTable::rebuild(std::size_t count) {
  PageAllocator<Bucket> alloc;
  Bucket* const block = alloc.allocate(count);
  std::uninitialized_value_construct_n(block, count);
  Bucket* const old = buckets_;
  const std::size_t old_count = count_;
  buckets_ = block;
  count_ = count;
  size_ = 0;
  max_size_ = count * kEntriesPerBucket * 85 / 100;
  for (std::size_t b = 0; b < old_count; ++b) {
    for (unsigned i = 0; i < kEntriesPerBucket; ++i) {
      if ((old[b].used >> i & 1u) != 0) place(old[b].entries[i].key)->slot = old[b].entries[i].slot;
    }
  }
  if (old != &empty_bucket_) alloc.deallocate(old, old_count);
  published_block_.store(buckets_, std::memory_order_relaxed);
  published_count_.store(count_, std::memory_order_relaxed);
}

std::string BucketTable::check_invariants() const {
  if (published_block_.load(std::memory_order_relaxed) != buckets_ ||
      published_count_.load(std::memory_order_relaxed) != count_) {
    return "the published block or count is stale";
  }
  // Each key passes every bucket from its home to the one it lives in.
  std::vector<std::size_t> passed(count_, 0);
  std::size_t size = 0;
  for (std::size_t at = 0; at < count_; ++at) {
    const Bucket& bucket = buckets_[at];
    if (bucket.used >> kEntriesPerBucket != 0) return "bucket " + std::to_string(at) + " has stray used bits";
    for (unsigned i = 0; i < kEntriesPerBucket; ++i) {
      if ((bucket.used >> i & 1u) == 0) continue;
      ++size;
      for (std::size_t b = home(bucket.entries[i].key, count_); b != at; b = next(b)) ++passed[b];
    }
  }
  if (size != size_) return "size() is " + std::to_string(size_) + ", not " + std::to_string(size);
  if (size_ > max_size_) return "more keys than the load limit";
  for (std::size_t b = 0; b < count_; ++b) {
    if (buckets_[b].passed != passed[b]) {
      return "bucket " + std::to_string(b) + " counts " + std::to_string(buckets_[b].passed) +
             " keys passing it, not " + std::to_string(passed[b]);
    }
  }
  auto* self = const_cast<BucketTable*>(this);
  for (std::size_t at = 0; at < count_; ++at) {
    for (unsigned i = 0; i < kEntriesPerBucket; ++i) {
      const Entry* e = self->entry(at, i);
      if (e != nullptr && self->find(e->key) != e) {
        return "the key in bucket " + std::to_string(at) + " is not found from its home";
      }
    }
  }
  return {};
}

}  // namespace sluice::memory_plugin
