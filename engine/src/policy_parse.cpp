// Reading a policy: YAML text -> PolicySpec, with every problem reported as
// file:line:column. Two passes share the work: the reader checks shape (keys, types,
// spellings) node by node, then check_spec() checks meaning (ranges, references, names) on the
// spec, and its paths are mapped back to the nodes they came from.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/exceptions.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_map>
#include <unordered_set>

#include "calendar.h"
#include "policy_internal.h"
#include "sluice/policy.h"
#include "yaml_tree.h"

namespace sluice {
namespace pd = policy_detail;

std::string PolicyError::to_string() const {
  if (line <= 0) return file.empty() ? message : fmt::format("{}: {}", file, message);
  return fmt::format("{}:{}:{}: {}", file, line, column, message);
}

std::string PolicyParseResult::error_text() const {
  std::string out;
  for (const auto& e : errors) {
    if (!out.empty()) out += '\n';
    out += e.to_string();
  }
  return out;
}

namespace policy_detail {
namespace {

// A semantic problem before it is placed: `at_key` points at the map key of `path` (a name)
// rather than at its value.
struct Problem {
  std::string path;
  bool at_key;
  std::string message;
};

// The names a message offers as alternatives; a few are enough to spot a typo.
std::string join_names(const std::vector<std::string>& names) {
  constexpr size_t kShown = 20;
  std::string out;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) {
    if (!out.empty()) out += ", ";
    out += names[i];
  }
  if (names.size() > kShown) out += fmt::format(" and {} more", names.size() - kShown);
  return out.empty() ? "none" : out;
}

template <typename T>
std::vector<std::string> names_of(const std::vector<T>& v) {
  std::vector<std::string> out;
  out.reserve(v.size());
  for (const auto& x : v) out.push_back(x.name);
  return out;
}

void check_calendar(const LimitSpec& l, const std::string& p, std::vector<Problem>& out) {
  if (l.calendar != CalendarPeriod::kNone && l.algorithm != SLUICE_ALG_FIXED_WINDOW &&
      algorithm_to_name(l.algorithm) != "?") {
    out.push_back({child_path(p, "window"), false,
                   fmt::format("a calendar window ({}) needs algorithm fixed_window; {} "
                               "needs a window of fixed length such as 1d",
                               calendar_name(l.calendar), algorithm_to_name(l.algorithm))});
  }
  if (l.timezone.empty()) return;
  if (l.calendar == CalendarPeriod::kNone) {
    out.push_back({child_path(p, "timezone"), false,
                   "timezone applies only to a calendar window (window: calendar_day, "
                   "calendar_week or calendar_month)"});
  } else if (find_time_zone(l.timezone) == nullptr) {
    out.push_back({child_path(p, "timezone"), false,
                   fmt::format("unknown time zone '{}' (an IANA name such as UTC, "
                               "Europe/Berlin or America/New_York)",
                               l.timezone)});
  }
}

void check_limit_list(const std::vector<LimitSpec>& limits, const std::string& path,
                      std::vector<Problem>& out, const std::map<std::string, int64_t>* prices) {
  if (limits.size() > kMaxLimitsPerResource) {
    out.push_back({path, false,
                   fmt::format("at most {} limits are allowed, found {}", kMaxLimitsPerResource,
                               limits.size())});
  }
  std::unordered_map<std::string_view, size_t> first_index;
  for (size_t i = 0; i < limits.size(); ++i) {
    const LimitSpec& l = limits[i];
    const std::string p = index_path(path, i);
    if (auto problem = name_problem(l.name); !problem.empty()) {
      out.push_back(
          {child_path(p, "name"), false, fmt::format("limit name '{}' {}", l.name, problem)});
    }
    if (auto [it, inserted] = first_index.emplace(l.name, i); !inserted && !l.name.empty()) {
      out.push_back(
          {child_path(p, "name"), false,
           fmt::format("duplicate limit name '{}' (also limits[{}])", l.name, it->second)});
    }
    const bool known_algorithm = algorithm_to_name(l.algorithm) != "?";
    if (!known_algorithm) {
      out.push_back({child_path(p, "algorithm"), false,
                     fmt::format("unknown algorithm number {}", static_cast<int>(l.algorithm))});
    }
    if (l.limit < 1 || l.limit > max_limit_of(l)) {
      out.push_back(
          {child_path(p, "limit"), false,
           fmt::format("limit must be between 1 and {}, got {}", max_limit_of(l), l.limit)});
    }
    if (auto problem = unit_problem(l.unit); !problem.empty()) {
      out.push_back({child_path(p, "cost"), false,
                     fmt::format("cost unit '{}' {} (e.g. requests, tokens, items, "
                                 "input_tokens, output_tokens, usd)",
                                 l.unit, problem)});
    } else if (l.unit == kUnitUsd) {
      if (known_algorithm && l.algorithm != SLUICE_ALG_FIXED_WINDOW) {
        out.push_back({child_path(p, "algorithm"), false,
                       fmt::format("a usd limit (a budget) counts with fixed_window, not {}",
                                   algorithm_to_name(l.algorithm))});
      }
      if (prices == nullptr || prices->empty()) {
        out.push_back({child_path(p, "cost"), false,
                       prices == nullptr ? "default_limits cannot count usd: they have no prices"
                                         : "a usd limit needs the resource's 'prices:' (dollars "
                                           "per unit, e.g. {input_tokens: 0.0000025})"});
      }
    }
    if (l.overdraft < -1 || l.overdraft > max_limit_of(l)) {
      out.push_back({child_path(p, "overdraft"), false,
                     fmt::format("overdraft must be between 0 and {}, got {}", max_limit_of(l),
                                 l.overdraft)});
    }
    if (l.window_ms < 1 || l.window_ms > kMaxWindowMs) {
      out.push_back(
          {child_path(p, "window"), false,
           fmt::format("window must be between 1ms and {}, got {}",
                       format_duration_ms(kMaxWindowMs), format_duration_ms(l.window_ms))});
    }
    if (l.burst < 0 || l.burst > kMaxLimitValue) {
      out.push_back(
          {child_path(p, "burst"), false,
           fmt::format("burst must be between 0 and {}, got {}", kMaxLimitValue, l.burst)});
    } else if (l.burst != 0 && known_algorithm && !algorithm_takes_burst(l.algorithm)) {
      out.push_back({child_path(p, "burst"), false,
                     fmt::format("burst applies only to token_bucket and gcra, not {}",
                                 algorithm_to_name(l.algorithm))});
    }
    if (l.reserve != ReserveSpec{}) {
      const std::string rp = child_path(p, "reserve");
      if (known_algorithm && l.algorithm != SLUICE_ALG_CONCURRENCY) {
        out.push_back({rp, false,
                       fmt::format("reserve applies only to concurrency limits, not {}",
                                   algorithm_to_name(l.algorithm))});
      }
      if (!std::isfinite(l.reserve.share) || l.reserve.share <= 0 || l.reserve.share >= 1) {
        out.push_back({child_path(rp, "share"), false,
                       fmt::format("reserve share must be more than 0% and less than 100%, got {}%",
                                   format_number(l.reserve.share * 100))});
      }
      if (l.reserve.min_priority < -kMaxPriority || l.reserve.min_priority > kMaxPriority) {
        out.push_back({child_path(rp, "min_priority"), false,
                       fmt::format("min_priority must be between {} and {}, got {}", -kMaxPriority,
                                   kMaxPriority, l.reserve.min_priority)});
      }
    }
    check_calendar(l, p, out);
  }
}

void check_multiplier(double m, const std::string& path, std::vector<Problem>& out) {
  if (!std::isfinite(m) || m <= 0 || m > kMaxMultiplier) {
    out.push_back({path, false,
                   fmt::format("multiplier must be > 0 and at most {}, got {}",
                               format_number(kMaxMultiplier), format_number(m))});
  }
}

void check_description(const std::string& d, const std::string& path, std::vector<Problem>& out) {
  if (d.size() > kMaxDescriptionLength) {
    out.push_back({path, false,
                   fmt::format("description is {} bytes long (at most {})", d.size(),
                               kMaxDescriptionLength)});
  } else if (auto problem = text_problem(d); !problem.empty()) {
    out.push_back({path, false, "description " + problem});
  }
}

void check_all(const PolicySpec& spec, std::vector<Problem>& out) {
  // Indexes, so that checking stays linear however large the policy is.
  const std::vector<std::string> tier_names = names_of(spec.tiers);
  const std::unordered_set<std::string_view> tier_set(tier_names.begin(), tier_names.end());
  auto tier_exists = [&](const std::string& n) { return tier_set.contains(n); };

  if (spec.lease_ttl_ms < 1 || spec.lease_ttl_ms > kMaxWindowMs) {
    out.push_back(
        {"lease_ttl", false,
         fmt::format("lease_ttl must be between 1ms and {}, got {}",
                     format_duration_ms(kMaxWindowMs), format_duration_ms(spec.lease_ttl_ms))});
  }
  if (spec.lease_ttl_max_ms != 0 &&
      (spec.lease_ttl_max_ms < spec.lease_ttl_ms || spec.lease_ttl_max_ms > kMaxWindowMs)) {
    out.push_back(
        {"lease_ttl_max", false,
         fmt::format("lease_ttl_max must be between lease_ttl ({}) and {}, got {}",
                     format_duration_ms(spec.lease_ttl_ms), format_duration_ms(kMaxWindowMs),
                     format_duration_ms(spec.lease_ttl_max_ms))});
  }
  if (spec.unknown_resource == UnknownResourceMode::kDefaultLimits && spec.default_limits.empty()) {
    out.push_back({"unknown_resource", false,
                   "unknown_resource: default_limits needs a non-empty default_limits list"});
  }
  if (spec.unknown_resource != UnknownResourceMode::kDefaultLimits &&
      !spec.default_limits.empty()) {
    out.push_back({"default_limits", false,
                   fmt::format("default_limits is only used with unknown_resource: default_limits "
                               "(unknown_resource is {})",
                               unknown_mode_to_name(spec.unknown_resource))});
  }
  check_limit_list(spec.default_limits, "default_limits", out, nullptr);

  // Resources come before tiers so an override's limit names can be checked against them.
  std::vector<std::string> resource_names;
  std::unordered_map<std::string_view, const ResourceSpec*> resource_by_name;
  resource_names.reserve(spec.resources.size());
  resource_by_name.reserve(spec.resources.size());
  for (const auto& r : spec.resources) {
    const std::string p = child_path("resources", r.name);
    if (auto problem = name_problem(r.name); !problem.empty()) {
      out.push_back({p, true, fmt::format("resource name '{}' {}", r.name, problem)});
    }
    if (!resource_by_name.emplace(r.name, &r).second) {
      out.push_back({p, true, fmt::format("duplicate resource '{}'", r.name)});
    }
    resource_names.push_back(r.name);
    check_description(r.description, child_path(p, "description"), out);
    for (const auto& [unit, picos] : r.prices) {
      const std::string pp = child_path(child_path(p, "prices"), unit);
      if (auto problem = unit_problem(unit); !problem.empty()) {
        out.push_back({pp, false, fmt::format("price unit '{}' {}", unit, problem)});
      } else if (unit == kUnitUsd) {
        out.push_back({pp, false, "usd cannot have a price: it is what prices add up to"});
      }
      if (picos < 0 || picos > 1000 * kMicrosPerDollar * kPicosPerMicro) {
        out.push_back({pp, false, "a price must be from 0 to 1000 dollars per unit"});
      }
    }
    check_limit_list(r.limits, child_path(p, "limits"), out, &r.prices);
    if (r.queue.max_wait_ms < 0 || r.queue.max_wait_ms > kMaxQueueWaitMs) {
      out.push_back({child_path(child_path(p, "queue"), "max_wait"), false,
                     fmt::format("queue max_wait must be between 0s and {}, got {}",
                                 format_duration_ms(kMaxQueueWaitMs),
                                 format_duration_ms(r.queue.max_wait_ms))});
    }
    if (r.queue.max_waiters < 0 || r.queue.max_waiters > kMaxQueueWaiters) {
      out.push_back({child_path(child_path(p, "queue"), "max_waiters"), false,
                     fmt::format("queue max_waiters must be between 0 and {}, got {}",
                                 kMaxQueueWaiters, r.queue.max_waiters)});
    }
    if (r.warmup.enabled) {
      const std::string wp = child_path(p, "warmup");
      const double f = r.warmup.factor;
      if (!std::isfinite(f) || f <= 0 || f > 1) {
        out.push_back(
            {child_path(wp, "factor"), false,
             fmt::format("warmup factor must be > 0 and at most 1, got {}", format_number(f))});
      }
      if (r.warmup.duration_ms < 0 || r.warmup.duration_ms > kMaxWindowMs) {
        out.push_back({child_path(wp, "duration"), false,
                       fmt::format("warmup duration must be between 0s and {}, got {}",
                                   format_duration_ms(kMaxWindowMs),
                                   format_duration_ms(r.warmup.duration_ms))});
      }
      if (r.warmup.ramp && r.warmup.duration_ms == 0) {
        out.push_back(
            {child_path(wp, "ramp"), false, "a warmup ramp needs a duration to ramp over"});
      }
    }
  }

  if (spec.tiers.empty()) out.push_back({"tiers", false, "at least one tier is required"});
  std::unordered_set<std::string_view> seen_tiers;
  for (const auto& t : spec.tiers) {
    const std::string p = child_path("tiers", t.name);
    if (auto problem = name_problem(t.name); !problem.empty()) {
      out.push_back({p, true, fmt::format("tier name '{}' {}", t.name, problem)});
    }
    if (!seen_tiers.insert(t.name).second) {
      out.push_back({p, true, fmt::format("duplicate tier '{}'", t.name)});
    }
    check_description(t.description, child_path(p, "description"), out);
    check_multiplier(t.multiplier, child_path(p, "multiplier"), out);
    if (t.priority < -kMaxPriority || t.priority > kMaxPriority) {
      out.push_back({child_path(p, "priority"), false,
                     fmt::format("priority must be between {} and {}, got {}", -kMaxPriority,
                                 kMaxPriority, t.priority)});
    }
    for (const auto& [resource, ov] : t.overrides) {
      const std::string op = child_path(child_path(p, "overrides"), resource);
      auto found = resource_by_name.find(resource);
      const ResourceSpec* res = found == resource_by_name.end() ? nullptr : found->second;
      if (res == nullptr) {
        out.push_back({op, true,
                       fmt::format("override for unknown resource '{}' (resources: {})", resource,
                                   join_names(resource_names))});
      }
      if (ov.multiplier) check_multiplier(*ov.multiplier, child_path(op, "multiplier"), out);
      const std::vector<std::string> limit_names =
          res != nullptr ? names_of(res->limits) : std::vector<std::string>{};
      const std::unordered_set<std::string_view> limit_set(limit_names.begin(), limit_names.end());
      for (const auto& [limit_name, value] : ov.limits) {
        const std::string lp = child_path(child_path(op, "limits"), limit_name);
        if (res != nullptr && !limit_set.contains(limit_name)) {
          out.push_back({lp, true,
                         fmt::format("unknown limit '{}' in resource '{}' (limits: {})", limit_name,
                                     resource, join_names(limit_names))});
        }
        const LimitSpec* spec_limit = nullptr;
        if (res != nullptr) {
          for (const auto& l : res->limits) {
            if (l.name == limit_name) spec_limit = &l;
          }
        }
        const int64_t max = spec_limit != nullptr ? max_limit_of(*spec_limit) : kMaxLimitValue;
        if (value < 1 || value > max) {
          out.push_back(
              {lp, false, fmt::format("limit must be between 1 and {}, got {}", max, value)});
        }
      }
    }
  }

  // With no tiers at all, every reference to one would fail too; the one error above says it.
  const bool check_references = !spec.tiers.empty();
  if (spec.default_tier.empty()) {
    out.push_back({"default_tier", false, "default_tier is required"});
  } else if (check_references && !tier_exists(spec.default_tier)) {
    out.push_back({"default_tier", false,
                   fmt::format("default_tier names unknown tier '{}' (tiers: {})",
                               spec.default_tier, join_names(tier_names))});
  }

  for (const auto& [key, tier] : spec.api_keys) {
    const std::string p = child_path("api_keys", key);
    if (auto problem = api_key_problem(key); !problem.empty()) {
      out.push_back({p, true, fmt::format("api key '{}' {}", mask_api_key(key), problem)});
    }
    if (check_references && !tier_exists(tier)) {
      out.push_back({p, false,
                     fmt::format("api key '{}' maps to unknown tier '{}' (tiers: {})",
                                 mask_api_key(key), tier, join_names(tier_names))});
    }
  }
  for (const auto& [key, label] : spec.api_key_labels) {
    const std::string p = child_path(child_path("api_keys", key), "label");
    if (!spec.api_keys.contains(key)) {
      out.push_back(
          {p, false, fmt::format("api key '{}' has a label but no tier", mask_api_key(key))});
    } else if (label.size() > kMaxDescriptionLength) {
      out.push_back({p, false,
                     fmt::format("label of api key '{}' is {} bytes long (at most {})",
                                 mask_api_key(key), label.size(), kMaxDescriptionLength)});
    } else if (auto problem = text_problem(label); !problem.empty()) {
      out.push_back(
          {p, false, fmt::format("label of api key '{}' {}", mask_api_key(key), problem)});
    }
  }
}

std::vector<PolicyError> to_errors(std::vector<Problem> problems) {
  std::vector<PolicyError> out;
  out.reserve(problems.size());
  for (auto& p : problems) {
    PolicyError e;
    e.message = std::move(p.message);
    e.path = std::move(p.path);
    out.push_back(std::move(e));
  }
  return out;
}

// ---- the YAML reader ----------------------------------------------------------------------

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

using Keys = std::initializer_list<std::string_view>;

const std::array<std::string_view, kAlgorithms.size()>& algorithm_names() {
  static const auto names = [] {
    std::array<std::string_view, kAlgorithms.size()> out{};
    for (size_t i = 0; i < kAlgorithms.size(); ++i) out[i] = kAlgorithms[i].name;
    return out;
  }();
  return names;
}

template <typename Range>
std::string join_keys(const Range& keys) {
  std::string out;
  for (auto k : keys) {
    if (!out.empty()) out += ", ";
    out += k;
  }
  return out;
}

// "; did you mean 'window'?" for a near miss (a typo), else nothing.
template <typename Range>
std::string suggestion(std::string_view given, const Range& options) {
  for (auto o : options) {
    // The distance is at least the difference in length: most candidates need no table.
    const size_t longer = std::max(o.size(), given.size());
    if (longer - std::min(o.size(), given.size()) > 2) continue;
    const size_t d = edit_distance(o, given);
    if (d <= 2 && d < given.size()) return fmt::format("; did you mean '{}'?", o);
  }
  return "";
}

using Node = YamlTree::Node;
using Kind = YamlTree::Kind;

// What a message calls a map or a list: "the policy", "tier 'free'", "'limits'". Spelled out
// only when a message needs it, so reading 100,000 resources formats no names.
struct What {
  std::string_view text;
  std::string_view name;  // a key, shown in quotes after `text`
  std::string str() const {
    if (name.empty()) return std::string(text);
    if (text.empty()) return fmt::format("'{}'", name);
    return fmt::format("{} '{}'", text, name);
  }
};

// A value in the document and how it was reached. Its path ("resources.p.limits[0]") is
// spelled out only when a message needs it.
struct Field {
  static constexpr size_t kNotAnItem = std::numeric_limits<size_t>::max();
  std::string_view key;  // the map key; for a list item, its list's key
  const Node* key_node;  // for a list item, the item itself
  const Node* value;
  const Field* parent;  // nullptr for the document itself
  size_t index = kNotAnItem;
};

std::string path_of(const Field& f) {
  if (f.parent == nullptr) return "";
  if (f.index != Field::kNotAnItem) return index_path(path_of(*f.parent), f.index);
  return child_path(path_of(*f.parent), f.key);
}

// Maps with at most this many entries find a duplicate or a key by a scan; larger ones (the
// names of resources, tiers, API keys) by a hash index.
constexpr size_t kScannedMapSize = 16;

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  PolicyParseResult run(std::string_view text) {
    PolicyParseResult result;
    // yaml-cpp ends a stream at a NUL byte and then reports empty documents forever, so
    // such text never reaches it.
    if (const size_t nul = text.find('\0'); nul != std::string_view::npos) {
      YAML::Mark mark;
      mark.pos = static_cast<int>(nul);
      const std::string_view before = text.substr(0, nul);
      mark.line = static_cast<int>(std::count(before.begin(), before.end(), '\n'));
      const size_t line_start = before.rfind('\n');
      mark.column =
          static_cast<int>(line_start == std::string_view::npos ? nul : nul - line_start - 1);
      result.errors.push_back(make_error(mark, "", "the policy contains a NUL byte"));
      return result;
    }
    YamlTree tree;
    try {
      tree = YamlTree::parse(text);
    } catch (const YAML::Exception& e) {
      result.errors.push_back(make_error(e.mark, "", "YAML syntax error: " + e.msg));
      return result;
    }
    if (const auto& second = tree.second_document()) {
      result.errors.push_back(
          make_error(*second, "", "a policy is one YAML document; found a second one here"));
      return result;
    }
    if (tree.empty() || tree.root().kind == Kind::kNull) {
      result.errors.push_back(make_error(YAML::Mark::null_mark(), "", "the policy is empty"));
      return result;
    }
    tree_ = &tree;
    const Field root{"", &tree.root(), &tree.root(), nullptr};
    PolicySpec spec;
    if (root.value->kind != Kind::kMap) {
      fail(mark(*root.value), "",
           "a policy must be a map of keys (version, default_tier, tiers, resources, ...)");
    } else {
      read_root(root, spec);
      read_override_limits(spec);
    }

    std::vector<Problem> problems;
    check_all(spec, problems);
    for (auto& p : problems) {
      if (is_broken(p.path)) continue;
      errors_.push_back(make_error(locate(p.path, p.at_key), p.path, std::move(p.message)));
    }
    std::stable_sort(
        errors_.begin(), errors_.end(), [](const PolicyError& a, const PolicyError& b) {
          // Errors without a place go last; the rest in document order.
          auto key = [](const PolicyError& e) {
            return std::pair(e.line <= 0 ? std::numeric_limits<int>::max() : e.line, e.column);
          };
          return key(a) < key(b);
        });
    result.errors = std::move(errors_);
    if (result.errors.empty()) result.policy = std::move(spec);
    tree_ = nullptr;
    return result;
  }

