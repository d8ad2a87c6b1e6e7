// What a draft does, for the review: every setting it changes in place, old → new (a limit's
// algorithm, window, burst, cost unit, overdraft or shadow flag, a description, a label, a
// tier's priority, the top-level settings: sluice::policy_changes), and every model × tier ×
// limit whose effective limit (or unlimited state) differs between the running policy and the
// draft, both compiled with the engine's own sluice::CompiledPolicy (as EffectiveLimitModel
// does), so the review can say "predict · premium · per_minute: 50 → 80" instead of
// "multiplier 5 → 8".
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

// A value changed in place: "resource predict: limit per_minute" · "window" · "1m" → "30s".
struct SettingChange {
  QString what, field, before, after;
  // "resource predict: limit per_minute: window 1m → 30s" (the engine's diff line)
  QString text;
};

struct Consequences {
  // In the engine's diff order; API keys masked as the key table shows them (apiKeyMask).
  // Known even when the effective limits are not.
  QVector<SettingChange> settings;
  QVector<LimitConsequence> rows;  // draft order (resources, tiers, limits), removed ones after
  // Why nothing could be computed (a side that does not validate or compile); empty otherwise.
  QString unavailable;
};

// Pure: compares the settings of `base` and `draft`, compiles both and compares their effective
// limits.
Consequences draftConsequences(const PolicySpec& base, const PolicySpec& draft);

}  // namespace sluice::admin
