#include "memory_store.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sluice::memory_plugin {
namespace {

static_assert(sizeof(Slot) == 20 && alignof(Slot) == 4);

constexpr uint32_t kLengthBits = 5;
constexpr uint32_t kLengthMask = (1u << kLengthBits) - 1;
constexpr uint32_t kOutOfLine = kLengthMask;
constexpr uint32_t kExpiryNever = (1u << (32 - kLengthBits)) - 1;
constexpr int64_t kExpiryUnitMs = 2000;
constexpr int64_t kEpochMarginMs = 3600 * 1000;
// How often (in batches per thread) a thread sweeps: its own shard, and a round-robin one.
// Each sweep examines sweep_slots entries per batch of its period, so the periods set only
// the grain: a long run of contiguous buckets costs one cold start (the first lines come from
// memory, the hardware prefetcher streams the rest), where many short runs cost one each.
// At 32 and 128 the sweeps were 6 % of a decision at a million keys.
constexpr uint32_t kOwnSweepPeriod = 256;
constexpr uint32_t kOtherSweepPeriod = 1024;
// When the key cap is reached, this many slots are checked for an expired entry before a
// live one is evicted.
constexpr uint32_t kEvictionScan = 32;
// Below this many keys (under 1 MiB of tables, which a core's L2 cache holds) the prefetch
// hint does nothing: hashing every key a second time would cost more than the misses it saves.
constexpr uint64_t kPrefetchMinKeys = 16384;
// A state larger than this is a caller's mistake, not a limit.
constexpr uint32_t kMaxStateCapacity = 64u << 20;

// An out-of-line state is described inside the slot's 16 bytes, so that its malloc block
// holds nothing but the state (a 24-byte state takes a 32-byte chunk, not 48).
struct OutOfLine {
  uint32_t len;
  uint32_t cap;
  unsigned char* data;
};
static_assert(sizeof(OutOfLine) == kInlineCapacity);

uint32_t length_code(const Slot& slot) { return slot.meta & kLengthMask; }

// The slot's bytes are only 4-byte aligned, hence the copies.
OutOfLine out_of_line(const Slot& slot) {
  OutOfLine o;
  std::memcpy(&o, slot.bytes, sizeof o);
  return o;
}

void free_blob(Slot& slot) {
  if (length_code(slot) == kOutOfLine) std::free(out_of_line(slot).data);
}

bool is_gating(uint32_t op) { return op == SLUICE_OP_CONSUME || op == SLUICE_OP_LEASE_ACQUIRE; }

}  // namespace

// Per-thread buffers reused across batches, so a warm thread allocates nothing.
struct Store::ThreadState {
  std::vector<unsigned char> scratch;  // transition buffer for states larger than a slot
  std::vector<KeyHash> hashes;         // a batch's key hashes, shards and lookups
  std::vector<uint32_t> shards;
  std::vector<uint32_t> locked;  // the batch's shards, ascending, without repeats
  std::vector<Entry*> found;
  std::vector<Applied> applied;       // a batch's transitions, run on copies...
  std::vector<unsigned char> copies;  // ...held here until the batch is known to pass
  std::vector<std::size_t> offsets;   // where each item's copy starts in `copies`
  uint32_t tick = 0;                  // batches run by this thread: paces the sweeps
};

