#include "costs.h"

#include <fmt/format.h>

#include <algorithm>

#include "policy_internal.h"

namespace sluice {

__extension__ typedef __int128 i128;  // sums of prices: exact, never overflowing
namespace {

const NamedCost* find_named(const CostView& c, std::string_view unit) {
  for (const NamedCost& n : c.named) {
    if (n.unit == unit) return &n;
  }
  return nullptr;
}

int64_t units_of(std::string_view unit, UnitKind kind, const CostView& c) {
  if (const NamedCost* n = find_named(c, unit)) return n->amount;
  switch (kind) {
    case UnitKind::kRequests:
      return 1;
    case UnitKind::kTokens: {
      const NamedCost* in = find_named(c, "input_tokens");
      const NamedCost* out = find_named(c, "output_tokens");
      if (in == nullptr && out == nullptr) return c.bare;
      return std::min(kMaxCost, (in ? in->amount : 0) + (out ? out->amount : 0));
    }
    default:
      return c.bare;
  }
}

UnitKind kind_of(std::string_view unit) {
  if (unit == kUnitRequests) return UnitKind::kRequests;
  if (unit == kUnitTokens) return UnitKind::kTokens;
  return UnitKind::kOther;
}

}  // namespace

int64_t cost_of(const CompiledLimit& lim, const CompiledResource& res, const CostView& c) {
  if (lim.kind != UnitKind::kUsd) return units_of(lim.unit, lim.kind, c);
  i128 picos = 0;
  for (const auto& [unit, price] : res.prices)
    picos += static_cast<i128>(units_of(unit, kind_of(unit), c)) * price;
  const i128 micros = (picos + kPicosPerMicro - 1) / kPicosPerMicro;
  return static_cast<int64_t>(std::min<i128>(micros, kMaxCost));
}

std::string cost_problem(int64_t bare, const NamedCosts& named) {
  if (bare < (named.count > 0 ? 0 : 1) || bare > kMaxCost)
    return fmt::format("COST must be 1 to {}", kMaxCost);
  return named_cost_problem(named);
}

std::string named_cost_problem(const NamedCosts& named) {
  for (size_t i = 0; i < named.count; ++i) {
    const NamedCost& n = named.items[i];
    if (auto problem = policy_detail::unit_problem(n.unit); !problem.empty())
      return fmt::format("COST unit '{}' {}", n.unit, problem);
    if (n.amount < 0 || n.amount > kMaxCost)
      return fmt::format("COST {} must be 0 to {}", n.unit, kMaxCost);
    for (size_t j = 0; j < i; ++j) {
      if (named.items[j].unit == n.unit) return fmt::format("COST {} is given twice", n.unit);
    }
  }
  return "";
}

bool NamedCosts::add(std::string_view unit, int64_t amount) {
  if (count == items.size()) return false;
  for (size_t i = 0; i < count; ++i) {
    if (items[i].unit == unit) return false;
  }
  items[count++] = {unit, amount};
  return true;
}

LeaseCosts LeaseCosts::of(int64_t bare, std::span<const NamedCost> named) {
  LeaseCosts c;
  c.bare = bare;
  c.named.reserve(named.size());
  for (const NamedCost& n : named) c.named.emplace_back(std::string(n.unit), n.amount);
  return c;
}

const int64_t* LeaseCosts::find(std::string_view unit) const {
  for (const auto& [u, n] : named) {
    if (u == unit) return &n;
  }
  return nullptr;
}

void LeaseCosts::set(std::string_view unit, int64_t amount) {
  for (auto& [u, n] : named) {
    if (u == unit) {
      n = amount;
      return;
    }
  }
  named.emplace_back(std::string(unit), amount);
}

CostView LeaseCosts::view(NamedCosts& buf) const {
  buf.count = 0;
  for (const auto& [u, n] : named) buf.add(u, n);
  return {bare, buf.view()};
}

LeaseCosts LeaseAccount::effective() const {
  LeaseCosts e = estimate;
  if (bare_charged) e.bare = used.bare;
  for (const auto& [u, n] : used.named) e.set(u, n);
  return e;
}

size_t LeaseAccount::units_after(std::span<const NamedCost> named) const {
  LeaseCosts e = effective();
  for (const NamedCost& n : named) e.set(n.unit, 0);
  return e.named.size();
}

void LeaseAccount::add(int64_t bare, std::span<const NamedCost> named, int sign) {
  if (bare > 0) {
    used.bare = std::clamp<int64_t>(used.bare + sign * bare, 0, kMaxCost);
    if (sign > 0) bare_charged = true;
  }
  for (const NamedCost& n : named) {
    const int64_t* have = used.find(n.unit);
    used.set(n.unit, std::clamp<int64_t>((have ? *have : 0) + sign * n.amount, 0, kMaxCost));
  }
}

}  // namespace sluice
