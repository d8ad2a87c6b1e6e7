// sluiced with a failing, slow or hung backend: the faulty plugin (plugins/faulty) wraps the
// memory plugin. The policy's on_storage_failure must decide when storage fails, no caller
// may get past a limit because of failures, slowness must not spread to other connections,
// and everything must come back when the backend does.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

using namespace std::chrono_literals;
using resp::Value;

std::string policy(const char* on_failure) {
  return std::string(R"(version: 1
default_tier: free
unknown_resource: deny
on_storage_failure: )") +
         on_failure + R"(
tiers:
  free: {multiplier: 1}
resources:
  predict:
    limits:
      - {name: per_day, algorithm: fixed_window, limit: 100, window: 1d}
)";
}

// The faulty plugin around the memory plugin (unless `faults` names another inner plugin),
// with `faults` as further KEY=VALUE settings.
std::vector<std::string> faulty(std::vector<std::string> faults) {
  std::vector<std::string> args = {"--storage", "faulty"};
  if (std::none_of(faults.begin(), faults.end(),
                   [](const std::string& f) { return f.rfind("inner=", 0) == 0; })) {
    faults.insert(faults.begin(), "inner=memory");
  }
  for (auto& f : faults) {
    args.push_back("--storage-config");
    args.push_back(std::move(f));
  }
  return args;
}

bool is_decision(const Value& v) { return v.type == Value::Type::kArray && v.elements.size() == 9; }
std::string rule(const Value& v) { return is_decision(v) ? v.elements[5].str : v.to_string(); }
int64_t field(const Value& v, size_t i) { return is_decision(v) ? v.elements[i].integer : -999; }

// Rewrites the control file the way an operator would: whole, by rename.
void set_faults(const std::string& path, const std::string& text) {
  std::ofstream(path + ".new") << text;
  std::filesystem::rename(path + ".new", path);
}

// A directory for a control file, created before the daemon that reads it.
struct ControlFile {
  ControlFile() {
    char tmpl[] = "/tmp/sluice-faults-XXXXXX";
    dir = ::mkdtemp(tmpl);
    path = dir + "/faults";
  }
  ~ControlFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  void set(const std::string& text) const { set_faults(path, text); }
  std::string dir, path;
};

// fail_closed: a failed storage call denies, with rule (storage) and a one-second retry-after.
TEST(Faults, FailClosedDeniesWhenStorageFails) {
  Daemon d(policy("fail_closed"), faulty({"fail_rate=1"}));
  ASSERT_TRUE(d.ok()) << d.log();
  Client c = d.client();
  Value v = call(c, {"SL.CHECK", "predict", "alice"});
  ASSERT_TRUE(is_decision(v)) << v.to_string();
  EXPECT_EQ(field(v, 0), 0);
  EXPECT_EQ(rule(v), "(storage)");
  EXPECT_EQ(field(v, 4), 1000);
}

// fail_open: a failed storage call allows, with rule (storage).
TEST(Faults, FailOpenAllowsWhenStorageFails) {
  Daemon d(policy("fail_open"), faulty({"fail_rate=1"}));
  ASSERT_TRUE(d.ok()) << d.log();
  Client c = d.client();
  for (int i = 0; i < 200; ++i) {  // past the limit of 100: nothing is counted while failing
    Value v = call(c, {"SL.CHECK", "predict", "alice"});
    ASSERT_EQ(field(v, 0), 1) << v.to_string();
    ASSERT_EQ(rule(v), "(storage)");
  }
}

