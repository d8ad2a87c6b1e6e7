#include "request.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>

#include "slot.h"

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

// Numbers travel as doubles, which is what Lua computes with: this conversion rounds exactly
// as Lua's tonumber() of the decimal would.
char* put_double(char* at, double v) {
  uint64_t bits = std::bit_cast<uint64_t>(v);
  for (int i = 0; i < 8; ++i) {
    *at++ = static_cast<char>(bits & 0xff);
    bits >>= 8;
  }
  return at;
}

double read_double(const char* p) {
  uint64_t bits = 0;
  for (int i = 7; i >= 0; --i) bits = (bits << 8) | static_cast<unsigned char>(p[i]);
  return std::bit_cast<double>(bits);
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
  // A calendar window's burst is its start, ms since the epoch (exact in a Lua number).
  if (p.algorithm == SLUICE_ALG_CALENDAR_WINDOW) return p.burst >= 0 && p.burst <= kMaxNowMs;
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
    case SLUICE_ALG_CALENDAR_WINDOW:
    case SLUICE_ALG_TOKEN_BUCKET:
    case SLUICE_ALG_GCRA:
      return 16;
    case SLUICE_ALG_SLIDING_WINDOW:
    case SLUICE_ALG_SLIDING_WINDOW_COUNTER:
      return 24;
    case SLUICE_ALG_CONCURRENCY:
      return kHeaderSize + kLeaseEntrySize;
    default:
      return 0;
  }
}

// algo::state_capacity, which bounds what a state may hold (log entries, leases).
int64_t state_capacity(const sluice_limit_params& p) {
  const int64_t limit = std::max<int64_t>(1, p.limit);
  switch (p.algorithm) {
    case SLUICE_ALG_SLIDING_WINDOW:
      return kHeaderSize +
             kLogEntrySize * std::min({limit, std::max<int64_t>(1, p.window_ms), kMaxLogEntries});
    case SLUICE_ALG_CONCURRENCY:
      return kHeaderSize + kLeaseEntrySize * std::min(limit, kMaxLeases);
    default:
      return min_state_size(p.algorithm);
  }
}

// Suffix of the state key: a limit whose algorithm changes starts afresh rather than
// misreading another algorithm's state.
std::string_view key_suffix(uint32_t alg) {
  switch (alg) {
    case SLUICE_ALG_FIXED_WINDOW:
      return "#fw";
    case SLUICE_ALG_SLIDING_WINDOW:
      return "#sw";
    case SLUICE_ALG_SLIDING_WINDOW_COUNTER:
      return "#swc";
    case SLUICE_ALG_TOKEN_BUCKET:
      return "#tb";
    case SLUICE_ALG_GCRA:
      return "#gcra";
    case SLUICE_ALG_CONCURRENCY:
      return "#cc";
    case SLUICE_ALG_CALENDAR_WINDOW:
      return "#cal";
    default:
      return "#x";
  }
}

}  // namespace

void append_bulk(std::string& out, std::string_view bytes) {
  append_header(out, '$', bytes.size());
  out.append(bytes);
  out += "\r\n";
}

void Request::complete(sluice_status status, const char* message) {
  const char* why = status == SLUICE_OK ? nullptr : message;
  if (record != RecordOp::kNone) {
    if (record_done != nullptr) record_done(user_data, status, why, nullptr, 0);
  } else if (done != nullptr) {
    done(user_data, status, why);
  }
}

void Request::complete_record(const char* value, size_t len) {
  if (record_done != nullptr)
    record_done(user_data, SLUICE_OK, nullptr, reinterpret_cast<const uint8_t*>(value), len);
}

namespace {

constexpr std::string_view kDeleteScript =
    "local v = redis.call('GET', KEYS[1]) if v then redis.call('DEL', KEYS[1]) end return v";

void start_record(const Config& config, std::string_view key, int64_t now_ms, size_t args,
                  Request& out, std::string& full_key) {
  full_key = config.prefix;
  full_key.append(key);
  if (config.mode == Mode::kCluster) out.slot = key_slot(full_key);
  out.record_now_ms = now_ms;
  append_header(out.command, '*', args);
}

}  // namespace