 private:
  static YAML::Mark mark(const Node& n) { return YamlTree::mark(n); }

  PolicyError make_error(const YAML::Mark& mark, std::string path, std::string message) const {
    PolicyError e;
    e.file = file_;
    if (mark.line >= 0) {
      e.line = mark.line + 1;
      e.column = mark.column + 1;
    }
    e.path = std::move(path);
    e.message = std::move(message);
    return e;
  }

  void fail(const YAML::Mark& mark, const std::string& path, std::string message) {
    errors_.push_back(make_error(mark, path, std::move(message)));
    broken_.insert(path);
  }

  // Whether the path or one of its ancestors could not be read.
  bool is_broken(const std::string& path) const {
    if (broken_.contains(path) || broken_.contains("")) return true;
    for (size_t i = 0; i < path.size(); ++i) {
      if ((path[i] == '.' || path[i] == '[') && broken_.contains(path.substr(0, i))) return true;
    }
    return false;
  }

  // ---- finding a path's place, for problems found in the spec ---------------------------

  // The value of `key` in `map` (its first entry, as the reader keeps the first), or nullptr.
  const Node* find_entry(const Node& map, std::string_view key, const Node** key_node) {
    const size_t n = tree_->pair_count(map);
    size_t i = n;
    if (n <= kScannedMapSize) {
      for (i = 0; i < n; ++i) {
        const Node& k = tree_->key(map, i);
        if (k.kind == Kind::kScalar && tree_->scalar(k) == key) break;
      }
    } else {
      auto [index, built] = key_index_.try_emplace(tree_->id_of(map));
      if (built) {
        for (size_t j = 0; j < n; ++j) {
          const Node& k = tree_->key(map, j);
          if (k.kind == Kind::kScalar) index->second.emplace(tree_->scalar(k), j);
        }
      }
      if (auto found = index->second.find(key); found != index->second.end()) i = found->second;
    }
    if (i == n) return nullptr;
    *key_node = &tree_->key(map, i);
    return &tree_->value(map, i);
  }

