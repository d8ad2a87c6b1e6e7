// The rate-limit algorithms as pure state transitions. docs/algorithms.md states each one's
// exact definition, guarantee and state layout; the Redis plugin's Lua mirrors these.
//
// Every algorithm is decoded from its blob into a small read-only model answering the same
// questions (what is left, when is it full again, when would `cost` fit), so one driver
// implements the op semantics for all of them. Arithmetic that multiplies amounts by times
// runs in 128 bits, and parameters are bounded (kMaxAmount, kMaxWindowMs) so that no product
// of two stored or passed values can overflow.
#include "sluice/algorithms.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <limits>
#include <vector>

#include "sluice/algorithm_names.h"

namespace sluice::algo {
namespace {

__extension__ typedef __int128 i128;

constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

// Bounds of valid parameters and times. Amounts of 10^15 and windows of 30 years are far
// beyond any real limit, and keep every product of two values below 2^113.
constexpr int64_t kMaxAmount = 1'000'000'000'000'000;
constexpr int64_t kMaxWindowMs = 1'000'000'000'000;
constexpr int64_t kMaxNowMs = int64_t{1} << 62;

// Log entries (sliding_window) and leases (concurrency) kept per key at most; bounds the
// blob at ~64 KiB / ~96 KiB whatever the limit.
constexpr int64_t kMaxLogEntries = 4096;
constexpr int64_t kMaxLeases = 4096;

// Tags of the variable-length blobs, so a blob of another algorithm is never misread.
constexpr uint32_t kSlidingTag = 0x314C5753;      // "SWL1"
constexpr uint32_t kConcurrencyTag = 0x31434353;  // "SCC1"
constexpr size_t kHeaderSize = 8;
constexpr size_t kLogEntrySize = 16;    // int64 time, int64 cost
constexpr size_t kLeaseEntrySize = 24;  // uint64 id, int64 expires, int64 cost

int64_t load_i64(const uint8_t* p) {
  int64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
uint64_t load_u64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
void store_i64(uint8_t* p, int64_t v) { std::memcpy(p, &v, sizeof v); }
void store_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, sizeof v); }
void store_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, sizeof v); }

int64_t sat64(i128 v) {
  if (v > kInt64Max) return kInt64Max;
  if (v < std::numeric_limits<int64_t>::min()) return std::numeric_limits<int64_t>::min();
  return static_cast<int64_t>(v);
}
// Durations reported to callers: never negative.
int64_t duration(i128 v) { return v <= 0 ? 0 : sat64(v); }

i128 floor_div(i128 a, i128 b) {  // b > 0
  // Most operands fit 64 bits: one hardware division instead of a libgcc 128-bit call.
  if (a >= std::numeric_limits<int64_t>::min() && a <= kInt64Max && b <= kInt64Max) {
    const auto x = static_cast<int64_t>(a), y = static_cast<int64_t>(b);
    int64_t q64 = x / y;
    if (x % y != 0 && x < 0) --q64;
    return q64;
  }
  i128 q = a / b;
  if ((a % b != 0) && (a < 0)) --q;
  return q;
}
i128 ceil_div(i128 a, i128 b) { return -floor_div(-a, b); }  // b > 0

bool is_consuming(uint32_t op) {
  return op == SLUICE_OP_CONSUME || op == SLUICE_OP_PEEK || op == SLUICE_OP_LEASE_ACQUIRE;
}

// What every model is decoded from.
struct Env {
  int64_t now;
  int64_t limit;
  int64_t window;
  int64_t burst;  // effective: params.burst or limit
};

// ---- fixed_window: {window_start, count} -------------------------------------------------
class FixedWindow {
 public:
  static constexpr size_t kSize = 16;

  // `calendar`: the window's bounds come with the item (calendar_window: it starts at
  // params.burst and lasts window_ms); else windows are aligned to multiples of window_ms.
  FixedWindow(const Env& env, const uint8_t* s, size_t len, bool calendar = false) : env_(env) {
    // now >= 0 (valid_time): no 128-bit division
    start_ = calendar ? env.burst : env.now - env.now % env.window;
    if (len == kSize) {
      const int64_t ws = load_i64(s), count = load_i64(s + 8);
      // A window one ahead means the clock stepped back a little: keep counting it.
      if (count >= 0 && (ws == start_ || ws == start_ + env.window)) {
        start_ = ws;
        count_ = count;
      }
    }
  }
  int64_t capacity() const { return env_.limit; }
  int64_t remaining() const { return std::max<int64_t>(0, env_.limit - count_); }
  int64_t reset_after() const { return count_ > 0 ? duration(end() - env_.now) : 0; }
  int64_t expires_at() const { return count_ > 0 ? end() : env_.now; }
  int64_t earliest(int64_t cost) const {
    return i128{count_} + cost <= env_.limit ? env_.now : end();
  }
  size_t write(uint8_t* buf, size_t /*max_write*/, int64_t delta, bool adjust) const {
    i128 count = i128{count_} + delta;
    if (adjust && count < 0) count = 0;
    if (count <= 0) return 0;
    store_i64(buf, start_);
    store_i64(buf + 8, sat64(count));
    return kSize;
  }

