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

// SL.CHECK / SL.PEEK / SL.ACQUIRE: "resource subject [TIER t] [KEY k] [COST n] [TTL ms]"
// (TTL only for SL.ACQUIRE). `argv` includes the command name. The request's views point into
// argv. On failure returns false and sets `error` to a static sentence (prefix WRONGARGS).
bool parse_decision_args(Command command, std::span<const std::string_view> argv,
                         DecisionRequest& request, std::string_view& error);

// SL.RELEASE lease [ACTUAL n].
bool parse_release_args(std::span<const std::string_view> argv, LeaseToken& lease,
                        std::optional<int64_t>& actual, std::string_view& error);

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
};

// The reply of a finished decision: the six fields (eight for SL.ACQUIRE), then the tier, the
// deciding limit's window and the limits' answers; or an error when the request was invalid.
void write_decision_reply(resp::Writer& w, Command command, const Decision& d,
                          const DecisionDetail& detail);
// The same for a finished call: its tier and its non-shadow limits' answers.
void write_decision_reply(resp::Writer& w, Command command, const DecisionCall& call);
// The reply of SL.RELEASE: :1, or NOLEASE / WRONGARGS / STORAGE.
void write_release_reply(resp::Writer& w, const Decision& d);

// ASCII case-insensitive equality (command names and option keywords).
bool iequals(std::string_view a, std::string_view b);
bool parse_int64(std::string_view s, int64_t& v);

}  // namespace sluice::server
