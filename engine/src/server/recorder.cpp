#include "recorder.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>

#include "sluice/policy.h"

namespace sluice::server {
namespace {

// A record in a ring: this header, then its strings, padded to a multiple of 8 bytes.
struct Header {
  uint32_t size;  // of the whole record; kWrap marks the end of the ring's used part
  uint8_t kind;
  uint8_t allowed;
  uint16_t unused;
  int64_t time_ms, cost, lease_ttl_ms, actual;
  uint64_t lease_id;
  std::array<uint16_t, 6> lengths;  // resource, subject, tier, api_key, live_tier, live_rule
};
constexpr uint32_t kWrap = 0xFFFFFFFF;
constexpr size_t kAlign = 8;
constexpr size_t kHeaderSize = (sizeof(Header) + kAlign - 1) / kAlign * kAlign;
// The longest record: every string at the protocol's bound.
constexpr size_t kMaxRecord =
    kHeaderSize + 4 * kMaxNameLength + 2 * kMaxSubjectLength + kAlign;  // padding

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

  void append(const Recorded& r) {
    const std::array<std::string_view, 6> fields{
        r.resource.substr(0, kMaxNameLength),  r.subject.substr(0, kMaxSubjectLength),
        r.tier.substr(0, kMaxNameLength),      r.api_key.substr(0, kMaxSubjectLength),
        r.live_tier.substr(0, kMaxNameLength), r.live_rule.substr(0, kMaxNameLength)};
    Header h{};
    h.kind = static_cast<uint8_t>(r.kind);
    h.allowed = r.allowed ? 1 : 0;
    h.time_ms = r.time_ms;
    h.cost = r.cost;
    h.lease_ttl_ms = r.lease_ttl_ms;
    h.actual = r.actual;
    h.lease_id = r.lease_id;
    size_t size = kHeaderSize;
    for (size_t i = 0; i < fields.size(); ++i) {
      h.lengths[i] = static_cast<uint16_t>(fields[i].size());
      size += fields[i].size();
    }
    size = padded(size);
    h.size = static_cast<uint32_t>(size);

    MutexLock lock(mu_);
    if (write_ % capacity_ + size > capacity_) {  // no room before the end: wrap
      make_room(capacity_ - write_ % capacity_);
      const uint32_t wrap = kWrap;
      std::memcpy(buf_.get() + write_ % capacity_, &wrap, sizeof wrap);
      write_ += capacity_ - write_ % capacity_;
    }
    make_room(size);
    char* p = buf_.get() + write_ % capacity_;
    std::memcpy(p, &h, sizeof h);
    p += kHeaderSize;
    for (const auto& f : fields) {
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
      Header h;
      std::memcpy(&h.size, p, sizeof h.size);
      if (h.size == kWrap) {
        pos += capacity_ - pos % capacity_;
        continue;
      }
      std::memcpy(&h, p, sizeof h);
      if (h.time_ms >= since_ms) {
        offsets.push_back(out.size());
        out.insert(out.end(), p, p + h.size);
      }
      pos += h.size;
    }
  }

 private:
  // Drops the oldest records until `size` more bytes fit.
  void make_room(size_t size) SLUICE_REQUIRES(mu_) {
    while (write_ + size - read_ > capacity_) {
      uint32_t s;
      std::memcpy(&s, buf_.get() + read_ % capacity_, sizeof s);
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

void Recorder::record(const Recorded& r) { ring_for_this_thread().append(r); }

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
  for (size_t offset : offsets) {
    const char* p = out.storage.data() + offset;
    Header h;
    std::memcpy(&h, p, sizeof h);
    Recorded r;
    r.kind = static_cast<Recorded::Kind>(h.kind);
    r.allowed = h.allowed != 0;
    r.time_ms = h.time_ms;
    r.cost = h.cost;
    r.lease_ttl_ms = h.lease_ttl_ms;
    r.actual = h.actual;
    r.lease_id = h.lease_id;
    const char* s = p + kHeaderSize;
    std::string_view* fields[] = {&r.resource, &r.subject,   &r.tier,
                                  &r.api_key,  &r.live_tier, &r.live_rule};
    for (size_t i = 0; i < 6; ++i) {
      *fields[i] = std::string_view(s, h.lengths[i]);
      s += h.lengths[i];
    }
    out.records.push_back(r);
  }
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
