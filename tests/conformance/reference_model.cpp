#include "reference_model.h"

#include <algorithm>

#include "sluice/algorithms.h"

namespace sluice::conformance {
namespace {

bool is_gating(uint32_t op) { return op == SLUICE_OP_CONSUME || op == SLUICE_OP_LEASE_ACQUIRE; }

}  // namespace

const std::vector<uint8_t>* ReferenceModel::state(const std::string& key) const {
  auto it = states_.find(key);
  return it == states_.end() ? nullptr : &it->second;
}

sluice_item_result ReferenceModel::evaluate(const sluice_item& item, int64_t now_ms) const {
  auto it = states_.find(std::string(item.key, item.key_len));
  std::vector<uint8_t> buf = it == states_.end() ? std::vector<uint8_t>() : it->second;
  const size_t len = buf.size();
  buf.resize(std::max<size_t>(item.state_capacity, len) + 1);
  sluice_item_result result{};
  int64_t expires_at_ms = 0;
  algo::apply(item, now_ms, buf.data(), len, false, result, expires_at_ms);
  return result;
}

sluice_item_result ReferenceModel::commit(const sluice_item& item, int64_t now_ms) {
  std::vector<uint8_t>& stored = states_[std::string(item.key, item.key_len)];
  const size_t len = stored.size();
  stored.resize(std::max<size_t>(item.state_capacity, len));
  sluice_item_result result{};
  int64_t expires_at_ms = 0;
  const size_t new_len = algo::apply(item, now_ms, stored.data(), len, true, result, expires_at_ms);
  stored.resize(new_len);
  if (new_len == 0) states_.erase(std::string(item.key, item.key_len));
  return result;
}

void ReferenceModel::submit(const sluice_batch& batch) {
  bool denied = false;
  for (size_t i = 0; i < batch.count; ++i) {
    batch.results[i] = evaluate(batch.items[i], batch.now_ms);
    if (is_gating(batch.items[i].op) && batch.items[i].shadow == 0 &&
        batch.results[i].allowed == 0) {
      denied = true;
    }
  }
  if (denied) return;
  for (size_t i = 0; i < batch.count; ++i) {
    if (batch.items[i].op != SLUICE_OP_PEEK)
      batch.results[i] = commit(batch.items[i], batch.now_ms);
  }
}

}  // namespace sluice::conformance
