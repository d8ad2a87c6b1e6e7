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
  if (expires_at_ms <= now_ms) {
    records_.erase(std::string(key));
    return;
  }
  Record& r = records_[std::string(key)];
  r.value.assign(value);
  r.expires_at_ms = expires_at_ms;
}

std::optional<std::string> RecordTable::get(std::string_view key, int64_t now_ms) {
  std::lock_guard lock(mu_);
  sweep(now_ms);
  auto it = records_.find(std::string(key));
  if (it == records_.end() || it->second.expires_at_ms <= now_ms) return std::nullopt;
  return it->second.value;
}

std::optional<std::string> RecordTable::remove(std::string_view key, int64_t now_ms) {
  std::lock_guard lock(mu_);
  sweep(now_ms);
  auto it = records_.find(std::string(key));
  if (it == records_.end()) return std::nullopt;
  std::optional<std::string> value;
  if (it->second.expires_at_ms > now_ms) value = std::move(it->second.value);
  records_.erase(it);
  return value;
}

size_t RecordTable::size() const {
  std::lock_guard lock(mu_);
  return records_.size();
}

}  // namespace sluice::memory_plugin
