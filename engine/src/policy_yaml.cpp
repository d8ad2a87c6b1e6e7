// The policy language's vocabulary (enum spellings, durations, names) and the way back from a
// PolicySpec to text: YAML serialisation and readable diffs.
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <limits>

#include "calendar.h"
#include "policy_internal.h"
#include "sluice/policy.h"

namespace sluice {
namespace policy_detail {

std::optional<sluice_algorithm> algorithm_from_name(std::string_view name) {
  const AlgorithmName* a = find_algorithm(name);
  return a != nullptr ? std::optional(a->algorithm) : std::nullopt;
}

std::string_view algorithm_to_name(sluice_algorithm alg) {
  const AlgorithmName* a = find_algorithm(static_cast<uint32_t>(alg));
  return a != nullptr ? a->name : "?";
}

bool algorithm_takes_burst(sluice_algorithm alg) {
  const AlgorithmName* a = find_algorithm(static_cast<uint32_t>(alg));
  return a != nullptr && a->takes_burst;
}

std::string unit_problem(std::string_view unit) {
  if (unit.empty() || unit.size() > kMaxNameLength) return "must be 1 to 64 characters";
  auto lower = [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; };
  if (!lower(unit[0])) return "must start with a lower-case letter or '_'";
  for (char c : unit) {
    if (!lower(c) && !(c >= '0' && c <= '9'))
      return "may hold only lower-case letters, digits and '_'";
  }
  return "";
}

int64_t max_limit_of(const LimitSpec& l) {
  return l.unit == kUnitUsd && l.algorithm == SLUICE_ALG_FIXED_WINDOW ? kMaxMoneyLimit
                                                                      : kMaxLimitValue;
}

__extension__ typedef __int128 i128;

std::optional<int64_t> parse_scaled_decimal(std::string_view text, int decimals, int64_t max) {
  const size_t dot = text.find('.');
  const std::string_view whole = text.substr(0, dot);
  const std::string_view frac =
      dot == std::string_view::npos ? std::string_view{} : text.substr(dot + 1);
  if (whole.empty() || (dot != std::string_view::npos && frac.empty()) ||
      frac.size() > static_cast<size_t>(decimals)) {
    return std::nullopt;
  }
  i128 v = 0;
  auto digits = [&](std::string_view part) {
    for (char c : part) {
      if (c < '0' || c > '9') return false;
      v = v * 10 + (c - '0');
      if (v > max) return false;
    }
    return true;
  };
  if (!digits(whole)) return std::nullopt;
  for (int i = 0; i < decimals; ++i) {
    v *= 10;
    if (static_cast<size_t>(i) < frac.size()) {
      const char c = frac[static_cast<size_t>(i)];
      if (c < '0' || c > '9') return std::nullopt;
      v += c - '0';
    }
    if (v > max) return std::nullopt;
  }
  return static_cast<int64_t>(v);
}

std::string format_scaled_decimal(int64_t value, int decimals) {
  int64_t scale = 1;
  for (int i = 0; i < decimals; ++i) scale *= 10;
  std::string out = std::to_string(value / scale);
  std::string frac = std::to_string(value % scale);
  frac.insert(0, static_cast<size_t>(decimals) - frac.size(), '0');
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  if (!frac.empty()) out += "." + frac;
  return out;
}

std::optional<UnknownResourceMode> unknown_mode_from_name(std::string_view name) {
  if (name == "deny") return UnknownResourceMode::kDeny;
  if (name == "allow") return UnknownResourceMode::kAllow;
  if (name == "default_limits") return UnknownResourceMode::kDefaultLimits;
  return std::nullopt;
}

std::string_view unknown_mode_to_name(UnknownResourceMode mode) {
  switch (mode) {
    case UnknownResourceMode::kDeny:
      return "deny";
    case UnknownResourceMode::kAllow:
      return "allow";
    case UnknownResourceMode::kDefaultLimits:
      return "default_limits";
  }
  return "?";
}

std::optional<StorageFailureMode> failure_mode_from_name(std::string_view name) {
  if (name == "fail_open") return StorageFailureMode::kFailOpen;
  if (name == "fail_closed") return StorageFailureMode::kFailClosed;
  return std::nullopt;
}

std::string_view failure_mode_to_name(StorageFailureMode mode) {
  switch (mode) {
    case StorageFailureMode::kFailOpen:
      return "fail_open";
    case StorageFailureMode::kFailClosed:
      return "fail_closed";
  }
  return "?";
}

std::string name_problem(std::string_view name) {
  if (name.empty()) return "must not be empty";
  if (name.size() > kMaxNameLength) {
    return fmt::format("is {} characters long (at most {})", name.size(), kMaxNameLength);
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == '-' || c == '/';
    if (!ok) {
      const auto shown = (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
                             ? fmt::format("\\x{:02x}", static_cast<unsigned char>(c))
                             : std::string(1, c);
      return fmt::format("contains '{}' (allowed: letters, digits, '_', '.', '-', '/')", shown);
    }
  }
  return "";
}

std::string api_key_problem(std::string_view key) {
  if (key.empty()) return "must not be empty";
  if (key.size() > kMaxSubjectLength) {
    return fmt::format("is {} bytes long (at most {})", key.size(), kMaxSubjectLength);
  }
  for (char c : key) {
    const auto u = static_cast<unsigned char>(c);
    // Keys travel as arguments of inline RESP commands and in HTTP headers: printable ASCII.
    if (u <= 0x20 || u >= 0x7f) return "must be printable ASCII without spaces";
  }
  return "";
}

std::string text_problem(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const auto u = static_cast<unsigned char>(text[i]);
    if (u < 0x80) {
      if ((u < 0x20 && u != '\n' && u != '\t') || u == 0x7f) {
        return fmt::format("contains the control character \\x{:02x}", u);
      }
      ++i;
      continue;
    }
    // UTF-8: the lead byte gives the length; reject overlong forms and surrogates.
    size_t len = 0;
    uint32_t cp = 0;
    if (u >= 0xc2 && u <= 0xdf) {
      len = 2;
      cp = u & 0x1f;
    } else if (u >= 0xe0 && u <= 0xef) {
      len = 3;
      cp = u & 0x0f;
    } else if (u >= 0xf0 && u <= 0xf4) {
      len = 4;
      cp = u & 0x07;
    } else {
      return "is not valid UTF-8";
    }
    if (i + len > text.size()) return "is not valid UTF-8";
    for (size_t k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(text[i + k]);
      if ((c & 0xc0) != 0x80) return "is not valid UTF-8";
      cp = (cp << 6) | (c & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) {
      return "is not valid UTF-8";
    }
    i += len;
  }
  return "";
}

std::string format_number(double value) { return fmt::format("{}", value); }

std::string child_path(std::string_view parent, std::string_view key) {
  if (parent.empty()) return std::string(key);
  return fmt::format("{}.{}", parent, key);
}

std::string index_path(std::string_view parent, size_t index) {
  return fmt::format("{}[{}]", parent, index);
}

}  // namespace policy_detail

std::string cost_unit_problem(std::string_view unit) { return policy_detail::unit_problem(unit); }

int64_t warm_limit(int64_t limit, double factor) {
  if (limit <= 0 || factor >= 1.0) return limit;
  return std::max<int64_t>(1,
                           static_cast<int64_t>(std::floor(static_cast<double>(limit) * factor)));
}

std::string format_dollars(int64_t micros) {
  return policy_detail::format_scaled_decimal(micros, 6);
}

std::optional<int64_t> parse_dollars(std::string_view text) {
  return policy_detail::parse_scaled_decimal(text, 6, policy_detail::kMaxMoneyLimit);
}

namespace pd = policy_detail;

// ---- durations ----------------------------------------------------------------------------

std::optional<int64_t> parse_duration_ms(std::string_view text) {
  struct Unit {
    std::string_view suffix;
    int64_t ms;
  };
  // Longest suffix first so "ms" is not read as minutes followed by garbage.
  static constexpr std::array<Unit, 5> kUnits{
      {{"ms", 1}, {"d", 86'400'000}, {"h", 3'600'000}, {"m", 60'000}, {"s", 1'000}}};
  if (text.empty()) return std::nullopt;
  int64_t total = 0;
  int64_t previous_unit = std::numeric_limits<int64_t>::max();
  size_t pos = 0;
  while (pos < text.size()) {
    int64_t amount = 0;
    const char* begin = text.data() + pos;
    const char* end = text.data() + text.size();
    if (*begin < '0' || *begin > '9') return std::nullopt;
    auto [ptr, ec] = std::from_chars(begin, end, amount);
    if (ec != std::errc()) return std::nullopt;
    pos += static_cast<size_t>(ptr - begin);
    const std::string_view rest = text.substr(pos);
    const Unit* unit = nullptr;
    for (const auto& u : kUnits) {
      if (rest.starts_with(u.suffix)) {
        unit = &u;
        break;
      }
    }
    // Units must appear largest first and once each: "1m30s", never "30s1m".
    if (unit == nullptr || unit->ms >= previous_unit) return std::nullopt;
    previous_unit = unit->ms;
    pos += unit->suffix.size();
    if (amount > (std::numeric_limits<int64_t>::max() - total) / unit->ms) return std::nullopt;
    total += amount * unit->ms;
  }
  return total;
}

std::string window_text(const LimitSpec& l, bool with_zone) {
  if (l.calendar == CalendarPeriod::kNone) return format_duration_ms(l.window_ms);
  if (!with_zone) return std::string(calendar_name(l.calendar));
  return fmt::format("{} ({})", calendar_name(l.calendar), l.timezone.empty() ? "UTC" : l.timezone);
}

bool set_window(LimitSpec& l, std::string_view text) {
  if (const CalendarPeriod period = calendar_from_name(text); period != CalendarPeriod::kNone) {
    l.calendar = period;
    l.window_ms = calendar_window_ms(period);
    return true;
  }
  const auto ms = parse_duration_ms(text);
  if (!ms) return false;
  l.calendar = CalendarPeriod::kNone;
  l.timezone.clear();
  l.window_ms = *ms;
  return true;
}

std::string format_duration_ms(int64_t ms) {
  if (ms == 0) return "0s";
  if (ms < 0) {
    // Never valid in a policy; shown plainly so an error message can quote it.
    return fmt::format("{}ms", ms);
  }
  static constexpr std::array<std::pair<int64_t, std::string_view>, 5> kUnits{
      {{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1'000, "s"}, {1, "ms"}}};
  std::string out;
  for (const auto& [unit_ms, suffix] : kUnits) {
    if (ms >= unit_ms) {
      out += fmt::format("{}{}", ms / unit_ms, suffix);
      ms %= unit_ms;
    }
  }
  return out;
}

// ---- serialisation ------------------------------------------------------------------------

namespace {

void emit_limit(YAML::Emitter& out, const LimitSpec& l) {
  out << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << l.name;
  out << YAML::Key << "algorithm" << YAML::Value << std::string(pd::algorithm_to_name(l.algorithm));
  if (l.unit == kUnitUsd) {
    out << YAML::Key << "limit" << YAML::Value << pd::format_scaled_decimal(l.limit, 6);
  } else {
    out << YAML::Key << "limit" << YAML::Value << l.limit;
  }
  if (l.calendar != CalendarPeriod::kNone) {
    out << YAML::Key << "window" << YAML::Value << std::string(calendar_name(l.calendar));
    if (!l.timezone.empty()) out << YAML::Key << "timezone" << YAML::Value << l.timezone;
  } else {
    out << YAML::Key << "window" << YAML::Value << format_duration_ms(l.window_ms);
  }
  if (l.burst != 0) out << YAML::Key << "burst" << YAML::Value << l.burst;
  if (l.unit != kUnitRequests) out << YAML::Key << "cost" << YAML::Value << l.unit;
  if (l.overdraft >= 0) out << YAML::Key << "overdraft" << YAML::Value << l.overdraft;
  if (l.shadow) out << YAML::Key << "shadow" << YAML::Value << true;
  if (l.per_resource) out << YAML::Key << "per" << YAML::Value << "resource";
  if (l.reserve != ReserveSpec{}) {
    out << YAML::Key << "reserve" << YAML::Value << YAML::Flow << YAML::BeginMap;
    out << YAML::Key << "share" << YAML::Value << pd::format_number(l.reserve.share);
    out << YAML::Key << "min_priority" << YAML::Value << l.reserve.min_priority;
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
}

void emit_limits(YAML::Emitter& out, const std::vector<LimitSpec>& limits) {
  if (limits.empty()) {
    out << YAML::Flow << YAML::BeginSeq << YAML::EndSeq;
    return;
  }
  out << YAML::BeginSeq;
  for (const auto& l : limits) emit_limit(out, l);
  out << YAML::EndSeq;
}

void emit_warmup(YAML::Emitter& out, const WarmupSpec& w) {
  out << YAML::Flow << YAML::BeginMap;
  // A disabled warm-up is written only when it carries settings, so they survive a round trip.
  if (!w.enabled) out << YAML::Key << "enabled" << YAML::Value << false;
  out << YAML::Key << "factor" << YAML::Value << pd::format_number(w.factor);
  if (w.duration_ms != 0) {
    out << YAML::Key << "duration" << YAML::Value << format_duration_ms(w.duration_ms);
  }
  if (w.ramp) out << YAML::Key << "ramp" << YAML::Value << true;
  out << YAML::Key << "start" << YAML::Value << (w.start_cold ? "cold" : "warm");
  out << YAML::EndMap;
}

// Whether `limit` of `resource` counts dollars (its overrides are written in dollars too).
bool counts_money(const PolicySpec& spec, const std::string& resource, const std::string& limit) {
  for (const auto& r : spec.resources) {
    if (r.name != resource) continue;
    for (const auto& l : r.limits) {
      if (l.name == limit) return l.unit == kUnitUsd;
    }
  }
  return false;
}

void emit_tier(YAML::Emitter& out, const TierSpec& t, const PolicySpec& spec) {
  out << YAML::Key << t.name << YAML::Value << YAML::BeginMap;
  if (!t.description.empty()) out << YAML::Key << "description" << YAML::Value << t.description;
  out << YAML::Key << "multiplier" << YAML::Value << pd::format_number(t.multiplier);
  if (t.unlimited) out << YAML::Key << "unlimited" << YAML::Value << true;
  if (t.priority != 0) out << YAML::Key << "priority" << YAML::Value << t.priority;
  if (!t.overrides.empty()) {
    out << YAML::Key << "overrides" << YAML::Value << YAML::BeginMap;
    for (const auto& [resource, ov] : t.overrides) {
      out << YAML::Key << resource << YAML::Value << YAML::Flow << YAML::BeginMap;
      if (ov.multiplier) {
        out << YAML::Key << "multiplier" << YAML::Value << pd::format_number(*ov.multiplier);
      }
      if (ov.unlimited) out << YAML::Key << "unlimited" << YAML::Value << true;
      if (!ov.limits.empty()) {
        out << YAML::Key << "limits" << YAML::Value << YAML::Flow << YAML::BeginMap;
        for (const auto& [name, value] : ov.limits) {
          out << YAML::Key << name << YAML::Value;
          if (counts_money(spec, resource, name)) {
            out << pd::format_scaled_decimal(value, 6);
          } else {
            out << value;
          }
        }
        out << YAML::EndMap;
      }
      out << YAML::EndMap;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
}

bool warmup_has_settings(const WarmupSpec& w) {
  return w.enabled || w.factor != 1.0 || w.duration_ms != 0 || w.ramp || w.start_cold;
}

}  // namespace

std::string policy_to_yaml(const PolicySpec& spec) {
  YAML::Emitter out;
  out.SetIndent(2);
  out << YAML::BeginMap;
  out << YAML::Key << "version" << YAML::Value << 1;
  out << YAML::Key << "default_tier" << YAML::Value << spec.default_tier;
  out << YAML::Key << "on_storage_failure" << YAML::Value
      << std::string(pd::failure_mode_to_name(spec.on_storage_failure));
  out << YAML::Key << "unknown_resource" << YAML::Value
      << std::string(pd::unknown_mode_to_name(spec.unknown_resource));
  if (!spec.default_limits.empty()) {
    out << YAML::Key << "default_limits" << YAML::Value;
    emit_limits(out, spec.default_limits);
  }
  out << YAML::Key << "lease_ttl" << YAML::Value << format_duration_ms(spec.lease_ttl_ms);
  if (spec.lease_ttl_max_ms != 0) {
    out << YAML::Key << "lease_ttl_max" << YAML::Value << format_duration_ms(spec.lease_ttl_max_ms);
  }

  out << YAML::Key << "tiers" << YAML::Value;
  if (spec.tiers.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
  } else {
    out << YAML::BeginMap;
    for (const auto& t : spec.tiers) emit_tier(out, t, spec);
    out << YAML::EndMap;
  }

  if (!spec.api_keys.empty()) {
    out << YAML::Key << "api_keys" << YAML::Value << YAML::BeginMap;
    for (const auto& [key, tier] : spec.api_keys) {
      out << YAML::Key << key << YAML::Value;
      if (auto label = spec.api_key_labels.find(key); label != spec.api_key_labels.end()) {
        out << YAML::Flow << YAML::BeginMap << YAML::Key << "tier" << YAML::Value << tier
            << YAML::Key << "label" << YAML::Value << label->second << YAML::EndMap;
      } else {
        out << tier;
      }
    }
    out << YAML::EndMap;
  }

  out << YAML::Key << "resources" << YAML::Value;
  if (spec.resources.empty()) {
    out << YAML::Flow << YAML::BeginMap << YAML::EndMap;
  } else {
    out << YAML::BeginMap;
    for (const auto& r : spec.resources) {
      out << YAML::Key << r.name << YAML::Value << YAML::BeginMap;
      if (!r.description.empty()) out << YAML::Key << "description" << YAML::Value << r.description;
      if (!r.prices.empty()) {
        out << YAML::Key << "prices" << YAML::Value << YAML::Flow << YAML::BeginMap;
        for (const auto& [unit, picos] : r.prices)
          out << YAML::Key << unit << YAML::Value << pd::format_scaled_decimal(picos, 12);
        out << YAML::EndMap;
      }
      out << YAML::Key << "limits" << YAML::Value;
      emit_limits(out, r.limits);
      if (warmup_has_settings(r.warmup)) {
        out << YAML::Key << "warmup" << YAML::Value;
        emit_warmup(out, r.warmup);
      }
      if (r.queue.present) {
        out << YAML::Key << "queue" << YAML::Value << YAML::Flow << YAML::BeginMap;
        out << YAML::Key << "max_wait" << YAML::Value << format_duration_ms(r.queue.max_wait_ms);
        out << YAML::Key << "max_waiters" << YAML::Value << r.queue.max_waiters;
        out << YAML::EndMap;
      }
      out << YAML::EndMap;
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  std::string text = out.c_str();
  text += '\n';
  return text;
}

// ---- diff ---------------------------------------------------------------------------------

namespace {

constexpr std::string_view kArrow = " → ";
// Longer texts (descriptions, labels) are cut to this many characters in a change line.
constexpr size_t kQuotedChars = 60;

template <typename T>
std::string show(const T& v) {
  return fmt::format("{}", v);
}
std::string show(bool v) { return v ? "true" : "false"; }
std::string show(double v) { return pd::format_number(v); }

// A text for people in a change line: quoted, on one line, cut to kQuotedChars with "…".
std::string quoted_text(std::string_view text) {
  std::string out = "\"";
  size_t chars = 0;
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    const size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (chars == kQuotedChars - 1 && text.size() - i > len) {
      out += "…";
      break;
    }
    if (c == '\n' || c == '\r' || c == '\t') {
      out += ' ';
    } else {
      if (c == '"' || c == '\\') out += '\\';
      out.append(text.substr(i, len));
    }
    i += len;
    ++chars;
  }
  return out + "\"";
}

// Collects the changes: a value changed in place has its field and both values; an added or
// removed item only its line.
class Changes {
 public:
  explicit Changes(const ApiKeyMask& mask) : mask_(mask) {}

  void line(std::string what, std::string text) {
    out_.push_back({std::move(what), {}, {}, {}, std::move(text)});
  }
  // "what: field before → after"; with `unnamed`, "what: before → after" (the field is what
  // names: "resource predict: limit per_minute: 10 → 20").
  void value(std::string_view what, std::string_view field, std::string before, std::string after,
             bool unnamed = false) {
    std::string text = unnamed ? fmt::format("{}: {}{}{}", what, before, kArrow, after)
                               : fmt::format("{}: {} {}{}{}", what, field, before, kArrow, after);
    out_.push_back({std::string(what), std::string(field), std::move(before), std::move(after),
                    std::move(text)});
  }
  template <typename T>
  void changed(std::string_view what, std::string_view field, const T& before, const T& after) {
    if (before != after) value(what, field, show(before), show(after));
  }
  // A text for people, quoted and cut short: description "Fast model" → "Fast model, EU".
  void text(std::string_view what, std::string_view field, const std::string& before,
            const std::string& after) {
    if (before != after) value(what, field, quoted_text(before), quoted_text(after));
  }
  std::string key(const std::string& k) const { return mask_ ? mask_(k) : mask_api_key(k); }
  std::vector<PolicyChange> take() { return std::move(out_); }

 private:
  const ApiKeyMask& mask_;
  std::vector<PolicyChange> out_;
};

std::string describe_limit(const LimitSpec& l) {
  const std::string amount = l.unit == kUnitUsd ? "$" + pd::format_scaled_decimal(l.limit, 6)
                                                : fmt::format("{} {}", l.limit, l.unit);
  std::string s =
      fmt::format("{} {} per {}", pd::algorithm_to_name(l.algorithm), amount, window_text(l, true));
  if (l.burst != 0) s += fmt::format(", burst {}", l.burst);
  if (l.shadow) s += ", shadow";
  if (l.per_resource) s += ", per resource";
  if (l.reserve != ReserveSpec{}) {
    s += fmt::format(", {}% reserved for priority {}+", pd::format_number(l.reserve.share * 100),
                     l.reserve.min_priority);
  }
  return s;
}

void diff_limits(Changes& out, const std::string& what, const std::vector<LimitSpec>& before,
                 const std::vector<LimitSpec>& after) {
  auto find = [](const std::vector<LimitSpec>& v, const std::string& name) -> const LimitSpec* {
    for (const auto& l : v) {
      if (l.name == name) return &l;
    }
    return nullptr;
  };
  for (const auto& b : before) {
    const LimitSpec* a = find(after, b.name);
    if (a == nullptr) {
      out.line(what, fmt::format("{}: limit {} removed", what, b.name));
      continue;
    }
    const std::string lw = fmt::format("{}: limit {}", what, b.name);
    if (a->algorithm != b.algorithm) {
      out.value(lw, "algorithm", std::string(pd::algorithm_to_name(b.algorithm)),
                std::string(pd::algorithm_to_name(a->algorithm)));
    }
    if (a->limit != b.limit) {
      auto amount = [](const LimitSpec& l) {
        return l.unit == kUnitUsd ? "$" + pd::format_scaled_decimal(l.limit, 6)
                                  : std::to_string(l.limit);
      };
      out.value(lw, "limit", amount(b), amount(*a), true);
    }
    if (window_text(*a, true) != window_text(b, true)) {
      out.value(lw, "window", window_text(b, true), window_text(*a, true));
    }
    out.changed(lw, "burst", b.burst, a->burst);
    out.changed(lw, "cost", b.unit, a->unit);
    if (a->overdraft != b.overdraft) {
      auto text = [](int64_t v) { return v < 0 ? std::string("none") : std::to_string(v); };
      out.value(lw, "overdraft", text(b.overdraft), text(a->overdraft));
    }
    out.changed(lw, "shadow", b.shadow, a->shadow);
    out.changed(lw, "per resource", b.per_resource, a->per_resource);
    out.changed(lw, "reserve share", b.reserve.share, a->reserve.share);
    out.changed(lw, "reserve min_priority", b.reserve.min_priority, a->reserve.min_priority);
  }
  for (const auto& a : after) {
    if (find(before, a.name) == nullptr) {
      out.line(what, fmt::format("{}: limit {} added ({})", what, a.name, describe_limit(a)));
    }
  }
}

void diff_warmup(Changes& out, const std::string& what, const WarmupSpec& b, const WarmupSpec& a) {
  if (b.enabled != a.enabled) {
    out.line(what, fmt::format("{}: warmup {}", what, a.enabled ? "enabled" : "disabled"));
  }
  const std::string ww = what + ": warmup";
  out.changed(ww, "factor", b.factor, a.factor);
  if (b.duration_ms != a.duration_ms) {
    out.value(ww, "duration", format_duration_ms(b.duration_ms), format_duration_ms(a.duration_ms));
  }
  out.changed(ww, "ramp", b.ramp, a.ramp);
  if (b.start_cold != a.start_cold) {
    out.value(ww, "start", b.start_cold ? "cold" : "warm", a.start_cold ? "cold" : "warm");
  }
}

void diff_override(Changes& out, const std::string& what, const TierOverride& b,
                   const TierOverride& a) {
  auto mult = [](const std::optional<double>& m) {
    return m ? pd::format_number(*m) : std::string("(tier's)");
  };
  if (b.multiplier != a.multiplier) {
    out.value(what, "multiplier", mult(b.multiplier), mult(a.multiplier));
  }
  out.changed(what, "unlimited", b.unlimited, a.unlimited);
  for (const auto& [name, value] : b.limits) {
    auto it = a.limits.find(name);
    if (it == a.limits.end()) {
      out.line(what, fmt::format("{}: limit {} override removed (was {})", what, name, value));
    } else if (it->second != value) {
      out.value(fmt::format("{}: limit {}", what, name), "limit", std::to_string(value),
                std::to_string(it->second), true);
    }
  }
  for (const auto& [name, value] : a.limits) {
    if (!b.limits.contains(name)) {
      out.line(what, fmt::format("{}: limit {} override added ({})", what, name, value));
    }
  }
}

void diff_tier(Changes& out, const TierSpec& b, const TierSpec& a) {
  const std::string what = "tier " + b.name;
  out.text(what, "description", b.description, a.description);
  out.changed(what, "multiplier", b.multiplier, a.multiplier);
  out.changed(what, "unlimited", b.unlimited, a.unlimited);
  out.changed(what, "priority", b.priority, a.priority);
  for (const auto& [resource, ov] : b.overrides) {
    auto it = a.overrides.find(resource);
    if (it == a.overrides.end()) {
      out.line(what, fmt::format("{}: override for {} removed", what, resource));
    } else {
      diff_override(out, fmt::format("{}: override {}", what, resource), ov, it->second);
    }
  }
  for (const auto& [resource, ov] : a.overrides) {
    if (!b.overrides.contains(resource)) {
      out.line(what, fmt::format("{}: override for {} added", what, resource));
    }
  }
}

template <typename T>
const T* find_named(const std::vector<T>& v, const std::string& name) {
  for (const auto& x : v) {
    if (x.name == name) return &x;
  }
  return nullptr;
}

}  // namespace

std::string mask_api_key(std::string_view key) {
  // Short keys would be revealed almost entirely by their last 4 characters.
  if (key.size() < 8) return "...";
  return "..." + std::string(key.substr(key.size() - 4));
}

std::vector<PolicyChange> policy_changes(const PolicySpec& before, const PolicySpec& after,
                                         const ApiKeyMask& mask) {
  Changes out(mask);
  out.changed("policy", "default_tier", before.default_tier, after.default_tier);
  out.changed("policy", "on_storage_failure",
              std::string(pd::failure_mode_to_name(before.on_storage_failure)),
              std::string(pd::failure_mode_to_name(after.on_storage_failure)));
  out.changed("policy", "unknown_resource",
              std::string(pd::unknown_mode_to_name(before.unknown_resource)),
              std::string(pd::unknown_mode_to_name(after.unknown_resource)));
  diff_limits(out, "default limits", before.default_limits, after.default_limits);
  out.changed("policy", "lease_ttl", format_duration_ms(before.lease_ttl_ms),
              format_duration_ms(after.lease_ttl_ms));
  auto shown = [](int64_t ms) { return ms ? format_duration_ms(ms) : std::string("lease_ttl"); };
  out.changed("policy", "lease_ttl_max", shown(before.lease_ttl_max_ms),
              shown(after.lease_ttl_max_ms));

  for (const auto& b : before.tiers) {
    const TierSpec* a = find_named(after.tiers, b.name);
    if (a == nullptr) {
      out.line("tier " + b.name, fmt::format("tier {}: removed", b.name));
    } else {
      diff_tier(out, b, *a);
    }
  }
  for (const auto& a : after.tiers) {
    if (find_named(before.tiers, a.name) == nullptr) {
      out.line("tier " + a.name,
               fmt::format("tier {}: added (multiplier {}{})", a.name,
                           pd::format_number(a.multiplier), a.unlimited ? ", unlimited" : ""));
    }
  }

  for (const auto& [key, tier] : before.api_keys) {
    const std::string what = "api key " + out.key(key);
    auto it = after.api_keys.find(key);
    if (it == after.api_keys.end()) {
      out.line(what, fmt::format("{}: removed (was {})", what, tier));
    } else if (it->second != tier) {
      out.value(what, "tier", tier, it->second);
    }
  }
  for (const auto& [key, tier] : after.api_keys) {
    if (!before.api_keys.contains(key)) {
      const std::string what = "api key " + out.key(key);
      out.line(what, fmt::format("{}: added ({})", what, tier));
    }
  }
  auto label_of = [](const PolicySpec& p, const std::string& key) {
    auto it = p.api_key_labels.find(key);
    return it == p.api_key_labels.end() ? std::string() : it->second;
  };
  for (const auto& [key, tier] : after.api_keys) {
    const std::string b = before.api_keys.contains(key) ? label_of(before, key) : std::string();
    out.text("api key " + out.key(key), "label", b, label_of(after, key));
  }

  for (const auto& b : before.resources) {
    const ResourceSpec* a = find_named(after.resources, b.name);
    const std::string what = "resource " + b.name;
    if (a == nullptr) {
      out.line(what, what + ": removed");
      continue;
    }
    out.text(what, "description", b.description, a->description);
    if (b.prices != a->prices) {
      auto text = [](const std::map<std::string, int64_t>& prices) {
        std::string t;
        for (const auto& [unit, picos] : prices)
          t += fmt::format("{}{} ${}", t.empty() ? "" : ", ", unit,
                           pd::format_scaled_decimal(picos, 12));
        return t.empty() ? std::string("none") : t;
      };
      out.value(what, "prices", text(b.prices), text(a->prices));
    }
    diff_limits(out, what, b.limits, a->limits);
    diff_warmup(out, what, b.warmup, a->warmup);
    if (b.queue != a->queue) {
      auto text = [](const QueueSpec& q) {
        return fmt::format("max_wait {} max_waiters {}", format_duration_ms(q.max_wait_ms),
                           q.max_waiters);
      };
      out.value(what, "queue", text(b.queue), text(a->queue));
    }
  }
  for (const auto& a : after.resources) {
    if (find_named(before.resources, a.name) == nullptr) {
      out.line("resource " + a.name, fmt::format("resource {}: added ({} limit{})", a.name,
                                                 a.limits.size(), a.limits.size() == 1 ? "" : "s"));
    }
  }
  return out.take();
}

std::vector<std::string> diff_policies(const PolicySpec& before, const PolicySpec& after,
                                       const ApiKeyMask& mask) {
  std::vector<std::string> out;
  for (auto& c : policy_changes(before, after, mask)) out.push_back(std::move(c.text));
  return out;
}

}  // namespace sluice
