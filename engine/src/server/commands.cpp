#include "commands.h"

#include <array>
#include <charconv>

namespace sluice::server {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 32);
    if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 32);
    if (x != y) return false;
  }
  return true;
}

bool parse_int64(std::string_view s, int64_t& v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

namespace {

// The hot commands come first; the table is short enough that a scan beats hashing.
constexpr std::array<CommandSpec, 19> kCommands = {{
    {"SL.CHECK", Command::kCheck, Handler::kDecision, false, 0, 0, ""},
    {"SL.ACQUIRE", Command::kAcquire, Handler::kDecision, false, 0, 0, ""},
    {"SL.RELEASE", Command::kRelease, Handler::kRelease, false, 0, 0, ""},
    {"SL.PEEK", Command::kPeek, Handler::kDecision, false, 0, 0, ""},
    {"SL.CHARGE", Command::kCharge, Handler::kCharge, false, 0, 0, ""},
    {"PING", Command::kPing, Handler::kSession, false, 1, 2, "usage: PING [message]"},
    {"SL.INFO", Command::kInfo, Handler::kSession, false, 1, 2, "usage: SL.INFO"},
    {"ECHO", Command::kEcho, Handler::kSession, false, 2, 2, "usage: ECHO message"},
    {"QUIT", Command::kQuit, Handler::kSession, false, 0, 0, ""},
    // Redis client handshakes, answered harmlessly so stock tools connect without noise.
    {"COMMAND", Command::kCommandDocs, Handler::kSession, false, 0, 0, ""},
    {"CONFIG", Command::kConfig, Handler::kSession, false, 0, 0, ""},
    {"CLIENT", Command::kClient, Handler::kSession, false, 0, 0, ""},
    {"SELECT", Command::kSelect, Handler::kSession, false, 0, 0, ""},
    {"SL.POLICY", Command::kPolicy, Handler::kAdmin, true, 0, 0, ""},
    {"SL.STATS", Command::kStats, Handler::kAdmin, true, 0, 0, ""},
    {"SL.WARMUP", Command::kWarmup, Handler::kAdmin, true, 0, 0, ""},
    {"SL.INSPECT", Command::kInspect, Handler::kAdmin, true, 0, 0, ""},
    {"SL.RESET", Command::kReset, Handler::kAdmin, true, 0, 0, ""},
    {"SL.AUDIT", Command::kAudit, Handler::kAdmin, true, 0, 0, ""},
}};

}  // namespace

const CommandSpec* find_command(std::string_view name) {
  for (const CommandSpec& c : kCommands) {
    if (iequals(name, c.name)) return &c;
  }
  return nullptr;
}

Command lookup_command(std::string_view name) {
  const CommandSpec* c = find_command(name);
  return c != nullptr ? c->command : Command::kUnknown;
}

std::span<const CommandSpec> command_table() { return kCommands; }

std::string_view error_code_for(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalid:
      return err::kWrongArgs;
    case StatusCode::kNotFound:
      return err::kNoResource;
    case StatusCode::kUnavailable:
    case StatusCode::kTimeout:
      return err::kStorage;
    case StatusCode::kConflict:
      return err::kConflict;
    case StatusCode::kOk:
    case StatusCode::kInternal:
      break;
  }
  return err::kErr;
}

DecisionKind decision_kind(Command command) {
  switch (command) {
    case Command::kPeek:
      return DecisionKind::kPeek;
    case Command::kAcquire:
      return DecisionKind::kAcquire;
    case Command::kInspect:
      return DecisionKind::kInspect;
    case Command::kReset:
      return DecisionKind::kReset;
    default:
      return DecisionKind::kCheck;
  }
}

std::string_view wait_outcome_name(WaitOutcome outcome) {
  switch (outcome) {
    case WaitOutcome::kNone:
      return "";
    case WaitOutcome::kAdmitted:
      return "admitted";
    case WaitOutcome::kDeadline:
      return "deadline";
    case WaitOutcome::kQueueFull:
      return "queue_full";
    case WaitOutcome::kOverMaxWait:
      return "over_max_wait";
    case WaitOutcome::kNotWaitable:
      return "not_waitable";
    case WaitOutcome::kClosed:
      return "closed";
  }
  return "";
}

namespace {

enum class CostArg { kBare, kNamed, kInvalid };

bool unit_ok(std::string_view unit) { return cost_unit_problem(unit).empty(); }

// At argv[at]: "n" (a bare cost; the caller reads it) or "unit n", added to `named`.
CostArg parse_cost_arg(std::span<const std::string_view> argv, size_t at, NamedCosts& named,
                       std::string_view& error, std::string_view keyword = "COST") {
  const std::string_view first = argv[at];
  if (!first.empty() && ((first[0] >= '0' && first[0] <= '9') || first[0] == '-'))
    return CostArg::kBare;
  if (!unit_ok(first)) {
    error = keyword == "COST" ? "COST takes a number, or a unit (lower-case letters, digits, '_') "
                                "and a number"
                              : "ACTUAL takes a number, or a unit (lower-case letters, digits, "
                                "'_') and a number";
    return CostArg::kInvalid;
  }
  int64_t n = 0;
  if (at + 1 >= argv.size() || !parse_int64(argv[at + 1], n) || n < 0 || n > kMaxCost) {
    error = keyword == "COST" ? "COST unit n: n must be an integer from 0 to 1000000000000"
                              : "ACTUAL unit n: n must be an integer from 0 to 1000000000000";
    return CostArg::kInvalid;
  }
  if (!named.add(first, n)) {
    error = named.count == kMaxNamedCosts ? "at most 8 named units per request"
                                          : "a unit is named twice";
    return CostArg::kInvalid;
  }
  return CostArg::kNamed;
}

}  // namespace

