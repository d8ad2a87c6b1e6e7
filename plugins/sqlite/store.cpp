#include "store.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <nlohmann/json.hpp>
#include <random>
#include <utility>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "journal.h"

namespace sluice::sqlite_plugin {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kFirstBackoff{100};
// A fold round moves this many shards' changed keys into the table per writer cycle, so that
// no cycle (and no journal row behind it) waits for a whole table's upserts.
constexpr size_t kFoldShardsPerCycle = 8;
// Expiry leaves keys alone for this long after their expiry time, so that a batch decided a
// moment earlier on another thread (an older now_ms) never sees a key vanish that it still
// counts on.
constexpr int64_t kExpirySlackMs = 1000;

bool is_gated(uint32_t op) { return op == SLUICE_OP_CONSUME || op == SLUICE_OP_LEASE_ACQUIRE; }

}  // namespace

Row Store::row_of(const Entry& e) {
  return Row{std::string(key_of(e)),
             std::string(reinterpret_cast<const char*>(state_of(e)), e.state_len), e.expires_at_ms,
             false};
}

Store::Store(const sluice_host_api* host, Config config)
    : host_(host),
      config_(std::move(config)),
      seed_((uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()),
      db_(config_) {
  static_assert(sizeof(std::pair<const uint64_t, Entry>) == 64,
                "a slot must stay within one cache line's worth of bytes");
  if (const char* bits = std::getenv("SLUICE_SQLITE_TEST_HASH_BITS")) {
    const int n = std::atoi(bits);
    if (n > 0 && n < 64) map_key_mask_ = (uint64_t{1} << n) - 1;
  }
}

Store::~Store() {
  {
    std::lock_guard lk(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  std::vector<Pending> left;
  {
    std::lock_guard lk(mu_);
    left.swap(pending_);
  }
  for (const Pending& p : left) {
    p.complete(SLUICE_ERR_UNAVAILABLE, "sqlite storage: closed before the decision was committed.");
  }
  if (const int64_t lost = pending_changes(); lost > 0) {
    std::string why;
    {
      std::lock_guard lk(mu_);
      why = last_error_;
    }
    log(3, "sqlite storage: closing with " + std::to_string(lost) + " unwritten changes to " +
               config_.path + "; they are lost. " + why);
  }
  db_.close();
  for (Shard& shard : shards_) clear(shard);
}

void Store::log(int level, const std::string& message) const {
  if (host_->log) host_->log(level, message.c_str());
}

void Store::start() {
  if (auto e = connect()) {
    record_failure(*e);
  } else {
    record_success();
    log(1, "sqlite storage: opened " + config_.path + " with " + std::to_string(keys_.load()) +
               " keys (durability=" + std::string(config_.durability_name()) +
               ", interval_ms=" + std::to_string(config_.interval_ms) + ").");
  }
  writer_ = std::thread(&Store::writer_loop, this);
}

// ---- decisions --------------------------------------------------------------------------

bool Store::unavailable(std::string& message) const {
  if (healthy_.load(std::memory_order_acquire)) return false;
  std::lock_guard lk(mu_);
  message = last_error_.empty() ? "sqlite storage: the database is not open." : last_error_;
  return true;
}

void Store::submit(const sluice_batch& batch, sluice_completion_fn done, void* user_data) {
  // The latest decision's time, not the largest ever seen: a host whose clock is set back
  // (or a test replaying another timeline) must not have live keys expired by an old "now".
  if (latest_now_ms_.load(std::memory_order_relaxed) != batch.now_ms) {
    latest_now_ms_.store(batch.now_ms, std::memory_order_relaxed);
  }
  for (size_t i = 0; i < batch.count; ++i) {
    const sluice_item& item = batch.items[i];
    if (item.op < SLUICE_OP_CONSUME || item.op > SLUICE_OP_RESET ||
        (item.key == nullptr && item.key_len > 0)) {
      done(user_data, SLUICE_ERR_INVALID,
           "sqlite storage: a batch item has an unknown operation or a missing key.");
      return;
    }
  }
  std::string message;
  if (unavailable(message)) {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    done(user_data, SLUICE_ERR_UNAVAILABLE, message.c_str());
    return;
  }
  apply_batch(batch);
  if (config_.durability == Durability::kInterval) {
    done(user_data, SLUICE_OK, nullptr);
    return;
  }
  {
    std::unique_lock lk(mu_);
    if (!stop_) {
      pending_.push_back({done, user_data});
      lk.unlock();
      wake_.notify_one();
      return;
    }
  }
  done(user_data, SLUICE_ERR_UNAVAILABLE, "sqlite storage: closing.");
}

// ---- slots ------------------------------------------------------------------------------

Store::Hash Store::hash(std::string_view key) const {
  const XXH128_hash_t h = XXH3_128bits_withSeed(key.data(), key.size(), seed_);
  return {h.low64 & map_key_mask_, h.high64};
}

std::string_view Store::key_of(const Entry& e) {
  uint32_t len = 0;
  std::memcpy(&len, e.key, sizeof len);
  return {e.key + sizeof len, len};
}

const unsigned char* Store::state_of(const Entry& e) {
  if (e.state_len <= kInlineState) return e.state;
  unsigned char* p = nullptr;
  std::memcpy(&p, e.state, sizeof p);
  return p;
}

void Store::set_state(Entry& e, const unsigned char* data, size_t len) {
  unsigned char* heap = nullptr;
  uint32_t capacity = 0;
  if (e.state_len > kInlineState) {
    std::memcpy(&heap, e.state, sizeof heap);
    std::memcpy(&capacity, e.state + sizeof heap, sizeof capacity);
  }
  if (len <= kInlineState) {
    std::free(heap);
    if (len > 0) std::memcpy(e.state, data, len);
  } else {
    if (len > capacity) {
      auto* grown = static_cast<unsigned char*>(std::malloc(len));
      if (grown == nullptr) throw std::bad_alloc();
      std::free(heap);
      heap = grown;
      capacity = static_cast<uint32_t>(len);
    }
    std::memmove(heap, data, len);
    std::memcpy(e.state, &heap, sizeof heap);
    std::memcpy(e.state + sizeof heap, &capacity, sizeof capacity);
  }
  e.state_len = static_cast<uint32_t>(len);
}

void Store::free_entry(Entry& e) {
  if (e.state_len > kInlineState) {
    unsigned char* heap = nullptr;
    std::memcpy(&heap, e.state, sizeof heap);
    std::free(heap);
  }
  e.state_len = 0;
  std::free(e.key);
  e.key = nullptr;
}

Store::Map::iterator Store::find(Shard& shard, const Hash& h) {
  // Keys are not removed from a probe sequence's middle in any special way, so every step up
  // to the shard's furthest is looked at: with no collision ever (max_probe 0) that is one.
  for (uint32_t i = 0; i <= shard.max_probe; ++i) {
    auto it = shard.map.find(probe(h.lo, i));
    if (it != shard.map.end() && it->second.check == h.hi) return it;
  }
  return shard.map.end();
}

Store::Map::iterator Store::insert(Shard& shard, const Hash& h, std::string_view key) {
  if (key.size() > UINT32_MAX) throw std::length_error("sqlite storage: key too long");
  // Owned here until the slot holds it: a table that fails to grow leaks nothing.
  std::unique_ptr<char, decltype(&std::free)> block(
      static_cast<char*>(std::malloc(sizeof(uint32_t) + key.size())), &std::free);
  if (block == nullptr) throw std::bad_alloc();
  const auto len = static_cast<uint32_t>(key.size());
  std::memcpy(block.get(), &len, sizeof len);
  if (len > 0) std::memcpy(block.get() + sizeof len, key.data(), len);
  for (uint32_t i = 0;; ++i) {
    auto [it, inserted] = shard.map.try_emplace(probe(h.lo, i));
    if (!inserted) continue;  // another key holds this step
    it->second.key = block.release();
    it->second.check = h.hi;
    shard.max_probe = std::max(shard.max_probe, i);
    return it;
  }
}

void Store::clear(Shard& shard) {
  for (auto& kv : shard.map) free_entry(kv.second);
  shard.map.clear();
  shard.max_probe = 0;
}

// ---- deciding ---------------------------------------------------------------------------

namespace {
// A state larger than the stack buffer: a per-thread buffer, reached only on that path (a
// thread_local with a destructor costs a TLS lookup and a guard check wherever it is named).
uint8_t* large_scratch(size_t capacity) {
  thread_local std::vector<uint8_t> large;
  if (large.size() < capacity) large.resize(capacity);
  return large.data();
}
}  // namespace

void Store::apply_batch(const sluice_batch& batch) {
  // Each key is hashed once: the hash picks the shard and is the map's key.
  Hash small[16];
  std::unique_ptr<Hash[]> large;
  Hash* hashes = small;
  if (batch.count > std::size(small)) {
    large = std::make_unique<Hash[]>(batch.count);
    hashes = large.get();
  }
  uint64_t mask = 0;
  size_t gated = 0;
  for (size_t i = 0; i < batch.count; ++i) {
    const sluice_item& item = batch.items[i];
    hashes[i] = hash(std::string_view(item.key, item.key_len));
    mask |= uint64_t{1} << shard_of(hashes[i]);
    gated += is_gated(item.op) ? 1 : 0;
  }
  // Ascending shard order, so that two batches never wait for each other.
  struct Unlock {
    Shard* shards;
    uint64_t mask;
    ~Unlock() {
      for (uint64_t m = mask; m != 0; m &= m - 1) shards[__builtin_ctzll(m)].mu.unlock();
    }
  };
  for (uint64_t m = mask; m != 0; m &= m - 1) shards_[__builtin_ctzll(m)].mu.lock();
  const Unlock unlock{shards_, mask};

  // All-or-nothing: if any non-shadow CONSUME or LEASE_ACQUIRE would be denied, no item of
  // the batch changes state, so look before changing anything. A batch of one item needs no
  // look-ahead: a denied CONSUME or LEASE_ACQUIRE leaves its state untouched by contract.
  bool denied = false;
  if (gated > 0 && batch.count > 1) {
    for (size_t i = 0; i < batch.count; ++i) {
      const sluice_item& item = batch.items[i];
      if (!is_gated(item.op)) continue;
      apply_item(shards_[shard_of(hashes[i])], hashes[i], item, batch.now_ms, false,
                 batch.results[i]);
      if (!batch.results[i].allowed && !item.shadow) denied = true;
    }
  }
  for (size_t i = 0; i < batch.count; ++i) {
    const sluice_item& item = batch.items[i];
    if (denied && is_gated(item.op)) continue;  // answered by the look-ahead
    apply_item(shards_[shard_of(hashes[i])], hashes[i], item, batch.now_ms,
               !denied && item.op != SLUICE_OP_PEEK, batch.results[i]);
  }
}

void Store::apply_item(Shard& shard, const Hash& h, const sluice_item& item, int64_t now_ms,
                       bool commit, sluice_item_result& result) {
  // Small states (every algorithm but long sliding-window logs) stay on the stack.
  uint8_t small[256];
  const std::string_view key(item.key, item.key_len);
  // The first step of the probe sequence is the key's slot unless a collision moved it.
  auto it = shard.map.find(h.lo);
  if ((it != shard.map.end() && it->second.check != h.hi) ||
      (it == shard.map.end() && shard.max_probe > 0)) {
    it = find(shard, h);
  }
  const bool present = it != shard.map.end();
  const size_t len = present ? it->second.state_len : 0;
  const size_t capacity = std::max<size_t>(item.state_capacity, len);
  uint8_t* scratch = capacity > sizeof small ? large_scratch(capacity) : small;
  // An inline state is copied as the slot's whole 16 bytes: a fixed-size move, no call, and
  // the comparison below can be one too.
  const bool inline_state = present && len <= kInlineState;
  if (inline_state) {
    std::memcpy(scratch, it->second.state, kInlineState);
  } else if (len > 0) {
    std::memcpy(scratch, state_of(it->second), len);
  }
  int64_t expires_at_ms = 0;
  size_t new_len =
      host_->apply(&item, now_ms, scratch, len, commit ? 1 : 0, &result, &expires_at_ms);
  if (!commit) return;
  if (item.op == SLUICE_OP_RESET || new_len == 0) {
    if (present) {
      record_erase(shard, key);
      free_entry(it->second);
      shard.map.erase(it);
      keys_.fetch_sub(1, std::memory_order_relaxed);
    }
    return;
  }
  new_len = std::min(new_len, capacity);
  if (present && new_len == len && it->second.expires_at_ms == expires_at_ms &&
      (inline_state ? std::memcmp(scratch, it->second.state, kInlineState) == 0
                    : std::memcmp(scratch, state_of(it->second), len) == 0)) {
    return;
  }
  if (!present) {
    it = insert(shard, h, key);
    keys_.fetch_add(1, std::memory_order_relaxed);
  }
  Entry& entry = it->second;
  if (new_len <= kInlineState && entry.state_len <= kInlineState) {
    std::memcpy(entry.state, scratch, kInlineState);  // scratch holds at least 16 bytes
    entry.state_len = static_cast<uint32_t>(new_len);
  } else {
    set_state(entry, scratch, new_len);
  }
  entry.expires_at_ms = expires_at_ms;
  record_put(shard, key, entry);
}

void Store::record_put(Shard& shard, std::string_view key, Entry& entry) {
  entry.unfolded = true;
  const std::string_view state(reinterpret_cast<const char*>(state_of(entry)), entry.state_len);
  if (entry.journal_gen == shard.journal_gen &&
      journal::overwrite(shard.journal, entry.journal_offset, state, entry.expires_at_ms)) {
    return;
  }
  const size_t offset = journal::append_put(shard.journal, key, state, entry.expires_at_ms);
  ++shard.journal_records;
  const bool addressable = offset <= UINT32_MAX;
  entry.journal_gen = addressable ? shard.journal_gen : 0;
  entry.journal_offset = addressable ? static_cast<uint32_t>(offset) : 0;
}

void Store::record_erase(Shard& shard, std::string_view key) {
  journal::append_erase(shard.journal, key);
  ++shard.journal_records;
  shard.erased.emplace_back(key);
}

// ---- the writer -------------------------------------------------------------------------

void Store::writer_loop() {
  const milliseconds interval{config_.interval_ms};
  const bool commit_mode = config_.durability == Durability::kCommit;
  auto next_tick = Clock::now() + interval;
  std::vector<Pending> taken;
  std::unique_lock lk(mu_);
  for (;;) {
    const auto deadline = healthy_.load() ? next_tick : std::max(next_tick, next_retry_);
    wake_.wait_until(lk, deadline, [&] {
      return stop_ || flush_requested_ > flush_done_ || (commit_mode && !pending_.empty());
    });
    // Taking the waiting batches before the changes guarantees that every change a batch
    // made (or read) is in this transaction or an earlier one.
    taken.swap(pending_);
    const uint64_t flush_target = flush_requested_;
    const bool stopping = stop_;
    const bool force = stopping || flush_target > flush_done_;
    lk.unlock();

    const Error err = cycle(force, stopping);
    for (const Pending& p : taken) {
      p.complete(err ? SLUICE_ERR_UNAVAILABLE : SLUICE_OK, err ? err->c_str() : nullptr);
    }
    taken.clear();
    if (Clock::now() >= next_tick) next_tick = Clock::now() + interval;

    lk.lock();
    flush_done_ = flush_target;
    flush_error_ = err;
    flushed_.notify_all();
    if (stopping) break;
  }
}

Error Store::cycle(bool force_retry, bool final) {
  if (!db_.is_open()) {
    {
      std::lock_guard lk(mu_);
      if (!force_retry && Clock::now() < next_retry_) return last_error_;
    }
    if (auto e = connect()) {
      record_failure(*e);
      return e;
    }
  }
  // Expire before writing, so that the rewrite after a full disk leaves idle keys out. Once per
  // interval: in commit mode cycles come as fast as commits do.
  if (force_retry || Clock::now() >= next_expiry_) {
    next_expiry_ = Clock::now() + milliseconds(config_.interval_ms);
    expire_some();
  }
  const auto write_started = Clock::now();
  const uint64_t written_before = rows_written_.load(std::memory_order_relaxed);
  const uint64_t commits_before = commits_.load(std::memory_order_relaxed);
  const uint64_t folded_before = folded_rows_.load(std::memory_order_relaxed);
  Error err = resync_ ? resync() : write_journal();
  if (!err) err = fold_step(final);
  if (!err) err = write_records();
  if (err) {
    record_failure(*err);
    return err;
  }
  if (commits_.load(std::memory_order_relaxed) == commits_before) {
    record_success();
    return std::nullopt;  // nothing to write this cycle
  }
  const int64_t took =
      std::chrono::duration_cast<milliseconds>(Clock::now() - write_started).count();
  last_write_ms_.store(took, std::memory_order_relaxed);
  // The interval's crash guarantee stretches to the length of a write; say so, at most once
  // a minute, so that an operator can pick commit mode, a faster disk or a longer interval.
  // The last cycle runs after the decisions have stopped: nothing to warn about.
  if (config_.durability == Durability::kInterval && !final && took > config_.interval_ms &&
      Clock::now() >= next_lag_warning_) {
    next_lag_warning_ = Clock::now() + std::chrono::minutes(1);
    log(2, "sqlite storage: writing " +
               std::to_string(rows_written_.load(std::memory_order_relaxed) - written_before) +
               " changes to the journal and folding " +
               std::to_string(folded_rows_.load(std::memory_order_relaxed) - folded_before) +
               " rows took " + std::to_string(took) + " ms, longer than interval_ms=" +
               std::to_string(config_.interval_ms) + "; a crash now loses up to that long.");
  }
  db_size_bytes_.store(db_.size_bytes(), std::memory_order_relaxed);
  record_success();
  return std::nullopt;
}

void Store::take_journal() {
  if (journal_blob_.empty()) journal_blob_.push_back(static_cast<char>(journal::kFormat));
  size_t taken = 0;
  for (Shard& shard : shards_) {
    std::lock_guard lk(shard.mu);
    if (shard.journal_records == 0) continue;
    journal_blob_.append(shard.journal);
    taken += shard.journal_records;
    // clear() keeps the capacity: deciding appends without allocating once warm.
    shard.journal.clear();
    shard.journal_records = 0;
    if (++shard.journal_gen == 0) shard.journal_gen = 1;
  }
  journal_blob_records_ += taken;
  unwritten_records_.fetch_add(static_cast<int64_t>(taken), std::memory_order_relaxed);
}

Error Store::write_journal() {
  take_journal();
  if (journal_blob_records_ == 0) return std::nullopt;
  int64_t id = 0;
  // On failure the blob stays: the connection is closed, and the resync that follows the
  // reconnection writes memory, which holds every change the blob did.
  if (auto e = db_.append_journal(journal_blob_, id)) return e;
  last_journal_id_ = id;
  journal_bytes_.fetch_add(static_cast<int64_t>(journal_blob_.size()), std::memory_order_relaxed);
  commits_.fetch_add(1, std::memory_order_relaxed);
  rows_written_.fetch_add(journal_blob_records_, std::memory_order_relaxed);
  unwritten_records_.fetch_sub(static_cast<int64_t>(journal_blob_records_),
                               std::memory_order_relaxed);
  journal_blob_.clear();
  journal_blob_records_ = 0;
  return std::nullopt;
}

Error Store::fold_step(bool final) {
  // The last cycle folds everything, in up to two rounds: the one under way, then one for
  // the rows written meanwhile.
  for (int round = 0; round < (final ? 2 : 1); ++round) {
    if (!folding_) {
      const int64_t bytes = journal_bytes_.load(std::memory_order_relaxed);
      const bool due = bytes > 0 && (final || bytes >= config_.fold_mb * 1024 * 1024 ||
                                     Clock::now() >= next_fold_);
      if (!due) return std::nullopt;
      folding_ = true;
      fold_cursor_ = 0;
      fold_upto_ = last_journal_id_;
      fold_round_bytes_ = bytes;
    }
    // Every key changed in a journal row up to fold_upto_ is marked unfolded, so once every
    // shard has been folded the table holds each of those keys' state as of its shard's step
    // or later, and those rows can go. Rows written after the round began stay: replayed
    // after the table, they bring a key back at most to its state at their own write.
    const size_t end = final ? kShards : std::min(kShards, fold_cursor_ + kFoldShardsPerCycle);
    std::vector<Row> rows;
    for (size_t s = fold_cursor_; s < end; ++s) {
      Shard& shard = shards_[s];
      std::lock_guard lk(shard.mu);
      for (auto& kv : shard.map) {
        Entry& entry = kv.second;
        if (!entry.unfolded) continue;
        entry.unfolded = false;
        rows.push_back(row_of(entry));
      }
      for (std::string& key : shard.erased) {
        if (find(shard, hash(key)) == shard.map.end())
          rows.push_back(Row{std::move(key), {}, 0, true});
      }
      shard.erased.clear();
    }
    // In key order the upserts walk the b-tree from left to right instead of jumping around.
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.key < b.key; });
    const bool last = end == kShards;
    if (auto e = db_.fold(rows, last ? fold_upto_ : 0)) {
      // The unfolded marks of those shards are gone with the rows: only a rewrite from memory
      // makes the file whole again.
      resync_ = true;
      folding_ = false;
      return e;
    }
    fold_cursor_ = end;
    folded_rows_.fetch_add(rows.size(), std::memory_order_relaxed);
    if (!rows.empty() || last) commits_.fetch_add(1, std::memory_order_relaxed);
    if (!last) return std::nullopt;
    folding_ = false;
    journal_bytes_.fetch_sub(fold_round_bytes_, std::memory_order_relaxed);
    folds_.fetch_add(1, std::memory_order_relaxed);
    next_fold_ = Clock::now() + milliseconds(config_.fold_interval_ms);
  }
  return std::nullopt;
}

Error Store::resync() {
  // Under each shard's lock the shard's state replaces its journal records and fold marks:
  // any change after the lock is released is journaled again, later than this state.
  std::vector<Row> rows;
  for (Shard& shard : shards_) {
    std::lock_guard lk(shard.mu);
    for (auto& kv : shard.map) {
      kv.second.unfolded = false;
      rows.push_back(row_of(kv.second));
    }
    shard.journal.clear();
    shard.journal_records = 0;
    if (++shard.journal_gen == 0) shard.journal_gen = 1;
    shard.erased.clear();
  }
  journal_blob_.clear();
  journal_blob_records_ = 0;
  folding_ = false;
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.key < b.key; });
  if (auto e = db_.replace_all(rows)) return e;  // resync_ stays set
  resync_ = false;
  unwritten_records_.store(0, std::memory_order_relaxed);
  journal_bytes_.store(0, std::memory_order_relaxed);
  last_journal_id_ = 0;
  commits_.fetch_add(1, std::memory_order_relaxed);
  folded_rows_.fetch_add(rows.size(), std::memory_order_relaxed);
  return std::nullopt;
}

