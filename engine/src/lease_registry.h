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

#include "sluice/engine.h"
#include "sluice/mutex.h"

namespace sluice {

struct Lease {
  std::string resource, subject, tier;
  int64_t cost = 0;
  int64_t expires_ms = 0;
  std::array<uint64_t, 2> secret{};  // the token's secret half; see LeaseToken
};

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
  // Leases not yet expired at `now_ms`.
  size_t active(int64_t now_ms) const;

 private:
  void sweep(int64_t now_ms) SLUICE_REQUIRES(mu_);  // drops expired leases, once a second at most

  mutable Mutex mu_;
  std::unordered_map<uint64_t, Lease> leases_ SLUICE_GUARDED_BY(mu_);
  int64_t next_sweep_ms_ SLUICE_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> counter_{0};
  uint64_t seed_;
};

}  // namespace sluice