namespace {
// The owner frees a thread's state when the thread exits; the plain pointer is what batches
// read. A thread_local with a destructor is reached through a wrapper that checks its guard on
// every access (three __tls_get_addr calls in a dlopen'ed library); a trivial pointer is one.
thread_local Store::ThreadState* tls_state = nullptr;
struct ThreadStateOwner {
  std::unique_ptr<Store::ThreadState> state;
  ~ThreadStateOwner() { tls_state = nullptr; }
};
thread_local ThreadStateOwner tls_owner;

Store::ThreadState& thread_state() {
  Store::ThreadState* t = tls_state;
  if (t == nullptr) [[unlikely]] {
    tls_owner.state = std::make_unique<Store::ThreadState>();
    t = tls_state = tls_owner.state.get();
  }
  return *t;
}

unsigned char* scratch(Store::ThreadState& t, std::size_t need, unsigned char* small) {
  if (need <= kInlineCapacity) return small;
  if (t.scratch.size() < need) t.scratch.resize(need);
  return t.scratch.data();
}

// A state's bytes, copied into the transition's buffer. Inline states are copied as the slot's
// whole 16 bytes (a fixed-size move, no call); `buf` then has room for them (see scratch).
void copy_state(unsigned char* buf, const unsigned char* data, std::size_t len, bool inline_state) {
  if (inline_state) {
    std::memcpy(buf, data, kInlineCapacity);
  } else if (len != 0) {
    std::memcpy(buf, data, len);
  }
}

}  // namespace

Store::Store(const sluice_host_api* host, const StoreOptions& options, uint64_t seed)
    : host_(host), options_(options), seed_(seed), shards_(new Shard[options.shards]) {}

Store::~Store() {
  for (uint32_t s = 0; s < options_.shards; ++s) {
    BucketTable& table = shards_[s].table;
    for (std::size_t b = 0; b < table.bucket_count(); ++b) {
      for (unsigned i = 0; i < BucketTable::kEntriesPerBucket; ++i) {
        if (Entry* e = table.entry(b, i)) free_blob(e->slot);
      }
    }
  }
}

Store::Place Store::place(const sluice_item& item, Tag& last) const {
  // XXH3: a few cycles for a 30-byte key, against ~5 instructions a byte for hash_range.
  const auto* key = static_cast<const unsigned char*>(static_cast<const void*>(item.key));
  const std::size_t len = item.key_len;
  const void* close = len > 2 && key[0] == '{' ? std::memchr(key + 1, '}', len - 1) : nullptr;
  if (close == nullptr || close == key + 1) {
    const uint64_t h = XXH3_64bits_withSeed(item.key, len, seed_);
    return {KeyHash{static_cast<uint32_t>(h), static_cast<uint32_t>(h >> 32)},
            shard_of(static_cast<uint32_t>(h))};
  }
  // "{tag}rest": the shard comes from the tag alone, so the keys of one request (the engine
  // writes "{resource:subject}rule") share a shard and a batch takes one lock. The key's hash
  // is the rest's, seeded with the tag's: distinct for distinct keys like a hash of the whole.
  const auto* rest = static_cast<const unsigned char*>(close) + 1;
  const auto tag_len = static_cast<std::size_t>(rest - key);  // with both braces
  if (last.bytes == nullptr || last.len != tag_len || std::memcmp(last.bytes, key, tag_len) != 0) {
    last = {key, tag_len, XXH3_64bits_withSeed(key, tag_len, seed_)};
  }
  const uint64_t h = XXH3_64bits_withSeed(rest, len - tag_len, last.hash);
  return {KeyHash{static_cast<uint32_t>(h), static_cast<uint32_t>(h >> 32)},
          shard_of(static_cast<uint32_t>(last.hash))};
}

uint32_t Store::shard_of(uint32_t h) const {
  return static_cast<uint32_t>((uint64_t{h} * options_.shards) >> 32);
}

int64_t Store::epoch_for(int64_t now_ms) {
  int64_t e = epoch_ms_.load(std::memory_order_acquire);
  if (e != kNoEpoch) return e;
  const int64_t want = now_ms - kEpochMarginMs;
  if (epoch_ms_.compare_exchange_strong(e, want, std::memory_order_acq_rel)) return want;
  return e;
}

uint32_t Store::encode_expiry(int64_t expires_at_ms) const {
  const int64_t epoch = epoch_ms_.load(std::memory_order_relaxed);
  if (expires_at_ms == INT64_MAX) return kExpiryNever;
  if (expires_at_ms <= epoch) return 0;
  // Rounded up: keeping a state a little past its expiry is harmless, dropping it early is not.
  const int64_t units = (expires_at_ms - epoch + kExpiryUnitMs - 1) / kExpiryUnitMs;
  return units >= kExpiryNever ? kExpiryNever : static_cast<uint32_t>(units);
}

