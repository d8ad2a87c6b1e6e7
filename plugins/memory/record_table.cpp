#include "record_table.h"

#include <iterator>

namespace sluice::memory_plugin {

void RecordTable::sweep(int64_t now_ms) {
  if (now_ms < next_sweep_ms_) return;
  next_sweep_ms_ = now_ms + 1000;
  std::erase_if(records_, [now_ms](const auto& kv) { return kv.second.expires_at_ms <= now_ms; });
}

void RecordTable::put(std::string_view key, std::string_view value, int64_t expires_at_ms,
                      int64_t now_ms) {
  std::lock_guard lock(mu_);
  sweep(now_ms);
  auto it = records_.find(key);
  if (expires_at_ms <= now_ms) {
    if (it != records_.end()) records_.erase(it);
    return;
  }
  if (it == records_.end()) it = records_.emplace(std::string(key), Record{}).first;
  Record& r = it->second;
  r.value.assign(value);
  r.expires_at_ms = expires_at_ms;
}

bool RecordTable::get(std::string_view key, int64_t now_ms, std::string& out) {
  std::lock_guard lock(mu_);
  sweep(now_ms);
  auto it = records_.find(key);
  if (it == records_.end() || it->second.expires_at_ms <= now_ms) return false;
  out.assign(it->second.value);
  return true;
}

bool RecordTable::remove(std::string_view key, int64_t now_ms, std::string& out) {
  std::lock_guard lock(mu_);
  sweep(now_ms);
  auto it = records_.find(key);
  if (it == records_.end()) return false;
  const bool live = it->second.expires_at_ms > now_ms;
  if (live) out = std::move(it->second.value);
  records_.erase(it);
  return live;
}

size_t RecordTable::size() const {
  std::lock_guard lock(mu_);
  return records_.size();
}

}  // namespace sluice::memory_plugin
