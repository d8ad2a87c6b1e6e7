// A limit's parameters as the algorithms take them, for the tests that drive
// sluice::algo::apply or a plugin directly.
#pragma once

#include <cstdint>

#include "sluice/storage_plugin.h"

namespace sluice::testing {

inline sluice_limit_params params(sluice_algorithm alg, int64_t limit, int64_t window_ms,
                                  int64_t burst = 0) {
  sluice_limit_params p{};
  p.algorithm = alg;
  p.limit = limit;
  p.window_ms = window_ms;
  p.burst = burst;
  return p;
}

}  // namespace sluice::testing