bool parse_decision_args(Command command, std::span<const std::string_view> argv,
                         DecisionRequest& request, std::string_view& error) {
  int64_t wait_ms = -1;
  if (!parse_decision_args(command, argv, request, error, wait_ms)) return false;
  if (wait_ms >= 0) {
    error = "WAIT is not accepted here";
    return false;
  }
  return true;
}

bool parse_decision_args(Command command, std::span<const std::string_view> argv,
                         DecisionRequest& request, std::string_view& error, int64_t& wait_ms) {
  const bool acquire = command == Command::kAcquire;
  auto usage = [&]() -> std::string_view {
    switch (command) {
      case Command::kAcquire:
        return "usage: SL.ACQUIRE resource subject [TIER t] [KEY k] [COST n] [TTL ms] [WAIT ms]";
      case Command::kPeek:
        return "usage: SL.PEEK resource subject [TIER t] [KEY k] [COST n]";
      default:
        return "usage: SL.CHECK resource subject [TIER t] [KEY k] [COST n] [WAIT ms]";
    }
  };
  request = DecisionRequest{};
  wait_ms = -1;
  if (argv.size() < 3) {
    error = usage();
    return false;
  }
  request.resource = argv[1];
  request.subject = argv[2];
  bool bare_cost = false;
  for (size_t i = 3; i < argv.size(); i += 2) {
    const std::string_view option = argv[i];
    if (i + 1 >= argv.size()) {
      error = usage();
      return false;
    }
    const std::string_view value = argv[i + 1];
    if (iequals(option, "TIER")) {
      request.tier = value;
    } else if (iequals(option, "KEY")) {
      request.api_key = value;
    } else if (iequals(option, "COST")) {
      const CostArg c = parse_cost_arg(argv, i + 1, request.named, error);
      if (c == CostArg::kInvalid) return false;
      if (c == CostArg::kBare) {
        if (!parse_int64(value, request.cost) || request.cost < 1 || request.cost > kMaxCost) {
          error = "COST must be an integer from 1 to 1000000000000";
          return false;
        }
        bare_cost = true;
      } else {
        ++i;  // COST unit n
      }
    } else if (acquire && iequals(option, "TTL")) {
      if (!parse_int64(value, request.lease_ttl_ms) || request.lease_ttl_ms < 1) {
        error = "TTL must be a positive number of milliseconds";
        return false;
      }
    } else if (iequals(option, "WAIT")) {
      if (command == Command::kPeek) {
        error = "WAIT applies to SL.CHECK and SL.ACQUIRE only: SL.PEEK takes nothing to wait for";
        return false;
      }
      if (!parse_int64(value, wait_ms) || wait_ms < 0 || wait_ms > kMaxWaitMs) {
        error = "WAIT must be a whole number of milliseconds from 0 to 3600000";
        return false;
      }
    } else {
      error = usage();
      return false;
    }
  }
  // Named costs without a bare COST: limits of other units take nothing.
  if (request.named.count > 0 && !bare_cost) request.cost = 0;
  return true;
}

// The sentences name kMaxCost's and kMaxWaitMs's values.
static_assert(kMaxCost == 1'000'000'000'000);
static_assert(kMaxWaitMs == 3'600'000);

namespace {

// "lease" then `keyword [unit] n` pairs from argv[2] on (SL.RELEASE's ACTUAL, SL.CHARGE's
// COST): named amounts into `named`, the bare one into `bare` (nullopt when absent).
bool parse_lease_and_costs(std::span<const std::string_view> argv, std::string_view keyword,
                           std::string_view usage, LeaseToken& lease, std::optional<int64_t>& bare,
                           NamedCosts& named, std::string_view& error) {
  bare.reset();
  named = {};
  if (argv.size() < 2) {
    error = usage;
    return false;
  }
  const std::optional<LeaseToken> token = LeaseToken::parse(argv[1]);
  if (!token) {
    error = "lease must be the 48-digit hex token returned by SL.ACQUIRE";
    return false;
  }
  lease = *token;
  const bool actual = keyword == "ACTUAL";
  for (size_t i = 2; i < argv.size(); i += 2) {
    if (!iequals(argv[i], keyword) || i + 1 >= argv.size()) {
      error = usage;
      return false;
    }
    const CostArg c = parse_cost_arg(argv, i + 1, named, error, keyword);
    if (c == CostArg::kInvalid) return false;
    if (c == CostArg::kNamed) {
      ++i;
      continue;
    }
    int64_t n = 0;
    if (bare || !parse_int64(argv[i + 1], n) || n < 0 || n > kMaxCost) {
      if (bare) {
        error = actual ? "ACTUAL n is given twice" : "COST n is given twice";
      } else {
        error = actual ? "ACTUAL must be an integer from 0 to 1000000000000"
                       : "COST must be an integer from 0 to 1000000000000";
      }
      return false;
    }
    bare = n;
  }
  return true;
}

}  // namespace