void encode_record_put(const Config& config, std::string_view key, std::string_view value,
                       int64_t expires_at_ms, int64_t now_ms, Request& out) {
  std::string full_key;
  out.record = Request::RecordOp::kPut;
  start_record(config, key, now_ms, 5, out, full_key);
  append_bulk(out.command, "SET");
  append_bulk(out.command, full_key);
  char expiry[8];
  uint64_t bits = static_cast<uint64_t>(expires_at_ms);
  for (char& c : expiry) {
    c = static_cast<char>(bits & 0xff);
    bits >>= 8;
  }
  append_header(out.command, '$', sizeof expiry + value.size());
  out.command.append(expiry, sizeof expiry).append(value).append("\r\n");
  append_bulk(out.command, "PX");
  // An expired record is absent by its stored expiry already; Redis reclaims it soon.
  const int64_t left = std::max<int64_t>(1, expires_at_ms - now_ms);
  append_int(out.command,
             std::min<int64_t>(left, INT64_MAX - config.ttl_grace_ms) + config.ttl_grace_ms);
}

void encode_record_get(const Config& config, std::string_view key, int64_t now_ms, Request& out) {
  std::string full_key;
  out.record = Request::RecordOp::kGet;
  start_record(config, key, now_ms, 2, out, full_key);
  append_bulk(out.command, "GET");
  append_bulk(out.command, full_key);
}

void encode_record_delete(const Config& config, std::string_view key, int64_t now_ms,
                          Request& out) {
  std::string full_key;
  out.record = Request::RecordOp::kDelete;
  start_record(config, key, now_ms, 4, out, full_key);
  append_bulk(out.command, "EVAL");
  append_bulk(out.command, kDeleteScript);
  append_bulk(out.command, "1");
  append_bulk(out.command, full_key);
}

