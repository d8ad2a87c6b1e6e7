#include "store.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <utility>

namespace sluice::sqlite_plugin {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kFirstBackoff{100};
// Expiry leaves keys alone for this long after their expiry time, so that a batch decided a
// moment earlier on another thread (an older now_ms) never sees a key vanish that it still
// counts on.
constexpr int64_t kExpirySlackMs = 1000;

bool is_gated(uint32_t op) { return op == SLUICE_OP_CONSUME || op == SLUICE_OP_LEASE_ACQUIRE; }

}  // namespace

Store::Store(const sluice_host_api* host, Config config)
    : host_(host), config_(std::move(config)), db_(config_) {}

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
    p.done(p.user_data, SLUICE_ERR_UNAVAILABLE,
           "sqlite storage: closed before the decision was committed.");
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

void Store::apply_batch(const sluice_batch& batch) {
  uint64_t mask = 0;
  size_t gated = 0;
  for (size_t i = 0; i < batch.count; ++i) {
    const sluice_item& item = batch.items[i];
    mask |= uint64_t{1} << shard_of(std::string_view(item.key, item.key_len));
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
      apply_item(shards_[shard_of(std::string_view(item.key, item.key_len))], item, batch.now_ms,
                 false, batch.results[i]);
      if (!batch.results[i].allowed && !item.shadow) denied = true;
    }
  }
  for (size_t i = 0; i < batch.count; ++i) {
    const sluice_item& item = batch.items[i];
    if (denied && is_gated(item.op)) continue;  // answered by the look-ahead
    apply_item(shards_[shard_of(std::string_view(item.key, item.key_len))], item, batch.now_ms,
               !denied && item.op != SLUICE_OP_PEEK, batch.results[i]);
  }
}

void Store::apply_item(Shard& shard, const sluice_item& item, int64_t now_ms, bool commit,
                       sluice_item_result& result) {
  // Small states (every algorithm but long sliding-window logs) stay on the stack.
  uint8_t small[256];
  thread_local std::vector<uint8_t> large;
  const std::string_view key(item.key, item.key_len);
  auto it = shard.map.find(key);
  const bool present = it != shard.map.end();
  const size_t len = present ? it->second.state.size() : 0;
  const size_t capacity = std::max<size_t>(item.state_capacity, len);
  uint8_t* scratch = small;
  if (capacity > sizeof small) {
    if (large.size() < capacity) large.resize(capacity);
    scratch = large.data();
  }
  if (len > 0) std::memcpy(scratch, it->second.state.data(), len);
  int64_t expires_at_ms = 0;
  size_t new_len =
      host_->apply(&item, now_ms, scratch, len, commit ? 1 : 0, &result, &expires_at_ms);
  if (!commit) return;
  if (item.op == SLUICE_OP_RESET || new_len == 0) {
    if (present) {
      shard.map.erase(it);
      keys_.fetch_sub(1, std::memory_order_relaxed);
    }
    if (present || item.op == SLUICE_OP_RESET) mark_changed(shard, key, nullptr);
    return;
  }
  new_len = std::min(new_len, capacity);
  if (present && new_len == len && it->second.expires_at_ms == expires_at_ms &&
      std::memcmp(scratch, it->second.state.data(), len) == 0) {
    return;
  }
  if (!present) {
    it = shard.map.emplace(std::string(key), Entry{}).first;
    keys_.fetch_add(1, std::memory_order_relaxed);
  }
  Entry& entry = it->second;
  entry.state.assign(reinterpret_cast<const char*>(scratch), new_len);
  entry.expires_at_ms = expires_at_ms;
  mark_changed(shard, key, &entry);
}

void Store::mark_changed(Shard& shard, std::string_view key, Entry* entry) {
  if (entry) {
    if (entry->dirty) return;
    entry->dirty = true;
  }
  shard.changed.emplace_back(key);
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

    const Error err = cycle(force);
    for (const Pending& p : taken) {
      p.done(p.user_data, err ? SLUICE_ERR_UNAVAILABLE : SLUICE_OK, err ? err->c_str() : nullptr);
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

Error Store::cycle(bool force_retry) {
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
  // Expire before writing, so that a full disk gets room back from idle keys first. Once per
  // interval: in commit mode cycles come as fast as commits do.
  if (force_retry || Clock::now() >= next_expiry_) {
    next_expiry_ = Clock::now() + milliseconds(config_.interval_ms);
    if (auto e = expire_some()) {
      record_failure(*e);
      return e;
    }
  }
  std::vector<Row> rows = take_changes();
  // In key order the upserts walk the b-tree from left to right instead of jumping around it,
  // which keeps a large write-behind batch within the page cache.
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return a.key < b.key; });
  const auto write_started = Clock::now();
  if (auto e = db_.write(rows)) {
    give_back(rows);
    record_failure(*e);
    return e;
  }
  if (!rows.empty()) {
    const int64_t took =
        std::chrono::duration_cast<milliseconds>(Clock::now() - write_started).count();
    last_write_ms_.store(took, std::memory_order_relaxed);
    // The interval's crash guarantee stretches to the length of a write; say so, at most once
    // a minute, so that an operator can pick commit mode, a faster disk or a longer interval.
    if (config_.durability == Durability::kInterval && took > config_.interval_ms &&
        Clock::now() >= next_lag_warning_) {
      next_lag_warning_ = Clock::now() + std::chrono::minutes(1);
      log(2, "sqlite storage: writing " + std::to_string(rows.size()) + " changed keys took " +
                 std::to_string(took) + " ms, longer than interval_ms=" +
                 std::to_string(config_.interval_ms) + "; a crash now loses up to that long.");
    }
    commits_.fetch_add(1, std::memory_order_relaxed);
    rows_written_.fetch_add(rows.size(), std::memory_order_relaxed);
    db_size_bytes_.store(db_.size_bytes(), std::memory_order_relaxed);
  }
  record_success();
  return std::nullopt;
}

