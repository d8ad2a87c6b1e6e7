// sluicectl: sluiced from the shell. Every subcommand is one RESP command on the decision or
// admin socket (docs/protocol.md). Exit codes are meant for scripts:
//   0 allowed / ok, 1 denied (or nothing to release), 2 usage, 3 unreachable or error.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "client.h"
#include "sluice/resp.h"

namespace {

using sluice::Client;
using sluice::resp::Value;

constexpr int kOk = 0, kDenied = 1, kUsage = 2, kError = 3;

struct Globals {
  std::string socket = "./run/sluice.sock";
  std::string admin_socket = "./run/admin.sock";
  int timeout_ms = 10000;
};

// Sends one command; prints why and returns false when there is no usable reply.
bool run(const Globals& g, bool admin, const std::vector<std::string>& args, Value& reply) {
  Client c;
  c.set_timeout(std::chrono::milliseconds(g.timeout_ms));
  const std::string& path = admin ? g.admin_socket : g.socket;
  if (!c.connect(path)) {
    std::cerr << "sluicectl: " << c.error() << " (is sluiced running? see --"
              << (admin ? "admin-socket" : "socket") << ")\n";
    return false;
  }
  if (!c.call(args, reply)) {
    std::cerr << "sluicectl: " << c.error() << "\n";
    return false;
  }
  return true;
}

// Prints an error reply with one problem per line; returns the exit code for it.
// `source` replaces the "<admin>" place holder of policy messages with the file's name.
int report_error(const Value& v, const std::string& source = "") {
  std::string text = v.str;
  if (!source.empty()) {
    for (size_t at = 0; (at = text.find("<admin>", at)) != std::string::npos;) {
      text.replace(at, 7, source);
      at += source.size();
    }
  }
  // Policy problems come joined with "; " (RESP errors are one line).
  for (size_t at = 0; (at = text.find("; ", at)) != std::string::npos;) text.replace(at, 2, "\n  ");
  std::cerr << "error: " << text << "\n";
  return kError;
}

bool is_decision(const Value& v) { return v.type == Value::Type::kArray && v.elements.size() >= 6; }

// A decision reply (docs/protocol.md): six fields, the lease and its TTL for SL.ACQUIRE, then
// the tier and the deciding window (a daemon older than those sends neither), then with WAIT
// the time waited and the wait's outcome.
void print_decision(const Value& v, bool acquire) {
  const auto& e = v.elements;
  fmt::print("{} limit={} remaining={} reset_after_ms={} retry_after_ms={} rule={}",
             e[0].integer ? "allowed" : "denied", e[1].integer, e[2].integer, e[3].integer,
             e[4].integer, e[5].str);
  const size_t extra = acquire ? 8 : 6;
  if (e.size() >= extra + 2) {
    if (!e[extra].str.empty()) fmt::print(" tier={}", e[extra].str);
    if (e[extra + 1].integer > 0) fmt::print(" window_ms={}", e[extra + 1].integer);
  }
  if (acquire && e.size() >= 8 && !e[6].str.empty()) {
    fmt::print(" lease={} lease_ttl_ms={}", e[6].str, e[7].integer);
  }
  // With WAIT: the time waited and how the wait ended, last.
  if (e.size() == extra + 5) {
    fmt::print(" waited_ms={}", e[extra + 3].integer);
    if (!e[extra + 4].str.empty()) fmt::print(" wait={}", e[extra + 4].str);
  }
  fmt::print("\n");
}

// "--cost 5" and "--cost output_tokens=512" as the protocol's KEYWORD [unit] n.
void append_costs(std::vector<std::string>& args, const std::string& keyword,
                  const std::vector<std::string>& costs) {
  for (const std::string& c : costs) {
    const size_t eq = c.find('=');
    args.push_back(keyword);
    if (eq == std::string::npos) {
      args.push_back(c);
    } else {
      args.push_back(c.substr(0, eq));
      args.push_back(c.substr(eq + 1));
    }
  }
}

std::string read_file_or_stdin(const std::string& path, bool& ok) {
  std::stringstream s;
  if (path == "-") {
    s << std::cin.rdbuf();
    ok = true;
    return s.str();
  }
  std::ifstream in(path, std::ios::binary);
  ok = static_cast<bool>(in);
  s << in.rdbuf();
  return s.str();
}

std::string pad(const std::string& s, size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

// Rows of cells in aligned columns; the first row is the header.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) widths[i] = std::max(widths[i], r[i].size());
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) line += pad(r[i], widths[i] + 2);
    fmt::print("{}\n", line);
  }
}