bool Store::is_expired(uint32_t meta, int64_t now_ms) const {
  const uint32_t e = meta >> kLengthBits;
  return e != kExpiryNever &&
         now_ms >= epoch_ms_.load(std::memory_order_relaxed) + int64_t{e} * kExpiryUnitMs;
}

Store::StateView Store::view(Entry* entry, int64_t now_ms) const {
  if (entry == nullptr || is_expired(entry->slot.meta, now_ms)) return {nullptr, 0, false};
  Slot& slot = entry->slot;
  if (length_code(slot) == kOutOfLine) {
    const OutOfLine o = out_of_line(slot);
    return {o.data, o.len, false};
  }
  return {slot.bytes, length_code(slot), true};
}

void Store::evaluate(ThreadState& t, Entry* entry, const sluice_item& item, int64_t now_ms,
                     sluice_item_result& result) {
  const StateView s = view(entry, now_ms);
  // A copy, so that the stored state is safe whatever the transition does with its buffer.
  unsigned char small[kInlineCapacity];
  unsigned char* buf = scratch(t, std::max<std::size_t>(item.state_capacity, s.len), small);
  copy_state(buf, s.data, s.len, s.inline_state);
  int64_t expires_at_ms = INT64_MAX;
  host_->apply(&item, now_ms, buf, s.len, 0, &result, &expires_at_ms);
}

void Store::commit(ThreadState& t, Shard& shard, KeyHash key, const sluice_item& item,
                   int64_t now_ms, sluice_item_result& result) {
  Entry* entry = shard.table.find(key);
  const StateView s = view(entry, now_ms);
  const std::size_t capacity = std::max<std::size_t>(item.state_capacity, s.len);
  unsigned char small[kInlineCapacity];
  unsigned char* buf = scratch(t, capacity, small);
  copy_state(buf, s.data, s.len, s.inline_state);
  int64_t expires_at_ms = INT64_MAX;
  const std::size_t new_len = host_->apply(&item, now_ms, buf, s.len, 1, &result, &expires_at_ms);
  write_back(shard, entry, key, item, now_ms, result, {buf, new_len, capacity, expires_at_ms});
}

void Store::write_back(Shard& shard, Entry* entry, KeyHash key, const sluice_item& item,
                       int64_t now_ms, const sluice_item_result& result, const Applied& a) {
  const unsigned char* buf = a.buf;
  const std::size_t new_len = a.len;
  const bool writes = is_gating(item.op) ? result.allowed != 0 : item.op != SLUICE_OP_PEEK;
  if (!writes) return;
  if (new_len > a.capacity) {
    throw std::length_error("the host's transition wrote past the state capacity");
  }
  if (new_len == 0) {
    if (entry != nullptr) erase(shard, entry);
    return;
  }
  if (entry != nullptr && is_expired(entry->slot.meta, now_ms)) {
    ++shard.expired;  // replaced lazily rather than swept
  }
  if (entry == nullptr) {
    make_room(shard, now_ms);
    entry = shard.table.insert(key);
    keys_.fetch_add(1, std::memory_order_relaxed);
  }
  store_state(entry->slot, buf, new_len, a.expires_at_ms);
}