 private:
  int64_t end() const { return start_ + env_.window; }
  Env env_;
  int64_t start_ = 0;
  int64_t count_ = 0;
};

// calendar_window: a fixed window whose bounds the host gives (see the header).
class CalendarWindow : public FixedWindow {
 public:
  CalendarWindow(const Env& env, const uint8_t* s, size_t len) : FixedWindow(env, s, len, true) {}
};

// ---- sliding_window_counter: {window_start, previous, current} ---------------------------
// Two encodings: {window_start, prev, cur} as three int64 (24 bytes), or, when the counts fit
// (prev 32 bits, cur 31: always, unless a limit is above two billion), {window_start, prev u32,
// cur u32 | kCompactMark} in 16 bytes, which a plugin can keep inside its table slot instead
// of in a block of its own. The mark makes the last eight bytes a negative number, which the
// other 16-byte states (fixed_window, token_bucket, gcra) never hold there: each algorithm
// reads another's state as a fresh key (a limit whose algorithm changed keeps its key).
class SlidingCounter {
 public:
  static constexpr size_t kSize = 24;         // what a state may need
  static constexpr size_t kCompactSize = 16;  // what it usually takes
  static constexpr uint32_t kCompactMark = 0x8000'0000u;

  SlidingCounter(const Env& env, const uint8_t* s, size_t len) : env_(env) {
    const int64_t w = env.window;
    start_ = env.now - env.now % w;  // now >= 0 (valid_time): no 128-bit division
    const bool compact = len == kCompactSize && (load_u32(s + 12) & kCompactMark) != 0;
    if (len == kSize || compact) {
      const int64_t ws = load_i64(s);
      int64_t prev, cur;
      if (compact) {
        prev = load_u32(s + 8);
        cur = load_u32(s + 12) & ~kCompactMark;
      } else {
        prev = load_i64(s + 8);
        cur = load_i64(s + 16);
      }
      if (prev >= 0 && cur >= 0) {
        if (ws == start_) {
          prev_ = prev;
          cur_ = cur;
        } else if (ws == start_ - w) {
          prev_ = cur;
        } else if (ws == start_ + w) {  // the clock stepped back a little
          start_ = ws;
          prev_ = prev;
          cur_ = cur;
        }
      }
    }
  }
  int64_t capacity() const { return env_.limit; }
  int64_t remaining() const {
    const i128 free = free_scaled(elapsed(env_.now));
    return free <= 0 ? 0 : std::min<int64_t>(env_.limit, sat64(floor_div(free, env_.window)));
  }
  int64_t reset_after() const { return duration(full_at() - env_.now); }
  int64_t expires_at() const { return std::max(env_.now, sat64(full_at())); }

  // The estimate only falls as time passes, so the first admitting instant is found window by
  // window: in a window with counts (P, C), `cost` fits at offset e iff
  // P*(W-e) + (C+cost)*W <= L*W.
  int64_t earliest(int64_t cost) const {
    const int64_t w = env_.window;
    i128 start = start_, prev = prev_, cur = cur_;
    i128 at = env_.now, offset = elapsed(env_.now);
    for (int i = 0; i < 3; ++i) {
      const i128 spare = i128{env_.limit} - cur - cost;
      if (spare >= 0) {
        if (prev == 0) return sat64(at);
        const i128 offset_min = w - floor_div(spare * w, prev);
        if (offset_min <= offset) return sat64(at);
        if (offset_min < w) return sat64(start + offset_min);
      }
      start += w;
      at = start;
      offset = 0;
      prev = cur;
      cur = 0;
    }
    return sat64(at);  // both counts gone; cost <= limit fits
  }
  size_t write(uint8_t* buf, size_t /*max_write*/, int64_t delta, bool adjust) const {
    i128 prev = prev_, cur = i128{cur_} + delta;
    if (adjust && cur < 0) {  // a refund larger than this window returns to the previous one
      prev = std::max<i128>(0, prev + cur);
      cur = 0;
    }
    if (prev <= 0 && cur <= 0) return 0;
    cur = std::max<i128>(0, cur);
    store_i64(buf, start_);
    if (prev <= UINT32_MAX && cur < kCompactMark) {
      store_u32(buf + 8, static_cast<uint32_t>(prev));
      store_u32(buf + 12, static_cast<uint32_t>(cur) | kCompactMark);
      return kCompactSize;
    }
    store_i64(buf + 8, sat64(prev));
    store_i64(buf + 16, sat64(cur));
    return kSize;
  }

