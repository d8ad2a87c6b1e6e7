// Leases live in storage (issue 20 item 3): on SQLite a lease outlives a restart of sluiced,
// a clean one (SIGTERM, interval durability) and a crash (SIGKILL, commit durability).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include "../lease_flow.h"
#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

class SqliteLeases : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-sqlite-leases-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::vector<std::string> storage(const std::string& durability) const {
    return {"--storage",        "sqlite",
            "--storage-config", "path=" + dir_ + "/counters.db",
            "--storage-config", "durability=" + durability};
  }
  std::string dir_;
};

// Acquire and charge, restart sluiced on the same file, then the lease is still there: a
// charge past the limit is refused, the release settles at the usage charged before.
TEST_F(SqliteLeases, ALeaseOutlivesARestart) {
  Daemon daemon(kLeasePolicy, storage("interval"));
  ASSERT_TRUE(daemon.ok()) << daemon.log();
  auto on = [&] { return daemon.client(); };
  run_lease_flow({.acquire_on = on,
                  .first_charge_on = on,
                  .second_charge_on = on,
                  .release_on = on,
                  .check_on = on,
                  .between = [&] { ASSERT_TRUE(daemon.restart()) << daemon.log(); }});
}

// The same after SIGKILL: in commit mode a lease's record is in the file before SL.ACQUIRE
// and SL.CHARGE answer.
TEST_F(SqliteLeases, ALeaseOutlivesACrashInCommitMode) {
  Daemon daemon(kLeasePolicy, storage("commit"));
  ASSERT_TRUE(daemon.ok()) << daemon.log();
  auto on = [&] { return daemon.client(); };
  run_lease_flow({.acquire_on = on,
                  .first_charge_on = on,
                  .second_charge_on = on,
                  .release_on = on,
                  .check_on = on,
                  .between = [&] {
                    EXPECT_EQ(daemon.stop(SIGKILL), 128 + SIGKILL);
                    ASSERT_TRUE(daemon.restart()) << daemon.log();
                  }});
}

}  // namespace
}  // namespace sluice::testing