void Store::store_state(Slot& slot, const unsigned char* data, std::size_t len,
                        int64_t expires_at_ms) {
  const uint32_t expiry = encode_expiry(expires_at_ms) << kLengthBits;
  if (len <= kInlineCapacity) {
    free_blob(slot);
    // `data` is a transition buffer, which has room for an inline state's 16 bytes.
    std::memcpy(slot.bytes, data, kInlineCapacity);
    slot.meta = expiry | static_cast<uint32_t>(len);
    return;
  }
  OutOfLine o = length_code(slot) == kOutOfLine ? out_of_line(slot) : OutOfLine{0, 0, nullptr};
  if (o.data == nullptr || o.cap < len) {
    // Grow geometrically so that a log growing one entry at a time reallocates rarely.
    const std::size_t cap = std::max<std::size_t>(len, std::size_t{o.cap} * 2);
    auto* grown = static_cast<unsigned char*>(std::malloc(cap));
    if (grown == nullptr) throw std::bad_alloc();
    free_blob(slot);
    o = OutOfLine{0, static_cast<uint32_t>(cap), grown};
  }
  o.len = static_cast<uint32_t>(len);
  std::memcpy(o.data, data, len);
  std::memcpy(slot.bytes, &o, sizeof o);
  slot.meta = expiry | kOutOfLine;
}

void Store::erase(Shard& shard, Entry* entry) {
  free_blob(entry->slot);
  shard.table.erase(entry);
  keys_.fetch_sub(1, std::memory_order_relaxed);
}

std::size_t Store::sweep(Shard& shard, int64_t now_ms, uint32_t slots) {
  BucketTable& table = shard.table;
  if (table.size() == 0 || slots == 0) return 0;
  // The cursor is a bucket index: erasing moves no entry, and after a rebuild the index still
  // names a part of the table (or is past its end), which is all an incremental sweep needs.
  const std::size_t count = table.bucket_count();
  std::size_t b = shard.cursor < count ? shard.cursor : 0;
  const std::size_t buckets = std::min<std::size_t>(
      count, (slots + BucketTable::kEntriesPerBucket - 1) / BucketTable::kEntriesPerBucket);
  std::size_t freed = 0;
  for (std::size_t n = 0; n < buckets; ++n) {
    for (unsigned i = 0; i < BucketTable::kEntriesPerBucket; ++i) {
      Entry* e = table.entry(b, i);
      if (e != nullptr && is_expired(e->slot.meta, now_ms)) {
        erase(shard, e);
        ++shard.expired;
        ++freed;
      }
    }
    b = b + 1 == count ? 0 : b + 1;
  }
  shard.cursor = b;
  // Once the table is mostly empty it is rebuilt to fit, so that the memory of keys gone idle
  // goes back to the system (PageAllocator unmaps the old block).
  if (freed > 0) table.shrink_if_sparse();
  return freed;
}

void Store::make_room(Shard& shard, int64_t now_ms) {
  if (options_.max_keys == 0 || keys_.load(std::memory_order_relaxed) < options_.max_keys) return;
  if (sweep(shard, now_ms, kEvictionScan) > 0) return;
  // Nothing expired nearby: the clock hand's entry goes. An empty shard lets the total exceed
  // the cap by one key per shard at most, which is cheaper than locking another shard.
  BucketTable& table = shard.table;
  if (table.size() == 0) return;
  for (std::size_t b = shard.cursor < table.bucket_count() ? shard.cursor : 0;;
       b = b + 1 == table.bucket_count() ? 0 : b + 1) {
    for (unsigned i = 0; i < BucketTable::kEntriesPerBucket; ++i) {
      if (Entry* e = table.entry(b, i)) {
        erase(shard, e);
        ++shard.evictions;
        shard.cursor = b;
        return;
      }
    }
  }
}

void Store::maybe_sweep_other_shard(uint32_t tick, int64_t now_ms) {
  if ((tick % kOtherSweepPeriod) != 0) return;
  const uint32_t i = sweep_turn_.fetch_add(1, std::memory_order_relaxed) % options_.shards;
  Shard& shard = shards_[i];
  std::unique_lock lock(shard.mu, std::try_to_lock);
  if (lock.owns_lock()) sweep(shard, now_ms, options_.sweep_slots * kOtherSweepPeriod);
}