// With 30% of storage calls failing, the limit still admits exactly 100: failures neither
// consume nor let anyone past it (fail_closed denies them, fail_open allows them under the
// (storage) rule, visible to the caller).
// The same holds behind the SQLite plugin (write-behind, its own thread).
TEST(Faults, PartialFailuresNeverLetCallersPastTheLimit) {
  ControlFile dir;  // a scratch directory for the SQLite database
  struct Setup {
    const char* mode;
    std::vector<std::string> faults;
  };
  std::vector<Setup> setups = {{"fail_closed", {"fail_rate=0.3", "seed=7"}},
                               {"fail_open", {"fail_rate=0.3", "seed=7"}}};
  if (std::filesystem::exists(std::string(SLUICE_PLUGIN_DIR) + "/sqlite.so")) {
    setups.push_back({"fail_closed",
                      {"inner=sqlite", "inner.path=" + dir.dir + "/state.db", "fail_rate=0.3",
                       "seed=7", "latency_ms=1"}});
  }
  for (const Setup& setup : setups) {
    const char* mode = setup.mode;
    Daemon d(policy(mode), faulty(setup.faults));
    ASSERT_TRUE(d.ok()) << d.log();
    Client c = d.client();
    int by_limit = 0, by_storage = 0, denied_by_limit = 0;
    for (int i = 0; i < 400; ++i) {
      Value v = call(c, {"SL.CHECK", "predict", "alice"});
      ASSERT_TRUE(is_decision(v)) << v.to_string();
      if (rule(v) == "(storage)") {
        ++by_storage;
        EXPECT_EQ(field(v, 0), std::string(mode) == "fail_open" ? 1 : 0);
      } else if (field(v, 0) == 1) {
        ++by_limit;
      } else {
        ++denied_by_limit;
      }
    }
    EXPECT_EQ(by_limit, 100) << mode << " " << setup.faults[0];
    EXPECT_GT(by_storage, 80) << mode;  // Binomial(400, 0.3): mean 120, sd 9.2
    EXPECT_LT(by_storage, 160) << mode;
    EXPECT_EQ(by_limit + by_storage + denied_by_limit, 400);
  }
}

// When the backend comes back, decisions come from the limits again, with the counts they had.
TEST(Faults, RecoversWhenStorageRecovers) {
  ControlFile control;
  control.set("fail_rate=0\n");
  Daemon d(policy("fail_closed"), faulty({"control_file=" + control.path}));
  ASSERT_TRUE(d.ok()) << d.log();
  Client c = d.client();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(rule(call(c, {"SL.CHECK", "predict", "bob"})), "per_day");

  control.set("fail_rate=1\n");
  std::this_thread::sleep_for(200ms);  // polled every 20 ms
  for (int i = 0; i < 20; ++i) {
    Value v = call(c, {"SL.CHECK", "predict", "bob"});
    ASSERT_EQ(rule(v), "(storage)");
    ASSERT_EQ(field(v, 0), 0);
  }

  control.set("fail_rate=0\n");
  std::this_thread::sleep_for(200ms);
  Value back = call(c, {"SL.CHECK", "predict", "bob"});
  EXPECT_EQ(rule(back), "per_day") << back.to_string();
  EXPECT_EQ(field(back, 0), 1);
  EXPECT_EQ(field(back, 2), 94);  // 5 before, this one: the failures consumed nothing
  EXPECT_EQ(call(c, {"PING"}).str, "PONG");
}

// A slow backend delays only the requests that wait for it: other connections are answered
// at once, and pipelined requests wait together, not one after another.
TEST(Faults, SlowStorageDoesNotBlockOthers) {
  Daemon d(policy("fail_closed"), faulty({"latency_ms=300"}));
  ASSERT_TRUE(d.ok()) << d.log();
  Client slow = d.client();
  std::string pipeline;
  for (int i = 0; i < 50; ++i) {
    pipeline += resp::encode_command({"SL.CHECK", "predict", "user" + std::to_string(i)});
  }
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(slow.send(pipeline));
  Client other = d.client();
  const auto ping_start = std::chrono::steady_clock::now();
  EXPECT_EQ(call(other, {"PING"}).str, "PONG");
  EXPECT_EQ(call(other, {"SL.INFO"}).type, Value::Type::kBulk);
  EXPECT_LT(std::chrono::steady_clock::now() - ping_start, 200ms);
  for (int i = 0; i < 50; ++i) {
    Value v;
    ASSERT_TRUE(slow.read(v)) << slow.error();
    EXPECT_EQ(rule(v), "per_day");
  }
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 3s);
}

