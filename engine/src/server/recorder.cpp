#include "recorder.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>

#include "sluice/policy.h"

namespace sluice::server {
namespace {

// A record in a ring, packed to keep the rings (and the caches they pass through) small:
//   u16 size (of the whole record; kWrap marks the end of the ring's used part)
//   u8  flags: kind (3 bits), allowed, then which optional fields follow
//   u8  lengths of resource, tier; u16 lengths of subject, api_key; u8 length of live_rule
//   i64 time_ms
//   [i64 cost when not 1 or with named costs: the bare cost, or -(count) of named costs
//    followed by i64 bare cost and `count` × {u8 unit length, unit, i64 amount}]
//   [u64 lease_id] [i64 lease_ttl_ms] [i64 actual]
//   resource, subject, tier, api_key, live_rule (the rule only when the request was denied)
// padded to a multiple of 8 bytes.
constexpr uint16_t kWrap = 0xFFFF;
constexpr size_t kAlign = 8;
constexpr size_t kFixed = 2 + 1 + 2 + 4 + 1 + 8;
constexpr uint8_t kKindMask = 7, kAllowed = 1 << 3, kHasCost = 1 << 4, kHasLease = 1 << 5,
                  kHasTtl = 1 << 6, kHasActual = 1 << 7;
// The longest record: every optional field and every string at the protocol's bound.
constexpr size_t kMaxNamed = 8 + kMaxNamedCosts * (1 + kMaxNameLength + 8);
constexpr size_t kMaxRecord =
    kFixed + 4 * 8 + kMaxNamed + 3 * kMaxNameLength + 2 * kMaxSubjectLength + kAlign;  // padding
static_assert(kMaxRecord < kWrap);

template <class T>
char* put(char* p, T v) {
  std::memcpy(p, &v, sizeof v);
  return p + sizeof v;
}
template <class T>
const char* get(const char* p, T& v) {
  std::memcpy(&v, p, sizeof v);
  return p + sizeof v;
}

size_t padded(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::atomic<uint64_t> g_recorder_ids{0};

}  // namespace

// One thread's records. Positions count bytes ever written; a record never straddles the end
// of the buffer (a wrap mark sends the reader back to its start).
class Recorder::Ring {
 public:
  // Not zeroed: a page becomes resident only when records reach it.
  explicit Ring(size_t capacity)
      : capacity_(capacity), buf_(std::make_unique_for_overwrite<char[]>(capacity)) {}

  void lock() SLUICE_ACQUIRE(mu_) { mu_.lock(); }
  void unlock() SLUICE_RELEASE(mu_) { mu_.unlock(); }

  void append(const Recorded& r) SLUICE_REQUIRES(mu_) {
    const std::string_view resource = r.resource.substr(0, kMaxNameLength);
    const std::string_view subject = r.subject.substr(0, kMaxSubjectLength);
    const std::string_view tier = r.tier.substr(0, kMaxNameLength);
    const std::string_view api_key = r.api_key.substr(0, kMaxSubjectLength);
    // The live rule matters to a replay only where the live policy denied.
    const std::string_view rule =
        r.allowed ? std::string_view() : r.live_rule.substr(0, kMaxNameLength);
    uint8_t flags = static_cast<uint8_t>(r.kind);
    if (r.allowed) flags |= kAllowed;
    if (r.cost != 1 || r.named.count > 0) flags |= kHasCost;
    if (r.lease_id != 0) flags |= kHasLease;
    if (r.lease_ttl_ms != 0) flags |= kHasTtl;
    if (r.actual >= 0) flags |= kHasActual;
    size_t size =
        kFixed + resource.size() + subject.size() + tier.size() + api_key.size() + rule.size();
    for (uint8_t f : {kHasCost, kHasLease, kHasTtl, kHasActual}) size += (flags & f) ? 8 : 0;
    if (r.named.count > 0) {
      size += 8;
      for (const NamedCost& c : r.named.view()) size += 1 + c.unit.size() + 8;
    }
    size = padded(size);

    if (write_ % capacity_ + size > capacity_) {  // no room before the end: wrap
      make_room(capacity_ - write_ % capacity_);
      put(buf_.get() + write_ % capacity_, kWrap);
      write_ += capacity_ - write_ % capacity_;
    }
    make_room(size);
    char* p = buf_.get() + write_ % capacity_;
    p = put(p, static_cast<uint16_t>(size));
    p = put(p, flags);
    p = put(p, static_cast<uint8_t>(resource.size()));
    p = put(p, static_cast<uint8_t>(tier.size()));
    p = put(p, static_cast<uint16_t>(subject.size()));
    p = put(p, static_cast<uint16_t>(api_key.size()));
    p = put(p, static_cast<uint8_t>(rule.size()));
    p = put(p, r.time_ms);
    if (r.named.count > 0) {
      p = put(p, -static_cast<int64_t>(r.named.count));
      p = put(p, r.cost);
      for (const NamedCost& c : r.named.view()) {
        p = put(p, static_cast<uint8_t>(c.unit.size()));
        std::memcpy(p, c.unit.data(), c.unit.size());
        p = put(p + c.unit.size(), c.amount);
      }
    } else if (flags & kHasCost) {
      p = put(p, r.cost);
    }
    if (flags & kHasLease) p = put(p, r.lease_id);
    if (flags & kHasTtl) p = put(p, r.lease_ttl_ms);
    if (flags & kHasActual) p = put(p, r.actual);
    for (std::string_view f : {resource, subject, tier, api_key, rule}) {
      if (f.empty()) continue;  // an empty view may hold no pointer at all
      std::memcpy(p, f.data(), f.size());
      p += f.size();
    }
    write_ += size;
  }

