// What each limit takes from a request: the cost rules of docs/protocol.md ("Costs"). A
// request carries a bare COST and named costs (COST input_tokens 120 ...); a limit counting
// `requests` takes 1, one counting a unit the request names takes that amount, a `tokens`
// limit takes input_tokens + output_tokens when the request names those, a `usd` limit takes
// the resource's prices times the units, and any other limit takes the bare COST.
//
// Leases keep their costs owned (LeaseCosts): the estimate of SL.ACQUIRE and the usage that
// SL.CHARGE adds up, so a charge and a settlement can be computed against today's policy.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/engine.h"
#include "sluice/policy.h"

namespace sluice {

struct CostView {
  int64_t bare = 1;
  std::span<const NamedCost> named;
};

// What `lim` of `res` takes from `c`, at most kMaxCost; a usd limit in micro-dollars, rounded
// up (prices are exact pico-dollars, summed in 128 bits: no floating point anywhere).
int64_t cost_of(const CompiledLimit& lim, const CompiledResource& res, const CostView& c);

// "" when `bare` and `named` make a valid request: bare 1..kMaxCost (0 allowed with named
// costs), named amounts 0..kMaxCost, units well formed.
std::string cost_problem(int64_t bare, const NamedCosts& named);
// The same for the named costs alone.
std::string named_cost_problem(const NamedCosts& named);

// Costs owned by a lease.
struct LeaseCosts {
  int64_t bare = 1;
  std::vector<std::pair<std::string, int64_t>> named;

  static LeaseCosts of(int64_t bare, std::span<const NamedCost> named);
  const int64_t* find(std::string_view unit) const;
  void set(std::string_view unit, int64_t amount);
  // A view for cost_of; the named costs are written into `buf` (at most kMaxNamedCosts).
  CostView view(NamedCosts& buf) const;
};

// A lease's estimate and what was charged on it: `used` holds the charged units only (and its
// bare cost when bare_charged). The effective usage takes the estimate for units never charged.
struct LeaseAccount {
  LeaseCosts estimate;
  LeaseCosts used{0, {}};
  bool bare_charged = false;
  bool charged() const { return bare_charged || !used.named.empty(); }
  LeaseCosts effective() const;
  // Units the account would name after a charge of `named` (estimate, used and the new ones).
  size_t units_after(std::span<const NamedCost> named) const;
  // Adds (sign +1) or takes back (-1) a charge.
  void add(int64_t bare, std::span<const NamedCost> named, int sign);
};

}  // namespace sluice