Error Store::connect() {
  if (auto e = db_.open()) return e;
  if (!loaded_) {
    // Nothing was decided while the file was not loaded (batches were refused), so the map
    // holds at most the remains of an earlier load that failed half-way.
    for (Shard& shard : shards_) {
      std::lock_guard lk(shard.mu);
      clear(shard);
      shard.journal.clear();
      shard.journal_records = 0;
      shard.erased.clear();
    }
    keys_ = 0;
    journal_bytes_ = 0;
    last_journal_id_ = 0;
    const auto put = [&](std::string_view key, std::string_view state, int64_t expires,
                         bool from_journal) {
      const Hash h = hash(key);
      Shard& shard = shards_[shard_of(h)];
      std::lock_guard lk(shard.mu);
      auto it = find(shard, h);
      if (it == shard.map.end()) {
        it = insert(shard, h, key);
        keys_.fetch_add(1, std::memory_order_relaxed);
      }
      set_state(it->second, reinterpret_cast<const unsigned char*>(state.data()), state.size());
      it->second.expires_at_ms = expires;
      it->second.unfolded = from_journal;
    };
    const auto erase = [&](std::string_view key) {
      const Hash h = hash(key);
      Shard& shard = shards_[shard_of(h)];
      std::lock_guard lk(shard.mu);
      if (auto it = find(shard, h); it != shard.map.end()) {
        free_entry(it->second);
        shard.map.erase(it);
        keys_.fetch_sub(1, std::memory_order_relaxed);
      }
      shard.erased.emplace_back(key);
    };
    if (auto e = db_.load([&](std::string_view key, std::string_view state,
                              int64_t expires) { put(key, state, expires, false); },
                          [&](int64_t id, std::string_view records) {
                            last_journal_id_ = id;
                            journal_bytes_ += static_cast<int64_t>(records.size());
                            return journal::replay(
                                records,
                                [&](std::string_view key, std::string_view state, int64_t expires) {
                                  put(key, state, expires, true);
                                },
                                erase);
                          })) {
      return e;
    }
    {
      std::lock_guard lk(records_mu_);
      records_.clear();
      record_changes_.clear();
      if (auto e =
              db_.load_records([&](std::string_view key, std::string_view value, int64_t expires) {
                records_[std::string(key)] = StoredRecord{std::string(value), expires};
              })) {
        return e;
      }
    }
    loaded_ = true;
    // A journal left by a crash is folded at once, so that the next start replays less.
    next_fold_ = Clock::now() +
                 (journal_bytes_ > 0 ? milliseconds(0) : milliseconds(config_.fold_interval_ms));
  } else {
    // The file may be a new one (the old was deleted or replaced), and what the failed cycle
    // took from the shards is in no file: memory is the truth, so write all of it.
    resync_ = true;
    records_resync_ = true;
  }
  db_size_bytes_.store(db_.size_bytes(), std::memory_order_relaxed);
  return std::nullopt;
}

