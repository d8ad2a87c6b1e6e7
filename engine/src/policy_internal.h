// Shared by the policy parser, serialiser, differ and compiler: the spelling of every enum in
// the YAML language, the numeric bounds, and the semantic checks that apply equally to a
// parsed document and to a spec built in code.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/algorithm_names.h"
#include "sluice/algorithms.h"
#include "sluice/policy.h"

namespace sluice::policy_detail {

// Bounds chosen so that limit × window_ms stays below 2^63: the algorithms multiply the two
// in 64-bit integers and must never overflow, whatever a tier multiplier does.
inline constexpr int64_t kMaxLimitValue = 1'000'000'000;
inline constexpr int64_t kMaxWindowMs = 90LL * 24 * 3600 * 1000;
inline constexpr double kMaxMultiplier = 1'000'000.0;
inline constexpr size_t kMaxDescriptionLength = 1024;
inline constexpr int64_t kMaxPriority = 1000;              // tier priorities are -1000 to 1000
inline constexpr int64_t kMaxQueueWaitMs = 3600LL * 1000;  // queue max_wait: at most 1h
inline constexpr int64_t kMaxQueueWaiters = 1'000'000;

// The algorithm names: the one public table (sluice/algorithm_names.h).
inline constexpr const auto& kAlgorithms = kAlgorithmNames;

std::optional<sluice_algorithm> algorithm_from_name(std::string_view name);
std::string_view algorithm_to_name(sluice_algorithm alg);  // "?" when out of range
bool algorithm_takes_burst(sluice_algorithm alg);

// A cost unit: 1..64 of [a-z0-9_], starting with a letter or '_'. Returns the problem or "".
std::string unit_problem(std::string_view unit);
// The largest `usd` limit: a million dollars in micro-dollars. Money limits count with
// fixed_window only (plain or calendar), whose arithmetic never multiplies by the window.
inline constexpr int64_t kMaxMoneyLimit = 1'000'000 * kMicrosPerDollar;
// The largest limit `l` may have (kMaxLimitValue, or kMaxMoneyLimit for a usd fixed window).
int64_t max_limit_of(const LimitSpec& l);
// A non-negative decimal with at most `decimals` fraction digits, as an integer scaled by
// 10^decimals ("0.0000025" with 12 -> 2'500'000); nullopt when malformed or above `max`.
std::optional<int64_t> parse_scaled_decimal(std::string_view text, int decimals, int64_t max);
// The way back: the shortest decimal text ("2.5", "0.0000025", "12").
std::string format_scaled_decimal(int64_t value, int decimals);
std::optional<UnknownResourceMode> unknown_mode_from_name(std::string_view name);
std::string_view unknown_mode_to_name(UnknownResourceMode mode);
std::optional<StorageFailureMode> failure_mode_from_name(std::string_view name);
std::string_view failure_mode_to_name(StorageFailureMode mode);

// 1..kMaxNameLength chars of [A-Za-z0-9_.-/]; names become parts of storage keys, so the
// separators ':' '{' '}' and whitespace are never allowed. Returns the problem or "".
std::string name_problem(std::string_view name);
std::string api_key_problem(std::string_view key);
// Free text (descriptions): valid UTF-8, no control characters but newline and tab.
std::string text_problem(std::string_view text);

// An API key as it may appear in messages and logs: only its last characters.
using sluice::mask_api_key;

// Shortest text that reads back to the same double ("5", "0.2", "1.5").
std::string format_number(double value);

// Paths name a place in the document: "resources.predict.limits[0].limit".
std::string child_path(std::string_view parent, std::string_view key);
std::string index_path(std::string_view parent, size_t index);

// Semantic checks over a whole spec. Errors carry a path and no line; the parser maps the
// path back to the YAML node.
void check_spec(const PolicySpec& spec, std::vector<PolicyError>& errors);

}  // namespace sluice::policy_detail