// SL.POLICY SIMULATE's comparison as tables.
int print_simulation(const std::string& json_text, bool raw) {
  if (raw) {
    std::cout << json_text << "\n";
    return kOk;
  }
  const nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, false);
  if (doc.is_discarded()) {
    std::cerr << "error: SL.POLICY SIMULATE did not return JSON\n";
    return kError;
  }
  const auto& period = doc["period"];
  const double seconds =
      static_cast<double>(period.value("to_ms", int64_t{0}) - period.value("from_ms", int64_t{0})) /
      1000.0;
  fmt::print("{} recorded requests over {:.1f} s, replayed from empty counters\n",
             doc.value("requests", 0ull), seconds);
  fmt::print("denied now {}, with the draft {}: {} newly denied ({} subjects), {} newly allowed\n",
             doc.value("denied_now", 0ull), doc.value("denied_draft", 0ull),
             doc.value("newly_denied", 0ull), doc.value("subjects_newly_denied", 0ull),
             doc.value("newly_allowed", 0ull));
  std::vector<std::vector<std::string>> rows = {{"RESOURCE", "TIER", "RULE", "REQUESTS",
                                                 "DENIED_NOW", "DENIED_DRAFT", "NEWLY_DENIED",
                                                 "NEWLY_ALLOWED"}};
  for (const auto& r : doc.value("breakdown", nlohmann::json::array())) {
    rows.push_back({r.value("resource", ""), r.value("tier", ""), r.value("rule", ""),
                    std::to_string(r.value("requests", 0ull)),
                    std::to_string(r.value("denied_now", 0ull)),
                    std::to_string(r.value("denied_draft", 0ull)),
                    std::to_string(r.value("newly_denied", 0ull)),
                    std::to_string(r.value("newly_allowed", 0ull))});
  }
  fmt::print("\n");
  print_table(rows);
  const auto top = doc.value("top_newly_denied", nlohmann::json::array());
  if (!top.empty()) {
    fmt::print("\ntop newly denied subjects:\n");
    for (const auto& t : top) {
      fmt::print("  {:>8}  {} {}\n", t.value("newly_denied", 0ull), t.value("resource", ""),
                 t.value("subject", ""));
    }
  }
  return kOk;
}

