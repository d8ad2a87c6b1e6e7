#include "request.h"

#include <algorithm>
#include <charconv>

namespace sluice::redis_plugin {
namespace {

__extension__ typedef __int128 i128;

// The bounds of algorithms.cpp: parameters beyond them are denied as invalid.
constexpr int64_t kMaxAmount = 1'000'000'000'000'000;
constexpr int64_t kMaxWindowMs = 1'000'000'000'000;
constexpr int64_t kMaxNowMs = int64_t{1} << 62;
constexpr int64_t kMaxLogEntries = 4096;
constexpr int64_t kMaxLeases = 4096;
constexpr int64_t kHeaderSize = 8, kLogEntrySize = 16, kLeaseEntrySize = 24;
// Lua computes in doubles: integers are exact up to 2^53.
constexpr i128 kExact = i128{1} << 53;

void append_int(std::string& out, int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  append_bulk(out, std::string_view(buf, static_cast<size_t>(end - buf)));
}

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  append_bulk(out, std::string_view(buf, static_cast<size_t>(end - buf)));
}

void append_header(std::string& out, char type, size_t n) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
  out += type;
  out.append(buf, end);
  out += "\r\n";
}

bool valid_params(const sluice_limit_params& p) {
  if (p.limit < 1 || p.limit > kMaxAmount) return false;
  if (p.window_ms < 1 || p.window_ms > kMaxWindowMs) return false;
  if (p.burst < 0 || p.burst > kMaxAmount) return false;
  if (p.algorithm == SLUICE_ALG_TOKEN_BUCKET) {
    const int64_t cap = p.burst > 0 ? p.burst : p.limit;
    if (i128{cap} * p.window_ms > INT64_MAX) return false;
  }
  return true;
}

int64_t min_state_size(uint32_t alg) {
  switch (alg) {
    case SLUICE_ALG_FIXED_WINDOW:
    case SLUICE_ALG_TOKEN_BUCKET:
    case SLUICE_ALG_GCRA: return 16;
    case SLUICE_ALG_SLIDING_WINDOW:
    case SLUICE_ALG_SLIDING_WINDOW_COUNTER: return 24;
    case SLUICE_ALG_CONCURRENCY: return kHeaderSize + kLeaseEntrySize;
    default: return 0;
  }
}

// algo::state_capacity, which bounds what a state may hold (log entries, leases).
int64_t state_capacity(const sluice_limit_params& p) {
  const int64_t limit = std::max<int64_t>(1, p.limit);
  switch (p.algorithm) {
    case SLUICE_ALG_SLIDING_WINDOW:
      return kHeaderSize + kLogEntrySize * std::min({limit, std::max<int64_t>(1, p.window_ms),
                                                     kMaxLogEntries});
    case SLUICE_ALG_CONCURRENCY:
      return kHeaderSize + kLeaseEntrySize * std::min(limit, kMaxLeases);
    default: return min_state_size(p.algorithm);
  }
}

// Suffix of the state key: a limit whose algorithm changes starts afresh rather than
// misreading another algorithm's state.
std::string_view key_suffix(uint32_t alg) {
  switch (alg) {
    case SLUICE_ALG_FIXED_WINDOW: return "#fw";
    case SLUICE_ALG_SLIDING_WINDOW: return "#sw";
    case SLUICE_ALG_SLIDING_WINDOW_COUNTER: return "#swc";
    case SLUICE_ALG_TOKEN_BUCKET: return "#tb";
    case SLUICE_ALG_GCRA: return "#gcra";
    case SLUICE_ALG_CONCURRENCY: return "#cc";
    default: return "#x";
  }
}

}  // namespace

void append_bulk(std::string& out, std::string_view bytes) {
  append_header(out, '$', bytes.size());
  out.append(bytes);
  out += "\r\n";
}

void Request::complete(sluice_status status, const char* message) {
  if (done != nullptr) done(user_data, status, status == SLUICE_OK ? nullptr : message);
}