bool Store::validate(const sluice_batch& batch, std::string& error) const {
  if (batch.items == nullptr || batch.results == nullptr) {
    error = "memory plugin: the batch has " + std::to_string(batch.count) +
            " items but no item or result array.";
    return false;
  }
  for (std::size_t i = 0; i < batch.count; ++i) {
    const sluice_item& item = batch.items[i];
    auto which = [i] { return "memory plugin: item " + std::to_string(i); };
    if (item.key == nullptr && item.key_len != 0) {
      error = which() + " has a key length of " + std::to_string(item.key_len) + " but no key.";
      return false;
    }
    if (item.op < SLUICE_OP_CONSUME || item.op > SLUICE_OP_RESET) {
      error = which() + " has an unknown op " + std::to_string(item.op) + ".";
      return false;
    }
    if (item.state_capacity > kMaxStateCapacity) {
      error = which() + " asks for a state of " + std::to_string(item.state_capacity) +
              " bytes, more than the limit of " + std::to_string(kMaxStateCapacity) + ".";
      return false;
    }
  }
  return true;
}

sluice_status Store::submit(const sluice_batch& batch, std::string& error) {
  if (batch.count == 0) return SLUICE_OK;
  if (!validate(batch, error)) return SLUICE_ERR_INVALID;
  const int64_t now_ms = batch.now_ms;
  epoch_for(now_ms);
  ThreadState& t = thread_state();  // one TLS lookup per batch
  const uint32_t tick = ++t.tick;
  const uint32_t own_sweep =
      tick % kOwnSweepPeriod == 0 ? options_.sweep_slots * kOwnSweepPeriod : 0;
  if (batch.count == 1) {
    run_one(t, batch.items[0], now_ms, batch.results[0], own_sweep);
  } else {
    run_locked_batch(t, batch, now_ms, own_sweep);
  }
  maybe_sweep_other_shard(tick, now_ms);
  return SLUICE_OK;
}

void Store::prefetch(const sluice_batch& batch) const {
  if (batch.items == nullptr || keys_.load(std::memory_order_relaxed) < kPrefetchMinKeys) return;
  Tag tag;
  for (std::size_t i = 0; i < batch.count; ++i) {
    const sluice_item& item = batch.items[i];
    if (item.key == nullptr && item.key_len != 0) continue;
    const Place at = place(item, tag);
    shards_[at.shard].table.prefetch(at.hash);
  }
}

void Store::run_one(ThreadState& t, const sluice_item& item, int64_t now_ms,
                    sluice_item_result& result, uint32_t own_sweep) {
  Tag tag;
  const Place at = place(item, tag);
  const KeyHash key = at.hash;
  Shard& shard = shards_[at.shard];
  shard.table.prefetch(key);  // the bucket loads while the lock is taken
  std::lock_guard lock(shard.mu);
  if (item.op == SLUICE_OP_PEEK) {
    evaluate(t, shard.table.find(key), item, now_ms, result);
  } else {
    commit(t, shard, key, item, now_ms, result);
  }
  if (own_sweep != 0) sweep(shard, now_ms, own_sweep);
}

