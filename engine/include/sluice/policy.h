// The policy: what sluice enforces. Parsed from YAML (docs/policy.md is the reference),
// validated with file:line:column messages, serialised back to YAML (the admin GUI edits a
// PolicySpec and sends its YAML), and compiled into an immutable CompiledPolicy that the
// decision hot path reads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/export.h"
#include "sluice/status.h"
#include "sluice/storage_plugin.h"

namespace date {
class time_zone;
}

namespace sluice {

inline constexpr size_t kMaxLimitsPerResource = 16;
inline constexpr size_t kMaxNameLength = 64;      // tier, resource and limit names
inline constexpr size_t kMaxSubjectLength = 512;  // bytes of a subject or API key

// What a limit counts (`cost:`): requests (each request is 1), or a unit the request names with
// `COST <unit> <n>` — tokens, items, input_tokens, output_tokens or any identifier — or `usd`,
// money computed from the resource's `prices:` (docs/policy.md, "Costs").
inline constexpr std::string_view kUnitRequests = "requests";
inline constexpr std::string_view kUnitTokens = "tokens";
inline constexpr std::string_view kUnitUsd = "usd";
// Money is counted in micro-dollars: a `usd` limit of 25 (dollars) is 25'000'000 of them.
inline constexpr int64_t kMicrosPerDollar = 1'000'000;
// Prices are read exactly, in pico-dollars per unit (12 decimals).
inline constexpr int64_t kPicosPerMicro = 1'000'000;
// A fixed_window's window may be a calendar period in a time zone instead of a duration: the
// local day, the ISO week (from Monday) or the month, from local midnight to local midnight.
enum class CalendarPeriod { kNone, kDay, kWeek, kMonth };
enum class UnknownResourceMode { kDeny, kAllow, kDefaultLimits };
enum class StorageFailureMode { kFailOpen, kFailClosed };

// A share of a concurrency limit kept for requests of high enough priority: tiers below
// `min_priority` are refused once only the reserved share is free.
struct ReserveSpec {
  double share = 0;  // 0 = no reserve; else > 0 and < 1
  int64_t min_priority = 0;
  bool operator==(const ReserveSpec&) const = default;
};

struct LimitSpec {
  std::string name;  // unique within its resource; reported as the deciding rule
  sluice_algorithm algorithm = SLUICE_ALG_FIXED_WINDOW;
  int64_t limit = 0;      // > 0
  int64_t window_ms = 0;  // > 0 (for concurrency: the default lease TTL); for a calendar
                          // window its longest length (calendar_window_ms)
  CalendarPeriod calendar = CalendarPeriod::kNone;
  std::string timezone;             // IANA name of a calendar window's zone; "" = UTC
  int64_t burst = 0;                // token_bucket/gcra only; 0 = same as limit
  std::string unit{kUnitRequests};  // `cost:`; for usd, limit counts micro-dollars
  // Settling a lease past what was admitted charges at most this much more per lease
  // (`overdraft:`); -1 = no cap (the whole overrun is charged).
  int64_t overdraft = -1;
  bool shadow = false;        // count and report, never deny
  bool per_resource = false;  // `per: resource`: one count shared by every subject
  ReserveSpec reserve;        // concurrency only
  bool operator==(const LimitSpec&) const = default;
};

struct WarmupSpec {
  bool enabled = false;
  double factor = 1.0;      // 0 < factor <= 1: share of each limit while warming up
  int64_t duration_ms = 0;  // 0 = until READY; else warm-up ends by itself after this long
  bool ramp = false;        // limits grow linearly from factor to 1 over duration_ms
  bool start_cold = false;  // true: warming up from engine start (and after policy load)
  bool operator==(const WarmupSpec&) const = default;
};

// How WAIT requests are held for a resource (docs/policy.md, "Queue"). A resource without a
// `queue:` block gets these defaults.
struct QueueSpec {
  static constexpr int64_t kDefaultMaxWaitMs = 30'000;
  static constexpr int64_t kDefaultMaxWaiters = 1000;
  bool present = false;                      // written in the policy (kept for the round trip)
  int64_t max_wait_ms = kDefaultMaxWaitMs;   // 0 = WAIT is not honoured
  int64_t max_waiters = kDefaultMaxWaiters;  // 0 = WAIT is not honoured
  bool operator==(const QueueSpec&) const = default;
};

struct ResourceSpec {
  std::string name;
  std::string description;
  std::vector<LimitSpec> limits;
  // `prices:` unit -> pico-dollars per unit, for `cost: usd` limits.
  std::map<std::string, int64_t> prices;
  WarmupSpec warmup;
  QueueSpec queue;
  bool operator==(const ResourceSpec&) const = default;
};

// A tier's change for one resource: a multiplier of its own and/or absolute limits by name.
struct TierOverride {
  std::optional<double> multiplier;
  std::map<std::string, int64_t> limits;  // limit name -> absolute limit
  bool unlimited = false;
  bool operator==(const TierOverride&) const = default;
};

struct TierSpec {
  std::string name;
  std::string description;
  double multiplier = 1.0;  // > 0
  bool unlimited = false;
  int64_t priority = 0;  // WAIT queues serve higher first; concurrency reserves
  std::map<std::string, TierOverride> overrides;  // resource name -> override
  bool operator==(const TierSpec&) const = default;
};

struct PolicySpec {
  std::string default_tier;                     // must name a tier
  std::vector<TierSpec> tiers;                  // at least one
  std::map<std::string, std::string> api_keys;  // key -> tier name
  // key -> a label for people ("Acme Corp, staging"), written `key: {tier: t, label: ...}`;
  // only for mapped keys, and never used in decisions.
  std::map<std::string, std::string> api_key_labels;
  std::vector<ResourceSpec> resources;
  UnknownResourceMode unknown_resource = UnknownResourceMode::kDeny;
  std::vector<LimitSpec> default_limits;  // used when unknown_resource = kDefaultLimits
  StorageFailureMode on_storage_failure = StorageFailureMode::kFailClosed;
  int64_t lease_ttl_ms = 60'000;  // default lease TTL for SL.ACQUIRE
  int64_t lease_ttl_max_ms = 0;   // longest TTL a client may ask; 0 = lease_ttl
  int64_t max_lease_ttl_ms() const { return lease_ttl_max_ms ? lease_ttl_max_ms : lease_ttl_ms; }
  bool operator==(const PolicySpec&) const = default;
};

// One validation problem. line/column are 1-based; 0 when not tied to a place.
struct PolicyError {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  std::string path;               // where in the document, e.g. "resources[2].limits[0].limit"
  std::string to_string() const;  // "file:line:column: message"
};

struct PolicyParseResult {
  std::optional<PolicySpec> policy;  // set only when errors is empty
  std::vector<PolicyError> errors;   // every problem found, in document order
  bool ok() const { return errors.empty(); }
  std::string error_text() const;  // one error per line
};

// Parse and validate YAML text. `file` names the source in messages ("<admin>" for text
// received over the socket). Never throws.
SLUICE_API PolicyParseResult parse_policy(std::string_view yaml_text, std::string_view file);
SLUICE_API PolicyParseResult parse_policy_file(const std::string& path);

// The largest policy text accepted, from a file or over the admin socket.
inline constexpr size_t kMaxPolicyBytes = 16u << 20;

// Reads a policy file the one way every path does (start, SIGHUP, SL.POLICY RELOAD, the GUI):
// only a regular file is read, never more than kMaxPolicyBytes, and opening never blocks (a
// FIFO, device, directory or socket is refused with a sentence naming what was found).
SLUICE_API Result<std::string> read_policy_file(const std::string& path);

// Semantic validation of a spec built in code (the GUI's draft); same checks as parsing.
SLUICE_API std::vector<PolicyError> validate_policy(const PolicySpec& spec);

// YAML text that parse_policy reads back to an equal spec.
SLUICE_API std::string policy_to_yaml(const PolicySpec& spec);

// "...abcd": an API key as messages and diffs show it, by its last 4 characters; keys shorter
// than 8 characters not at all ("...").
SLUICE_API std::string mask_api_key(std::string_view key);

// How API keys are written in changes; empty = mask_api_key. sluice-admin passes one that also
// tells apart keys that mask alike ("...-key #3f0a").
using ApiKeyMask = std::function<std::string(const std::string& key)>;

// One change from `before` to `after`. A value changed in place has its field and both values
// as text ("tier premium", "multiplier", "5", "6"); an added or removed item has only `what`
// and `text`. Descriptions and labels are quoted and cut to 60 characters ("…").
struct PolicyChange {
  std::string what;           // "policy", "tier premium", "resource predict: limit per_minute"
  std::string field;          // "multiplier", "window", "description", …; "" for added/removed
  std::string before, after;  // as the policy writes them; "" for added/removed
  std::string text;           // the readable line: "tier premium: multiplier 5 → 6"
};
SLUICE_API std::vector<PolicyChange> policy_changes(const PolicySpec& before,
                                                    const PolicySpec& after,
                                                    const ApiKeyMask& mask = {});

// The changes' lines, one each ("tier premium: multiplier 5 → 6",
// 'resource predict: description "Fast" → "Fast, EU"').
SLUICE_API std::vector<std::string> diff_policies(const PolicySpec& before, const PolicySpec& after,
                                                  const ApiKeyMask& mask = {});

// "" when `unit` can be a limit's `cost:` (1 to 64 lower-case letters, digits and '_',
// starting with a letter or '_'), else the problem. The one rule for policies, requests and
// the GUI.
SLUICE_API std::string cost_unit_problem(std::string_view unit);

// A limit while its resource warms up: floor(limit × factor), never below 1 (unchanged at
// factor 1). The engine decides with it; the GUI shows it.
SLUICE_API int64_t warm_limit(int64_t limit, double factor);

// A usd limit's amount as the policy writes it: micro-dollars as dollars ("250.5"), and back
// (at most 6 decimals, at most $1,000,000; nullopt otherwise).
SLUICE_API std::string format_dollars(int64_t micros);
SLUICE_API std::optional<int64_t> parse_dollars(std::string_view text);

// Window text: "500ms", "1s", "1m", "1h", "1d", also "90s" and "1m30s"; nullopt when invalid.
SLUICE_API std::optional<int64_t> parse_duration_ms(std::string_view text);
SLUICE_API std::string format_duration_ms(int64_t ms);
// A limit's window as the policy writes it: "1m", "calendar_day", and with `with_zone`
// "calendar_day (Europe/Berlin)" (UTC when no zone is named).
SLUICE_API std::string window_text(const LimitSpec& l, bool with_zone = false);
// Sets a limit's window from a duration ("30s", "1d") or a calendar period ("calendar_week");
// a duration drops a calendar window's zone. False, changing nothing, for other text.
SLUICE_API bool set_window(LimitSpec& l, std::string_view text);

// ---- compiled form -------------------------------------------------------------------

enum class UnitKind : uint8_t { kRequests, kTokens, kUsd, kOther };

struct CompiledLimit {
  std::string name;
  sluice_limit_params params;  // base parameters (default tier, warm)
  std::string unit;
  UnitKind kind;
  int64_t overdraft;  // -1 = no cap
  bool shadow;
  bool per_resource;  // one key for every subject
  // A calendar window: params.algorithm is SLUICE_ALG_CALENDAR_WINDOW, and every decision
  // fills in the current window's start and length (calendar_window()).
  CalendarPeriod calendar = CalendarPeriod::kNone;
  const date::time_zone* zone = nullptr;
};

struct CompiledTier {
  std::string name;
  uint32_t index;
  bool unlimited;
  double multiplier;
  int64_t priority;
};

struct CompiledResource {
  std::string name;
  uint32_t index;
  std::vector<CompiledLimit> limits;
  std::vector<std::pair<std::string, int64_t>> prices;  // pico-dollars per unit
  WarmupSpec warmup;
  QueueSpec queue;
  bool has_shared_limit = false;  // some limit is `per: resource`
  // effective[tier_index][limit_index]: parameters after tier multiplier/overrides,
  // before warm-up. `unlimited_for_tier[tier_index]` skips all limits.
  std::vector<std::vector<sluice_limit_params>> effective;
  std::vector<bool> unlimited_for_tier;
};

// Immutable after compile; shared by every thread through std::shared_ptr<const ...>.
class SLUICE_API CompiledPolicy {
 public:
  // spec must be valid (validate_policy empty); returns Invalid otherwise.
  static Result<std::shared_ptr<const CompiledPolicy>> compile(PolicySpec spec, uint64_t version);

  uint64_t version() const { return version_; }
  const PolicySpec& spec() const { return spec_; }

  const CompiledResource* find_resource(std::string_view name) const;
  const CompiledTier* find_tier(std::string_view name) const;
  const CompiledTier* tier_for_api_key(std::string_view key) const;  // nullptr when unmapped
  const CompiledTier& default_tier() const { return tiers_[default_tier_]; }
  const std::vector<CompiledTier>& tiers() const { return tiers_; }
  const std::vector<CompiledResource>& resources() const { return resources_; }
  // Present when unknown_resource = kDefaultLimits: the resource used for unknown names.
  const CompiledResource* default_resource() const { return default_resource_.get(); }

  ~CompiledPolicy();
  CompiledPolicy(const CompiledPolicy&) = delete;
  CompiledPolicy& operator=(const CompiledPolicy&) = delete;

 private:
  CompiledPolicy() = default;
  struct Index;  // hash maps, kept out of this header
  uint64_t version_ = 0;
  PolicySpec spec_;
  std::vector<CompiledTier> tiers_;
  std::vector<CompiledResource> resources_;
  std::unique_ptr<CompiledResource> default_resource_;
  uint32_t default_tier_ = 0;
  std::unique_ptr<Index> index_;
};

}  // namespace sluice