int64_t Store::pending_changes() const {
  int64_t n = unwritten_records_.load(std::memory_order_relaxed);
  for (const Shard& shard : shards_) {
    std::lock_guard lk(shard.mu);
    n += static_cast<int64_t>(shard.journal_records);
  }
  return n;
}

void Store::expire_some() {
  const int64_t now = latest_now_ms_.load(std::memory_order_relaxed) - kExpirySlackMs;
  if (now <= 0) return;
  // A few shards per cycle, under each shard's lock for one pass over it, and at most
  // expiry_batch keys: the sweep never holds up decisions for long, and a full round over all
  // shards takes kShards / kShardsPerSweep cycles. An expired key leaves memory at once and
  // the file through the journal (an erase record) and the next fold.
  constexpr size_t kShardsPerSweep = 8;
  const size_t budget = static_cast<size_t>(config_.expiry_batch);
  size_t dropped = 0;
  for (size_t visited = 0; visited < kShardsPerSweep && dropped < budget; ++visited) {
    Shard& shard = shards_[expiry_cursor_];
    std::lock_guard lk(shard.mu);
    boost::unordered::erase_if(shard.map, [&](auto& kv) {
      if (dropped >= budget || kv.second.expires_at_ms > now) return false;
      record_erase(shard, key_of(kv.second));
      free_entry(kv.second);
      ++dropped;
      return true;
    });
    // A shard with more expired keys than the budget is finished next time.
    if (dropped < budget) expiry_cursor_ = (expiry_cursor_ + 1) % kShards;
  }
  keys_.fetch_sub(static_cast<int64_t>(dropped), std::memory_order_relaxed);
  expired_.fetch_add(dropped, std::memory_order_relaxed);
  expire_records(now);
}