int print_stats(const std::string& json_text, bool raw) {
  if (raw) {
    std::cout << json_text << "\n";
    return kOk;
  }
  const nlohmann::json doc = nlohmann::json::parse(json_text, nullptr, false);
  if (doc.is_discarded()) {
    std::cerr << "error: SL.STATS did not return JSON\n";
    return kError;
  }
  if (doc.contains("server")) {
    const auto& s = doc["server"];
    fmt::print("sluiced {}  policy v{}  storage {}  uptime {}s  connections {}  threads {}\n\n",
               s.value("version", "?"), s.value("policy_version", 0), s.value("storage", "?"),
               s.value("uptime_s", 0), s.value("connections", 0), s.value("threads", 0));
  }
  const int window = doc.value("window_seconds", 0);
  std::vector<std::vector<std::string>> rows = {{"RESOURCE", "TIER", "RULE", "ALLOWED", "DENIED",
                                                 "SHADOW", "STORAGE_ERR",
                                                 fmt::format("DENIED/{}s", window)}};
  for (const auto& s : doc.value("series", nlohmann::json::array())) {
    const auto& t = s["totals"];
    const uint64_t total = t.value("allowed", 0ull) + t.value("denied", 0ull) +
                           t.value("shadow_denied", 0ull) + t.value("storage_errors", 0ull);
    if (total == 0) continue;
    uint64_t recent = 0;
    if (s.contains("per_second") && s["per_second"].contains("denied")) {
      for (const auto& n : s["per_second"]["denied"]) recent += n.get<uint64_t>();
    }
    rows.push_back({s.value("resource", ""), s.value("tier", ""), s.value("rule", ""),
                    std::to_string(t.value("allowed", 0ull)),
                    std::to_string(t.value("denied", 0ull)),
                    std::to_string(t.value("shadow_denied", 0ull)),
                    std::to_string(t.value("storage_errors", 0ull)), std::to_string(recent)});
  }
  print_table(rows);
  if (rows.size() == 1) fmt::print("(no decisions yet)\n");
  const auto top = doc.value("top_blocked", nlohmann::json::array());
  if (!top.empty()) {
    fmt::print("\ntop blocked subjects:\n");
    for (const auto& t : top) {
      fmt::print("  {:>8}  {} {}\n", t.value("count", 0ull), t.value("resource", ""),
                 t.value("subject", ""));
    }
  }
  // WAIT queues (docs/protocol.md, "SL.STATS"): resources a request has waited for.
  const auto queues = doc.value("queues", nlohmann::json::object());
  if (!queues.empty()) {
    std::vector<std::vector<std::string>> qrows = {{"QUEUE", "WAITING", "ADMITTED", "EXPIRED",
                                                    "REJECTED", "WAIT_P50_MS", "WAIT_P99_MS",
                                                    "WAIT_MAX_MS"}};
    auto ms = [](int64_t v) { return v < 0 ? std::string("-") : "<=" + std::to_string(v); };
    for (const auto& [name, q] : queues.items()) {
      qrows.push_back(
          {name, std::to_string(q.value("waiting", 0ull)),
           std::to_string(q.value("admitted", 0ull)), std::to_string(q.value("expired", 0ull)),
           std::to_string(q.value("rejected", 0ull)), ms(q.value("wait_ms_p50", -1ll)),
           ms(q.value("wait_ms_p99", -1ll)), std::to_string(q.value("wait_ms_max", 0ll))});
    }
    fmt::print("\n");
    print_table(qrows);
  }
  if (doc.contains("latency")) {
    const auto& l = doc["latency"];
    fmt::print("\ndecision latency: {} decisions, p50 <= {} ns, p99 <= {} ns\n",
               l.value("count", 0ull), l.value("p50_ns", 0ull), l.value("p99_ns", 0ull));
  }
  return kOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sluicectl — talk to sluiced (exit codes: 0 allowed/ok, 1 denied, 2 usage, "
      "3 unreachable or error)"};
  app.set_version_flag("--version", SLUICE_VERSION);
  app.require_subcommand(1);
  Globals g;
  app.add_option("--socket", g.socket, "decision socket")->capture_default_str();
  app.add_option("--admin-socket", g.admin_socket, "admin socket")->capture_default_str();
  app.add_option("--timeout-ms", g.timeout_ms, "give up waiting after this long")
      ->capture_default_str();

  struct DecisionOpts {
    std::string resource, subject, tier, key;
    std::vector<std::string> costs;
    int64_t ttl = 0, wait = -1;
  } d;
  auto add_decision = [&](const std::string& name, const std::string& help, bool ttl) {
    CLI::App* sub = app.add_subcommand(name, help);
    sub->add_option("resource", d.resource, "resource (model or endpoint)")->required();
    sub->add_option("subject", d.subject, "who is asking (user, API key, IP)")->required();
    sub->add_option("--tier", d.tier, "explicit tier");
    sub->add_option("--key", d.key, "API key used to find the tier");
    sub->add_option("--cost", d.costs,
                    "N (units this request consumes, default 1) or UNIT=N (a named cost such as "
                    "output_tokens=512); repeatable");
    if (ttl) sub->add_option("--ttl", d.ttl, "lease TTL in ms (default: the policy's)");
    return sub;
  };
  auto add_wait = [&](CLI::App* sub) {
    sub->add_option("--wait", d.wait,
                    "ms to wait for capacity instead of being denied (WAIT; adds to --timeout-ms)");
  };
  CLI::App* check = add_decision("check", "decide and consume (SL.CHECK)", false);
  CLI::App* peek = add_decision("peek", "what check would answer, consuming nothing", false);
  CLI::App* acquire = add_decision("acquire", "decide and hold a lease (SL.ACQUIRE)", true);
  add_wait(check);
  add_wait(acquire);

  std::string lease;
  std::vector<std::string> actuals, charges;
  CLI::App* release = app.add_subcommand("release", "release a lease (SL.RELEASE)");
  release->add_option("lease", lease, "lease token printed by acquire")->required();
  release->add_option("--actual", actuals,
                      "N or UNIT=N: the real cost, settled against the estimate; repeatable");
  CLI::App* charge =
      app.add_subcommand("charge", "charge a lease for units used while streaming (SL.CHARGE)");
  charge->add_option("lease", lease, "lease token printed by acquire")->required();
  charge->add_option("cost", charges, "N or UNIT=N (output_tokens=40); repeatable")->required();

  CLI::App* policy = app.add_subcommand("policy", "show, check or change the policy");
  policy->require_subcommand(1);
  std::string policy_out;
  CLI::App* pget = policy->add_subcommand("get", "print the running policy (YAML)");
  pget->add_option("-o,--output", policy_out, "write it to a file instead");
  std::string policy_file;
  CLI::App* pvalidate = policy->add_subcommand("validate", "check a policy file without applying");
  pvalidate->add_option("file", policy_file, "policy file, - for stdin")->required();
  int64_t expect = -1;
  CLI::App* papply = policy->add_subcommand("apply", "validate, apply and save a policy file");
  papply->add_option("file", policy_file, "policy file, - for stdin")->required();
  papply->add_option("--expect", expect, "refuse unless the running version is this one");
  CLI::App* psimulate = policy->add_subcommand(
      "simulate", "what a policy file would have decided on the recorded traffic");
  psimulate->add_option("file", policy_file, "policy file, - for stdin")->required();
  int64_t simulate_seconds = 0;
  psimulate
      ->add_option("--seconds", simulate_seconds,
                   "replay only the last N seconds (default: everything recorded)")
      ->check(CLI::PositiveNumber);
  bool simulate_json = false;
  psimulate->add_flag("--json", simulate_json, "print the reply's JSON as is");
  CLI::App* preload = policy->add_subcommand("reload", "re-read sluiced's policy file");

  int seconds = 60;
  bool raw_json = false;
  CLI::App* stats = app.add_subcommand("stats", "decision statistics as a table");
  stats->add_option("--seconds", seconds, "window of per-second counts (1..900)")
      ->capture_default_str();
  stats->add_flag("--json", raw_json, "print SL.STATS's JSON as is");

  std::string warm_resource, warm_action;
  CLI::App* warmup = app.add_subcommand("warmup", "warm-up of a resource: start, ready, status");
  warmup->add_option("resource", warm_resource)->required();
  warmup->add_option("action", warm_action)
      ->required()
      ->check(CLI::IsMember({"start", "ready", "status"}, CLI::ignore_case));

  CLI::App* inspect = app.add_subcommand("inspect", "every limit's state for a subject");
  inspect->add_option("resource", d.resource)->required();
  inspect->add_option("subject", d.subject)->required();
  inspect->add_option("--tier", d.tier, "explicit tier");
  inspect->add_option("--key", d.key, "API key used to find the tier");

  CLI::App* reset = app.add_subcommand("reset", "forget a subject's counters for a resource");
  reset->add_option("resource", d.resource)->required();
  reset->add_option("subject", d.subject)->required();

  int audit_count = 20;
  CLI::App* audit = app.add_subcommand("audit", "recent admin changes (JSON lines)");
  audit->add_option("-n,--count", audit_count, "how many")->capture_default_str();

  CLI::App* info = app.add_subcommand("info", "daemon information (SL.INFO)");
  CLI::App* ping = app.add_subcommand("ping", "is sluiced answering?");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kOk : kUsage;
  }

  Value v;
  auto decision_args = [&](const std::string& command) {
    std::vector<std::string> args = {command, d.resource, d.subject};
    if (!d.tier.empty()) args.insert(args.end(), {"TIER", d.tier});
    if (!d.key.empty()) args.insert(args.end(), {"KEY", d.key});
    append_costs(args, "COST", d.costs);
    if (d.ttl > 0) args.insert(args.end(), {"TTL", std::to_string(d.ttl)});
    if (d.wait >= 0) args.insert(args.end(), {"WAIT", std::to_string(d.wait)});
    return args;
  };

  if (check->parsed() || peek->parsed() || acquire->parsed()) {
    const std::string cmd = check->parsed()  ? "SL.CHECK"
                            : peek->parsed() ? "SL.PEEK"
                                             : "SL.ACQUIRE";
    // The daemon may hold a request with WAIT that long before it answers.
    if (d.wait > 0) g.timeout_ms += static_cast<int>(std::min<int64_t>(d.wait, 3'600'000));
    if (!run(g, false, decision_args(cmd), v)) return kError;
    if (v.is_error()) return report_error(v);
    if (!is_decision(v)) return report_error(Value{Value::Type::kError, "unexpected reply"});
    print_decision(v, acquire->parsed());
    return v.elements[0].integer ? kOk : kDenied;
  }
  if (charge->parsed()) {
    std::vector<std::string> args = {"SL.CHARGE", lease};
    append_costs(args, "COST", charges);
    if (!run(g, false, args, v)) return kError;
    if (v.error_code() == "NOLEASE") {
      std::cerr << "not charged: " << v.str << "\n";
      return kDenied;
    }
    if (v.is_error()) return report_error(v);
    if (!is_decision(v)) return report_error(Value{Value::Type::kError, "unexpected reply"});
    print_decision(v, false);
    return v.elements[0].integer ? kOk : kDenied;
  }
  if (release->parsed()) {
    std::vector<std::string> args = {"SL.RELEASE", lease};
    append_costs(args, "ACTUAL", actuals);
    if (!run(g, false, args, v)) return kError;
    if (v.error_code() == "NOLEASE") {
      std::cerr << "not released: " << v.str << "\n";
      return kDenied;
    }
    if (v.is_error()) return report_error(v);
    fmt::print("released\n");
    return kOk;
  }
  if (pget->parsed()) {
    if (!run(g, true, {"SL.POLICY", "GET"}, v)) return kError;
    if (v.is_error()) return report_error(v);
    if (v.elements.size() != 2) return report_error(Value{Value::Type::kError, "unexpected reply"});
    std::cerr << "# policy version " << v.elements[0].integer << "\n";
    if (!policy_out.empty()) {
      std::ofstream(policy_out, std::ios::binary) << v.elements[1].str;
    } else {
      std::cout << v.elements[1].str;
    }
    return kOk;
  }
  if (pvalidate->parsed() || papply->parsed()) {
    bool ok = false;
    const std::string text = read_file_or_stdin(policy_file, ok);
    if (!ok) {
      std::cerr << "sluicectl: cannot read " << policy_file << "\n";
      return kUsage;
    }
    std::vector<std::string> args = {"SL.POLICY", pvalidate->parsed() ? "VALIDATE" : "APPLY", text};
    if (papply->parsed() && expect >= 0)
      args.insert(args.end(), {"EXPECT", std::to_string(expect)});
    if (!run(g, true, args, v)) return kError;
    if (v.is_error()) return report_error(v, policy_file == "-" ? "<stdin>" : policy_file);
    if (pvalidate->parsed()) {
      fmt::print("{}: valid\n", policy_file);
    } else {
      fmt::print("applied: policy version {}\n", v.integer);
    }
    return kOk;
  }
  if (psimulate->parsed()) {
    bool ok = false;
    const std::string text = read_file_or_stdin(policy_file, ok);
    if (!ok) {
      std::cerr << "sluicectl: cannot read " << policy_file << "\n";
      return kUsage;
    }
    std::vector<std::string> args = {"SL.POLICY", "SIMULATE", text};
    if (simulate_seconds > 0)
      args.insert(args.end(), {"SECONDS", std::to_string(simulate_seconds)});
    if (!run(g, true, args, v)) return kError;
    if (v.is_error()) return report_error(v, policy_file == "-" ? "<stdin>" : policy_file);
    return print_simulation(v.str, simulate_json);
  }
  if (preload->parsed()) {
    if (!run(g, true, {"SL.POLICY", "RELOAD"}, v)) return kError;
    if (v.is_error()) return report_error(v);
    fmt::print("policy version {}\n", v.integer);
    return kOk;
  }
  if (stats->parsed()) {
    if (!run(g, true, {"SL.STATS", std::to_string(seconds)}, v)) return kError;
    if (v.is_error()) return report_error(v);
    return print_stats(v.str, raw_json);
  }
  if (warmup->parsed()) {
    std::string action = warm_action;
    for (char& c : action) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (!run(g, true, {"SL.WARMUP", warm_resource, action}, v)) return kError;
    if (v.is_error()) return report_error(v);
    if (v.type == Value::Type::kArray) {
      for (size_t i = 0; i + 1 < v.elements.size(); i += 2) {
        const Value& val = v.elements[i + 1];
        fmt::print("{}: {}\n", v.elements[i].str,
                   val.type == Value::Type::kInteger ? std::to_string(val.integer) : val.str);
      }
    } else {
      fmt::print("{}\n", v.str);
    }
    return kOk;
  }
  if (inspect->parsed()) {
    std::vector<std::string> args = decision_args("SL.INSPECT");
    if (!run(g, true, args, v)) return kError;
    if (v.is_error()) return report_error(v);
    if (v.elements.size() != 2 || !is_decision(v.elements[0])) {
      return report_error(Value{Value::Type::kError, "unexpected reply"});
    }
    fmt::print("decision: ");
    print_decision(v.elements[0], false);
    fmt::print("{:<24}{:<8}{:<9}{:>12}{:>12}{:>16}{:>16}\n", "RULE", "SHADOW", "ALLOWED", "LIMIT",
               "REMAINING", "RESET_AFTER_MS", "RETRY_AFTER_MS");
    for (const Value& l : v.elements[1].elements) {
      if (l.elements.size() != 7) continue;
      fmt::print("{:<24}{:<8}{:<9}{:>12}{:>12}{:>16}{:>16}\n", l.elements[0].str,
                 l.elements[1].integer ? "yes" : "no", l.elements[2].integer ? "yes" : "no",
                 l.elements[3].integer, l.elements[4].integer, l.elements[5].integer,
                 l.elements[6].integer);
    }
    return kOk;
  }
  if (reset->parsed()) {
    if (!run(g, true, {"SL.RESET", d.resource, d.subject}, v)) return kError;
    if (v.is_error()) return report_error(v);
    fmt::print("reset\n");
    return kOk;
  }
  if (audit->parsed()) {
    if (!run(g, true, {"SL.AUDIT", std::to_string(audit_count)}, v)) return kError;
    if (v.is_error()) return report_error(v);
    for (const Value& e : v.elements) fmt::print("{}\n", e.str);
    return kOk;
  }
  if (info->parsed()) {
    if (!run(g, false, {"SL.INFO"}, v)) return kError;
    if (v.is_error()) return report_error(v);
    std::string text = v.str;
    text.erase(std::remove(text.begin(), text.end(), '\r'), text.end());
    fmt::print("{}", text);
    return kOk;
  }
  if (ping->parsed()) {
    if (!run(g, false, {"PING"}, v)) return kError;
    fmt::print("{}\n", v.str);
    return v.is_error() ? kError : kOk;
  }
  return kUsage;
}