bool decode_record(const char* bytes, size_t len, int64_t now_ms, const char*& value,
                   size_t& value_len) {
  if (len < 8) return false;
  uint64_t bits = 0;
  for (int i = 7; i >= 0; --i) bits = (bits << 8) | static_cast<unsigned char>(bytes[i]);
  const auto expires_at_ms = static_cast<int64_t>(bits);
  value = expires_at_ms > now_ms ? bytes + 8 : nullptr;
  value_len = value != nullptr ? len - 8 : 0;
  return true;
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
  out.packed.reserve(16 + 72 * batch.count);
  char head[16];
  put_double(put_double(head, static_cast<double>(config.engine_clock ? batch.now_ms : 0)),
             static_cast<double>(batch.count));
  out.packed.append(head, sizeof head);
  for (size_t i = 0; i < batch.count; ++i) {
    const sluice_item& it = batch.items[i];
    const sluice_limit_params& p = it.params;
    auto which = [i] { return "redis plugin: item " + std::to_string(i); };
    if (it.key == nullptr && it.key_len != 0) {
      error = which() + " has a key length of " + std::to_string(it.key_len) + " but no key.";
      return false;
    }
    if (it.op < SLUICE_OP_CONSUME || it.op > SLUICE_OP_RESET) {
      error = which() + " has an unknown op " + std::to_string(it.op) + ".";
      return false;
    }
    const int64_t needed = min_state_size(p.algorithm);
    const bool valid = valid_params(p) && (valid_time || !config.engine_clock) && needed > 0 &&
                       int64_t{it.state_capacity} >= needed;
    const int64_t burst =
        p.burst > 0 || p.algorithm == SLUICE_ALG_CALENDAR_WINDOW ? p.burst : p.limit;
    if (valid && (p.algorithm == SLUICE_ALG_SLIDING_WINDOW_COUNTER ||
                  p.algorithm == SLUICE_ALG_TOKEN_BUCKET || p.algorithm == SLUICE_ALG_GCRA)) {
      const i128 cost = it.cost < 0 ? -i128{it.cost} : i128{it.cost};
      const i128 widest = std::max({i128{p.limit}, i128{burst}, cost});
      if (widest * p.window_ms > kExact) {
        error = which() + ": limit, burst or cost times window_ms (" + std::to_string(p.window_ms) +
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

    const std::string_view name(it.key != nullptr ? it.key : "", it.key_len);
    const std::string_view suffix = key_suffix(p.algorithm);
    const bool leases = p.algorithm == SLUICE_ALG_CONCURRENCY;
    if (config.mode == Mode::kCluster) {
      // The engine's keys share the hash tag {resource:subject}; the whole key decides, as in
      // Redis, so that a key without a tag is routed right too.
      std::string key = config.prefix;
      key.append(name).append(suffix);
      const uint16_t slot = key_slot(key);
      out.cross_slot =
          out.cross_slot || (i > 0 && slot != out.slot) || (leases && key_slot(key + 'h') != slot);
      out.slot = slot;
    }
    for (int k = 0; k < (leases ? 2 : 1); ++k) {  // leases: by expiry, then their costs ('h')
      append_header(out.keys, '$', config.prefix.size() + name.size() + suffix.size() + k);
      out.keys.append(config.prefix).append(name).append(suffix);
      if (k == 1) out.keys += 'h';
      out.keys += "\r\n";
      ++out.key_count;
    }
    char fields[9 * 8];
    char* at = put_double(fields, it.op);
    // Negative: the script denies the item as the engine's transitions deny invalid ones.
    at = put_double(at, valid ? double(p.algorithm) : -double(p.algorithm));
    at = put_double(at, static_cast<double>(p.limit));
    at = put_double(at, static_cast<double>(p.window_ms));
    at = put_double(at, static_cast<double>(burst));
    at = put_double(at, static_cast<double>(it.cost));
    at = put_double(at, static_cast<double>(it.lease_expires_ms));
    at = put_double(at, it.shadow != 0 ? 1 : 0);
    put_double(at, static_cast<double>(max_entries));
    out.packed.append(fields, sizeof fields);
    if (leases) {  // ids beyond 2^53 must stay exact: decimal
      append_uint(out.leases, it.lease_id);
      ++out.lease_count;
    }
  }
  return true;
}

bool decode_result(const char* bytes, sluice_item_result& out) {
  int64_t v[5];
  bool ok = true;
  for (int j = 0; j < 5; ++j) {
    const double d = read_double(bytes + j * sizeof(double));
    // Integral and within int64, as whatever the script computes is; anything else is a bug.
    ok = ok && d >= -9.2e18 && d <= 9.2e18 && std::trunc(d) == d;
    v[j] = ok ? static_cast<int64_t>(d) : 0;
  }
  out = sluice_item_result{static_cast<int32_t>(v[0]), 0, v[1], v[2], v[3], v[4]};
  return ok;
}

void encode_call(const Config& config, const std::vector<std::unique_ptr<Request>>& requests,
                 bool eval, std::string_view sha, std::string_view script, std::string& out) {
  size_t keys = 0, leases = 0, packed = 0;
  for (const auto& r : requests) {
    keys += r->key_count;
    leases += r->lease_count;
    packed += r->packed.size();
  }
  append_header(out, '*', 3 + keys + 4 + leases);
  append_bulk(out, eval ? "EVAL" : "EVALSHA");
  append_bulk(out, eval ? script : sha);
  append_uint(out, keys);
  for (const auto& r : requests) out += r->keys;
  append_bulk(out, config.engine_clock ? "e" : "r");
  append_int(out, config.ttl_grace_ms);
  append_uint(out, requests.size());
  append_header(out, '$', packed);
  for (const auto& r : requests) out += r->packed;
  out += "\r\n";
  for (const auto& r : requests) out += r->leases;
}

}  // namespace sluice::redis_plugin
