// The command layer's pure parts: command lookup, argument parsing of the decision commands,
// and reply encoding. No sockets and no engine calls here, so all of it is unit-tested
// directly (tests/unit/test_commands.cpp). docs/protocol.md is the reference for every shape.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "sluice/engine.h"
#include "sluice/resp.h"
#include "sluice/status.h"

namespace sluice::server {

enum class Command : uint8_t {
  kUnknown,
  // decision socket (also served on the admin socket)
  kPing,
  kEcho,
  kQuit,
  kCheck,
  kPeek,
  kAcquire,
  kRelease,
  kCharge,
  kInfo,
  // Redis client handshakes answered harmlessly so stock tools connect without noise.
  kCommandDocs,
  kConfig,
  kClient,
  kSelect,
  // admin socket only
  kPolicy,
  kStats,
  kWarmup,
  kInspect,
  kReset,
  kAudit,
};

// How a command is run (by the Dispatcher, dispatcher.h).
enum class Handler : uint8_t {
  kDecision,  // parsed into a DecisionRequest, staged, submitted to the engine
  kRelease,   // SL.RELEASE: the engine's lease registry and storage
  kCharge,    // SL.CHARGE: a lease's usage, decided like SL.CHECK
  kSession,   // answered by the command layer itself, no engine state
  kAdmin,     // handed to the Admin (admin socket only)
};

// One row of the command table: everything known about a command before it runs.
struct CommandSpec {
  std::string_view name;  // upper case; looked up case-insensitively
  Command command;
  Handler handler;
  bool admin_only;  // refused with NOPERM on the decision socket
  // argv sizes, the name included, that the command accepts; 0 = the handler checks them
  // itself (decision options, admin subcommands). Outside: WRONGARGS with `usage`.
  uint8_t min_argc, max_argc;
  std::string_view usage;
};

// Case-insensitive lookup of argv[0] in the command table; nullptr when unknown.
const CommandSpec* find_command(std::string_view name);
// The same, for callers that only need the command (kUnknown when unknown).
Command lookup_command(std::string_view name);
// Every row, in lookup order.
std::span<const CommandSpec> command_table();

// Error prefixes (docs/protocol.md, "Errors"). Stable: clients switch on them.
namespace err {
inline constexpr std::string_view kErr = "ERR";
inline constexpr std::string_view kWrongArgs = "WRONGARGS";
inline constexpr std::string_view kNoPerm = "NOPERM";
inline constexpr std::string_view kNoResource = "NORESOURCE";
inline constexpr std::string_view kStorage = "STORAGE";
inline constexpr std::string_view kConflict = "CONFLICT";
inline constexpr std::string_view kInvalid = "INVALID";
inline constexpr std::string_view kNoLease = "NOLEASE";
inline constexpr std::string_view kBusy = "BUSY";
}  // namespace err

// The RESP error prefix for a non-ok status code.
std::string_view error_code_for(StatusCode code);

// The longest WAIT a request may name (a resource's queue max_wait is at most this too).
inline constexpr int64_t kMaxWaitMs = 3'600'000;

// SL.CHECK / SL.PEEK / SL.ACQUIRE: "resource subject [TIER t] [KEY k] [COST n] [TTL ms]
// [WAIT ms]" (TTL only for SL.ACQUIRE, WAIT not for SL.PEEK). `argv` includes the command name.
// The request's views point into argv; `wait_ms` is -1 without WAIT. On failure returns false
// and sets `error` to a static sentence (prefix WRONGARGS).
bool parse_decision_args(Command command, std::span<const std::string_view> argv,
                         DecisionRequest& request, std::string_view& error, int64_t& wait_ms);
bool parse_decision_args(Command command, std::span<const std::string_view> argv,
                         DecisionRequest& request, std::string_view& error);

// How a request with WAIT ended (docs/protocol.md, "Waiting for capacity").
enum class WaitOutcome : uint8_t {
  kNone,         // it did not wait: decided at once (allowed, or WAIT 0)
  kAdmitted,     // admitted after waiting
  kDeadline,     // still denied when its WAIT ran out
  kQueueFull,    // denied at once: the resource's queue holds max_waiters
  kOverMaxWait,  // denied at once: WAIT is longer than the resource's max_wait
  kNotWaitable,  // denied at once: waiting cannot help (retry_after -1, unknown resource, or
                 // a rate limit that admits again only after the WAIT)
  kClosed,       // its connection closed while it waited (never written)
};
std::string_view wait_outcome_name(WaitOutcome outcome);

// The two fields a reply to a request with WAIT adds at its end.
struct WaitReply {
  int64_t waited_ms = 0;
  WaitOutcome outcome = WaitOutcome::kNone;
};

// SL.RELEASE lease [ACTUAL n] [ACTUAL unit n ...]. Named units' views point into argv.
bool parse_release_args(std::span<const std::string_view> argv, LeaseToken& lease,
                        std::optional<int64_t>& actual, NamedCosts& named, std::string_view& error);
// SL.CHARGE lease n | SL.CHARGE lease COST n | SL.CHARGE lease COST unit n [COST unit n ...].
// `cost` is the bare amount (0 when only units are charged).
bool parse_charge_args(std::span<const std::string_view> argv, LeaseToken& lease, int64_t& cost,
                       NamedCosts& named, std::string_view& error);

DecisionKind decision_kind(Command command);

// One enforced limit's answer as a decision reply lists it.
struct ReplyLimit {
  std::string_view name;
  int64_t limit = 0;
  int64_t remaining = 0;
  int64_t reset_after_ms = 0;
  int64_t window_ms = 0;
};

// What a decision reply carries beyond the Decision: the tier that was applied (empty when
// none was resolved), and every enforced limit's answer (empty unless the limits decided).
struct DecisionDetail {
  std::string_view tier;
  std::span<const ReplyLimit> limits;
  const WaitReply* wait = nullptr;  // the request had WAIT
};

// The reply of a finished decision: the six fields (eight for SL.ACQUIRE), then the tier, the
// deciding limit's window and the limits' answers; or an error when the request was invalid.
void write_decision_reply(resp::Writer& w, Command command, const Decision& d,
                          const DecisionDetail& detail);
// The same for a finished call: its tier and its non-shadow limits' answers.
void write_decision_reply(resp::Writer& w, Command command, const DecisionCall& call,
                          const WaitReply* wait = nullptr);
// The reply of SL.RELEASE: :1, or NOLEASE / WRONGARGS / STORAGE.
void write_release_reply(resp::Writer& w, const Decision& d);

// ASCII case-insensitive equality (command names and option keywords).
bool iequals(std::string_view a, std::string_view b);
bool parse_int64(std::string_view s, int64_t& v);

}  // namespace sluice::server