// ---- records ------------------------------------------------------------------------------

void Store::Pending::complete(sluice_status status, const char* message) const {
  if (record_done == nullptr) {
    done(user_data, status, message);
  } else if (status == SLUICE_OK && value) {
    record_done(user_data, status, nullptr, reinterpret_cast<const uint8_t*>(value->data()),
                value->size());
  } else {
    record_done(user_data, status, message, nullptr, 0);
  }
}

void Store::finish_record(sluice_record_fn done, void* user_data,
                          std::optional<std::string> value) {
  Pending p{nullptr, user_data, done, std::move(value)};
  if (config_.durability == Durability::kInterval) return p.complete(SLUICE_OK, nullptr);
  {
    std::unique_lock lk(mu_);
    if (!stop_) {
      pending_.push_back(std::move(p));
      lk.unlock();
      wake_.notify_one();
      return;
    }
  }
  p.complete(SLUICE_ERR_UNAVAILABLE, "sqlite storage: closing.");
}

void Store::record_put(std::string_view key, std::string_view value, int64_t expires_at_ms,
                       int64_t now_ms, sluice_record_fn done, void* user_data) {
  std::string message;
  if (unavailable(message)) {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    return done(user_data, SLUICE_ERR_UNAVAILABLE, message.c_str(), nullptr, 0);
  }
  latest_now_ms_.store(now_ms, std::memory_order_relaxed);
  {
    std::lock_guard lk(records_mu_);
    std::string k(key);
    if (expires_at_ms <= now_ms) {
      if (records_.erase(k) > 0) record_changes_[std::move(k)] = std::nullopt;
    } else {
      StoredRecord r{std::string(value), expires_at_ms};
      records_[k] = r;
      record_changes_[std::move(k)] = std::move(r);
    }
  }
  finish_record(done, user_data, std::nullopt);
}

