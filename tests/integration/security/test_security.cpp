// The security model (docs/operations.md, "Security model") against a real sluiced: socket
// modes, the admin socket's peer-uid check with a second uid, no admin command on the
// decision socket in any spelling, atomic policy writes under kill -9, an audit entry for
// every change, and client bytes that cannot break the admin's JSON.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "sluice/policy.h"
#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

using namespace std::chrono_literals;
using resp::Value;

constexpr uid_t kNobody = 65534;

constexpr const char* kPolicy = R"(version: 1
default_tier: free
unknown_resource: deny
tiers:
  free: {multiplier: 1}
resources:
  predict:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 2, window: 1m}
  heavy:
    limits:
      - {name: per_day, algorithm: fixed_window, limit: 10, window: 1d}
    warmup: {factor: 0.5, start: warm}
)";

mode_t mode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

// What a client running as `uid` experienced on `path`: the connect errno (0 when it
// connected) and every byte it received after sending PING, until EOF.
struct Visit {
  int connect_errno = -1;
  std::string received;
};

Visit visit_as(uid_t uid, const std::string& path) {
  int out[2];
  if (::pipe(out) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    // Only system calls from here: the parent has threads.
    ::close(out[0]);
    if (::setgroups(0, nullptr) != 0 || ::setgid(uid) != 0 || ::setuid(uid) != 0) ::_exit(100);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), std::min(path.size(), sizeof(addr.sun_path) - 1));
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) ::_exit(errno);
    ::send(fd, "PING\r\n", 6, MSG_NOSIGNAL);
    char buf[512];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      if (::write(out[1], buf, static_cast<size_t>(n)) != n) break;
      // Served: a PONG arrives and the connection stays open; stop reading there.
      if (n >= 7 && std::memcmp(buf, "+PONG\r\n", 7) == 0) ::_exit(0);
    }
    ::_exit(0);
  }
  ::close(out[1]);
  Visit v;
  char buf[512];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) v.received.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  v.connect_errno = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return v;
}

class Security : public ::testing::Test {
 protected:
  void SetUp() override { start(); }
  void start(std::vector<std::string> args = {}) {
    daemon_ = std::make_unique<Daemon>(kPolicy, std::move(args));
    ASSERT_TRUE(daemon_->ok()) << daemon_->log();
    // Let other uids traverse the test's directory; the sockets' own modes still apply.
    ::chmod(daemon_->dir().c_str(), 0711);
  }
  std::string audit_path() const { return daemon_->audit_path(); }
  std::unique_ptr<Daemon> daemon_;
};

// Sockets are created 0660 (decisions) and 0600 (admin); the audit log is 0600.
TEST_F(Security, SocketAndAuditLogModes) {
  ASSERT_EQ(::geteuid(), 0u) << "these tests run as root (CI does)";
  EXPECT_EQ(mode_of(daemon_->socket_path()), 0660u);
  EXPECT_EQ(mode_of(daemon_->admin_socket_path()), 0600u);
  // The audit log is created by the start entry, written just after the sockets open.
  for (int i = 0; i < 500 && !std::filesystem::exists(audit_path()); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(mode_of(audit_path()), 0600u);
}

// A second uid cannot connect to the 0600 admin socket (nor the 0660 decision socket owned
// by root's group); with the mode widened by mistake, the peer-uid check still refuses it with
// NOPERM and closes; root is always allowed.
TEST_F(Security, SecondUidIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as a second uid";
  EXPECT_EQ(visit_as(kNobody, daemon_->admin_socket_path()).connect_errno, EACCES);
  EXPECT_EQ(visit_as(kNobody, daemon_->socket_path()).connect_errno, EACCES);

  ASSERT_EQ(::chmod(daemon_->admin_socket_path().c_str(), 0666), 0);
  const Visit refused = visit_as(kNobody, daemon_->admin_socket_path());
  EXPECT_EQ(refused.connect_errno, 0);
  EXPECT_EQ(refused.received, "-NOPERM uid 65534 may not use the admin socket\r\n");
  EXPECT_NE(daemon_->log().find("refusing admin connection from uid=65534"), std::string::npos);

  Client root = daemon_->client(true);
  EXPECT_EQ(call(root, {"SL.POLICY", "GET"}).type, Value::Type::kArray);

  // The decision socket has no uid check: its mode and group are the gate.
  ASSERT_EQ(::chmod(daemon_->socket_path().c_str(), 0666), 0);
  EXPECT_EQ(visit_as(kNobody, daemon_->socket_path()).received, "+PONG\r\n");
}

// --admin-allow-uid lets exactly that uid in.
TEST_F(Security, AllowedUidIsServed) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to act as a second uid";
  start({"--admin-allow-uid", std::to_string(kNobody)});
  ASSERT_EQ(::chmod(daemon_->admin_socket_path().c_str(), 0666), 0);
  EXPECT_EQ(visit_as(kNobody, daemon_->admin_socket_path()).received, "+PONG\r\n");
  EXPECT_NE(visit_as(65533, daemon_->admin_socket_path()).received.find("-NOPERM"),
            std::string::npos);
}