bool encode_request(const Config& config, const sluice_batch& batch, Request& out,
                    std::string& error) {
  if (batch.count > 0 && (batch.items == nullptr || batch.results == nullptr)) {
    error = "redis plugin: the batch has " + std::to_string(batch.count) +
            " items but no item or result array.";
    return false;
  }
  if (config.engine_clock && batch.now_ms >= int64_t{1} << 53) {
    error = "redis plugin: the engine's time " + std::to_string(batch.now_ms) +
            " ms is beyond 2^53, which Redis's Lua cannot compute with exactly.";
    return false;
  }
  out.results = batch.results;
  out.count = batch.count;
  const bool valid_time = batch.now_ms >= 0 && batch.now_ms <= kMaxNowMs;
  append_int(out.args, config.engine_clock ? batch.now_ms : 0);
  append_uint(out.args, batch.count);
  std::string key;
  for (size_t i = 0; i < batch.count; ++i) {
    const sluice_item& it = batch.items[i];
    const sluice_limit_params& p = it.params;
    const std::string which = "redis plugin: item " + std::to_string(i);
    if (it.key == nullptr && it.key_len != 0) {
      error = which + " has a key length of " + std::to_string(it.key_len) + " but no key.";
      return false;
    }
    if (it.op < SLUICE_OP_CONSUME || it.op > SLUICE_OP_RESET) {
      error = which + " has an unknown op " + std::to_string(it.op) + ".";
      return false;
    }
    const int64_t needed = min_state_size(p.algorithm);
    const bool valid = valid_params(p) && (valid_time || !config.engine_clock) && needed > 0 &&
                       int64_t{it.state_capacity} >= needed;
    const int64_t burst = p.burst > 0 ? p.burst : p.limit;
    if (valid && (p.algorithm == SLUICE_ALG_SLIDING_WINDOW_COUNTER ||
                  p.algorithm == SLUICE_ALG_TOKEN_BUCKET || p.algorithm == SLUICE_ALG_GCRA)) {
      const i128 widest = std::max({i128{p.limit}, i128{burst}, i128{it.cost < 0 ? -i128{it.cost} : i128{it.cost}}});
      if (widest * p.window_ms > kExact) {
        error = which + ": limit, burst or cost times window_ms (" + std::to_string(p.window_ms) +
                ") exceeds 2^53, the largest integer Redis's Lua computes exactly; use a "
                "shorter window or a coarser cost unit.";
        return false;
      }
    }
    const int64_t bound = std::min<int64_t>(it.state_capacity, state_capacity(p));
    int64_t max_entries = 0;
    if (p.algorithm == SLUICE_ALG_SLIDING_WINDOW) {
      max_entries = (bound - kHeaderSize) / kLogEntrySize;
    } else if (p.algorithm == SLUICE_ALG_CONCURRENCY) {
      max_entries = std::min({p.limit, kMaxLeases, (bound - kHeaderSize) / kLeaseEntrySize});
    }

    key.assign(config.prefix);
    key.append(it.key != nullptr ? it.key : "", it.key_len);
    key.append(key_suffix(p.algorithm));
    append_bulk(out.keys, key);
    ++out.key_count;
    if (p.algorithm == SLUICE_ALG_CONCURRENCY) {  // leases by expiry, and their costs
      key += 'h';
      append_bulk(out.keys, key);
      ++out.key_count;
    }
    append_int(out.args, it.op);
    // Negative: the script denies the item as the engine's transitions deny invalid ones.
    append_int(out.args, valid ? int64_t{p.algorithm} : -int64_t{p.algorithm});
    append_int(out.args, p.limit);
    append_int(out.args, p.window_ms);
    append_int(out.args, burst);
    append_int(out.args, it.cost);
    append_uint(out.args, it.lease_id);
    append_int(out.args, it.lease_expires_ms);
    append_int(out.args, it.shadow != 0 ? 1 : 0);
    append_int(out.args, max_entries);
  }
  return true;
}

void encode_call(const Config& config, const std::vector<std::unique_ptr<Request>>& requests,
                 bool eval, std::string_view sha, std::string_view script, std::string& out) {
  size_t keys = 0, items = 0;
  for (const auto& r : requests) {
    keys += r->key_count;
    items += r->count;
  }
  append_header(out, '*', 3 + keys + 3 + 2 * requests.size() + 10 * items);
  append_bulk(out, eval ? "EVAL" : "EVALSHA");
  append_bulk(out, eval ? script : sha);
  append_uint(out, keys);
  for (const auto& r : requests) out += r->keys;
  append_bulk(out, config.engine_clock ? "e" : "r");
  append_int(out, config.ttl_grace_ms);
  append_uint(out, requests.size());
  for (const auto& r : requests) out += r->args;
}

}  // namespace sluice::redis_plugin