  struct Reached {
    const Node* key = nullptr;  // for a list item, the item
    const Node* value = nullptr;
    size_t consumed = 0;  // characters of the path
  };

  // Follows `rest` (a path from `node` on, `consumed` characters of the whole path behind it)
  // and keeps the deepest place reached in `best`. True once the whole path is followed. A
  // name may itself contain '.', so every way of splitting the path at a '.' is tried.
  bool follow(const Node& node, std::string_view rest, size_t consumed, Reached& best) {
    if (rest.empty()) return true;
    if (rest.front() == '[') {
      const size_t close = rest.find(']');
      size_t index = 0;
      if (close == std::string_view::npos || node.kind != Kind::kSequence) return false;
      auto [ptr, ec] = std::from_chars(rest.data() + 1, rest.data() + close, index);
      if (ec != std::errc() || ptr != rest.data() + close || index >= tree_->child_count(node)) {
        return false;
      }
      const Node& item = tree_->child(node, index);
      std::string_view next = rest.substr(close + 1);
      consumed += close + 1;
      if (consumed > best.consumed) best = {&item, &item, consumed};
      if (next.starts_with('.')) {
        next.remove_prefix(1);
        ++consumed;
      }
      return follow(item, next, consumed, best);
    }
    if (node.kind != Kind::kMap) return false;
    for (size_t end = 0; end <= rest.size(); ++end) {
      if (end < rest.size() && rest[end] != '.' && rest[end] != '[') continue;
      const Node* key = nullptr;
      const Node* value = find_entry(node, rest.substr(0, end), &key);
      if (value == nullptr) continue;
      if (consumed + end > best.consumed) best = {key, value, consumed + end};
      if (end == rest.size()) return true;
      const size_t skip = rest[end] == '.' ? 1 : 0;
      Reached deeper = best;
      if (follow(*value, rest.substr(end + skip), consumed + end + skip, deeper)) {
        best = deeper;
        return true;
      }
      if (deeper.consumed > best.consumed) best = deeper;
    }
    return false;
  }

