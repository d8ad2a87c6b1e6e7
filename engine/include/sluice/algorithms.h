// The rate-limit algorithms as pure state transitions over a small state blob, with time
// passed in. Every storage plugin that can run host code (memory, SQLite) stores the blobs
// and applies these transitions under its own atomicity; the Redis plugin runs Lua versions
// of the same definitions. tests/conformance proves they agree.
//
// Shared semantics (all times in ms, all amounts in cost units):
//  - A request carries a cost >= 1 (ADJUST may carry any sign).
//  - CONSUME admits iff the limit can take `cost` now; a denied CONSUME changes nothing.
//  - `remaining` is what could still be admitted right after this decision.
//  - `reset_after_ms` is how long until the limit is fully available again
//    (0 when it already is).
//  - `retry_after_ms` is 0 when allowed; when denied it is the earliest wait after which the
//    same request is admitted if nothing else arrives (never early), or -1 when the cost is
//    larger than the limit can ever admit.
//
// Algorithms:
//  fixed_window            windows aligned to multiples of window_ms since the epoch; at most
//                          `limit` per aligned window.
//  sliding_window          exact log of admissions; never more than `limit` in any interval of
//                          length window_ms. State grows with the number of admissions in the
//                          window (bounded by `limit` entries).
//  sliding_window_counter  current and previous aligned window counts; the previous one is
//                          weighted by the share of it still inside the sliding window.
//                          O(1) state; approximate (never more than `limit` per aligned window).
//  token_bucket            capacity `burst` (default: limit), refilled continuously at
//                          `limit` per window_ms; exact integer arithmetic.
//  gcra                    generic cell rate algorithm: emission interval window_ms/limit,
//                          burst tolerance `burst` (default: limit).
//  concurrency             at most `limit` cost units in flight; each lease expires at its own
//                          deadline, so a crashed client cannot hold a slot forever. CONSUME and
//                          PEEK only look (a free slot?); LEASE_ACQUIRE/LEASE_RELEASE hold and
//                          free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "sluice/export.h"
#include "sluice/storage_plugin.h"

namespace sluice::algo {

// Upper bound of the state blob of a limit with these parameters, in bytes.
SLUICE_API size_t state_capacity(const sluice_limit_params& params);

// The transition itself; see sluice_host_api::apply for the contract.
SLUICE_API size_t apply(const sluice_item& item, int64_t now_ms, uint8_t* state, size_t state_len,
                        bool commit, sluice_item_result& result, int64_t& expires_at_ms);

// The host table handed to plugins (apply + log). Never null.
SLUICE_API const sluice_host_api* host_api();

// "fixed_window" -> SLUICE_ALG_FIXED_WINDOW etc.; nullopt when unknown.
SLUICE_API std::optional<sluice_algorithm> parse_algorithm(std::string_view name);
SLUICE_API std::string_view algorithm_name(sluice_algorithm alg);

}  // namespace sluice::algo