void Store::record_get(std::string_view key, int64_t now_ms, sluice_record_fn done,
                       void* user_data) {
  std::string message;
  if (unavailable(message)) {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    return done(user_data, SLUICE_ERR_UNAVAILABLE, message.c_str(), nullptr, 0);
  }
  latest_now_ms_.store(now_ms, std::memory_order_relaxed);
  std::optional<std::string> value;
  {
    std::lock_guard lk(records_mu_);
    auto it = records_.find(std::string(key));
    if (it != records_.end() && it->second.expires_at_ms > now_ms) value = it->second.value;
  }
  // In commit mode a read waits for the commit too, so that nothing read was unwritten.
  finish_record(done, user_data, std::move(value));
}

void Store::record_delete(std::string_view key, int64_t now_ms, sluice_record_fn done,
                          void* user_data) {
  std::string message;
  if (unavailable(message)) {
    rejected_.fetch_add(1, std::memory_order_relaxed);
    return done(user_data, SLUICE_ERR_UNAVAILABLE, message.c_str(), nullptr, 0);
  }
  latest_now_ms_.store(now_ms, std::memory_order_relaxed);
  std::optional<std::string> value;
  {
    std::lock_guard lk(records_mu_);
    std::string k(key);
    auto it = records_.find(k);
    if (it != records_.end()) {
      if (it->second.expires_at_ms > now_ms) value = std::move(it->second.value);
      records_.erase(it);
      record_changes_[std::move(k)] = std::nullopt;
    }
  }
  finish_record(done, user_data, std::move(value));
}

