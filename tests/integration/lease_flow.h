// Issue 20 item 3 against real daemons: a lease lives in storage, so that it is charged and
// released after a restart of sluiced, or through another sluiced on the same storage, exactly
// as through the one that granted it. The SQLite and Redis suites run this flow with their own
// `between` and choice of daemon per step.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <initializer_list>
#include <iostream>
#include <string>
#include <string_view>

#include "sluiced_fixture.h"

namespace sluice::testing {

// out_tpm is the brief's 500 output tokens, per hour rather than per minute: a fixed window
// starts at every full hour (docs/algorithms.md), and a minute window could roll over while
// the flow restarts a daemon, which would make the counts below wrong by chance.
inline constexpr const char* kLeasePolicy = R"(version: 1
default_tier: free
unknown_resource: deny
on_storage_failure: fail_closed
lease_ttl: 60s
tiers:
  free: {multiplier: 1}
resources:
  r:
    limits:
      - {name: out_tpm, algorithm: fixed_window, limit: 500, window: 1h, cost: output_tokens}
)";

struct LeaseFlow {
  std::function<Client()> acquire_on, first_charge_on, second_charge_on, release_on, check_on;
  std::function<void()> between;  // after the first charge: a restart, or nothing
  std::string subject = "s";
};

// A reply on one line: integers, strings and errors as they are, a decision's first eight
// elements (allowed, limit, remaining, reset, retry, rule, and SL.ACQUIRE's lease and TTL).
inline std::string one_line(const resp::Value& v) {
  switch (v.type) {
    case resp::Value::Type::kInteger:
      return std::to_string(v.integer);
    case resp::Value::Type::kArray: {
      std::string out = "[";
      for (size_t i = 0; i < v.elements.size() && i < 8; ++i) {
        const auto& e = v.elements[i];
        if (i > 0) out += ", ";
        out +=
            e.type == resp::Value::Type::kInteger ? std::to_string(e.integer) : '"' + e.str + '"';
      }
      return out + (v.elements.size() > 8 ? ", ...]" : "]");
    }
    case resp::Value::Type::kError:
      return "-" + v.str;
    default:
      return v.to_string();
  }
}

// Sends one command, prints it and its reply (the run's log shows the demonstration).
inline resp::Value show(const char* where, Client& c,
                        std::initializer_list<std::string_view> args) {
  const resp::Value v = call(c, args);
  std::string line = std::string("[") + where + "] ";
  for (std::string_view a : args) line.append(a).append(" ");
  std::cout << line << "-> " << one_line(v) << "\n";
  return v;
}

inline void expect_decision(const resp::Value& v, int64_t allowed, int64_t remaining) {
  ASSERT_EQ(v.type, resp::Value::Type::kArray) << v.to_string();
  ASSERT_GE(v.elements.size(), 6u) << v.to_string();
  EXPECT_EQ(v.elements[0].integer, allowed) << v.to_string();
  EXPECT_EQ(v.elements[2].integer, remaining) << v.to_string();
  EXPECT_EQ(v.elements[5].str, "out_tpm") << v.to_string();
}

inline void run_lease_flow(const LeaseFlow& f) {
  const std::string& s = f.subject;
  std::string lease;
  {
    Client c = f.acquire_on();
    const resp::Value a =
        show("acquire", c, {"SL.ACQUIRE", "r", s, "COST", "output_tokens", "100"});
    expect_decision(a, 1, 400);
    ASSERT_GE(a.elements.size(), 8u) << a.to_string();
    lease = a.elements[6].str;
    ASSERT_EQ(lease.size(), 48u) << a.to_string();
  }
  {
    Client c = f.first_charge_on();
    expect_decision(show("charge", c, {"SL.CHARGE", lease, "COST", "output_tokens", "300"}), 1,
                    200);
  }
  if (f.between) f.between();
  {
    Client c = f.second_charge_on();
    // Refused: 300 more do not fit in the 200 left, and nothing is consumed.
    expect_decision(show("charge", c, {"SL.CHARGE", lease, "COST", "output_tokens", "300"}), 0,
                    200);
  }
  {
    Client c = f.release_on();
    const resp::Value r = show("release", c, {"SL.RELEASE", lease});
    ASSERT_EQ(r.type, resp::Value::Type::kInteger) << r.to_string();
    EXPECT_EQ(r.integer, 1);
    // Once only, wherever it is asked.
    const resp::Value again = show("release", c, {"SL.RELEASE", lease});
    EXPECT_EQ(again.error_code(), "NOLEASE") << again.to_string();
  }
  {
    // Settled at its usage, 300: 200 fit, not one more.
    Client c = f.check_on();
    expect_decision(show("check", c, {"SL.CHECK", "r", s, "COST", "output_tokens", "201"}), 0, 200);
    expect_decision(show("check", c, {"SL.CHECK", "r", s, "COST", "output_tokens", "200"}), 1, 0);
    expect_decision(show("check", c, {"SL.CHECK", "r", s, "COST", "output_tokens", "1"}), 0, 0);
  }
}

}  // namespace sluice::testing