bool parse_release_args(std::span<const std::string_view> argv, LeaseToken& lease,
                        std::optional<int64_t>& actual, NamedCosts& named,
                        std::string_view& error) {
  return parse_lease_and_costs(argv, "ACTUAL",
                               "usage: SL.RELEASE lease [ACTUAL n] [ACTUAL unit n ...]", lease,
                               actual, named, error);
}

bool parse_charge_args(std::span<const std::string_view> argv, LeaseToken& lease, int64_t& cost,
                       NamedCosts& named, std::string_view& error) {
  constexpr std::string_view kUsage =
      "usage: SL.CHARGE lease n | SL.CHARGE lease COST unit n [COST unit n ...]";
  cost = 0;
  if (argv.size() < 3) {
    error = kUsage;
    named = {};
    return false;
  }
  std::optional<int64_t> bare;
  if (argv.size() == 3) {  // SL.CHARGE lease n
    if (!parse_lease_and_costs(argv.first(2), "COST", kUsage, lease, bare, named, error))
      return false;
    if (!parse_int64(argv[2], cost) || cost < 0 || cost > kMaxCost) {
      error = "SL.CHARGE n: n must be an integer from 0 to 1000000000000";
      return false;
    }
    return true;
  }
  if (!parse_lease_and_costs(argv, "COST", kUsage, lease, bare, named, error)) return false;
  cost = bare.value_or(0);
  return true;
}

void write_decision_reply(resp::Writer& w, Command command, const Decision& d,
                          const DecisionDetail& detail) {
  if (command == Command::kCharge && d.error == StatusCode::kNotFound) {
    w.error(err::kNoLease, "unknown or expired lease");
    return;
  }
  if (d.source == DecisionSource::kError) {
    w.error(error_code_for(d.error), d.error_message);
    return;
  }
  const bool acquire = command == Command::kAcquire;
  w.array((acquire ? 11 : 9) + (detail.wait != nullptr ? 2 : 0));
  w.integer(d.allowed ? 1 : 0);
  w.integer(d.limit);
  w.integer(d.remaining);
  w.integer(d.reset_after_ms);
  w.integer(d.allowed ? 0 : d.retry_after_ms);
  w.bulk(d.rule());
  if (acquire) {
    if (d.allowed && d.lease.id != 0) {
      char buf[LeaseToken::kTextLength];
      d.lease.format(buf);
      w.bulk(std::string_view(buf, sizeof(buf)));
      w.integer(d.lease_ttl_ms);
    } else {
      w.bulk("");
      w.integer(0);
    }
  }
  w.bulk(detail.tier);
  int64_t window_ms = 0;
  for (const ReplyLimit& l : detail.limits) {
    if (l.name == d.rule()) window_ms = l.window_ms;
  }
  w.integer(window_ms);
  w.array(detail.limits.size());
  for (const ReplyLimit& l : detail.limits) {
    w.array(5);
    w.bulk(l.name);
    w.integer(l.limit);
    w.integer(l.remaining);
    w.integer(l.reset_after_ms);
    w.integer(l.window_ms);
  }
  if (detail.wait != nullptr) {
    w.integer(detail.wait->waited_ms);
    w.bulk(wait_outcome_name(detail.wait->outcome));
  }
}

void write_decision_reply(resp::Writer& w, Command command, const DecisionCall& call,
                          const WaitReply* wait) {
  const Decision& d = call.decision();
  std::array<ReplyLimit, kMaxLimitsPerResource> limits;
  size_t n = 0;
  // Only the limits' own answers are meaningful: a storage failure leaves them unwritten.
  if (d.source == DecisionSource::kLimits) {
    for (size_t i = 0; i < call.limit_count(); ++i) {
      const LimitResult r = call.limit_result(i);
      if (r.shadow) continue;  // a shadow limit never denies, so a client must not see it as one
      limits[n++] = {r.rule, r.result.limit, r.result.remaining, r.result.reset_after_ms,
                     r.window_ms};
    }
  }
  write_decision_reply(w, command, d, {call.tier(), std::span(limits.data(), n), wait});
}

void write_release_reply(resp::Writer& w, const Decision& d) {
  if (d.allowed) {
    w.integer(1);
  } else if (d.error == StatusCode::kNotFound) {
    w.error(err::kNoLease, "unknown or expired lease");
  } else {
    w.error(error_code_for(d.error), d.error_message);
  }
}

}  // namespace sluice::server