 private:
  i128 elapsed(int64_t t) const { return std::max<i128>(0, i128{t} - start_); }
  i128 free_scaled(i128 e) const {
    const int64_t w = env_.window;
    return i128{env_.limit} * w - i128{prev_} * (w - e) - i128{cur_} * w;
  }
  i128 full_at() const {
    if (cur_ > 0) return i128{start_} + 2 * i128{env_.window};
    if (prev_ > 0) return i128{start_} + env_.window;
    return env_.now;
  }
  Env env_;
  int64_t start_ = 0;
  int64_t prev_ = 0;
  int64_t cur_ = 0;
};

// ---- token_bucket: {deficit, last_ms} ----------------------------------------------------
// The deficit is the number of missing tokens times window_ms, so refilling `limit` tokens per
// window is adding `limit` per millisecond: exact integers throughout.
class TokenBucket {
 public:
  static constexpr size_t kSize = 16;

  TokenBucket(const Env& env, const uint8_t* s, size_t len) : env_(env), at_(env.now) {
    if (len == kSize) {
      const int64_t deficit = load_i64(s), last = load_i64(s + 8);
      // A state from further ahead than one refill period was written while the clock was
      // wrong (a forward step since corrected, or a large step back): it is forgotten rather
      // than honoured until the clock catches up with it (docs/algorithms.md, "Clock steps").
      if (deficit >= 0 && i128{last} - env.now <= period()) {
        if (last >= env.now) {  // the clock stepped back a little: no refill until it catches up
          at_ = last;
          deficit_ = deficit;
        } else {
          deficit_ = std::max<i128>(0, deficit - (i128{env.now} - last) * env.limit);
        }
      }
    }
  }
  int64_t capacity() const { return env_.burst; }
  int64_t remaining() const {
    const i128 free = cap_scaled() - deficit_;
    return free <= 0 ? 0 : sat64(floor_div(free, env_.window));
  }
  int64_t reset_after() const { return duration(full_at() - env_.now); }
  int64_t expires_at() const { return std::max(env_.now, sat64(full_at())); }
  int64_t earliest(int64_t cost) const {
    const i128 need = deficit_ + i128{cost} * env_.window - cap_scaled();
    if (need <= 0) return env_.now;
    return sat64(at_ + ceil_div(need, env_.limit));
  }
  size_t write(uint8_t* buf, size_t /*max_write*/, int64_t delta, bool adjust) const {
    i128 deficit = deficit_ + i128{delta} * env_.window;
    if (adjust && deficit < 0) deficit = 0;  // a refund never fills beyond capacity
    // As gcra: a subject owes at most one burst of settlements on top of a spent burst.
    deficit = std::min(deficit, 2 * cap_scaled());
    if (deficit <= 0) return 0;
    store_i64(buf, sat64(deficit));
    store_i64(buf + 8, at_);
    return kSize;
  }

 private:
  i128 cap_scaled() const { return i128{env_.burst} * env_.window; }
  // Time to refill an empty bucket.
  i128 period() const { return ceil_div(cap_scaled(), env_.limit); }
  i128 full_at() const {
    return deficit_ > 0 ? at_ + ceil_div(deficit_, env_.limit) : i128{env_.now};
  }
  Env env_;
  int64_t at_;  // time the deficit refers to: now, or later if the clock stepped back
  i128 deficit_ = 0;
};

// ---- gcra: {tat_ms, tat_fraction} --------------------------------------------------------
// The theoretical arrival time is kept in units of 1/limit ms (tat_ms*limit + fraction), so
// the emission interval window/limit is exactly `window` units.
class Gcra {
 public:
  static constexpr size_t kSize = 16;

  Gcra(const Env& env, const uint8_t* s, size_t len)
      : env_(env), now_units_(i128{env.now} * env.limit), tat_(now_units_) {
    if (len == kSize) {
      const int64_t ms = load_i64(s), frac = load_i64(s + 8);
      if (frac >= 0) {
        // A fraction from a larger limit is clamped: the TAT moves by less than 1 ms.
        const i128 tat = i128{ms} * env.limit + std::min(frac, env.limit - 1);
        // No write leaves the TAT further ahead than max_ahead(); one that is was written while
        // the clock was wrong and is forgotten (docs/algorithms.md, "Clock steps").
        if (tat - now_units_ <= max_ahead()) tat_ = std::max(tat_, tat);
      }
    }
  }
  int64_t capacity() const { return env_.burst; }
  int64_t remaining() const {
    const i128 free = tolerance() - (tat_ - now_units_);
    return free <= 0 ? 0 : sat64(floor_div(free, env_.window));
  }
  int64_t reset_after() const { return duration(ceil_div(tat_ - now_units_, env_.limit)); }
  int64_t expires_at() const { return sat64(i128{env_.now} + reset_after()); }
  int64_t earliest(int64_t cost) const {
    const i128 over = tat_ + i128{cost} * env_.window - tolerance();
    if (over <= now_units_) return env_.now;
    return sat64(ceil_div(over, env_.limit));
  }
  size_t write(uint8_t* buf, size_t /*max_write*/, int64_t delta, bool /*adjust*/) const {
    // Never below now: a refund cannot fill beyond the burst. Never beyond max_ahead(): a
    // subject owes at most one burst of settlements on top of a spent burst.
    const i128 tat =
        std::clamp(tat_ + i128{delta} * env_.window, now_units_, now_units_ + max_ahead());
    if (tat <= now_units_) return 0;
    const i128 ms = floor_div(tat, env_.limit);
    store_i64(buf, sat64(ms));
    store_i64(buf + 8, static_cast<int64_t>(tat - ms * env_.limit));
    return kSize;
  }

