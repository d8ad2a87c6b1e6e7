// The engine's record of granted leases: who holds what until when, and the secret half of
// each holder's token. SL.RELEASE succeeds only with the whole token (docs/protocol.md), so no
// client can release or charge another's lease with an id it derived from its own.
//
// Thread-safe: decisions on every worker thread grant and release concurrently.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "costs.h"
#include "sluice/engine.h"
#include "sluice/mutex.h"

namespace sluice {

struct Lease {
  uint64_t id = 0;
  std::string resource, subject, tier;
  LeaseAccount account;  // the estimate and what SL.CHARGE added
  int64_t expires_ms = 0;
  uint64_t charges = 0;  // charges applied so far (tells a refused charge's undo it is alone)
  std::array<uint64_t, 2> secret{};  // the token's secret half; see LeaseToken
};

// 128 bits from the kernel's CSPRNG: a lease token's secret half.
std::array<uint64_t, 2> draw_lease_secret();
// Compares secrets in time that does not depend on where they differ.
bool same_lease_secret(const std::array<uint64_t, 2>& a, const std::array<uint64_t, 2>& b);

class LeaseRegistry {
 public:
  LeaseRegistry();

  // A fresh id for a lease about to be asked of storage (its secret is drawn by hold()).
  uint64_t new_id();
  // Records a granted lease under `id` with a fresh 128-bit secret from the kernel's CSPRNG;
  // returns the holder's token.
  LeaseToken hold(uint64_t id, Lease lease, int64_t now_ms);
  // Removes and returns the lease `token` names, if its secret matches and it has not expired
  // at `now_ms`. A wrong secret gets what an unknown id gets, and the lease stays its holder's.
  std::optional<Lease> take(const LeaseToken& token, int64_t now_ms);
  // Adds a charge to the usage of the lease `token` names (same secret and expiry rules as
  // take). Returns the lease as it was before, with `charges` counting this one; nullopt when
  // not held. `too_many_units` is set (nothing changed) when the lease would name more than
  // kMaxNamedCosts units.
  std::optional<Lease> begin_charge(const LeaseToken& token, int64_t now_ms, int64_t bare,
                                    std::span<const NamedCost> named, bool& too_many_units);
  // Takes back a refused charge: restores `before` when no other charge came since, else
  // subtracts the charge. Nothing when the lease is gone.
  void undo_charge(uint64_t id, const Lease& before, int64_t bare,
                   std::span<const NamedCost> named);
  // Leases not yet expired at `now_ms`.
  size_t active(int64_t now_ms) const;
  // Expired leases that were charged, to be settled at their usage; each is returned once.
  std::vector<Lease> take_expired(int64_t now_ms);

 private:
  void sweep(int64_t now_ms) SLUICE_REQUIRES(mu_);  // drops expired leases, once a second at most

  mutable Mutex mu_;
  std::unordered_map<uint64_t, Lease> leases_ SLUICE_GUARDED_BY(mu_);
  std::vector<Lease> expired_ SLUICE_GUARDED_BY(mu_);  // charged, awaiting settlement
  std::atomic<bool> has_expired_{false};
  std::atomic<int64_t> next_sweep_hint_{0};  // next_sweep_ms_, readable without the lock
  int64_t next_sweep_ms_relaxed() const { return next_sweep_hint_.load(std::memory_order_relaxed); }
  int64_t next_sweep_ms_ SLUICE_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> counter_{0};
  uint64_t seed_;
};

// The leases kept as storage records (lease_record.h) that this engine granted or touched: their
// ids and expiries only, so that the charged ones among them are settled at their usage when
// they expire, as the registry's are. Thread-safe.
class LeaseWatch {
 public:
  void watch(uint64_t id, int64_t expires_ms);
  void forget(uint64_t id);
  // Ids and expiries of the leases expired at `now_ms`, each returned once; looks once a
  // second at most.
  std::vector<std::pair<uint64_t, int64_t>> take_expired(int64_t now_ms);
  // Watched leases not yet expired at `now_ms`.
  size_t active(int64_t now_ms) const;

 private:
  mutable Mutex mu_;
  std::unordered_map<uint64_t, int64_t> expiries_ SLUICE_GUARDED_BY(mu_);
  int64_t next_look_ms_ SLUICE_GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> next_look_hint_{0};  // next_look_ms_, readable without the lock
};

}  // namespace sluice
