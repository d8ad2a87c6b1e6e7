#include "core/policy_edits.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/policy_names.h"

namespace sluice::admin {

template <typename T>
static T* findNamed(std::vector<T>& v, std::string_view name) {
  auto it = std::find_if(v.begin(), v.end(), [&](const T& x) { return x.name == name; });
  return it == v.end() ? nullptr : &*it;
}

TierSpec* findTier(PolicySpec& spec, std::string_view name) { return findNamed(spec.tiers, name); }
const TierSpec* findTier(const PolicySpec& spec, std::string_view name) {
  return findTier(const_cast<PolicySpec&>(spec), name);
}
ResourceSpec* findResource(PolicySpec& spec, std::string_view name) {
  return findNamed(spec.resources, name);
}
const ResourceSpec* findResource(const PolicySpec& spec, std::string_view name) {
  return findResource(const_cast<PolicySpec&>(spec), name);
}

namespace edits {

namespace {
Status noTier(std::string_view name) {
  return Status::NotFound(fmt::format("there is no tier '{}'", name));
}
Status noResource(std::string_view name) {
  return Status::NotFound(fmt::format("there is no resource '{}'", name));
}

// What a new model (or the unknown resources) start from: 60 requests per minute.
LimitSpec startingLimit() {
  LimitSpec l;
  l.name = "per_minute";
  l.algorithm = SLUICE_ALG_FIXED_WINDOW;
  l.limit = 60;
  l.window_ms = 60'000;
  return l;
}

// Applies `f` to the named tier.
template <typename F>
Edit onTier(std::string tier, F f) {
  return [tier = std::move(tier), f = std::move(f)](PolicySpec& spec) -> Status {
    TierSpec* t = findTier(spec, tier);
    if (t == nullptr) return noTier(tier);
    return f(*t);
  };
}

std::string keysList(const PolicySpec& spec, std::string_view tier) {
  std::string out;
  int n = 0;
  QStringList all;
  for (const auto& [key, t] : spec.api_keys) all << QString::fromStdString(key);
  for (const auto& [key, t] : spec.api_keys) {
    if (t != tier) continue;
    if (n++ < 3) {
      if (!out.empty()) out += ", ";
      out += maskApiKey(QString::fromStdString(key), all).toStdString();
    }
  }
  if (n > 3) out += fmt::format(" and {} more", n - 3);
  return fmt::format("{} API key{} ({})", n, n == 1 ? "" : "s", out);
}
}  // namespace

Edit setTierMultiplier(std::string tier, double multiplier) {
  return onTier(std::move(tier), [multiplier](TierSpec& t) {
    t.multiplier = multiplier;
    return Status::Ok();
  });
}

Edit setTierUnlimited(std::string tier, bool unlimited) {
  return onTier(std::move(tier), [unlimited](TierSpec& t) {
    t.unlimited = unlimited;
    return Status::Ok();
  });
}

Edit setTierDescription(std::string tier, std::string description) {
  return onTier(std::move(tier), [d = std::move(description)](TierSpec& t) {
    t.description = d;
    return Status::Ok();
  });
}

Edit setTierPriority(std::string tier, int64_t priority) {
  return onTier(std::move(tier), [priority](TierSpec& t) {
    t.priority = priority;
    return Status::Ok();
  });
}

Edit setDefaultTier(std::string tier) {
  return [tier = std::move(tier)](PolicySpec& spec) {
    if (findTier(spec, tier) == nullptr) return noTier(tier);
    spec.default_tier = tier;
    return Status::Ok();
  };
}

Edit setUnknownResource(UnknownResourceMode mode) {
  return [mode](PolicySpec& spec) {
    spec.unknown_resource = mode;
    // The default limits serve only this mode (the validator refuses them otherwise).
    if (mode != UnknownResourceMode::kDefaultLimits) {
      spec.default_limits.clear();
    } else if (spec.default_limits.empty()) {
      spec.default_limits.push_back(startingLimit());
    }
    return Status::Ok();
  };
}

Edit setStorageFailure(StorageFailureMode mode) {
  return [mode](PolicySpec& spec) {
    spec.on_storage_failure = mode;
    return Status::Ok();
  };
}

Edit setLeaseTtl(std::string text) {
  return [text = std::move(text)](PolicySpec& spec) {
    const auto ms = parse_duration_ms(text);
    if (!ms)
      return Status::Invalid(
          fmt::format("'{}' is not a duration (write it as 30s, 1m, 1m30s, 500ms, ...)", text));
    spec.lease_ttl_ms = *ms;
    return Status::Ok();
  };
}

Edit addTier(std::string name) {
  return [name = std::move(name)](PolicySpec& spec) {
    if (name.empty()) return Status::Invalid("a tier needs a name");
    if (findTier(spec, name) != nullptr)
      return Status::Invalid(fmt::format("a tier named '{}' already exists", name));
    TierSpec t;
    t.name = name;
    spec.tiers.push_back(std::move(t));
    if (spec.default_tier.empty()) spec.default_tier = name;
    return Status::Ok();
  };
}

Edit renameTier(std::string from, std::string to) {
  return [from = std::move(from), to = std::move(to)](PolicySpec& spec) {
    TierSpec* t = findTier(spec, from);
    if (t == nullptr) return noTier(from);
    if (to.empty()) return Status::Invalid("a tier needs a name");
    if (to == from) return Status::Ok();
    if (findTier(spec, to) != nullptr)
      return Status::Invalid(fmt::format("a tier named '{}' already exists", to));
    t->name = to;
    for (auto& [key, tier] : spec.api_keys)
      if (tier == from) tier = to;
    if (spec.default_tier == from) spec.default_tier = to;
    return Status::Ok();
  };
}

Edit removeTier(std::string name) {
  return [name = std::move(name)](PolicySpec& spec) {
    auto it = std::find_if(spec.tiers.begin(), spec.tiers.end(),
                           [&](const TierSpec& t) { return t.name == name; });
    if (it == spec.tiers.end()) return noTier(name);
    const bool usedByKey = std::any_of(spec.api_keys.begin(), spec.api_keys.end(),
                                       [&](const auto& kv) { return kv.second == name; });
    if (usedByKey)
      return Status::Invalid(
          fmt::format("tier '{}' is still used by {}; map them to another tier first", name,
                      keysList(spec, name)));
    if (spec.default_tier == name)
      return Status::Invalid(
          fmt::format("tier '{}' is the default tier; make another tier the default first", name));
    if (!it->overrides.empty()) {
      std::string resources;
      for (const auto& [r, ov] : it->overrides) resources += (resources.empty() ? "" : ", ") + r;
      return Status::Invalid(
          fmt::format("tier '{}' still has overrides for {}; clear them in Models & limits first",
                      name, resources));
    }
    spec.tiers.erase(it);
    return Status::Ok();
  };
}

Edit setLimit(std::string resource, std::string limit_name, LimitSpec limit) {
  return [resource = std::move(resource), limit_name = std::move(limit_name),
          limit = std::move(limit)](PolicySpec& spec) {
    ResourceSpec* r = findResource(spec, resource);
    if (r == nullptr) return noResource(resource);
    auto it = std::find_if(r->limits.begin(), r->limits.end(),
                           [&](const LimitSpec& l) { return l.name == limit_name; });
    if (it == r->limits.end())
      return Status::NotFound(fmt::format("resource '{}' has no limit '{}'", resource, limit_name));
    if (limit.name != limit_name) {
      // Overrides name limits; keep them pointing at the renamed limit.
      for (auto& t : spec.tiers) {
        auto ov = t.overrides.find(resource);
        if (ov == t.overrides.end()) continue;
        auto node = ov->second.limits.extract(limit_name);
        if (!node.empty()) {
          node.key() = limit.name;
          ov->second.limits.insert(std::move(node));
        }
      }
    }
    *it = limit;
    return Status::Ok();
  };
}

Edit setOverrideLimit(std::string tier, std::string resource, std::string limit,
                      std::optional<int64_t> value) {
  return [tier = std::move(tier), resource = std::move(resource), limit = std::move(limit),
          value](PolicySpec& spec) {
    TierSpec* t = findTier(spec, tier);
    if (t == nullptr) return noTier(tier);
    const ResourceSpec* r = findResource(spec, resource);
    if (r == nullptr) return noResource(resource);
    if (std::none_of(r->limits.begin(), r->limits.end(),
                     [&](const LimitSpec& l) { return l.name == limit; }))
      return Status::NotFound(fmt::format("resource '{}' has no limit '{}'", resource, limit));
    if (value) {
      t->overrides[resource].limits[limit] = *value;
      return Status::Ok();
    }
    auto ov = t->overrides.find(resource);
    if (ov == t->overrides.end()) return Status::Ok();
    ov->second.limits.erase(limit);
    // An override left with nothing in it would still show up in YAML and diffs.
    if (ov->second.limits.empty() && !ov->second.multiplier && !ov->second.unlimited)
      t->overrides.erase(ov);
    return Status::Ok();
  };
}

Edit setWarmup(std::string resource, WarmupSpec warmup) {
  return [resource = std::move(resource), warmup](PolicySpec& spec) {
    ResourceSpec* r = findResource(spec, resource);
    if (r == nullptr) return noResource(resource);
    r->warmup = warmup;
    return Status::Ok();
  };
}

Edit addResource(std::string name) {
  return [name = std::move(name)](PolicySpec& spec) {
    if (name.empty()) return Status::Invalid("a model needs a name");
    if (findResource(spec, name) != nullptr)
      return Status::Invalid(fmt::format("a model named '{}' already exists", name));
    ResourceSpec r;
    r.name = name;
    r.limits.push_back(startingLimit());
    spec.resources.push_back(std::move(r));
    return Status::Ok();
  };
}

Edit renameResource(std::string from, std::string to) {
  return [from = std::move(from), to = std::move(to)](PolicySpec& spec) {
    ResourceSpec* r = findResource(spec, from);
    if (r == nullptr) return noResource(from);
    if (to.empty()) return Status::Invalid("a model needs a name");
    if (to == from) return Status::Ok();
    if (findResource(spec, to) != nullptr)
      return Status::Invalid(fmt::format("a model named '{}' already exists", to));
    r->name = to;
    for (auto& t : spec.tiers) {
      auto node = t.overrides.extract(from);
      if (node.empty()) continue;
      node.key() = to;
      t.overrides.insert(std::move(node));
    }
    return Status::Ok();
  };
}

Edit removeResource(std::string name) {
  return [name = std::move(name)](PolicySpec& spec) {
    auto it = std::find_if(spec.resources.begin(), spec.resources.end(),
                           [&](const ResourceSpec& r) { return r.name == name; });
    if (it == spec.resources.end()) return noResource(name);
    spec.resources.erase(it);
    for (auto& t : spec.tiers) t.overrides.erase(name);
    return Status::Ok();
  };
}

Edit setResourceDescription(std::string resource, std::string description) {
  return [resource = std::move(resource), description = std::move(description)](PolicySpec& spec) {
    ResourceSpec* r = findResource(spec, resource);
    if (r == nullptr) return noResource(resource);
    r->description = description;
    return Status::Ok();
  };
}

Edit addLimit(std::string resource, LimitSpec limit) {
  return [resource = std::move(resource), limit = std::move(limit)](PolicySpec& spec) {
    ResourceSpec* r = findResource(spec, resource);
    if (r == nullptr) return noResource(resource);
    for (const auto& l : r->limits)
      if (l.name == limit.name)
        return Status::Invalid(
            fmt::format("model '{}' already has a limit named '{}'", resource, limit.name));
    if (r->limits.size() >= kMaxLimitsPerResource)
      return Status::Invalid(fmt::format("a model has at most {} limits", kMaxLimitsPerResource));
    r->limits.push_back(limit);
    return Status::Ok();
  };
}

Edit removeLimit(std::string resource, std::string limit) {
  return [resource = std::move(resource), limit = std::move(limit)](PolicySpec& spec) {
    ResourceSpec* r = findResource(spec, resource);
    if (r == nullptr) return noResource(resource);
    auto it = std::find_if(r->limits.begin(), r->limits.end(),
                           [&](const LimitSpec& l) { return l.name == limit; });
    if (it == r->limits.end())
      return Status::NotFound(fmt::format("model '{}' has no limit '{}'", resource, limit));
    if (r->limits.size() == 1)
      return Status::Invalid(fmt::format(
          "'{}' is the last limit of model '{}'; remove the model instead", limit, resource));
    r->limits.erase(it);
    for (auto& t : spec.tiers) {
      auto ov = t.overrides.find(resource);
      if (ov == t.overrides.end()) continue;
      ov->second.limits.erase(limit);
      if (ov->second.limits.empty() && !ov->second.multiplier && !ov->second.unlimited)
        t.overrides.erase(ov);
    }
    return Status::Ok();
  };
}

Edit moveLimit(std::string resource, std::string limit, int by) {
  return [resource = std::move(resource), limit = std::move(limit), by](PolicySpec& spec) {
    ResourceSpec* r = findResource(spec, resource);
    if (r == nullptr) return noResource(resource);
    auto it = std::find_if(r->limits.begin(), r->limits.end(),
                           [&](const LimitSpec& l) { return l.name == limit; });
    if (it == r->limits.end())
      return Status::NotFound(fmt::format("model '{}' has no limit '{}'", resource, limit));
    const auto from = it - r->limits.begin();
    const auto to = from + by;
    if (to < 0 || to >= static_cast<std::ptrdiff_t>(r->limits.size()))
      return Status::Invalid(fmt::format("'{}' cannot move further", limit));
    LimitSpec moved = std::move(*it);
    r->limits.erase(it);
    r->limits.insert(r->limits.begin() + to, std::move(moved));
    return Status::Ok();
  };
}

Edit setApiKey(std::string key, std::string tier) {
  return [key = std::move(key), tier = std::move(tier)](PolicySpec& spec) {
    if (key.empty()) return Status::Invalid("an API key cannot be empty");
    if (key.size() > kMaxSubjectLength)
      return Status::Invalid(fmt::format("an API key is at most {} bytes", kMaxSubjectLength));
    if (findTier(spec, tier) == nullptr) return noTier(tier);
    spec.api_keys[key] = tier;
    return Status::Ok();
  };
}

Edit setApiKeyLabel(std::string key, std::string label) {
  return [key = std::move(key), label = std::move(label)](PolicySpec& spec) {
    if (!spec.api_keys.contains(key))
      return Status::NotFound(fmt::format("there is no API key {}",
                                          maskApiKey(QString::fromStdString(key)).toStdString()));
    if (label.empty()) {
      spec.api_key_labels.erase(key);
    } else {
      spec.api_key_labels[key] = label;
    }
    return Status::Ok();
  };
}

Edit removeApiKey(std::string key) {
  return [key = std::move(key)](PolicySpec& spec) {
    if (spec.api_keys.erase(key) == 0)
      return Status::NotFound(fmt::format("there is no API key {}",
                                          maskApiKey(QString::fromStdString(key)).toStdString()));
    spec.api_key_labels.erase(key);
    return Status::Ok();
  };
}

Edit replacePolicy(PolicySpec replacement) {
  return [replacement = std::move(replacement)](PolicySpec& spec) {
    spec = replacement;
    return Status::Ok();
  };
}

}  // namespace edits
}  // namespace sluice::admin
