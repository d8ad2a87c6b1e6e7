// The server's command layer without sockets: lookup, argument parsing of the decision
// commands, and the exact reply bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "commands.h"

namespace sluice::server {
namespace {

using Argv = std::vector<std::string_view>;

// Names match case-insensitively; admin commands are flagged as such.
TEST(Commands, LookupIsCaseInsensitive) {
  EXPECT_EQ(lookup_command("SL.CHECK"), Command::kCheck);
  EXPECT_EQ(lookup_command("sl.check"), Command::kCheck);
  EXPECT_EQ(lookup_command("Sl.AcQuIrE"), Command::kAcquire);
  EXPECT_EQ(lookup_command("ping"), Command::kPing);
  EXPECT_EQ(lookup_command("SL.CHECKX"), Command::kUnknown);
  EXPECT_EQ(lookup_command(""), Command::kUnknown);
  ASSERT_NE(find_command("sl.policy"), nullptr);
  EXPECT_TRUE(find_command("sl.policy")->admin_only);
  EXPECT_TRUE(find_command("SL.RESET")->admin_only);
  EXPECT_FALSE(find_command("SL.CHECK")->admin_only);
  EXPECT_FALSE(find_command("sl.info")->admin_only);
  EXPECT_EQ(find_command("FLUSHALL"), nullptr);
}

// The command table is consistent: one row per command, upper-case names, admin commands and
// only they run in the Admin, an arity only with the sentence that explains it.
TEST(Commands, TableIsConsistent) {
  std::vector<Command> seen;
  for (const CommandSpec& c : command_table()) {
    SCOPED_TRACE(std::string(c.name));
    for (const char ch : c.name) EXPECT_FALSE(ch >= 'a' && ch <= 'z');
    EXPECT_EQ(std::count(seen.begin(), seen.end(), c.command), 0);
    seen.push_back(c.command);
    EXPECT_EQ(find_command(c.name), &c);
    EXPECT_EQ(c.admin_only, c.handler == Handler::kAdmin);
    EXPECT_EQ(c.command == Command::kCheck || c.command == Command::kPeek ||
                  c.command == Command::kAcquire,
              c.handler == Handler::kDecision);
    if (c.min_argc != 0) {
      EXPECT_LE(c.min_argc, c.max_argc);
      EXPECT_FALSE(c.usage.empty());
    }
  }
  EXPECT_EQ(seen.size(), command_table().size());
}

// Positional arguments and every option, in any case and order.
TEST(Commands, ParsesDecisionOptions) {
  DecisionRequest r;
  std::string_view error;
  Argv argv{"SL.ACQUIRE", "generate", "alice", "cost", "250",  "TIER",
            "premium",    "Key",      "k-1",   "ttl",  "30000"};
  ASSERT_TRUE(parse_decision_args(Command::kAcquire, argv, r, error)) << error;
  EXPECT_EQ(r.resource, "generate");
  EXPECT_EQ(r.subject, "alice");
  EXPECT_EQ(r.tier, "premium");
  EXPECT_EQ(r.api_key, "k-1");
  EXPECT_EQ(r.cost, 250);
  EXPECT_EQ(r.lease_ttl_ms, 30000);

  ASSERT_TRUE(parse_decision_args(Command::kCheck, Argv{"SL.CHECK", "predict", "bob"}, r, error));
  EXPECT_EQ(r.cost, 1);
  EXPECT_TRUE(r.tier.empty());
  EXPECT_TRUE(r.api_key.empty());
}

struct BadArgs {
  Command command;
  Argv argv;
  const char* error_part;
};

class CommandsBadArgs : public ::testing::TestWithParam<BadArgs> {};

// Wrong counts, unknown options, bad numbers and TTL outside SL.ACQUIRE are refused.
TEST_P(CommandsBadArgs, AreRefused) {
  DecisionRequest r;
  std::string_view error;
  EXPECT_FALSE(parse_decision_args(GetParam().command, GetParam().argv, r, error));
  EXPECT_NE(error.find(GetParam().error_part), std::string_view::npos) << error;
}

INSTANTIATE_TEST_SUITE_P(
    Args, CommandsBadArgs,
    ::testing::Values(BadArgs{Command::kCheck, {"SL.CHECK"}, "usage: SL.CHECK"},
                      BadArgs{Command::kCheck, {"SL.CHECK", "predict"}, "usage"},
                      BadArgs{Command::kCheck, {"SL.CHECK", "p", "s", "TIER"}, "usage"},
                      BadArgs{Command::kCheck, {"SL.CHECK", "p", "s", "COLOR", "red"}, "usage"},
                      BadArgs{Command::kCheck, {"SL.CHECK", "p", "s", "COST", "0"}, "COST"},
                      BadArgs{Command::kCheck, {"SL.CHECK", "p", "s", "COST", "1x"}, "COST"},
                      BadArgs{Command::kCheck, {"SL.CHECK", "p", "s", "TTL", "5"}, "usage"},
                      BadArgs{Command::kPeek, {"SL.PEEK", "p"}, "usage: SL.PEEK"},
                      BadArgs{Command::kAcquire, {"SL.ACQUIRE", "p", "s", "TTL", "-1"}, "TTL"},
                      // Past the wire bound, named in the sentence.
                      BadArgs{Command::kCheck,
                              {"SL.CHECK", "p", "s", "COST", "1000000000001"},
                              "from 1 to 1000000000000"},
                      BadArgs{Command::kAcquire,
                              {"SL.ACQUIRE", "p", "s", "COST", "9223372036854775807"},
                              "from 1 to 1000000000000"}));

// COST is accepted up to the bound itself.
TEST(Commands, CostUpToTheBound) {
  DecisionRequest r;
  std::string_view error;
  ASSERT_TRUE(parse_decision_args(Command::kCheck,
                                  Argv{"SL.CHECK", "p", "s", "COST", "1000000000000"}, r, error));
  EXPECT_EQ(r.cost, kMaxCost);
}

// SL.RELEASE takes the 48-hex-digit token and an optional ACTUAL from 0 to the bound.
TEST(Commands, ParsesRelease) {
  const std::string token =
      "ffffffffffffffff"
      "0123456789abcdef"
      "FEDCBA9876543210";
  const std::string other = std::string(47, '0') + "1";
  LeaseToken lease;
  std::optional<int64_t> actual;
  NamedCosts named;
  std::string_view error;
  ASSERT_TRUE(parse_release_args(Argv{"SL.RELEASE", token}, lease, actual, named, error)) << error;
  EXPECT_EQ(lease.id, 0xffffffffffffffffull);
  EXPECT_EQ(lease.secret[0], 0x0123456789abcdefull);
  EXPECT_EQ(lease.secret[1], 0xfedcba9876543210ull);
  EXPECT_EQ(lease.to_string(), "ffffffffffffffff0123456789abcdeffedcba9876543210");
  EXPECT_FALSE(actual.has_value());
  ASSERT_TRUE(
      parse_release_args(Argv{"SL.RELEASE", token, "actual", "0"}, lease, actual, named, error));
  EXPECT_EQ(actual, 0);
  ASSERT_TRUE(parse_release_args(Argv{"SL.RELEASE", token, "ACTUAL", "1000000000000"}, lease,
                                 actual, named, error));
  EXPECT_EQ(actual, kMaxCost);
  EXPECT_FALSE(parse_release_args(Argv{"SL.RELEASE"}, lease, actual, named, error));
  EXPECT_FALSE(
      parse_release_args(Argv{"SL.RELEASE", "42"}, lease, actual, named, error));  // old ids
  EXPECT_FALSE(parse_release_args(Argv{"SL.RELEASE", other}, lease, actual, named, error));  // id 0
  EXPECT_FALSE(parse_release_args(Argv{"SL.RELEASE", token + "0"}, lease, actual, named, error));
  EXPECT_FALSE(parse_release_args(Argv{"SL.RELEASE", std::string(47, 'a') + "g"}, lease, actual,
                                  named, error));
  EXPECT_FALSE(
      parse_release_args(Argv{"SL.RELEASE", token, "ACTUAL", "-1"}, lease, actual, named, error));
  EXPECT_FALSE(parse_release_args(Argv{"SL.RELEASE", token, "ACTUAL", "1000000000001"}, lease,
                                  actual, named, error));
  EXPECT_NE(error.find("from 0 to 1000000000000"), std::string_view::npos) << error;
  EXPECT_FALSE(
      parse_release_args(Argv{"SL.RELEASE", token, "COST", "1"}, lease, actual, named, error));
}

// Named costs: COST <unit> <n>, repeatable, told from COST <n> by the word after COST.
TEST(Commands, ParsesNamedCosts) {
  DecisionRequest r;
  std::string_view error;
  ASSERT_TRUE(parse_decision_args(
      Command::kCheck,
      Argv{"SL.CHECK", "chat", "a", "COST", "input_tokens", "120", "COST", "output_tokens", "0"}, r,
      error))
      << error;
  ASSERT_EQ(r.named.count, 2);
  EXPECT_EQ(r.named.items[0].unit, "input_tokens");
  EXPECT_EQ(r.named.items[0].amount, 120);
  EXPECT_EQ(r.named.items[1].unit, "output_tokens");
  EXPECT_EQ(r.named.items[1].amount, 0);
  EXPECT_EQ(r.cost, 0);  // no bare COST: limits of other units take nothing
  ASSERT_TRUE(parse_decision_args(
      Command::kAcquire,
      Argv{"SL.ACQUIRE", "chat", "a", "COST", "5", "COST", "items", "3", "TTL", "100"}, r, error))
      << error;
  EXPECT_EQ(r.cost, 5);
  EXPECT_EQ(r.named.count, 1);
  EXPECT_EQ(r.lease_ttl_ms, 100);

  const std::pair<Argv, std::string_view> bad[] = {
      {{"SL.CHECK", "c", "a", "COST", "Input", "1"}, "unit"},
      {{"SL.CHECK", "c", "a", "COST", "input"}, "COST unit n"},
      {{"SL.CHECK", "c", "a", "COST", "input", "-1"}, "from 0 to"},
      {{"SL.CHECK", "c", "a", "COST", "x", "1", "COST", "x", "2"}, "twice"},
      {{"SL.CHECK", "c",    "a",    "COST", "a",    "1",    "COST", "b",    "1",    "COST",
        "c",        "1",    "COST", "d",    "1",    "COST", "e",    "1",    "COST", "f",
        "1",        "COST", "g",    "1",    "COST", "h",    "1",    "COST", "i",    "1"},
       "at most 8"},
  };
  for (const auto& [argv, part] : bad) {
    EXPECT_FALSE(parse_decision_args(Command::kCheck, argv, r, error));
    EXPECT_NE(error.find(part), std::string_view::npos) << error;
  }
}

TEST(Commands, ParsesChargeAndNamedActuals) {
  const std::string t = "00000000000000070123456789abcdef0123456789abcdef";
  LeaseToken lease;
  int64_t cost = -1;
  NamedCosts named;
  std::string_view error;
  ASSERT_TRUE(parse_charge_args(Argv{"SL.CHARGE", t, "300"}, lease, cost, named, error)) << error;
  EXPECT_EQ(lease.id, 7u);
  EXPECT_EQ(cost, 300);
  EXPECT_EQ(named.count, 0);
  ASSERT_TRUE(parse_charge_args(Argv{"SL.CHARGE", t, "COST", "output_tokens", "12", "COST", "2"},
                                lease, cost, named, error))
      << error;
  EXPECT_EQ(cost, 2);
  ASSERT_EQ(named.count, 1);
  EXPECT_EQ(named.items[0].unit, "output_tokens");
  EXPECT_EQ(named.items[0].amount, 12);
  EXPECT_FALSE(parse_charge_args(Argv{"SL.CHARGE", t}, lease, cost, named, error));
  EXPECT_FALSE(parse_charge_args(Argv{"SL.CHARGE", "nope", "1"}, lease, cost, named, error));
  EXPECT_FALSE(parse_charge_args(Argv{"SL.CHARGE", t, "-1"}, lease, cost, named, error));
  EXPECT_FALSE(
      parse_charge_args(Argv{"SL.CHARGE", t, "ACTUAL", "x", "1"}, lease, cost, named, error));

  std::optional<int64_t> actual;
  ASSERT_TRUE(parse_release_args(
      Argv{"SL.RELEASE", t, "ACTUAL", "input_tokens", "90", "ACTUAL", "output_tokens", "310"},
      lease, actual, named, error))
      << error;
  EXPECT_FALSE(actual.has_value());
  ASSERT_EQ(named.count, 2);
  EXPECT_EQ(named.items[1].amount, 310);
  EXPECT_FALSE(parse_release_args(Argv{"SL.RELEASE", t, "ACTUAL", "1", "ACTUAL", "2"}, lease,
                                  actual, named, error));
  EXPECT_NE(error.find("twice"), std::string_view::npos) << error;
}

std::string encode(Command c, const Decision& d, const DecisionDetail& detail = {}) {
  std::string out;
  resp::Writer w(out);
  write_decision_reply(w, c, d, detail);
  return out;
}

// The contract's six fields, in order; SL.ACQUIRE adds the lease and its TTL; then the tier,
// the deciding limit's window and every limit's answer.
TEST(Commands, DecisionReplyShape) {
  Decision d;
  d.allowed = true;
  d.limit = 10;
  d.remaining = 9;
  d.reset_after_ms = 60000;
  d.retry_after_ms = 0;
  d.set_rule("per_minute");
  const std::array<ReplyLimit, 2> limits = {
      {{"per_minute", 10, 9, 60000, 60000}, {"per_day", 1000, 990, 3600000, 86400000}}};
  const DecisionDetail detail{"free", limits};
  const std::string tail =
      "$4\r\nfree\r\n:60000\r\n*2\r\n"
      "*5\r\n$10\r\nper_minute\r\n:10\r\n:9\r\n:60000\r\n:60000\r\n"
      "*5\r\n$7\r\nper_day\r\n:1000\r\n:990\r\n:3600000\r\n:86400000\r\n";
  EXPECT_EQ(encode(Command::kCheck, d, detail),
            "*9\r\n:1\r\n:10\r\n:9\r\n:60000\r\n:0\r\n$10\r\nper_minute\r\n" + tail);
  d.lease = {0x12345, {0xabcdef, 0x1}};
  d.lease_ttl_ms = 60000;
  EXPECT_EQ(encode(Command::kAcquire, d, detail),
            "*11\r\n:1\r\n:10\r\n:9\r\n:60000\r\n:0\r\n$10\r\nper_minute\r\n$48\r\n"
            "0000000000012345"
            "0000000000abcdef"
            "0000000000000001\r\n:60000\r\n" +
                tail);
}

// WAIT: parsed on SL.CHECK and SL.ACQUIRE, from 0 to an hour; -1 when absent.
TEST(Commands, ParsesWait) {
  DecisionRequest r;
  std::string_view error;
  int64_t wait_ms = 0;
  ASSERT_TRUE(parse_decision_args(Command::kCheck, Argv{"SL.CHECK", "p", "s"}, r, error, wait_ms));
  EXPECT_EQ(wait_ms, -1);
  ASSERT_TRUE(parse_decision_args(Command::kAcquire,
                                  Argv{"SL.ACQUIRE", "p", "s", "wait", "5000", "TTL", "9"}, r,
                                  error, wait_ms));
  EXPECT_EQ(wait_ms, 5000);
  EXPECT_EQ(r.lease_ttl_ms, 9);
  ASSERT_TRUE(parse_decision_args(Command::kCheck, Argv{"SL.CHECK", "p", "s", "WAIT", "3600000"}, r,
                                  error, wait_ms));
  EXPECT_EQ(wait_ms, kMaxWaitMs);
  ASSERT_TRUE(parse_decision_args(Command::kCheck, Argv{"SL.CHECK", "p", "s", "WAIT", "0"}, r,
                                  error, wait_ms));
  EXPECT_EQ(wait_ms, 0);
}

struct BadWait {
  Command command;
  Argv argv;
  const char* error;
};

class CommandsBadWait : public ::testing::TestWithParam<BadWait> {};

// Bad WAIT values and WAIT on SL.PEEK are refused with a sentence that says what is accepted.
TEST_P(CommandsBadWait, AreRefused) {
  DecisionRequest r;
  std::string_view error;
  int64_t wait_ms = 0;
  EXPECT_FALSE(parse_decision_args(GetParam().command, GetParam().argv, r, error, wait_ms));
  EXPECT_EQ(error, GetParam().error);
}

constexpr const char* kWaitRange = "WAIT must be a whole number of milliseconds from 0 to 3600000";
INSTANTIATE_TEST_SUITE_P(
    Args, CommandsBadWait,
    ::testing::Values(
        BadWait{Command::kCheck, {"SL.CHECK", "p", "s", "WAIT", "-1"}, kWaitRange},
        BadWait{Command::kCheck, {"SL.CHECK", "p", "s", "WAIT", "abc"}, kWaitRange},
        BadWait{Command::kCheck, {"SL.CHECK", "p", "s", "WAIT", "1.5"}, kWaitRange},
        BadWait{Command::kAcquire, {"SL.ACQUIRE", "p", "s", "WAIT", "3600001"}, kWaitRange},
        BadWait{Command::kCheck,
                {"SL.CHECK", "p", "s", "WAIT"},
                "usage: SL.CHECK resource subject [TIER t] [KEY k] [COST n] [WAIT ms]"},
        BadWait{Command::kPeek,
                {"SL.PEEK", "p", "s", "WAIT", "10"},
                "WAIT applies to SL.CHECK and SL.ACQUIRE only: SL.PEEK takes nothing to wait "
                "for"}));

// A request with WAIT gets two more fields at the end: the time it waited and how it ended.
TEST(Commands, WaitFieldsComeLast) {
  Decision d;
  d.allowed = false;
  d.limit = 1;
  d.retry_after_ms = 250;
  d.set_rule("slots");
  const WaitReply wait{300, WaitOutcome::kDeadline};
  DecisionDetail detail{"free", {}, &wait};
  EXPECT_EQ(encode(Command::kCheck, d, detail),
            "*11\r\n:0\r\n:1\r\n:0\r\n:0\r\n:250\r\n$5\r\nslots\r\n$4\r\nfree\r\n:0\r\n"
            "*0\r\n:300\r\n$8\r\ndeadline\r\n");
  for (auto [outcome, name] :
       {std::pair{WaitOutcome::kNone, ""}, std::pair{WaitOutcome::kAdmitted, "admitted"},
        std::pair{WaitOutcome::kQueueFull, "queue_full"},
        std::pair{WaitOutcome::kOverMaxWait, "over_max_wait"},
        std::pair{WaitOutcome::kNotWaitable, "not_waitable"}}) {
    EXPECT_EQ(wait_outcome_name(outcome), name);
  }
}

// The window is the deciding limit's, not the first limit's.
TEST(Commands, WindowIsTheDecidingLimits) {
  Decision d;
  d.allowed = false;
  d.limit = 1000;
  d.remaining = 0;
  d.reset_after_ms = 5000;
  d.retry_after_ms = 5000;
  d.set_rule("per_day");
  const std::array<ReplyLimit, 2> limits = {
      {{"per_minute", 10, 9, 60000, 60000}, {"per_day", 1000, 0, 5000, 86400000}}};
  const std::string out = encode(Command::kPeek, d, {"premium", limits});
  EXPECT_NE(out.find("$7\r\npremium\r\n:86400000\r\n*2\r\n"), std::string::npos) << out;
}

// A decision no limit made (storage failure, unknown resource, unlimited tier): window 0 and no
// limits, so a client cannot mistake it for a quota.
TEST(Commands, StorageDecisionHasNoLimits) {
  Decision d;
  d.allowed = false;
  d.source = DecisionSource::kStorageFailure;
  d.retry_after_ms = 1000;
  d.set_rule("(storage)");
  EXPECT_EQ(encode(Command::kCheck, d, {"free", {}}),
            "*9\r\n:0\r\n:0\r\n:0\r\n:0\r\n:1000\r\n$9\r\n(storage)\r\n$4\r\nfree\r\n:0\r\n*0\r\n");
}

// A denial carries retry-after; a denied acquire has an empty lease.
TEST(Commands, DeniedReply) {
  Decision d;
  d.allowed = false;
  d.limit = 10;
  d.remaining = 0;
  d.reset_after_ms = 1500;
  d.retry_after_ms = 1500;
  d.set_rule("per_minute");
  EXPECT_EQ(
      encode(Command::kPeek, d),
      "*9\r\n:0\r\n:10\r\n:0\r\n:1500\r\n:1500\r\n$10\r\nper_minute\r\n$0\r\n\r\n:0\r\n*0\r\n");
  EXPECT_EQ(encode(Command::kAcquire, d),
            "*11\r\n:0\r\n:10\r\n:0\r\n:1500\r\n:1500\r\n$10\r\nper_minute\r\n$0\r\n\r\n:0\r\n"
            "$0\r\n\r\n:0\r\n*0\r\n");
}

// An invalid request (unknown tier, ...) is an error reply with the engine's sentence.
TEST(Commands, ErrorDecisionBecomesErrorReply) {
  Decision d;
  d.source = DecisionSource::kError;
  d.error = StatusCode::kInvalid;
  d.error_message = "unknown tier 'gold'";
  EXPECT_EQ(encode(Command::kCheck, d), "-WRONGARGS unknown tier 'gold'\r\n");
}

// SL.RELEASE: :1, NOLEASE for an unknown lease, STORAGE when the plugin failed.
TEST(Commands, ReleaseReplies) {
  auto encode_release = [](const Decision& d) {
    std::string out;
    resp::Writer w(out);
    write_release_reply(w, d);
    return out;
  };
  Decision d;
  d.allowed = true;
  EXPECT_EQ(encode_release(d), ":1\r\n");
  d.allowed = false;
  d.error = StatusCode::kNotFound;
  EXPECT_EQ(encode_release(d), "-NOLEASE unknown or expired lease\r\n");
  d.error = StatusCode::kUnavailable;
  d.error_message = "redis down";
  EXPECT_EQ(encode_release(d), "-STORAGE redis down\r\n");
}

// Status codes map to the documented prefixes.
TEST(Commands, ErrorPrefixes) {
  EXPECT_EQ(error_code_for(StatusCode::kInvalid), "WRONGARGS");
  EXPECT_EQ(error_code_for(StatusCode::kNotFound), "NORESOURCE");
  EXPECT_EQ(error_code_for(StatusCode::kUnavailable), "STORAGE");
  EXPECT_EQ(error_code_for(StatusCode::kTimeout), "STORAGE");
  EXPECT_EQ(error_code_for(StatusCode::kConflict), "CONFLICT");
  EXPECT_EQ(error_code_for(StatusCode::kInternal), "ERR");
}

}  // namespace
}  // namespace sluice::server