  // The place of a problem found in the spec: its node, else the nearest ancestor that the
  // document has. Found by walking the tree only when there is a problem to place.
  YAML::Mark locate(const std::string& path, bool at_key) {
    const Node& root = tree_->root();
    Reached reached;
    const bool whole = follow(root, path, 0, reached);
    if (reached.value == nullptr) return mark(root);
    if (whole && at_key) return mark(*reached.key);
    return place_of_value(*reached.key, *reached.value);
  }

  static YAML::Mark place_of_value(const Node& key, const Node& value) {
    // A missing value (`limit:`) has no place of its own; yaml-cpp reports the next token.
    return mark(value.kind == Kind::kNull || value.line < 0 ? key : value);
  }
  static YAML::Mark value_mark(const Field& f) { return place_of_value(*f.key_node, *f.value); }

  // ---- reading --------------------------------------------------------------------------

  // The entries of a map, in document order, with unknown and duplicate keys reported.
  // An empty `allowed` accepts any key (names chosen by the user).
  std::vector<Field> entries(const Field& map, const What& what, Keys allowed) {
    const Node& m = *map.value;
    const size_t n = tree_->pair_count(m);
    std::vector<Field> out;
    out.reserve(n);
    std::unordered_map<std::string_view, size_t> seen;  // key -> its entry in `out`
    if (n > kScannedMapSize) seen.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const Node& k = tree_->key(m, i);
      if (k.kind != Kind::kScalar) {
        fail(mark(k), path_of(map), fmt::format("keys of {} must be plain names", what.str()));
        continue;
      }
      Field f{tree_->scalar(k), &k, &tree_->value(m, i), &map};
      if (allowed.size() != 0 &&
          std::find(allowed.begin(), allowed.end(), f.key) == allowed.end()) {
        fail(mark(k), path_of(f),
             fmt::format("unknown key '{}' in {}{} (allowed: {})", f.key, what.str(),
                         suggestion(f.key, allowed), join_keys(allowed)));
        continue;
      }
      const Field* first = nullptr;
      if (n > kScannedMapSize) {
        if (auto [it, inserted] = seen.emplace(f.key, out.size()); !inserted) {
          first = &out[it->second];
        }
      } else {
        auto it =
            std::find_if(out.begin(), out.end(), [&](const Field& o) { return o.key == f.key; });
        if (it != out.end()) first = &*it;
      }
      if (first != nullptr) {
        fail(mark(k), path_of(f) + "#dup",
             fmt::format("duplicate key '{}' in {} (first on line {})", f.key, what.str(),
                         first->key_node->line + 1));
        continue;
      }
      out.push_back(f);
    }
    return out;
  }

