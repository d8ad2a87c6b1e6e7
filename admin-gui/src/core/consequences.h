// What a draft does to the limits the engine enforces: every model × tier × limit whose
// effective limit (or unlimited state) differs between the running policy and the draft, both
// compiled with the engine's own sluice::CompiledPolicy (as EffectiveLimitModel does), so the
// review can say "predict · premium · per_minute: 50 → 80" instead of "multiplier 5 -> 8".
#pragma once

#include <QString>
#include <QVector>

#include "sluice/policy.h"

namespace sluice::admin {

struct LimitConsequence {
  QString resource, tier, limit;
  // The effective limit as an operator reads it ("80", "$12.5", "unlimited"); "—" where the
  // model, tier or limit does not exist on that side.
  QString before, after;
  // "predict · premium · per_minute: 50 → 80"
  QString text() const;
};

struct Consequences {
  QVector<LimitConsequence> rows;  // draft order (resources, tiers, limits), removed ones after
  // Why nothing could be computed (a side that does not validate or compile); empty otherwise.
  QString unavailable;
};

// Pure: compiles `base` and `draft` and compares their effective limits.
Consequences limitConsequences(const PolicySpec& base, const PolicySpec& draft);

}  // namespace sluice::admin