void Store::run_locked_batch(ThreadState& t, const sluice_batch& batch, int64_t now_ms,
                             uint32_t own_sweep) {
  const std::size_t n = batch.count;
  t.hashes.resize(n);
  t.shards.resize(n);
  t.found.resize(n);
  Tag tag;
  bool one_shard = true;
  for (std::size_t i = 0; i < n; ++i) {
    const Place at = place(batch.items[i], tag);
    t.hashes[i] = at.hash;
    t.shards[i] = at.shard;
    one_shard = one_shard && at.shard == t.shards[0];
    // The buckets load while the others are placed and the locks taken.
    shards_[at.shard].table.prefetch(at.hash);
  }
  if (one_shard) {
    t.locked.assign(1, t.shards[0]);
  } else {
    t.locked.assign(t.shards.begin(), t.shards.end());
    std::sort(t.locked.begin(), t.locked.end());
    t.locked.erase(std::unique(t.locked.begin(), t.locked.end()), t.locked.end());
  }
  // Ascending order everywhere, so two batches over the same shards cannot deadlock.
  for (uint32_t s : t.locked) shards_[s].mu.lock();
  struct Unlock {
    Shard* shards;
    const std::vector<uint32_t>& locked;
    ~Unlock() {
      for (auto s = locked.rbegin(); s != locked.rend(); ++s) shards[*s].mu.unlock();
    }
  } unlock{shards_.get(), t.locked};

  // Every key is looked up before any is used: the lookups do not depend on each other, so
  // their cache misses overlap instead of coming one after another. Out-of-line states are
  // prefetched as soon as their slot is known.
  for (std::size_t i = 0; i < n; ++i) {
    Entry* e = shards_[t.shards[i]].table.find(t.hashes[i]);
    t.found[i] = e;
    if (e != nullptr && length_code(e->slot) == kOutOfLine) {
      __builtin_prefetch(out_of_line(e->slot).data);
    }
  }

  // With distinct keys (the engine's batches: one key per limit), each item's transition
  // runs once, on a private copy of its state, and the copies are stored if the batch passes.
  // When a key repeats, a later item must see the earlier one's change, so those batches
  // evaluate first and then run every transition again on the stored state.
  bool distinct = true;
  for (std::size_t i = 1; i < n && distinct; ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (t.hashes[i] == t.hashes[j]) {
        distinct = false;
        break;
      }
    }
  }

  // All-or-nothing: every item is evaluated first; only if no non-shadow item is denied does
  // any of them change state. (Evaluating changes nothing, so the entries stay where they are.)
  bool denied = false;
  t.applied.resize(n);
  t.offsets.resize(n);
  std::size_t used = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const sluice_item& item = batch.items[i];
    sluice_item_result& result = batch.results[i];
    if (distinct && item.op != SLUICE_OP_PEEK) {
      const StateView s = view(t.found[i], now_ms);
      const std::size_t capacity = std::max<std::size_t>(item.state_capacity, s.len);
      // Room for a whole slot's bytes too: inline states move as 16 bytes.
      const std::size_t room = std::max(capacity, kInlineCapacity);
      if (t.copies.size() < used + room) t.copies.resize(used + room);
      unsigned char* buf = t.copies.data() + used;
      copy_state(buf, s.data, s.len, s.inline_state);
      int64_t expires_at_ms = INT64_MAX;
      const std::size_t new_len =
          host_->apply(&item, now_ms, buf, s.len, 1, &result, &expires_at_ms);
      // The offset, not the pointer: a later item may grow the buffer.
      t.applied[i] = {nullptr, new_len, capacity, expires_at_ms};
      t.offsets[i] = used;
      used += room;
    } else {
      evaluate(t, t.found[i], item, now_ms, result);
    }
    if (is_gating(item.op) && item.shadow == 0 && result.allowed == 0) denied = true;
  }
  if (!denied) {
    // Storing may insert, which can move entries to their other bucket or rebuild the
    // table, so each item looks its key up again (in cache now).
    for (std::size_t i = 0; i < n; ++i) {
      const sluice_item& item = batch.items[i];
      if (item.op == SLUICE_OP_PEEK) continue;
      Shard& shard = shards_[t.shards[i]];
      if (distinct) {
        Applied a = t.applied[i];
        a.buf = t.copies.data() + t.offsets[i];
        write_back(shard, shard.table.find(t.hashes[i]), t.hashes[i], item, now_ms,
                   batch.results[i], a);
      } else {
        commit(t, shard, t.hashes[i], item, now_ms, batch.results[i]);
      }
    }
  }
  if (own_sweep != 0) sweep(shards_[t.locked.front()], now_ms, own_sweep);
}

Store::Counters Store::counters() const {
  Counters c{0, 0, 0, options_.shards, 0};
  for (uint32_t i = 0; i < options_.shards; ++i) {
    std::lock_guard lock(shards_[i].mu);
    c.keys += shards_[i].table.size();
    c.table_bytes += shards_[i].table.memory_bytes();
    c.evictions += shards_[i].evictions;
    c.expired += shards_[i].expired;
  }
  return c;
}

}  // namespace sluice::memory_plugin