 private:
  i128 tolerance() const { return i128{env_.burst} * env_.window; }
  i128 max_ahead() const { return 2 * tolerance(); }
  Env env_;
  i128 now_units_;
  i128 tat_;  // max(stored TAT, now), in units
};

// ---- sliding_window: header {tag, n} + n × {time_ms, cost}, times strictly increasing ------
class SlidingLog {
 public:
  static constexpr size_t kSize = kHeaderSize + kLogEntrySize;  // smallest useful capacity

  SlidingLog(const Env& env, const uint8_t* s, size_t len) : env_(env) {
    if (len < kHeaderSize || load_u32(s) != kSlidingTag) return;
    const size_t n = load_u32(s + 4);
    if (len != kHeaderSize + n * kLogEntrySize) return;
    for (size_t i = 0; i < n; ++i) {
      if (cost_at(s, i) < 0 || (i > 0 && time_at(s, i) <= time_at(s, i - 1))) return;
    }
    n_ = n;
    // Entries at or before now - window have left the window.
    size_t lo = 0, hi = n;
    while (lo < hi) {
      const size_t mid = (lo + hi) / 2;
      if (i128{time_at(s, mid)} + env.window <= env.now) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    first_ = lo;
    // Entries more than a window ahead were written while the clock was wrong: forgotten
    // (docs/algorithms.md, "Clock steps"), and dropped by the next write.
    while (n_ > first_ && i128{time_at(s, n_ - 1)} - env.now > env.window) --n_;
    for (size_t i = first_; i < n_; ++i) sum_ += cost_at(s, i);
    if (first_ < n_) newest_ = time_at(s, n_ - 1);
    data_ = s;
  }
  int64_t capacity() const { return env_.limit; }
  int64_t remaining() const { return sat64(std::max<i128>(0, env_.limit - sum_)); }
  int64_t reset_after() const { return duration(full_at() - env_.now); }
  int64_t expires_at() const { return std::max(env_.now, sat64(full_at())); }
  int64_t earliest(int64_t cost) const {
    const i128 excess = sum_ + cost - env_.limit;
    if (excess <= 0) return env_.now;
    i128 freed = 0;
    for (size_t i = first_; i < n_; ++i) {
      freed += cost_at(data_, i);
      if (freed >= excess) return sat64(i128{time_at(data_, i)} + env_.window);
    }
    return sat64(full_at());  // unreachable while cost <= limit
  }

  // Rewrites the log in `buf` (a byte copy of what this model was decoded from): drops what
  // left the window, adds `delta` at now, refunds from the newest entries, and keeps at most
  // max_entries by folding the oldest entries into the next one — a fold only moves cost
  // later, so the log never under-counts.
  size_t write(uint8_t* buf, size_t max_write, int64_t delta, bool /*adjust*/) const {
    const size_t max_entries = max_entries_for(max_write);
    size_t n = n_ - first_;
    if (first_ > 0 && n > 0) {
      std::memmove(entry(buf, 0), entry(buf, first_), n * kLogEntrySize);
    }
    if (delta > 0) {
      if (n > 0 && time_at(buf, n - 1) >= env_.now) {
        set_cost(buf, n - 1, sat64(i128{cost_at(buf, n - 1)} + delta));
      } else if (max_entries >= 2 || n == 0) {
        n = compact(buf, n, max_entries - 1);
        store_i64(entry(buf, n), env_.now);
        set_cost(buf, n, delta);
        ++n;
      } else {
        n = compact(buf, n, 1);
        store_i64(entry(buf, 0), env_.now);
        set_cost(buf, 0, sat64(i128{cost_at(buf, 0)} + delta));
      }
    } else if (delta < 0) {
      i128 refund = -i128{delta};
      while (refund > 0 && n > 0) {
        const int64_t c = cost_at(buf, n - 1);
        if (c <= refund) {
          refund -= c;
          --n;
        } else {
          set_cost(buf, n - 1, sat64(c - refund));
          refund = 0;
        }
      }
    }
    n = compact(buf, n, max_entries);
    if (n == 0) return 0;
    store_u32(buf, kSlidingTag);
    store_u32(buf + 4, static_cast<uint32_t>(n));
    return kHeaderSize + n * kLogEntrySize;
  }

  static size_t max_entries_for(size_t max_write) {
    return max_write < kHeaderSize ? 0 : (max_write - kHeaderSize) / kLogEntrySize;
  }

 private:
  static uint8_t* entry(uint8_t* s, size_t i) { return s + kHeaderSize + i * kLogEntrySize; }
  static int64_t time_at(const uint8_t* s, size_t i) {
    return load_i64(s + kHeaderSize + i * kLogEntrySize);
  }
  static int64_t cost_at(const uint8_t* s, size_t i) {
    return load_i64(s + kHeaderSize + i * kLogEntrySize + 8);
  }
  static void set_cost(uint8_t* s, size_t i, int64_t c) { store_i64(entry(s, i) + 8, c); }
  static size_t compact(uint8_t* s, size_t n, size_t keep) {
    if (keep == 0 || n <= keep) return n;
    const size_t fold = n - keep;
    i128 moved = 0;
    for (size_t i = 0; i <= fold; ++i) moved += cost_at(s, i);
    set_cost(s, fold, sat64(moved));
    std::memmove(entry(s, 0), entry(s, fold), keep * kLogEntrySize);
    return keep;
  }
  i128 full_at() const { return sum_ > 0 ? i128{newest_} + env_.window : i128{env_.now}; }
  Env env_;
  const uint8_t* data_ = nullptr;
  size_t n_ = 0;
  size_t first_ = 0;  // first entry still inside the window
  i128 sum_ = 0;
  int64_t newest_ = 0;
};

// ---- the driver shared by the counting algorithms ----------------------------------------

struct Call {
  const sluice_item& item;
  int64_t now;
  uint8_t* state;
  size_t len;
  size_t max_write;
  bool commit;
  sluice_item_result& out;
  int64_t& expires;
};

void fill(sluice_item_result& out, bool allowed, int64_t limit, int64_t remaining,
          int64_t reset_after, int64_t retry_after) {
  out.allowed = allowed ? 1 : 0;
  out.reserved = 0;
  out.limit = limit;
  out.remaining = remaining;
  out.reset_after_ms = reset_after;
  out.retry_after_ms = retry_after;
}

// Scratch space for evaluating a change without writing it (commit = false, PEEK). Grows once
// per thread to the largest blob seen, so steady state allocates nothing.
uint8_t* scratch(size_t size) {
  thread_local std::vector<uint8_t> buf;
  if (buf.size() < size) buf.resize(size);
  return buf.data();
}

template <class Model>
size_t drive(const Env& env, Call& c) {
  const Model pre(env, c.state, c.len);
  const uint32_t op = c.item.op;
  const int64_t cost = c.item.cost;
  c.expires = pre.expires_at();

  auto report = [&](const Model& m, bool allowed, int64_t retry) {
    fill(c.out, allowed, m.capacity(), m.remaining(), m.reset_after(), retry);
  };
  // Applies `delta` for real (commit) or on a copy (to report the state it would leave).
  auto change = [&](int64_t delta, bool adjust, bool write) -> size_t {
    if (write) {
      const size_t len = pre.write(c.state, c.max_write, delta, adjust);
      const Model post(env, c.state, len);
      report(post, true, 0);
      c.expires = post.expires_at();
      return len;
    }
    uint8_t* copy = scratch(std::max(c.len, c.max_write));
    if (c.len > 0) std::memcpy(copy, c.state, c.len);
    const size_t len = pre.write(copy, c.max_write, delta, adjust);
    report(Model(env, copy, len), true, 0);
    return c.len;
  };

  switch (op) {
    case SLUICE_OP_RESET:
      fill(c.out, true, pre.capacity(), pre.capacity(), 0, 0);
      if (!c.commit) return c.len;
      c.expires = c.now;
      return 0;
    case SLUICE_OP_LEASE_RELEASE:
      report(pre, true, 0);
      return c.len;
    case SLUICE_OP_ADJUST:
      return change(cost, true, c.commit);
    default:
      break;
  }
  if (!is_consuming(op) || cost < 0 || cost > pre.capacity()) {
    report(pre, false, -1);
    return c.len;
  }
  const int64_t at = pre.earliest(cost);
  if (at > c.now) {
    report(pre, false, at - c.now);
    return c.len;
  }
  return change(cost, false, c.commit && op != SLUICE_OP_PEEK);
}

// ---- concurrency: header {tag, n} + n × {lease_id, expires_ms, cost}, by expiry ---------
class Leases {
 public:
  static constexpr size_t kSize = kHeaderSize + kLeaseEntrySize;