// No spelling of an admin command works on the decision socket, in RESP or inline form, and
// nothing changes: policy, version, policy file and audit log stay as they were.
TEST_F(Security, DecisionSocketCannotReachAdmin) {
  Client admin = daemon_->client(true);
  const int64_t version = call(admin, {"SL.POLICY", "GET"}).elements[0].integer;
  const std::string audit_before = read_file(audit_path());
  std::string other = kPolicy;
  other.replace(other.find("limit: 2,"), 9, "limit: 9,");

  Client c = daemon_->client();
  const std::vector<std::vector<std::string>> attempts = {
      {"SL.POLICY", "APPLY", other},    {"sl.policy", "apply", other},
      {"Sl.PoLiCy", "RELOAD"},          {"SL.POLICY", "GET"},
      {"SL.POLICY", "VALIDATE", other}, {"SL.STATS"},
      {"SL.WARMUP", "heavy", "START"},  {"SL.INSPECT", "predict", "x"},
      {"SL.RESET", "predict", "x"},     {"SL.AUDIT"},
      {"sl.reset", "predict", "x"},
  };
  for (const auto& a : attempts) {
    Value v;
    ASSERT_TRUE(c.call(a, v)) << c.error();
    EXPECT_EQ(v.error_code(), "NOPERM") << a[0] << " " << v.to_string();
  }
  // Inline commands, with quoting and escapes that spell the same names.
  ASSERT_TRUE(c.send("sl.reset predict x\r\n\"SL.\\x50OLICY\" RELOAD\r\n  SL.AUDIT  \r\n"));
  for (int i = 0; i < 3; ++i) {
    Value v;
    ASSERT_TRUE(c.read(v)) << c.error();
    EXPECT_EQ(v.error_code(), "NOPERM") << v.to_string();
  }
  // Redis administration commands are not a way around it.
  for (const std::vector<std::string>& a : std::vector<std::vector<std::string>>{
           {"CONFIG", "SET", "dir", "/tmp"}, {"FLUSHALL"}, {"SHUTDOWN"}, {"DEBUG", "SEGFAULT"}}) {
    Value v;
    ASSERT_TRUE(c.call(a, v)) << c.error();
    EXPECT_TRUE(v.is_error()) << a[0] << " " << v.to_string();
  }
  EXPECT_EQ(call(c, {"PING"}).str, "PONG");
  EXPECT_EQ(call(admin, {"SL.POLICY", "GET"}).elements[0].integer, version);
  EXPECT_EQ(read_file(daemon_->policy_path()), kPolicy);
  EXPECT_EQ(read_file(audit_path()), audit_before);
  Value w = call(admin, {"SL.WARMUP", "heavy", "STATUS"});
  ASSERT_EQ(w.type, Value::Type::kArray) << w.to_string();
  EXPECT_EQ(w.elements[3].integer, 0);  // not warming: START was refused
}

