// The one table of algorithm names, as the policy language spells them (docs/algorithms.md).
// The policy reader and writer, the algorithms module and the admin GUI all read it.
#pragma once

#include <array>
#include <optional>
#include <string_view>

#include "sluice/storage_plugin.h"

namespace sluice {

struct AlgorithmName {
  sluice_algorithm algorithm;
  std::string_view name;
  bool takes_burst;  // `burst:` is meaningful (token_bucket, gcra)
};

inline constexpr std::array<AlgorithmName, 6> kAlgorithmNames{{
    {SLUICE_ALG_FIXED_WINDOW, "fixed_window", false},
    {SLUICE_ALG_SLIDING_WINDOW, "sliding_window", false},
    {SLUICE_ALG_SLIDING_WINDOW_COUNTER, "sliding_window_counter", false},
    {SLUICE_ALG_TOKEN_BUCKET, "token_bucket", true},
    {SLUICE_ALG_GCRA, "gcra", true},
    {SLUICE_ALG_CONCURRENCY, "concurrency", false},
}};

// Exact (case-sensitive) lookup; nullptr when unknown.
constexpr const AlgorithmName* find_algorithm(std::string_view name) {
  for (const auto& a : kAlgorithmNames) {
    if (a.name == name) return &a;
  }
  return nullptr;
}
constexpr const AlgorithmName* find_algorithm(uint32_t algorithm) {
  for (const auto& a : kAlgorithmNames) {
    if (static_cast<uint32_t>(a.algorithm) == algorithm) return &a;
  }
  return nullptr;
}

}  // namespace sluice