  Leases(const Env& env, const uint8_t* s, size_t len) : env_(env) {
    if (len < kHeaderSize || load_u32(s) != kConcurrencyTag) return;
    const size_t n = load_u32(s + 4);
    if (len != kHeaderSize + n * kLeaseEntrySize) return;
    for (size_t i = 0; i < n; ++i) {
      if (cost_at(s, i) < 0 || (i > 0 && expires_at(s, i) < expires_at(s, i - 1))) return;
    }
    data_ = s;
    n_ = n;
    while (first_ < n_ && expires_at(s, first_) <= env.now) ++first_;
    for (size_t i = first_; i < n_; ++i) in_flight_ += cost_at(s, i);
  }

  size_t find(uint64_t id) const {
    for (size_t i = first_; i < n_; ++i) {
      if (load_u64(entry(data_, i)) == id) return i;
    }
    return kNone;
  }
  size_t active() const { return n_ - first_; }
  i128 in_flight() const { return in_flight_; }
  int64_t last_expiry() const { return active() > 0 ? expires_at(data_, n_ - 1) : env_.now; }
  int64_t cost_of(size_t i) const { return cost_at(data_, i); }

  // First time >= now at which, with lease `skip` not counted, `cost` more fits and at most
  // `max_count` leases remain.
  int64_t earliest(int64_t cost, size_t skip, size_t max_count) const {
    i128 held = in_flight_;
    size_t count = active();
    if (skip != kNone) {
      held -= cost_at(data_, skip);
      --count;
    }
    if (held + cost <= env_.limit && count <= max_count) return env_.now;
    for (size_t i = first_; i < n_; ++i) {
      if (i == skip) continue;
      held -= cost_at(data_, i);
      --count;
      if (held + cost <= env_.limit && count <= max_count) return expires_at(data_, i);
    }
    return env_.now;  // unreachable while cost <= limit
  }