void Store::expire_records(int64_t now_ms) {
  std::lock_guard lk(records_mu_);
  std::erase_if(records_, [&](auto& kv) {
    if (kv.second.expires_at_ms > now_ms) return false;
    record_changes_[kv.first] = std::nullopt;
    return true;
  });
}

Error Store::write_records() {
  std::vector<RecordRow> rows;
  const bool replace = records_resync_;
  {
    std::lock_guard lk(records_mu_);
    if (replace) {
      rows.reserve(records_.size());
      for (const auto& [key, r] : records_)
        rows.push_back(RecordRow{key, r.value, r.expires_at_ms});
    } else {
      rows.reserve(record_changes_.size());
      for (auto& [key, change] : record_changes_) {
        rows.push_back(change ? RecordRow{key, std::move(change->value), change->expires_at_ms}
                              : RecordRow{key, {}, 0, true});
      }
    }
    record_changes_.clear();
  }
  if (rows.empty() && !replace) return std::nullopt;
  if (auto e = db_.write_records(rows, replace)) {
    // The changes taken are in no file now: the next cycle writes every record from memory.
    records_resync_ = true;
    return e;
  }
  records_resync_ = false;
  commits_.fetch_add(1, std::memory_order_relaxed);
  return std::nullopt;
}

void Store::record_failure(const std::string& sentence) {
  write_errors_.fetch_add(1, std::memory_order_relaxed);
  healthy_.store(false, std::memory_order_release);
  bool changed = false;
  {
    std::lock_guard lk(mu_);
    backoff_ = backoff_.count() == 0 ? kFirstBackoff
                                     : std::min(backoff_ * 2, milliseconds(config_.retry_max_ms));
    next_retry_ = Clock::now() + backoff_;
    changed = sentence != last_error_;
    last_error_ = sentence;
  }
  // One line per distinct cause, not one per retry.
  if (changed) log(3, sentence);
}

