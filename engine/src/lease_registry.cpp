#include "lease_registry.h"

#include <spdlog/spdlog.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <random>
#include <utility>

namespace sluice {

// Each thread reads 4 KiB at a time, so acquiring a lease makes one getrandom call in 256.
std::array<uint64_t, 2> draw_lease_secret() {
  struct Pool {
    std::array<uint64_t, 512> words;
    size_t next = 512;
  };
  thread_local Pool pool;
  if (pool.next + 2 > pool.words.size()) {
    auto* bytes = reinterpret_cast<char*>(pool.words.data());
    size_t filled = 0;
    while (filled < sizeof(pool.words)) {
      const ssize_t n = ::getrandom(bytes + filled, sizeof(pool.words) - filled, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        spdlog::critical("getrandom failed ({}): lease secrets cannot be drawn", errno);
        std::abort();
      }
      filled += static_cast<size_t>(n);
    }
    pool.next = 0;
  }
  std::array<uint64_t, 2> secret{pool.words[pool.next], pool.words[pool.next + 1]};
  pool.words[pool.next] = pool.words[pool.next + 1] = 0;
  pool.next += 2;
  return secret;
}

bool same_lease_secret(const std::array<uint64_t, 2>& a, const std::array<uint64_t, 2>& b) {
  return ((a[0] ^ b[0]) | (a[1] ^ b[1])) == 0;
}

LeaseRegistry::LeaseRegistry() {
  std::random_device rd;
  seed_ = (uint64_t{rd()} << 32) ^ rd();
}

uint64_t LeaseRegistry::new_id() {
  // splitmix64 over a random seed: unique per engine. Ids are not secret (the token's secret
  // half is what proves a holder), only unique.
  uint64_t z = seed_ + 0x9e3779b97f4a7c15ULL * (counter_.fetch_add(1) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return z ? z : 1;
}

LeaseToken LeaseRegistry::hold(uint64_t id, Lease lease, int64_t now_ms) {
  const LeaseToken token{id, draw_lease_secret()};
  lease.secret = token.secret;
  lease.id = id;
  MutexLock lock(mu_);
  sweep(now_ms);
  leases_[id] = std::move(lease);
  return token;
}

std::optional<Lease> LeaseRegistry::take(const LeaseToken& token, int64_t now_ms) {
  MutexLock lock(mu_);
  auto it = leases_.find(token.id);
  const bool held = it != leases_.end() && same_lease_secret(it->second.secret, token.secret);
  if (!held) return std::nullopt;
  std::optional<Lease> lease;
  if (it->second.expires_ms > now_ms) lease = std::move(it->second);
  leases_.erase(it);
  return lease;
}

std::optional<Lease> LeaseRegistry::begin_charge(const LeaseToken& token, int64_t now_ms,
                                                 int64_t bare, std::span<const NamedCost> named,
                                                 bool& too_many_units) {
  too_many_units = false;
  MutexLock lock(mu_);
  auto it = leases_.find(token.id);
  if (it == leases_.end() || !same_lease_secret(it->second.secret, token.secret) ||
      it->second.expires_ms <= now_ms) {
    return std::nullopt;
  }
  Lease& lease = it->second;
  if (lease.account.units_after(named) > kMaxNamedCosts) {
    too_many_units = true;
    return std::nullopt;
  }
  std::optional<Lease> before = lease;
  lease.account.add(bare, named, +1);
  before->charges = ++lease.charges;
  return before;
}

void LeaseRegistry::undo_charge(uint64_t id, const Lease& before, int64_t bare,
                                std::span<const NamedCost> named) {
  MutexLock lock(mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  if (it->second.charges == before.charges) {
    it->second.account = before.account;
  } else {
    it->second.account.add(bare, named, -1);
  }
}

std::vector<Lease> LeaseRegistry::take_expired(int64_t now_ms) {
  if (!has_expired_.load(std::memory_order_relaxed) && now_ms < next_sweep_ms_relaxed()) return {};
  MutexLock lock(mu_);
  sweep(now_ms);
  has_expired_.store(false, std::memory_order_relaxed);
  return std::exchange(expired_, {});
}

size_t LeaseRegistry::active(int64_t now_ms) const {
  MutexLock lock(mu_);
  return static_cast<size_t>(
      std::count_if(leases_.begin(), leases_.end(),
                    [now_ms](const auto& kv) { return kv.second.expires_ms > now_ms; }));
}

void LeaseRegistry::sweep(int64_t now_ms) {
  if (now_ms < next_sweep_ms_) return;
  next_sweep_ms_ = now_ms + 1000;
  next_sweep_hint_.store(next_sweep_ms_, std::memory_order_relaxed);
  // A plain loop, not erase_if: the thread-safety analysis cannot see that a predicate runs
  // under mu_, and erase_if hands the predicate a const element (a copy instead of a move).
  for (auto it = leases_.begin(); it != leases_.end();) {
    if (it->second.expires_ms > now_ms) {
      ++it;
      continue;
    }
    if (it->second.account.charged()) {
      expired_.push_back(std::move(it->second));
      has_expired_.store(true, std::memory_order_relaxed);
    }
    it = leases_.erase(it);
  }
}

void LeaseWatch::watch(uint64_t id, int64_t expires_ms) {
  MutexLock lock(mu_);
  expiries_[id] = expires_ms;
}

void LeaseWatch::forget(uint64_t id) {
  MutexLock lock(mu_);
  expiries_.erase(id);
}

std::vector<std::pair<uint64_t, int64_t>> LeaseWatch::take_expired(int64_t now_ms) {
  if (now_ms < next_look_hint_.load(std::memory_order_relaxed)) return {};
  std::vector<std::pair<uint64_t, int64_t>> expired;
  MutexLock lock(mu_);
  if (now_ms < next_look_ms_) return {};
  next_look_ms_ = now_ms + 1000;
  next_look_hint_.store(next_look_ms_, std::memory_order_relaxed);
  std::erase_if(expiries_, [&](const auto& kv) {
    if (kv.second > now_ms) return false;
    expired.emplace_back(kv.first, kv.second);
    return true;
  });
  return expired;
}

size_t LeaseWatch::active(int64_t now_ms) const {
  MutexLock lock(mu_);
  return static_cast<size_t>(std::count_if(
      expiries_.begin(), expiries_.end(), [now_ms](const auto& kv) { return kv.second > now_ms; }));
}

}  // namespace sluice