  // Rewrites `buf` (a byte copy of the decoded blob) without expired leases and without
  // `remove`, then inserts {add_id, add_expires, add_cost} when add_cost > 0.
  size_t write(uint8_t* buf, size_t remove, uint64_t add_id, int64_t add_expires,
               int64_t add_cost) const {
    size_t n = 0;
    for (size_t i = first_; i < n_; ++i) {
      if (i == remove) continue;
      if (n != i) std::memmove(entry(buf, n), entry(buf, i), kLeaseEntrySize);
      ++n;
    }
    if (add_cost > 0) {
      size_t at = n;
      while (at > 0 && expires_at(buf, at - 1) > add_expires) --at;
      std::memmove(entry(buf, at + 1), entry(buf, at), (n - at) * kLeaseEntrySize);
      store_u64(entry(buf, at), add_id);
      store_i64(entry(buf, at) + 8, add_expires);
      store_i64(entry(buf, at) + 16, add_cost);
      ++n;
    }
    if (n == 0) return 0;
    store_u32(buf, kConcurrencyTag);
    store_u32(buf + 4, static_cast<uint32_t>(n));
    return kHeaderSize + n * kLeaseEntrySize;
  }

  static constexpr size_t kNone = static_cast<size_t>(-1);

 private:
  static uint8_t* entry(uint8_t* s, size_t i) { return s + kHeaderSize + i * kLeaseEntrySize; }
  static const uint8_t* entry(const uint8_t* s, size_t i) {
    return s + kHeaderSize + i * kLeaseEntrySize;
  }
  static int64_t expires_at(const uint8_t* s, size_t i) { return load_i64(entry(s, i) + 8); }
  static int64_t cost_at(const uint8_t* s, size_t i) { return load_i64(entry(s, i) + 16); }
  Env env_;
  const uint8_t* data_ = nullptr;
  size_t n_ = 0;
  size_t first_ = 0;  // first lease not yet expired
  i128 in_flight_ = 0;
};

size_t drive_concurrency(const Env& env, Call& c) {
  const Leases pre(env, c.state, c.len);
  const uint32_t op = c.item.op;
  const int64_t cost = c.item.cost;
  const int64_t limit = env.limit;
  const size_t max_leases = static_cast<size_t>(std::min<int64_t>(
      {limit, kMaxLeases, static_cast<int64_t>((c.max_write - kHeaderSize) / kLeaseEntrySize)}));
  c.expires = pre.last_expiry();

  // A full lease table leaves nothing to acquire even when units are free; CONSUME and PEEK
  // hold nothing, so only units count for them.
  const bool holds = op == SLUICE_OP_LEASE_ACQUIRE || op == SLUICE_OP_LEASE_RELEASE;
  auto report = [&](bool allowed, i128 held, size_t count, int64_t last, int64_t retry) {
    const int64_t remaining =
        holds && count >= max_leases ? 0 : sat64(std::max<i128>(0, limit - held));
    fill(c.out, allowed, limit, remaining, duration(i128{last} - env.now), retry);
  };
  auto report_pre = [&](bool allowed, int64_t retry) {
    report(allowed, pre.in_flight(), pre.active(), pre.last_expiry(), retry);
  };
  // Writes the change for real when committing; otherwise reports the state it would leave.
  auto change = [&](bool allowed, size_t remove, int64_t add_expires, int64_t add_cost) {
    uint8_t* buf = c.commit ? c.state : scratch(std::max(c.len, c.max_write));
    if (!c.commit && c.len > 0) std::memcpy(buf, c.state, c.len);
    const size_t len = pre.write(buf, remove, c.item.lease_id, add_expires, add_cost);
    const Leases post(env, buf, len);
    report(allowed, post.in_flight(), post.active(), post.last_expiry(), 0);
    if (!c.commit) return c.len;
    c.expires = post.last_expiry();
    return len;
  };

  switch (op) {
    case SLUICE_OP_RESET:
      fill(c.out, true, limit, limit, 0, 0);
      if (!c.commit) return c.len;
      c.expires = c.now;
      return 0;
    case SLUICE_OP_ADJUST:
      report_pre(true, 0);
      return c.len;
    case SLUICE_OP_LEASE_RELEASE: {
      const size_t found = pre.find(c.item.lease_id);
      if (found == Leases::kNone) {
        report_pre(false, 0);
        return c.len;
      }
      return change(true, found, 0, 0);
    }
    default:
      break;
  }
  if (!is_consuming(op) || cost < 0 || cost > limit) {
    report_pre(false, -1);
    return c.len;
  }
  if (op != SLUICE_OP_LEASE_ACQUIRE) {
    const int64_t at = pre.earliest(cost, Leases::kNone, Leases::kNone);
    report_pre(at <= c.now, at <= c.now ? 0 : at - c.now);
    return c.len;
  }
  // Acquiring an id that is held renews it: the old lease is replaced, not added to.
  const size_t renewed = pre.find(c.item.lease_id);
  const size_t max_others = cost > 0 ? max_leases - 1 : max_leases;
  const int64_t at = pre.earliest(cost, renewed, max_others);
  if (at > c.now) {
    report_pre(false, at - c.now);
    return c.len;
  }
  const int64_t expires =
      c.item.lease_expires_ms > c.now ? c.item.lease_expires_ms : sat64(i128{c.now} + env.window);
  return change(true, renewed, expires, cost);
}

// ---- parameters -------------------------------------------------------------------------

bool valid_time(int64_t now) { return now >= 0 && now <= kMaxNowMs; }

bool valid_params(const sluice_limit_params& p) {
  if (p.limit < 1 || p.limit > kMaxAmount) return false;
  if (p.window_ms < 1 || p.window_ms > kMaxWindowMs) return false;
  if (p.algorithm == SLUICE_ALG_CALENDAR_WINDOW) return valid_time(p.burst);  // the start
  if (p.burst < 0 || p.burst > kMaxAmount) return false;
  if (p.algorithm == SLUICE_ALG_TOKEN_BUCKET) {
    // The deficit is stored in 64 bits.
    const int64_t cap = p.burst > 0 ? p.burst : p.limit;
    if (i128{cap} * p.window_ms > kInt64Max) return false;
  }
  return true;
}

size_t min_state_size(uint32_t alg) {
  switch (alg) {
    case SLUICE_ALG_FIXED_WINDOW:
    case SLUICE_ALG_CALENDAR_WINDOW:
      return FixedWindow::kSize;
    case SLUICE_ALG_SLIDING_WINDOW:
      return SlidingLog::kSize;
    case SLUICE_ALG_SLIDING_WINDOW_COUNTER:
      return SlidingCounter::kSize;
    case SLUICE_ALG_TOKEN_BUCKET:
      return TokenBucket::kSize;
    case SLUICE_ALG_GCRA:
      return Gcra::kSize;
    case SLUICE_ALG_CONCURRENCY:
      return Leases::kSize;
    default:
      return 0;
  }
}

// A host/plugin bug rather than bad user input: say it once, loudly, then deny quietly.
void warn_once(std::atomic<bool>& said, const char* what) {
  if (!said.exchange(true)) spdlog::error("sluice algorithms: {}; such requests are denied", what);
}

size_t deny_invalid(const sluice_item& item, int64_t now, size_t state_len, bool commit,
                    sluice_item_result& result, int64_t& expires_at_ms) {
  expires_at_ms = now;
  const int64_t limit = std::max<int64_t>(0, item.params.limit);
  fill(result, false, limit, 0, 0, -1);
  if (item.op == SLUICE_OP_RESET) {
    fill(result, true, limit, limit, 0, 0);
    if (commit) return 0;
  }
  return state_len;
}

size_t c_apply(const sluice_item* item, int64_t now_ms, uint8_t* state, size_t state_len,
               int commit, sluice_item_result* result, int64_t* expires_at_ms) {
  if (item == nullptr || result == nullptr || expires_at_ms == nullptr) return state_len;
  return apply(*item, now_ms, state, state_len, commit != 0, *result, *expires_at_ms);
}

void c_log(int level, const char* message) {
  if (message == nullptr) return;
  switch (level) {
    case 0:
      spdlog::debug("{}", message);
      break;
    case 1:
      spdlog::info("{}", message);
      break;
    case 2:
      spdlog::warn("{}", message);
      break;
    default:
      spdlog::error("{}", message);
      break;
  }
}

constexpr sluice_host_api kHostApi = {
    SLUICE_ABI_VERSION, static_cast<uint32_t>(sizeof(sluice_host_api)), &c_apply, &c_log};

}  // namespace