void Store::record_success() {
  if (healthy_.load(std::memory_order_acquire)) return;
  bool recovered = false;
  {
    std::lock_guard lk(mu_);
    recovered = !last_error_.empty();
    last_error_.clear();
    backoff_ = milliseconds(0);
  }
  healthy_.store(true, std::memory_order_release);
  if (recovered)
    log(1, "sqlite storage: " + config_.path + " is usable again; counters are saved.");
}

sluice_status Store::flush(int64_t timeout_ms, std::string& error) {
  std::unique_lock lk(mu_);
  const uint64_t target = ++flush_requested_;
  wake_.notify_one();
  const auto done = [&] { return flush_done_ >= target; };
  if (timeout_ms < 0) {
    flushed_.wait(lk, done);
  } else if (!flushed_.wait_for(lk, milliseconds(timeout_ms), done)) {
    error =
        "sqlite storage: the flush did not finish within " + std::to_string(timeout_ms) + " ms.";
    return SLUICE_ERR_TIMEOUT;
  }
  if (flush_error_) {
    error = *flush_error_;
    return SLUICE_ERR_UNAVAILABLE;
  }
  return SLUICE_OK;
}

std::string Store::stats_json() const {
  nlohmann::json j;
  j["plugin"] = "sqlite";
  j["path"] = config_.path;
  j["durability"] = config_.durability_name();
  j["interval_ms"] = config_.interval_ms;
  j["healthy"] = healthy_.load();
  j["keys"] = keys_.load();
  j["dirty"] = pending_changes();
  j["last_write_ms"] = last_write_ms_.load();
  j["commits"] = commits_.load();
  j["rows_written"] = rows_written_.load();
  j["journal_bytes"] = journal_bytes_.load();
  j["folds"] = folds_.load();
  j["folded_rows"] = folded_rows_.load();
  j["write_errors"] = write_errors_.load();
  j["expired"] = expired_.load();
  j["rejected_batches"] = rejected_.load();
  j["db_size_bytes"] = db_size_bytes_.load();
  {
    std::lock_guard lk(mu_);
    j["last_error"] = last_error_;
  }
  return j.dump();
}

}  // namespace sluice::sqlite_plugin