Error Store::connect() {
  if (auto e = db_.open()) return e;
  if (!loaded_) {
    // Nothing was decided while the file was not loaded (batches were refused), so the map
    // holds at most the remains of an earlier load that failed half-way.
    for (Shard& shard : shards_) {
      std::lock_guard lk(shard.mu);
      shard.map.clear();
      shard.changed.clear();
    }
    keys_ = 0;
    if (auto e = db_.load([&](std::string_view key, std::string_view state, int64_t expires) {
          Shard& shard = shards_[shard_of(key)];
          std::lock_guard lk(shard.mu);
          auto [it, inserted] = shard.map.try_emplace(std::string(key));
          it->second.state.assign(state);
          it->second.expires_at_ms = expires;
          if (inserted) keys_.fetch_add(1, std::memory_order_relaxed);
        })) {
      return e;
    }
    loaded_ = true;
  } else {
    // The file may be a new one (the old was deleted or replaced): memory is the truth, so
    // write all of it.
    mark_all_changed();
  }
  db_size_bytes_.store(db_.size_bytes(), std::memory_order_relaxed);
  return std::nullopt;
}

std::vector<Row> Store::take_changes() {
  std::vector<Row> rows;
  std::vector<std::string> keys;
  for (Shard& shard : shards_) {
    std::lock_guard lk(shard.mu);
    if (shard.changed.empty()) continue;
    keys.swap(shard.changed);
    for (std::string& key : keys) {
      auto it = shard.map.find(std::string_view(key));
      if (it == shard.map.end()) {
        rows.push_back(Row{std::move(key), {}, 0, true});
      } else if (it->second.dirty) {
        it->second.dirty = false;
        rows.push_back(Row{std::move(key), it->second.state, it->second.expires_at_ms, false});
      }
    }
    keys.clear();
  }
  return rows;
}

void Store::give_back(const std::vector<Row>& rows) {
  for (const Row& row : rows) {
    Shard& shard = shards_[shard_of(row.key)];
    std::lock_guard lk(shard.mu);
    auto it = shard.map.find(std::string_view(row.key));
    if (it != shard.map.end()) {
      mark_changed(shard, row.key, &it->second);
    } else if (row.erase) {
      mark_changed(shard, row.key, nullptr);
    }
  }
}

int64_t Store::pending_changes() const {
  int64_t n = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard lk(shard.mu);
    n += static_cast<int64_t>(shard.changed.size());
  }
  return n;
}

void Store::mark_all_changed() {
  for (Shard& shard : shards_) {
    std::lock_guard lk(shard.mu);
    for (auto& [key, entry] : shard.map) mark_changed(shard, key, &entry);
  }
}

Error Store::expire_some() {
  const int64_t now = latest_now_ms_.load(std::memory_order_relaxed) - kExpirySlackMs;
  if (now <= 0) return std::nullopt;
  // A few shards per cycle, under each shard's lock for one pass over it, and at most
  // expiry_batch keys: the sweep never holds up decisions for long, and a full round over all
  // shards takes kShards / kShardsPerSweep cycles.
  constexpr size_t kShardsPerSweep = 8;
  const size_t budget = static_cast<size_t>(config_.expiry_batch);
  std::vector<Row> rows;
  for (size_t visited = 0; visited < kShardsPerSweep && rows.size() < budget; ++visited) {
    Shard& shard = shards_[expiry_cursor_];
    std::lock_guard lk(shard.mu);
    boost::unordered::erase_if(shard.map, [&](auto& kv) {
      if (rows.size() >= budget || kv.second.expires_at_ms > now) return false;
      rows.push_back(Row{kv.first, {}, 0, true});
      return true;
    });
    // A shard with more expired keys than the budget is finished next time.
    if (rows.size() < budget) expiry_cursor_ = (expiry_cursor_ + 1) % kShards;
  }
  if (rows.empty()) return std::nullopt;
  keys_.fetch_sub(static_cast<int64_t>(rows.size()), std::memory_order_relaxed);
  // If this write fails the rows stay in the file: the next start loads them, and they are
  // expired again then.
  if (auto e = db_.write(rows)) return e;
  expired_.fetch_add(rows.size(), std::memory_order_relaxed);
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