// Every change through the admin socket, SL.POLICY RELOAD and SIGHUP leaves one audit line:
// valid JSON with time, uid, pid, command and versions; refused changes leave none.
TEST_F(Security, EveryChangeIsAudited) {
  Client admin = daemon_->client(true);
  Client c = daemon_->client();
  auto lines = [&] {
    std::vector<nlohmann::json> out;
    std::istringstream in(read_file(audit_path()));
    std::string line;
    while (std::getline(in, line)) {
      out.push_back(nlohmann::json::parse(line));  // throws (fails the test) on a torn line
    }
    return out;
  };
  // The start itself is recorded (just after the sockets open: wait for it).
  for (int i = 0; i < 500 && lines().empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const size_t at_start = lines().size();
  ASSERT_GE(at_start, 1u);
  EXPECT_EQ(lines().back()["command"], "start");

  std::string v2 = kPolicy;
  v2.replace(v2.find("limit: 2,"), 9, "limit: 3,");
  std::string v3 = kPolicy;
  v3.replace(v3.find("limit: 2,"), 9, "limit: 4,");
  std::string v4 = kPolicy;
  v4.replace(v4.find("limit: 2,"), 9, "limit: 5,");
  ASSERT_EQ(call(admin, {"SL.POLICY", "APPLY", v2}).type, Value::Type::kInteger);
  EXPECT_EQ(call(admin, {"SL.POLICY", "APPLY", "version: 1\nnope: 1\n"}).error_code(), "INVALID");
  EXPECT_EQ(call(admin, {"SL.POLICY", "APPLY", v2}).type, Value::Type::kInteger);  // same text
  write_file(daemon_->policy_path(), v3);
  EXPECT_EQ(call(admin, {"SL.POLICY", "RELOAD"}).type, Value::Type::kInteger);
  write_file(daemon_->policy_path(), v4);
  daemon_->signal(SIGHUP);
  for (int i = 0; i < 300 && lines().size() < at_start + 3; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(call(admin, {"SL.WARMUP", "heavy", "START"}).str, "OK");
  EXPECT_EQ(call(admin, {"SL.WARMUP", "heavy", "READY"}).str, "OK");
  EXPECT_EQ(call(admin, {"SL.RESET", "predict", "someone"}).str, "OK");
  EXPECT_EQ(call(admin, {"SL.RESET", "nosuch", "someone"}).error_code(), "NORESOURCE");

  const auto all = lines();
  ASSERT_EQ(all.size(), at_start + 6) << read_file(audit_path());
  const std::vector<std::string> commands = {
      "SL.POLICY APPLY",       "SL.POLICY RELOAD",      "SIGHUP",
      "SL.WARMUP heavy START", "SL.WARMUP heavy READY", "SL.RESET predict someone"};
  for (size_t i = 0; i < commands.size(); ++i) {
    const auto& e = all[at_start + i];
    EXPECT_EQ(e["command"], commands[i]) << e.dump();
    EXPECT_EQ(e["uid"], 0) << e.dump();
    EXPECT_TRUE(e.contains("time") && e.contains("pid") && e.contains("changes")) << e.dump();
    if (i < 3) {
      EXPECT_EQ(e["new_version"].get<int64_t>(), e["old_version"].get<int64_t>() + 1);
    }
  }
  EXPECT_EQ(all[at_start]["pid"], ::getpid());  // the admin client, not the daemon
  Value served = call(admin, {"SL.AUDIT", "6"});
  ASSERT_EQ(served.elements.size(), 6u);
  EXPECT_EQ(nlohmann::json::parse(served.elements[5].str)["command"], commands[5]);
}

// Subjects are client bytes: invalid UTF-8 in a denied subject or a reset must not break
// SL.STATS or the audit log (both JSON).
TEST_F(Security, InvalidUtf8SubjectsCannotBreakAdminJson) {
  Client c = daemon_->client();
  const std::string subject = "\xff\xfe\xc3(bad";
  for (int i = 0; i < 4; ++i) call(c, {"SL.CHECK", "predict", subject});  // 2 denied
  Client admin = daemon_->client(true);
  Value stats = call(admin, {"SL.STATS", "60"});
  ASSERT_EQ(stats.type, Value::Type::kBulk) << stats.to_string();
  const auto doc = nlohmann::json::parse(stats.str);
  EXPECT_FALSE(doc["top_blocked"].empty()) << stats.str;
  EXPECT_EQ(call(admin, {"SL.RESET", "predict", subject}).str, "OK");
  Value audit = call(admin, {"SL.AUDIT", "1"});
  ASSERT_EQ(audit.elements.size(), 1u);
  EXPECT_NO_THROW(std::ignore = nlohmann::json::parse(audit.elements[0].str))
      << audit.elements[0].str;
  EXPECT_EQ(call(admin, {"PING"}).str, "PONG");
}

// kill -9 at random moments while APPLYs rewrite the policy: the file on disk is always
// exactly one of the texts that were applied, never a torn mix, and it always parses.
TEST_F(Security, PolicyWritesAreAtomicUnderKill9) {
  // Large policies widen the window in which a write is under way.
  auto big = [](int n) {
    std::string p = kPolicy;
    for (int i = 0; i < 400; ++i) {
      p += "  r" + std::to_string(i) +
           ":\n    limits:\n      - {name: l, algorithm: gcra, limit: " + std::to_string(n + i) +
           ", window: 1s}\n";
    }
    return p;
  };
  const std::vector<std::string> texts = {kPolicy, big(1), big(2)};
  std::mt19937 rng(7);
  int kills_during_apply = 0;
  for (int round = 0; round < 25; ++round) {
    if (round > 0) {
      ASSERT_TRUE(daemon_->start()) << daemon_->log();
    }
    std::atomic<bool> stop{false};
    std::atomic<int> applied{0};
    std::thread writer([&] {
      Client admin = daemon_->client(true);
      for (int i = 1; !stop.load(); ++i) {
        Value v;
        if (!admin.call({"SL.POLICY", "APPLY", texts[static_cast<size_t>(i % 2 + 1)]}, v)) break;
        if (v.type == Value::Type::kInteger) ++applied;
      }
    });
    // Kill once APPLYs are under way (a sanitizer build may take a while for the first), at a
    // random moment of the stream of rewrites.
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (applied.load() == 0 && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 40));
    daemon_->stop(SIGKILL);
    stop = true;
    writer.join();
    if (applied.load() > 0) ++kills_during_apply;
    const std::string on_disk = read_file(daemon_->policy_path());
    EXPECT_TRUE(on_disk == texts[0] || on_disk == texts[1] || on_disk == texts[2])
        << "round " << round << ": torn policy file of " << on_disk.size() << " bytes";
    EXPECT_TRUE(parse_policy(on_disk, daemon_->policy_path()).ok()) << "round " << round;
  }
  EXPECT_GT(kills_during_apply, 10);  // the kills did land while APPLYs were running
  // The audit log survived the kills as whole lines, once sluiced has started on it again (a
  // kill can stop the write of a long entry part way; the next start removes what is left of
  // it: PolicyAuditLogCutShortByAKillIsMendedAtStart).
  ASSERT_TRUE(daemon_->start()) << daemon_->log();
  std::istringstream in(read_file(audit_path()));
  std::string line;
  while (std::getline(in, line)) {
    EXPECT_NO_THROW(std::ignore = nlohmann::json::parse(line)) << line;
  }
}

// An entry cut short by a kill (no newline after it) is removed when sluiced starts, and the
// entries before it are kept: the next entry starts a line of its own.
TEST_F(Security, PolicyAuditLogCutShortByAKillIsMendedAtStart) {
  Client admin = daemon_->client(true);
  std::string other = kPolicy;
  other.replace(other.find("limit: 2,"), 9, "limit: 9,");
  ASSERT_EQ(call(admin, {"SL.POLICY", "APPLY", other}).type, Value::Type::kInteger);
  daemon_->stop(SIGKILL);
  const std::string whole = read_file(audit_path());
  ASSERT_FALSE(whole.empty());
  ASSERT_EQ(whole.back(), '\n');
  write_file(audit_path(), whole + R"({"changes":["resource r1: limit l: 1 → 2)");
  ASSERT_TRUE(daemon_->start()) << daemon_->log();
  const std::string mended = read_file(audit_path());
  ASSERT_EQ(mended.compare(0, whole.size(), whole), 0) << mended;  // earlier entries kept
  std::istringstream in(mended.substr(whole.size()));
  std::string line;
  ASSERT_TRUE(std::getline(in, line)) << mended;
  EXPECT_EQ(nlohmann::json::parse(line).at("command"), "start") << line;
  EXPECT_NE(daemon_->log().find("cut short by a crash"), std::string::npos) << daemon_->log();
}

// A socket path that is a symlink (or any non-socket) is never replaced or followed.
TEST(SecurityStart, RefusesToReplaceANonSocketPath) {
  char tmpl[] = "/tmp/sluice-sec-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string target = dir + "/precious";
  write_file(target, "keep me");
  const std::string link = dir + "/admin.sock";
  ASSERT_EQ(::symlink(target.c_str(), link.c_str()), 0);
  write_file(dir + "/policy.yaml", kPolicy);
  const pid_t pid =
      Daemon::spawn({Daemon::binary(), "--policy", dir + "/policy.yaml", "--socket",
                     dir + "/sluice.sock", "--admin-socket", link, "--state-dir", dir},
                    dir + "/log");
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_EQ(Daemon::decode(status), 1) << read_file(dir + "/log");
  EXPECT_NE(read_file(dir + "/log").find("is not a socket; refusing to replace it"),
            std::string::npos);
  EXPECT_EQ(read_file(target), "keep me");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sluice::testing