  void require(const Field& map, const std::vector<Field>& fields, const What& what,
               Keys required) {
    for (auto r : required) {
      const bool present =
          std::any_of(fields.begin(), fields.end(), [&](const Field& f) { return f.key == r; });
      if (!present)
        fail(mark(*map.value), child_path(path_of(map), r),
             fmt::format("{} is missing required key '{}'", what.str(), r));
    }
  }

  // `key: {tier: premium, label: Acme Corp}`: a mapped key with a label for people. The key
  // itself is never quoted in messages.
  void read_labelled_key(const Field& k, PolicySpec& spec) {
    const What what{"an API key's settings", ""};
    const auto fields = entries(k, what, {"tier", "label"});
    require(k, fields, what, {"tier"});
    for (const auto& f : fields) {
      auto v = read_string(f);
      if (!v) continue;
      if (f.key == "tier") {
        spec.api_keys[std::string(k.key)] = *v;
      } else {
        spec.api_key_labels[std::string(k.key)] = *v;
      }
    }
  }

  std::optional<std::string_view> read_string(const Field& f) {
    if (f.value->kind != Kind::kScalar) {
      fail(value_mark(f), path_of(f), fmt::format("'{}' must be a string", f.key));
      return std::nullopt;
    }
    return tree_->scalar(*f.value);
  }

  // A plain scalar: what may be a number or a bool.
  bool plain(const Field& f) const { return f.value->kind == Kind::kScalar && !f.value->quoted; }