  // Appends the raw records written at or after `since_ms` to `out`; returns their offsets.
  void copy_since(int64_t since_ms, std::vector<char>& out, std::vector<size_t>& offsets) const {
    MutexLock lock(mu_);
    for (uint64_t pos = read_; pos < write_;) {
      const char* p = buf_.get() + pos % capacity_;
      uint16_t size;
      get(p, size);
      if (size == kWrap) {
        pos += capacity_ - pos % capacity_;
        continue;
      }
      int64_t time_ms;
      get(p + kFixed - 8, time_ms);
      if (time_ms >= since_ms) {
        offsets.push_back(out.size());
        out.insert(out.end(), p, p + size);
      }
      pos += size;
    }
  }

  // Reads back a record copied by copy_since(); the views point into it.
  static Recorded decode(const char* p) {
    Recorded r;
    uint16_t size, subject_len, api_key_len;
    uint8_t flags, resource_len, tier_len, rule_len;
    p = get(p, size);
    p = get(p, flags);
    p = get(p, resource_len);
    p = get(p, tier_len);
    p = get(p, subject_len);
    p = get(p, api_key_len);
    p = get(p, rule_len);
    p = get(p, r.time_ms);
    r.kind = static_cast<Recorded::Kind>(flags & kKindMask);
    r.allowed = (flags & kAllowed) != 0;
    if (flags & kHasCost) p = get(p, r.cost);
    if (r.cost < 0) {  // named costs follow
      const auto count = static_cast<size_t>(-r.cost);
      p = get(p, r.cost);
      for (size_t i = 0; i < count && i < kMaxNamedCosts; ++i) {
        uint8_t len;
        int64_t amount;
        p = get(p, len);
        const std::string_view unit(p, len);
        p = get(p + len, amount);
        r.named.add(unit, amount);
      }
    }
    if (flags & kHasLease) p = get(p, r.lease_id);
    if (flags & kHasTtl) p = get(p, r.lease_ttl_ms);
    if (flags & kHasActual) p = get(p, r.actual);
    auto take = [&p](size_t n) {
      const std::string_view v(p, n);
      p += n;
      return v;
    };
    r.resource = take(resource_len);
    r.subject = take(subject_len);
    r.tier = take(tier_len);
    r.api_key = take(api_key_len);
    r.live_rule = take(rule_len);
    return r;
  }

 private:
  // Drops the oldest records until `size` more bytes fit.
  void make_room(size_t size) SLUICE_REQUIRES(mu_) {
    while (write_ + size - read_ > capacity_) {
      uint16_t s;
      get(buf_.get() + read_ % capacity_, s);
      read_ += s == kWrap ? capacity_ - read_ % capacity_ : s;
    }
  }

  const size_t capacity_;
  mutable Mutex mu_;  // the owner thread writes; SIMULATE copies
  std::unique_ptr<char[]> buf_;
  uint64_t read_ SLUICE_GUARDED_BY(mu_) = 0;   // the oldest record
  uint64_t write_ SLUICE_GUARDED_BY(mu_) = 0;  // where the next one goes
};

Recorder::Recorder(Options options)
    : options_(options),
      ring_bytes_(std::max(2 * kMaxRecord, options.max_bytes / std::max<size_t>(1, options.rings) /
                                               kAlign * kAlign)),
      id_(g_recorder_ids.fetch_add(1) + 1) {}

Recorder::~Recorder() = default;

Recorder::Ring& Recorder::ring_for_this_thread() {
  struct Mine {
    uint64_t recorder = 0;
    Ring* ring = nullptr;
  };
  thread_local Mine mine;
  if (mine.recorder != id_) {
    auto ring = std::make_unique<Ring>(ring_bytes_);
    mine.ring = ring.get();
    mine.recorder = id_;
    MutexLock lock(mu_);
    rings_.push_back(std::move(ring));
  }
  return *mine.ring;
}

void Recorder::record(const Recorded& r) {
  Batch batch(*this);
  batch.append(r);
}

// The batch holds its ring's mutex from construction to destruction, which the analysis
// cannot follow across these member functions.
Recorder::Batch::Batch(Recorder& recorder) SLUICE_NO_THREAD_SAFETY_ANALYSIS
    : ring_(recorder.ring_for_this_thread()) {
  ring_.lock();
}
Recorder::Batch::~Batch() SLUICE_NO_THREAD_SAFETY_ANALYSIS { ring_.unlock(); }
void Recorder::Batch::append(const Recorded& r) SLUICE_NO_THREAD_SAFETY_ANALYSIS {
  ring_.append(r);
}

Recorder::Copy Recorder::copy(int64_t now_ms, int64_t seconds) const {
  Copy out;
  const int64_t window = seconds > 0 ? std::min(seconds, options_.seconds) : options_.seconds;
  const int64_t since = now_ms - window * 1000;
  std::vector<size_t> offsets;
  {
    MutexLock lock(mu_);
    for (const auto& ring : rings_) ring->copy_since(since, out.storage, offsets);
  }
  out.records.reserve(offsets.size());
  for (size_t offset : offsets) out.records.push_back(Ring::decode(out.storage.data() + offset));
  // Each ring is in time order; together they are merged by time (stable: a thread's own
  // order is kept for equal times).
  std::stable_sort(out.records.begin(), out.records.end(),
                   [](const Recorded& a, const Recorded& b) { return a.time_ms < b.time_ms; });
  if (!out.records.empty()) {
    out.from_ms = out.records.front().time_ms;
    out.to_ms = out.records.back().time_ms;
  }
  return out;
}

}  // namespace sluice::server
