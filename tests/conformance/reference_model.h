// The reference every plugin is compared with: a plain map from key to state blob, the core's
// transitions (sluice::algo::apply) and the batch rules of storage_plugin.h, with no sharding,
// no expiry and no concurrency. A plugin conforms when it answers every batch as this does.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sluice/storage_plugin.h"

namespace sluice::conformance {

class ReferenceModel {
 public:
  // Answers a batch the way storage_plugin.h says: CONSUME/LEASE_ACQUIRE items are
  // all-or-nothing (any denied non-shadow one means nothing changes), PEEK never writes.
  void submit(const sluice_batch& batch);

  // The stored state of a key (empty when none), for diagnostics.
  const std::vector<uint8_t>* state(const std::string& key) const;

 private:
  sluice_item_result evaluate(const sluice_item& item, int64_t now_ms) const;
  sluice_item_result commit(const sluice_item& item, int64_t now_ms);

  std::map<std::string, std::vector<uint8_t>> states_;
};

}  // namespace sluice::conformance