  std::optional<int64_t> read_int(const Field& f) {
    if (!plain(f)) {
      fail(value_mark(f), path_of(f), fmt::format("'{}' must be a whole number", f.key));
      return std::nullopt;
    }
    const std::string_view s = tree_->scalar(*f.value);
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec == std::errc::result_out_of_range) {
      fail(value_mark(f), path_of(f), fmt::format("'{}' is too large: {}", f.key, s));
      return std::nullopt;
    }
    if (ec != std::errc() || ptr != s.data() + s.size()) {
      fail(value_mark(f), path_of(f),
           fmt::format("'{}' must be a whole number, got '{}'", f.key, s));
      return std::nullopt;
    }
    return v;
  }

  std::optional<double> read_number(const Field& f) {
    if (!plain(f)) {
      fail(value_mark(f), path_of(f), fmt::format("'{}' must be a number", f.key));
      return std::nullopt;
    }
    const std::string_view s = tree_->scalar(*f.value);
    double v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || ptr != s.data() + s.size() || !std::isfinite(v)) {
      fail(value_mark(f), path_of(f), fmt::format("'{}' must be a number, got '{}'", f.key, s));
      return std::nullopt;
    }
    return v;
  }

  std::optional<bool> read_bool(const Field& f) {
    if (plain(f)) {
      const std::string_view s = tree_->scalar(*f.value);
      if (s == "true" || s == "True" || s == "TRUE") return true;
      if (s == "false" || s == "False" || s == "FALSE") return false;
    }
    fail(value_mark(f), path_of(f), fmt::format("'{}' must be true or false", f.key));
    return std::nullopt;
  }

  std::optional<int64_t> read_duration(const Field& f) {
    const bool scalar = f.value->kind == Kind::kScalar;
    const std::string_view s = tree_->scalar(*f.value);
    if (scalar) {
      if (auto ms = parse_duration_ms(s)) return ms;
      if (!s.empty() &&
          std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        fail(
            value_mark(f), path_of(f),
            fmt::format("'{}' needs a unit: '{}s' or '{}ms' (units: ms, s, m, h, d)", f.key, s, s));
        return std::nullopt;
      }
    }
    const std::string_view shown = scalar ? s : std::string_view("(not text)");
    fail(value_mark(f), path_of(f),
         fmt::format("'{}' is not a duration: '{}' (examples: 500ms, 30s, 1m, 1m30s, 1h, 1d{})",
                     f.key, shown,
                     f.key == "window" ? "; or calendar_day, calendar_week, calendar_month" : ""));
    return std::nullopt;
  }

  template <typename Enum, typename Range = Keys>
  std::optional<Enum> read_enum(const Field& f, std::optional<Enum> (*lookup)(std::string_view),
                                const Range& valid) {
    if (f.value->kind == Kind::kScalar) {
      const std::string_view given = tree_->scalar(*f.value);
      if (auto v = lookup(given)) return v;
      fail(value_mark(f), path_of(f),
           fmt::format("unknown {} '{}'{} (valid: {})", f.key, given, suggestion(given, valid),
                       join_keys(valid)));
      return std::nullopt;
    }
    fail(value_mark(f), path_of(f),
         fmt::format("'{}' must be one of: {}", f.key, join_keys(valid)));
    return std::nullopt;
  }

  bool expect_map(const Field& f, const What& what, bool null_is_empty = false) {
    if (f.value->kind == Kind::kMap || (null_is_empty && f.value->kind == Kind::kNull)) {
      return true;
    }
    fail(value_mark(f), path_of(f), fmt::format("{} must be a map", what.str()));
    return false;
  }

  bool expect_seq(const Field& f, const What& what) {
    if (f.value->kind == Kind::kSequence) return true;
    fail(value_mark(f), path_of(f), fmt::format("{} must be a list", what.str()));
    return false;
  }

  // ---- the document -------------------------------------------------------------------

  void read_root(const Field& root, PolicySpec& spec) {
    const What what{"the policy"};
    auto fields =
        entries(root, what,
                {"version", "default_tier", "on_storage_failure", "unknown_resource",
                 "default_limits", "lease_ttl", "lease_ttl_max", "tiers", "api_keys", "resources"});
    require(root, fields, what, {"default_tier", "tiers"});
    for (const auto& f : fields) {
      if (f.key == "version") {
        if (auto v = read_int(f); v && *v != 1) {
          fail(value_mark(f), path_of(f),
               fmt::format("unsupported policy version {} (this sluice reads version 1)", *v));
        }
      } else if (f.key == "default_tier") {
        if (auto v = read_string(f)) spec.default_tier = *v;
      } else if (f.key == "on_storage_failure") {
        if (auto v = read_enum(f, &failure_mode_from_name, Keys{"fail_open", "fail_closed"}))
          spec.on_storage_failure = *v;
      } else if (f.key == "unknown_resource") {
        if (auto v = read_enum(f, &unknown_mode_from_name, Keys{"deny", "allow", "default_limits"}))
          spec.unknown_resource = *v;
      } else if (f.key == "default_limits") {
        read_limit_list(f, spec.default_limits);
      } else if (f.key == "lease_ttl") {
        if (auto v = read_duration(f)) spec.lease_ttl_ms = *v;
      } else if (f.key == "lease_ttl_max") {
        if (auto v = read_duration(f)) spec.lease_ttl_max_ms = *v;
      } else if (f.key == "tiers") {
        if (expect_map(f, What{"'tiers' (tier name -> settings)"})) {
          for (const auto& t : entries(f, What{"tiers"}, {}))
            read_tier(t, spec.tiers.emplace_back());
        }
      } else if (f.key == "api_keys") {
        if (expect_map(f, What{"'api_keys' (key -> tier name)"}, true)) {
          for (const auto& k : entries(f, What{"api_keys"}, {})) {
            if (k.value->kind == Kind::kMap) {
              read_labelled_key(k, spec);
            } else if (auto tier = read_string(k)) {
              spec.api_keys[std::string(k.key)] = *tier;
            }
          }
        }
      } else if (f.key == "resources") {
        if (expect_map(f, What{"'resources' (resource name -> settings)"}, true)) {
          const auto resources = entries(f, What{"resources"}, {});
          spec.resources.reserve(resources.size());
          for (const auto& r : resources) read_resource(r, spec.resources.emplace_back());
        }
      }
    }
  }

  void read_tier(const Field& tf, TierSpec& tier) {
    tier.name = tf.key;
    const What what{"tier", tf.key};
    if (!expect_map(tf, what, true) || tf.value->kind == Kind::kNull) return;
    for (const auto& f :
         entries(tf, what, {"description", "multiplier", "unlimited", "priority", "overrides"})) {
      if (f.key == "description") {
        if (auto v = read_string(f)) tier.description = *v;
      } else if (f.key == "priority") {
        if (auto v = read_int(f)) tier.priority = *v;
      } else if (f.key == "multiplier") {
        if (auto v = read_number(f)) tier.multiplier = *v;
      } else if (f.key == "unlimited") {
        if (auto v = read_bool(f)) tier.unlimited = *v;
      } else if (f.key == "overrides") {
        if (!expect_map(f, What{"'overrides' (resource name -> override)"}, true)) continue;
        for (const auto& of : entries(f, What{"overrides"}, {}))
          read_override(of, tier.overrides[std::string(of.key)]);
      }
    }
  }

  void read_override(const Field& of, TierOverride& ov) {
    const What what{"the override for", of.key};
    if (!expect_map(of, what)) return;
    for (const auto& f : entries(of, what, {"multiplier", "unlimited", "limits"})) {
      if (f.key == "multiplier") {
        if (auto v = read_number(f)) ov.multiplier = *v;
      } else if (f.key == "unlimited") {
        if (auto v = read_bool(f)) ov.unlimited = *v;
      } else if (f.key == "limits") {
        if (!expect_map(f, What{"override 'limits' (limit name -> absolute limit)"})) continue;
        for (const auto& lf : entries(f, What{"override limits"}, {})) {
          // Read once the resources are known: a usd limit's override is in dollars.
          pending_overrides_.push_back({&ov.limits[std::string(lf.key)], std::string(of.key),
                                        std::string(lf.key),
                                        lf.value->kind == Kind::kScalar && !lf.value->quoted
                                            ? std::string(tree_->scalar(*lf.value))
                                            : std::string(),
                                        value_mark(lf), path_of(lf)});
        }
      }
    }
  }

  void read_resource(const Field& rf, ResourceSpec& res) {
    res.name = rf.key;
    const What what{"resource", rf.key};
    if (!expect_map(rf, what)) return;
    auto fields = entries(rf, what, {"description", "prices", "limits", "warmup", "queue"});
    require(rf, fields, what, {"limits"});
    for (const auto& f : fields) {
      if (f.key == "description") {
        if (auto v = read_string(f)) res.description = *v;
      } else if (f.key == "prices") {
        if (!expect_map(f, What{"'prices' (unit -> dollars per unit)"})) continue;
        for (const auto& pf : entries(f, What{"prices"}, {})) {
          if (auto v = read_price(pf)) res.prices[std::string(pf.key)] = *v;
        }
      } else if (f.key == "limits") {
        read_limit_list(f, res.limits);
      } else if (f.key == "warmup") {
        read_warmup(f, res.warmup);
      } else if (f.key == "queue") {
        read_queue(f, res.queue);
      }
    }
  }

  // Dollars per unit, read exactly: up to 12 decimals (pico-dollars), at most $1000 a unit.
  std::optional<int64_t> read_price(const Field& f) {
    const std::string_view s = f.value->kind == Kind::kScalar ? tree_->scalar(*f.value) : "";
    if (auto v = parse_scaled_decimal(s, 12, 1000 * kMicrosPerDollar * kPicosPerMicro)) return v;
    fail(value_mark(f), path_of(f),
         fmt::format("price of '{}' must be dollars per unit from 0 to 1000 with at most 12 "
                     "decimals (0.0000025), got '{}'",
                     f.key, s));
    return std::nullopt;
  }

  void read_queue(const Field& qf, QueueSpec& q) {
    if (!expect_map(qf, What{"'queue'"})) return;
    q.present = true;
    for (const auto& f : entries(qf, What{"queue"}, {"max_wait", "max_waiters"})) {
      if (f.key == "max_wait") {
        if (auto v = read_duration(f)) q.max_wait_ms = *v;
      } else if (f.key == "max_waiters") {
        if (auto v = read_int(f)) q.max_waiters = *v;
      }
    }
  }

  // A share: "20%" or a number between 0 and 1.
  std::optional<double> read_share(const Field& f) {
    if (f.value->kind == Kind::kScalar) {
      std::string_view s = tree_->scalar(*f.value);
      const bool percent = !s.empty() && s.back() == '%';
      if (percent) s.remove_suffix(1);
      double v = 0;
      auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && ptr == s.data() + s.size() && std::isfinite(v)) {
        return percent ? v / 100 : v;
      }
    }
    fail(value_mark(f), path_of(f),
         fmt::format("'{}' must be a percentage (20%) or a number between 0 and 1", f.key));
    return std::nullopt;
  }

  void read_reserve(const Field& rf, ReserveSpec& r) {
    const What what{"'reserve'"};
    if (!expect_map(rf, what)) return;
    auto fields = entries(rf, What{"reserve"}, {"share", "min_priority"});
    require(rf, fields, what, {"share", "min_priority"});
    for (const auto& f : fields) {
      if (f.key == "share") {
        if (auto v = read_share(f)) r.share = *v;
      } else if (f.key == "min_priority") {
        if (auto v = read_int(f)) r.min_priority = *v;
      }
    }
  }

  void read_limit_list(const Field& lf, std::vector<LimitSpec>& limits) {
    if (!expect_seq(lf, What{"", lf.key})) return;
    const size_t n = tree_->child_count(*lf.value);
    limits.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      const Node& item = tree_->child(*lf.value, i);
      read_limit(Field{lf.key, &item, &item, &lf, i}, limits.emplace_back());
    }
  }

  void read_limit(const Field& lf, LimitSpec& l) {
    const What what{"a limit"};
    std::optional<Field> limit_field;
    if (!expect_map(lf, what)) return;
    auto fields = entries(lf, what,
                          {"name", "algorithm", "limit", "window", "timezone", "burst", "cost",
                           "overdraft", "shadow", "per", "reserve"});
    require(lf, fields, what, {"name", "algorithm", "limit", "window"});
    for (const auto& f : fields) {
      if (f.key == "name") {
        if (auto v = read_string(f)) l.name = *v;
      } else if (f.key == "algorithm") {
        if (auto v = read_enum(f, &algorithm_from_name, algorithm_names())) l.algorithm = *v;
      } else if (f.key == "limit") {
        limit_field = f;  // read below: a usd limit is in dollars
      } else if (f.key == "window") {
        const CalendarPeriod period = f.value->kind == Kind::kScalar
                                          ? calendar_from_name(tree_->scalar(*f.value))
                                          : CalendarPeriod::kNone;
        if (period != CalendarPeriod::kNone) {
          l.calendar = period;
          l.window_ms = calendar_window_ms(period);
        } else if (auto v = read_duration(f)) {
          l.window_ms = *v;
        }
      } else if (f.key == "timezone") {
        if (auto v = read_string(f)) l.timezone = *v;
      } else if (f.key == "burst") {
        if (auto v = read_int(f)) l.burst = *v;
      } else if (f.key == "cost") {
        if (auto v = read_string(f)) l.unit = *v;  // checked with the spec (unit_problem)
      } else if (f.key == "overdraft") {
        if (auto v = read_int(f)) l.overdraft = *v;
      } else if (f.key == "shadow") {
        if (auto v = read_bool(f)) l.shadow = *v;
      } else if (f.key == "per") {
        const std::string_view v = tree_->scalar(*f.value);
        if (f.value->kind != Kind::kScalar || (v != "subject" && v != "resource")) {
          fail(value_mark(f), path_of(f),
               fmt::format("unknown per '{}' (valid: subject, resource)", v));
        } else {
          l.per_resource = v == "resource";
        }
      } else if (f.key == "reserve") {
        read_reserve(f, l.reserve);
      }
    }
    if (!limit_field) return;
    if (l.unit != kUnitUsd) {
      if (auto v = read_int(*limit_field)) l.limit = *v;
      return;
    }
    const Field& f = *limit_field;
    const std::string_view s = f.value->kind == Kind::kScalar ? tree_->scalar(*f.value) : "";
    if (auto v = parse_scaled_decimal(s, 6, kMaxMoneyLimit)) {
      l.limit = *v;
    } else {
      fail(value_mark(f), path_of(f),
           fmt::format("a usd limit is dollars from 0.000001 to {} with at most 6 decimals, got "
                       "'{}'",
                       kMaxMoneyLimit / kMicrosPerDollar, s));
    }
  }

  void read_warmup(const Field& wf, WarmupSpec& w) {
    if (!expect_map(wf, What{"'warmup'"})) return;
    w.enabled = true;
    for (const auto& f :
         entries(wf, What{"warmup"}, {"enabled", "factor", "duration", "ramp", "start"})) {
      if (f.key == "enabled") {
        if (auto v = read_bool(f)) w.enabled = *v;
      } else if (f.key == "factor") {
        if (auto v = read_number(f)) w.factor = *v;
      } else if (f.key == "duration") {
        if (auto v = read_duration(f)) w.duration_ms = *v;
      } else if (f.key == "ramp") {
        if (auto v = read_bool(f)) w.ramp = *v;
      } else if (f.key == "start") {
        const std::string_view s = tree_->scalar(*f.value);
        if (f.value->kind != Kind::kScalar || (s != "cold" && s != "warm")) {
          fail(value_mark(f), path_of(f), fmt::format("unknown start '{}' (valid: cold, warm)", s));
        } else {
          w.start_cold = s == "cold";
        }
      }
    }
  }

  // Tier override limits, read after the document (read_override_limits).
  struct PendingOverride {
    int64_t* target;
    std::string resource, limit, text;  // text empty: not a plain scalar
    YAML::Mark mark;
    std::string path;
  };
  std::vector<PendingOverride> pending_overrides_;

  void read_override_limits(const PolicySpec& spec) {
    for (const PendingOverride& o : pending_overrides_) {
      const LimitSpec* limit = nullptr;
      for (const auto& r : spec.resources) {
        if (r.name != o.resource) continue;
        for (const auto& l : r.limits) {
          if (l.name == o.limit) limit = &l;
        }
      }
      if (limit != nullptr && limit->unit == kUnitUsd) {
        if (auto v = parse_scaled_decimal(o.text, 6, kMaxMoneyLimit)) {
          *o.target = *v;
        } else {
          fail(o.mark, o.path,
               fmt::format("'{}' overrides a usd limit: dollars with at most 6 decimals, got '{}'",
                           o.limit, o.text));
        }
        continue;
      }
      int64_t v = 0;
      auto [ptr, ec] = std::from_chars(o.text.data(), o.text.data() + o.text.size(), v);
      if (o.text.empty() || ec != std::errc() || ptr != o.text.data() + o.text.size()) {
        fail(o.mark, o.path, fmt::format("'{}' must be a whole number, got '{}'", o.limit, o.text));
      } else {
        *o.target = v;
      }
    }
    pending_overrides_.clear();
  }

  std::string file_;
  const YamlTree* tree_ = nullptr;  // during run()
  std::vector<PolicyError> errors_;
  std::unordered_set<std::string>
      broken_;  // paths whose node was unreadable: no semantic errors there
  // Built only to place problems: the entries of large maps by key.
  std::unordered_map<YamlTree::NodeId, std::unordered_map<std::string_view, size_t>> key_index_;
};

}  // namespace

