#include "lease_record.h"

#include <algorithm>

#include "sluice/policy.h"

namespace sluice {
namespace {

constexpr uint8_t kFormat = 1;

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  void i64(int64_t v) { u64(static_cast<uint64_t>(v)); }
  void str(std::string_view s) {
    out_.push_back(static_cast<char>(s.size() & 0xff));
    out_.push_back(static_cast<char>((s.size() >> 8) & 0xff));
    out_.append(s);
  }
  void costs(const LeaseCosts& c) {
    i64(c.bare);
    u8(static_cast<uint8_t>(c.named.size()));
    for (const auto& [unit, amount] : c.named) {
      u8(static_cast<uint8_t>(unit.size()));
      out_.append(unit);
      i64(amount);
    }
  }

 private:
  std::string& out_;
};

// Reads from the front of `in`; every read fails (and keeps failing) past the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  bool at_end() const { return in_.empty(); }
  uint8_t u8() {
    if (!take(1)) return 0;
    return static_cast<uint8_t>(last_[0]);
  }
  uint64_t u64() {
    if (!take(8)) return 0;
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(last_[static_cast<size_t>(i)]);
    return v;
  }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  std::string str(size_t max) {
    const size_t lo = u8();
    const size_t len = lo | (size_t{u8()} << 8);
    if (len == 0 || len > max) ok_ = false;
    if (!ok_ || !take(len)) return {};
    return std::string(last_);
  }
  bool costs(LeaseCosts& c) {
    c.bare = i64();
    const size_t count = u8();
    if (!ok_ || c.bare < 0 || c.bare > kMaxCost || count > kMaxNamedCosts) return fail();
    c.named.clear();
    for (size_t i = 0; i < count; ++i) {
      const size_t len = u8();
      if (len == 0 || len > kMaxNameLength || !take(len)) return fail();
      std::string unit(last_);
      const int64_t amount = i64();
      if (!ok_ || amount < 0 || amount > kMaxCost || c.find(unit) != nullptr) return fail();
      c.named.emplace_back(std::move(unit), amount);
    }
    return true;
  }
  bool fail() {
    ok_ = false;
    return false;
  }

 private:
  bool take(size_t n) {
    if (!ok_ || in_.size() < n) return fail();
    last_ = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view in_;
  std::string_view last_;
  bool ok_ = true;
};

}  // namespace

LeaseRecordKey::LeaseRecordKey(uint64_t id) {
  constexpr std::string_view kPrefix = "lease:{";
  char* p = std::copy(kPrefix.begin(), kPrefix.end(), bytes_.begin());
  for (int shift = 60; shift >= 0; shift -= 4) *p++ = "0123456789abcdef"[(id >> shift) & 0xf];
  *p = '}';
}

std::string encode_lease(const Lease& lease) {
  std::string out;
  out.reserve(64 + lease.resource.size() + lease.subject.size() + lease.tier.size());
  Writer w(out);
  w.u8(kFormat);
  w.u64(lease.id);
  w.i64(lease.expires_ms);
  w.u64(lease.charges);
  w.u64(lease.secret[0]);
  w.u64(lease.secret[1]);
  w.str(lease.resource);
  w.str(lease.subject);
  w.str(lease.tier);
  w.costs(lease.account.estimate);
  w.costs(lease.account.used);
  w.u8(lease.account.bare_charged ? 1 : 0);
  return out;
}

std::optional<Lease> decode_lease(std::string_view bytes) {
  Reader r(bytes);
  if (r.u8() != kFormat) return std::nullopt;
  Lease lease;
  lease.id = r.u64();
  lease.expires_ms = r.i64();
  lease.charges = r.u64();
  lease.secret[0] = r.u64();
  lease.secret[1] = r.u64();
  lease.resource = r.str(kMaxNameLength);
  lease.subject = r.str(kMaxSubjectLength);
  lease.tier = r.str(kMaxNameLength);
  if (!r.costs(lease.account.estimate) || !r.costs(lease.account.used)) return std::nullopt;
  const uint8_t bare_charged = r.u8();
  if (!r.ok() || !r.at_end() || bare_charged > 1 || lease.id == 0) return std::nullopt;
  lease.account.bare_charged = bare_charged == 1;
  return lease;
}

}  // namespace sluice
