#include "core/consequences.h"

#include <QCoreApplication>
#include <algorithm>
#include <map>
#include <memory>
#include <tuple>

#include "core/policy_names.h"

namespace sluice::admin {

namespace {

const QString kNone = QStringLiteral("—");

using Key = std::tuple<std::string, std::string, std::string>;  // resource, tier, limit

// Every (resource, tier, limit) of a compiled policy with its effective limit as text.
std::map<Key, QString> effectiveTexts(const CompiledPolicy& p) {
  std::map<Key, QString> out;
  for (const CompiledResource& r : p.resources()) {
    const ResourceSpec* spec = nullptr;
    for (const auto& s : p.spec().resources)
      if (s.name == r.name) spec = &s;
    for (const CompiledTier& t : p.tiers()) {
      for (size_t l = 0; l < r.limits.size(); ++l) {
        QString text;
        if (r.unlimited_for_tier[t.index]) {
          text = QCoreApplication::translate("Consequences", "unlimited");
        } else {
          LimitSpec unit;  // only its unit matters to amountText
          unit.unit = r.limits[l].unit;
          if (spec && l < spec->limits.size()) unit = spec->limits[l];
          text = amountText(unit, r.effective[t.index][l].limit);
        }
        out[{r.name, t.name, r.limits[l].name}] = text;
      }
    }
  }
  return out;
}

// Names in draft order first, then those only the base has.
std::vector<std::string> ordered(const std::vector<std::string>& draft,
                                 const std::vector<std::string>& base) {
  std::vector<std::string> out = draft;
  for (const auto& b : base)
    if (std::find(out.begin(), out.end(), b) == out.end()) out.push_back(b);
  return out;
}

std::shared_ptr<const CompiledPolicy> compiled(const PolicySpec& spec, QString* why,
                                               const QString& side) {
  if (!validate_policy(spec).empty()) {
    *why = QCoreApplication::translate("Consequences", "the %1 has problems").arg(side);
    return nullptr;
  }
  auto c = CompiledPolicy::compile(spec, 0);
  if (!c.ok()) {
    *why = QCoreApplication::translate("Consequences", "the %1 does not compile: %2")
               .arg(side, QString::fromStdString(c.status().message()));
    return nullptr;
  }
  return c.value();
}

}  // namespace

QString LimitConsequence::text() const {
  return QStringLiteral("%1 · %2 · %3: %4 → %5").arg(resource, tier, limit, before, after);
}

Consequences draftConsequences(const PolicySpec& base, const PolicySpec& draft) {
  Consequences out;
  for (auto& c : policy_changes(base, draft, apiKeyMask(base, draft))) {
    if (c.field.empty()) continue;  // added or removed: the diff says it, the rows count it
    out.settings.push_back({QString::fromStdString(c.what), QString::fromStdString(c.field),
                            QString::fromStdString(c.before), QString::fromStdString(c.after),
                            QString::fromStdString(c.text)});
  }
  const auto before = compiled(base, &out.unavailable,
                               QCoreApplication::translate("Consequences", "running policy"));
  if (!before) return out;
  const auto after =
      compiled(draft, &out.unavailable, QCoreApplication::translate("Consequences", "draft"));
  if (!after) return out;
  const auto b = effectiveTexts(*before);
  const auto a = effectiveTexts(*after);

  std::vector<std::string> resD, resB, tierD, tierB;
  for (const auto& r : draft.resources) resD.push_back(r.name);
  for (const auto& r : base.resources) resB.push_back(r.name);
  for (const auto& t : draft.tiers) tierD.push_back(t.name);
  for (const auto& t : base.tiers) tierB.push_back(t.name);
  const auto limitsOf = [](const PolicySpec& p, const std::string& resource) {
    std::vector<std::string> names;
    for (const auto& r : p.resources)
      if (r.name == resource)
        for (const auto& l : r.limits) names.push_back(l.name);
    return names;
  };

  for (const auto& r : ordered(resD, resB)) {
    const auto limits = ordered(limitsOf(draft, r), limitsOf(base, r));
    for (const auto& t : ordered(tierD, tierB)) {
      for (const auto& l : limits) {
        const auto bi = b.find({r, t, l});
        const auto ai = a.find({r, t, l});
        const QString bt = bi == b.end() ? kNone : bi->second;
        const QString at = ai == a.end() ? kNone : ai->second;
        if (bt == at) continue;
        out.rows.push_back({QString::fromStdString(r), QString::fromStdString(t),
                            QString::fromStdString(l), bt, at});
      }
    }
  }
  return out;
}

}  // namespace sluice::admin