// A hung backend must not hang the daemon: other connections and commands that do not need
// storage are answered, SIGTERM still stops it (exit 0, within the grace period), and when the
// backend answers again the held requests get their replies.
TEST(Faults, HungStorageLeavesTheDaemonServing) {
  ControlFile control;
  control.set("hang=1\n");
  std::vector<std::string> args = faulty({"control_file=" + control.path});
  // A storage timeout would answer the held request first; this test is about the hang.
  args.insert(args.end(), {"--storage-timeout", "0"});
  Daemon d(policy("fail_closed"), args);
  ASSERT_TRUE(d.ok()) << d.log();

  Client stuck = d.client();
  ASSERT_TRUE(stuck.send(resp::encode_command({"SL.CHECK", "predict", "carol"})));
  Client other = d.client();
  EXPECT_EQ(call(other, {"PING"}).str, "PONG");
  Client admin = d.client(true);
  EXPECT_EQ(call(admin, {"SL.POLICY", "GET"}).type, Value::Type::kArray);

  control.set("hang=0\n");
  Value v;
  ASSERT_TRUE(stuck.read(v)) << stuck.error();
  EXPECT_EQ(rule(v), "per_day");
  EXPECT_EQ(field(v, 0), 1);

  // Hung again, then SIGTERM: the held request is failed by the plugin's close, and the
  // daemon exits within its grace period instead of waiting for the backend forever.
  control.set("hang=1\n");
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(stuck.send(resp::encode_command({"SL.CHECK", "predict", "carol"})));
  std::this_thread::sleep_for(100ms);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(d.stop(SIGTERM, 20s), 0) << d.log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
}

// Admin work runs off the thread that accepts connections and handles signals: with the
// backend hung and no storage timeout, an SL.INSPECT waits, while new connections are still
// accepted and SIGTERM stops the daemon within 2 s after its grace period. (On the accepting
// thread, the INSPECT held up every new connection and SIGTERM.)
TEST(Faults, AHungAdminCommandHoldsUpNeitherAcceptNorSigterm) {
  ControlFile control;
  control.set("hang=1\n");
  std::vector<std::string> args = faulty({"control_file=" + control.path});
  args.insert(args.end(), {"--storage-timeout", "0", "--shutdown-grace-ms", "300"});
  Daemon d(policy("fail_closed"), args);
  ASSERT_TRUE(d.ok()) << d.log();

  Client inspecting = d.client(true);
  ASSERT_TRUE(inspecting.send(resp::encode_command({"SL.INSPECT", "predict", "carol"})));
  std::this_thread::sleep_for(200ms);  // the INSPECT is now waiting on the hung backend

  const auto t0 = std::chrono::steady_clock::now();
  Client fresh = d.client();
  EXPECT_EQ(call(fresh, {"PING"}).str, "PONG");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);

  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(d.stop(SIGTERM, 20s), 0) << d.log();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s + 300ms) << d.log();
}

// A decision waiting on a hung backend is answered by the policy's on_storage_failure once the
// storage timeout passes: it never waits forever.
TEST(Faults, HungStorageTimesOutIntoTheFailureMode) {
  std::string help;
  {
    const std::string out = ::testing::TempDir() + "sluiced-help-" + std::to_string(::getpid());
    const pid_t pid = Daemon::spawn({Daemon::binary(), "--help"}, out);
    int status = 0;
    ::waitpid(pid, &status, 0);
    help = read_file(out);
    std::remove(out.c_str());
  }
  if (help.find("--storage-timeout") == std::string::npos) {
    GTEST_SKIP() << "sluiced has no --storage-timeout yet: a hung backend holds decisions "
                    "until it answers";
  }
  std::vector<std::string> args = faulty({"hang=1"});
  args.insert(args.end(), {"--storage-timeout", "200"});
  Daemon d(policy("fail_closed"), args);
  ASSERT_TRUE(d.ok()) << d.log();
  Client c = d.client();
  c.set_timeout(3s);
  const auto start = std::chrono::steady_clock::now();
  Value v = call(c, {"SL.CHECK", "predict", "dave"});
  EXPECT_EQ(rule(v), "(storage)") << v.to_string();
  EXPECT_EQ(field(v, 0), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

}  // namespace
}  // namespace sluice::testing
