// Draft edits as replayable operations. Each one checks its preconditions against the spec it
// is applied to and refuses with a reason instead of half-applying, so the same edit can be
// replayed on a newer running policy after a CONFLICT ("reload and reapply").
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "sluice/policy.h"
#include "sluice/status.h"

namespace sluice::admin {

using Edit = std::function<Status(PolicySpec&)>;

namespace edits {

Edit setTierMultiplier(std::string tier, double multiplier);
Edit setTierUnlimited(std::string tier, bool unlimited);
Edit setTierDescription(std::string tier, std::string description);
// Any number; the validator says when it is outside -1000..1000.
Edit setTierPriority(std::string tier, int64_t priority);
Edit setDefaultTier(std::string tier);
Edit addTier(std::string name);
// Top-level settings. Switching unknown_resource to default_limits with none gives unknown
// resources one limit to start from (60 per minute); switching away drops the default limits,
// which serve nothing else.
Edit setUnknownResource(UnknownResourceMode mode);
Edit setStorageFailure(StorageFailureMode mode);
// `text` as the policy writes durations ("60s", "2m"); refused when it is not one. Out of
// range (0s) is the validator's to report, on the field.
Edit setLeaseTtl(std::string text);
// Renaming carries the tier's API keys and the default-tier marker along.
Edit renameTier(std::string from, std::string to);
// Refused while an API key maps to the tier, while it is the default tier, or while it still
// has per-resource overrides.
Edit removeTier(std::string name);

// Replaces limit `limit_name` of `resource` (the name may change with the new spec).
Edit setLimit(std::string resource, std::string limit_name, LimitSpec limit);
// nullopt removes the tier's absolute override of that limit.
Edit setOverrideLimit(std::string tier, std::string resource, std::string limit,
                      std::optional<int64_t> value);
Edit setWarmup(std::string resource, WarmupSpec warmup);
// A new resource with one limit (60 requests per minute, fixed_window) to edit from there.
Edit addResource(std::string name);
// Renaming carries the tiers' overrides of the resource along.
Edit renameResource(std::string from, std::string to);
// Removes the resource and every tier's overrides of it.
Edit removeResource(std::string name);
Edit setResourceDescription(std::string resource, std::string description);
// Appends `limit` (its name must be new in the resource).
Edit addLimit(std::string resource, LimitSpec limit);
// Removes the limit and the tiers' absolute overrides of it; refused for the last limit.
Edit removeLimit(std::string resource, std::string limit);
// Moves the limit `by` places (negative: up), within the list.
Edit moveLimit(std::string resource, std::string limit, int by);

Edit setApiKey(std::string key, std::string tier);
// A label for people next to the masked key; an empty label removes it.
Edit setApiKeyLabel(std::string key, std::string label);
// Removes the key and its label.
Edit removeApiKey(std::string key);

// The whole draft at once (opening a file).
Edit replacePolicy(PolicySpec spec);

}  // namespace edits

// Lookups shared by the edits and the models; nullptr when absent.
TierSpec* findTier(PolicySpec& spec, std::string_view name);
const TierSpec* findTier(const PolicySpec& spec, std::string_view name);
ResourceSpec* findResource(PolicySpec& spec, std::string_view name);
const ResourceSpec* findResource(const PolicySpec& spec, std::string_view name);

}  // namespace sluice::admin