void check_spec(const PolicySpec& spec, std::vector<PolicyError>& errors) {
  std::vector<Problem> problems;
  check_all(spec, problems);
  auto converted = to_errors(std::move(problems));
  errors.insert(errors.end(), converted.begin(), converted.end());
}

}  // namespace policy_detail

PolicyParseResult parse_policy(std::string_view yaml_text, std::string_view file) {
  try {
    return pd::Reader(std::string(file)).run(yaml_text);
  } catch (const std::exception& e) {
    // The reader is written not to throw; this keeps the promise if yaml-cpp surprises us.
    PolicyParseResult result;
    result.errors.push_back(
        {std::string(file), 0, 0, fmt::format("cannot read the policy: {}", e.what()), ""});
    return result;
  }
}

namespace {

std::string_view file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

}  // namespace

Result<std::string> read_policy_file(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return Status::NotFound(
        fmt::format("cannot read policy file {}: {}", path, std::strerror(errno)));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return Status::Unavailable(
        fmt::format("cannot read policy file {}: {}", path, std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return Status::Invalid(
        fmt::format("policy file {} is {}, not a regular file", path, file_kind(st.st_mode)));
  }
  const auto too_large = [&] {
    return Status::Invalid(
        fmt::format("policy file {} is larger than {} bytes", path, kMaxPolicyBytes));
  };
  if (static_cast<uint64_t>(st.st_size) > kMaxPolicyBytes) return too_large();
  std::string text(static_cast<size_t>(st.st_size) + 1, '\0');
  size_t filled = 0;
  for (;;) {
    if (filled == text.size()) {
      if (text.size() > kMaxPolicyBytes) return too_large();  // it grew while we read
      text.resize(std::min(text.size() * 2, kMaxPolicyBytes + 1));
    }
    const ssize_t n = ::read(fd, text.data() + filled, text.size() - filled);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return Status::Unavailable(
          fmt::format("cannot read policy file {}: {}", path, std::strerror(errno)));
    }
    if (n == 0) break;
    filled += static_cast<size_t>(n);
  }
  text.resize(filled);
  return text;
}

PolicyParseResult parse_policy_file(const std::string& path) {
  Result<std::string> text = read_policy_file(path);
  if (!text.ok()) {
    PolicyParseResult result;
    // The sentence names the file already.
    result.errors.push_back({"", 0, 0, text.status().message(), ""});
    return result;
  }
  return parse_policy(text.value(), path);
}

std::vector<PolicyError> validate_policy(const PolicySpec& spec) {
  std::vector<PolicyError> errors;
  pd::check_spec(spec, errors);
  return errors;
}

}  // namespace sluice