size_t state_capacity(const sluice_limit_params& params) {
  const int64_t limit = std::max<int64_t>(1, params.limit);
  switch (params.algorithm) {
    case SLUICE_ALG_SLIDING_WINDOW: {
      // Entries have distinct times inside the window and each holds >= 1 unit.
      const int64_t window = std::max<int64_t>(1, params.window_ms);
      return kHeaderSize +
             kLogEntrySize * static_cast<size_t>(std::min({limit, window, kMaxLogEntries}));
    }
    case SLUICE_ALG_CONCURRENCY:
      return kHeaderSize + kLeaseEntrySize * static_cast<size_t>(std::min(limit, kMaxLeases));
    default:
      return min_state_size(params.algorithm);
  }
}

size_t apply(const sluice_item& item, int64_t now_ms, uint8_t* state, size_t state_len, bool commit,
             sluice_item_result& result, int64_t& expires_at_ms) {
  const sluice_limit_params& p = item.params;
  if (state == nullptr) {
    // Nothing can be written; answering as if it had been would silently over-admit.
    if (commit && item.op != SLUICE_OP_RESET && item.op != SLUICE_OP_PEEK) {
      static std::atomic<bool> said{false};
      warn_once(said, "apply was asked to commit without a state buffer");
    }
    state_len = 0;
    commit = false;
  }
  const size_t max_write = item.state_capacity;
  if (!valid_params(p) || !valid_time(now_ms)) {
    return deny_invalid(item, now_ms, state_len, commit, result, expires_at_ms);
  }
  const size_t needed = min_state_size(p.algorithm);
  if (needed == 0) {
    return deny_invalid(item, now_ms, state_len, commit, result, expires_at_ms);
  }
  if (max_write < needed) {
    static std::atomic<bool> said{false};
    warn_once(said, "an item's state_capacity is smaller than its algorithm needs");
    return deny_invalid(item, now_ms, state_len, commit, result, expires_at_ms);
  }
  const Env env{now_ms, p.limit, p.window_ms,
                p.burst > 0 || p.algorithm == SLUICE_ALG_CALENDAR_WINDOW ? p.burst : p.limit};
  // Writes stay within what this limit may need, even when the plugin offers more.
  const size_t bound = std::min(max_write, state_capacity(p));
  Call c{item, now_ms, state, state_len, bound, commit, result, expires_at_ms};
  switch (p.algorithm) {
    case SLUICE_ALG_FIXED_WINDOW:
      return drive<FixedWindow>(env, c);
    case SLUICE_ALG_CALENDAR_WINDOW:
      return drive<CalendarWindow>(env, c);
    case SLUICE_ALG_SLIDING_WINDOW:
      return drive<SlidingLog>(env, c);
    case SLUICE_ALG_SLIDING_WINDOW_COUNTER:
      return drive<SlidingCounter>(env, c);
    case SLUICE_ALG_TOKEN_BUCKET:
      return drive<TokenBucket>(env, c);
    case SLUICE_ALG_GCRA:
      return drive<Gcra>(env, c);
    case SLUICE_ALG_CONCURRENCY:
      return drive_concurrency(env, c);
    default:
      return deny_invalid(item, now_ms, state_len, commit, result, expires_at_ms);
  }
}

const sluice_host_api* host_api() { return &kHostApi; }

std::optional<sluice_algorithm> parse_algorithm(std::string_view name) {
  const AlgorithmName* a = find_algorithm(name);
  return a != nullptr ? std::optional(a->algorithm) : std::nullopt;
}

std::string_view algorithm_name(sluice_algorithm alg) {
  const AlgorithmName* a = find_algorithm(static_cast<uint32_t>(alg));
  return a != nullptr ? a->name : "unknown";
}

}  // namespace sluice::algo
