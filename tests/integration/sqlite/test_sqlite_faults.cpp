// What the plugin does when its file cannot be used: one clear sentence in the log, batches
// that complete with SLUICE_ERR_UNAVAILABLE (the engine then fails open or closed as the
// policy says), no crash, and recovery once the cause is gone.
//
// Tests run as root, which ignores file permissions, so "read-only" is made with the
// immutable attribute (chattr +i) and "full disk" with a small tmpfs or SQLite's own page
// limit (max_size_mb); a test skips itself where the machine does not allow the trick.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cstdlib>
#include <fstream>

#include "sqlite_harness.h"

namespace sluice::sqlite_test {
namespace {

void expect_unavailable(Instance& plugin, const std::string& needle) {
  const Outcome o = plugin.consume("probe", 10);
  EXPECT_EQ(o.status, SLUICE_ERR_UNAVAILABLE);
  EXPECT_NE(o.message.find(needle), std::string::npos) << o.message;
  EXPECT_TRUE(LogSink::instance().contains(needle)) << LogSink::instance().all();
  EXPECT_FALSE(plugin.stats()["healthy"].get<bool>());
}

bool recovers(Instance& plugin) {
  return eventually(plugin, [&] { return plugin.consume("probe", 10).status == SLUICE_OK; });
}

Config quick(const std::string& path) {
  // Short lock waits and retries keep the tests fast; the defaults are for production.
  return {{"path", path}, {"busy_timeout_ms", "50"}, {"retry_max_ms", "200"}};
}

// A file that is not a database: refused with a sentence, used again once it is moved aside.
TEST(SqliteFaults, CorruptFile) {
  LogSink::instance().clear();
  TempDir dir;
  const std::string db = dir.file("corrupt.db");
  std::ofstream(db) << std::string(8192, 'x');
  Instance plugin;
  ASSERT_EQ(plugin.open(quick(db)), SLUICE_OK);
  expect_unavailable(plugin, "is corrupt or not a SQLite database");
  fs::rename(db, db + ".bad");
  EXPECT_TRUE(recovers(plugin));
}

// A file written by a newer sluice is never touched.
TEST(SqliteFaults, NewerSchemaIsRefused) {
  LogSink::instance().clear();
  TempDir dir;
  const std::string db = dir.file("newer.db");
  {
    Instance plugin;
    ASSERT_EQ(plugin.open(quick(db)), SLUICE_OK);
    ASSERT_EQ(plugin.consume("kept", 10, 3).status, SLUICE_OK);
  }
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(raw, "INSERT INTO sluice_schema(version) VALUES(99)", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(raw);
  Instance plugin;
  ASSERT_EQ(plugin.open(quick(db)), SLUICE_OK);
  expect_unavailable(plugin, "has schema version 99, newer than");
  plugin.close();
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(raw, "DELETE FROM sluice_schema WHERE version = 99", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(raw);
  ASSERT_EQ(plugin.open(quick(db)), SLUICE_OK);
  EXPECT_EQ(plugin.remaining("kept", 10), 7);
}

// Another program's database is not adopted.
TEST(SqliteFaults, ForeignDatabaseIsRefused) {
  LogSink::instance().clear();
  TempDir dir;
  const std::string db = dir.file("foreign.db");
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(raw, "PRAGMA application_id=42; CREATE TABLE t(x)", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close(raw);
  Instance plugin;
  ASSERT_EQ(plugin.open(quick(db)), SLUICE_OK);
  expect_unavailable(plugin, "belongs to another application");
}

// A file another process holds locked: unavailable until the lock goes.
TEST(SqliteFaults, LockedFile) {
  LogSink::instance().clear();
  TempDir dir;
  const std::string db = dir.file("locked.db");
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "CREATE TABLE x(y); BEGIN EXCLUSIVE; INSERT INTO x VALUES(1)",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  Instance plugin;
  ASSERT_EQ(plugin.open(quick(db)), SLUICE_OK);
  expect_unavailable(plugin, "is locked by another process");
  ASSERT_EQ(sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(other);
  EXPECT_TRUE(recovers(plugin));
}

// Two engines on one file: the second waits for the first instead of both keeping their own
// counts, and takes over when the first closes.
TEST(SqliteFaults, SecondEngineOnTheSameFileWaits) {
  LogSink::instance().clear();
  TempDir dir;
  const std::string db = dir.file("shared.db");
  auto first = std::make_unique<Instance>();
  ASSERT_EQ(first->open(quick(db)), SLUICE_OK);
  ASSERT_EQ(first->consume("k", 10, 4).status, SLUICE_OK);
  Instance second;
  ASSERT_EQ(second.open(quick(db)), SLUICE_OK);
  expect_unavailable(second, "is locked by another process");
  first.reset();
  EXPECT_TRUE(recovers(second));
  EXPECT_EQ(second.remaining("k", 10), 6);
}

// A read-only file (immutable, since root ignores modes): unavailable, then usable again.
TEST(SqliteFaults, ReadOnlyFile) {
  LogSink::instance().clear();
  TempDir dir;
  const std::string db = dir.file("ro.db");
  {
    Instance plugin;
    ASSERT_EQ(plugin.open(quick(db)), SLUICE_OK);
    ASSERT_EQ(plugin.consume("kept", 10, 2).status, SLUICE_OK);
  }
  if (std::system(("chattr +i " + db + " 2>/dev/null").c_str()) != 0) {
    GTEST_SKIP() << "chattr +i is not available here";
  }
  Instance plugin;
  ASSERT_EQ(plugin.open(quick(db)), SLUICE_OK);
  expect_unavailable(plugin, "is read-only");
  ASSERT_EQ(std::system(("chattr -i " + db).c_str()), 0);
  EXPECT_TRUE(recovers(plugin));
  EXPECT_EQ(plugin.remaining("kept", 10), 8);
}

// The directory is deleted under a running engine: the loss is noticed (writes through the
// old descriptor would vanish at the next restart), batches fail, and once the directory is
// back the whole state is written to a new file.
TEST(SqliteFaults, DeletedDirectory) {
  LogSink::instance().clear();
  TempDir dir;
  const fs::path sub = dir.path() / "state";
  fs::create_directories(sub);
  const std::string db = (sub / "d.db").string();
  {
    Instance plugin;
    ASSERT_EQ(plugin.open(quick(db)), SLUICE_OK);
    ASSERT_EQ(plugin.consume("kept", 10, 3).status, SLUICE_OK);
    ASSERT_EQ(plugin.flush(), SLUICE_OK);
    fs::remove_all(sub);
    ASSERT_EQ(plugin.consume("more", 10, 1).status,
              SLUICE_OK);  // decided before the writer noticed
    EXPECT_EQ(plugin.flush(), SLUICE_ERR_UNAVAILABLE);
    expect_unavailable(plugin, "was deleted or moved while in use");
    ASSERT_TRUE(eventually(
        plugin, [&] { return LogSink::instance().contains("check that its directory exists"); }));
    fs::create_directories(sub);
    EXPECT_TRUE(recovers(plugin));
    EXPECT_TRUE(LogSink::instance().contains("is usable again"));
  }
  Instance plugin;
  ASSERT_EQ(plugin.open(quick(db)), SLUICE_OK);
  EXPECT_EQ(plugin.remaining("kept", 10), 7);
  EXPECT_EQ(plugin.remaining("more", 10), 9);
}

// The file reaches its size cap: unavailable, nothing lost from memory, and usable again
// once expiry frees room.
TEST(SqliteFaults, FullDatabaseCap) {
  LogSink::instance().clear();
  TempDir dir;
  const std::string db = dir.file("full.db");
  Config config = quick(db);
  config.emplace_back("max_size_mb", "1");
  config.emplace_back("interval_ms", "60000");
  config.emplace_back("expiry_batch", "100000");
  Instance plugin;
  ASSERT_EQ(plugin.open(config), SLUICE_OK);
  // Keys in a one-second window, so that they can expire later.
  bool full = false;
  std::vector<std::string> keys;
  for (int round = 0; round < 100 && !full; ++round) {
    for (int i = 0; i < 2000; ++i) {
      keys.push_back("a-rather-long-key-to-fill-pages-" + std::to_string(round * 2000 + i));
      ASSERT_EQ(plugin.submit({make_item(keys.back(), SLUICE_OP_CONSUME, 5, 1000)}).status,
                SLUICE_OK);
    }
    full = plugin.flush() == SLUICE_ERR_UNAVAILABLE;
  }
  ASSERT_TRUE(full) << "never filled 1 MB";
  expect_unavailable(plugin, "or the file reached max_size_mb=1");
  EXPECT_GT(plugin.stats()["dirty"].get<int64_t>(), 0);
  // Time passes (a refused batch still tells the plugin the time); the keys expire and their
  // rows are deleted, which makes room for what was waiting.
  const int64_t later = kT0 + 10'000;
  EXPECT_TRUE(eventually(
      plugin, [&] { return plugin.consume("probe", 10, 1, later).status == SLUICE_OK; }));
}

// A real full file system (a 1 MB tmpfs): the same, and recovery once space is freed.
TEST(SqliteFaults, FullDisk) {
  LogSink::instance().clear();
  TempDir dir;
  const fs::path mnt = dir.path() / "mnt";
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here";
  }
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  const std::string db = (mnt / "full.db").string();
  const fs::path filler = mnt / "filler";
  Config config = quick(db);
  config.emplace_back("interval_ms", "60000");
  Instance plugin;
  ASSERT_EQ(plugin.open(config), SLUICE_OK);
  std::ofstream(filler) << std::string(700 * 1024, 'f');
  bool full = false;
  std::vector<std::string> keys;
  for (int round = 0; round < 100 && !full; ++round) {
    for (int i = 0; i < 1000; ++i) {
      keys.push_back("disk-key-" + std::to_string(round * 1000 + i));
      ASSERT_EQ(plugin.consume(keys.back(), 10).status, SLUICE_OK);
    }
    full = plugin.flush() == SLUICE_ERR_UNAVAILABLE;
  }
  ASSERT_TRUE(full) << "never filled the tmpfs";
  expect_unavailable(plugin, "is full");
  fs::remove(filler);
  EXPECT_TRUE(recovers(plugin));
  EXPECT_EQ(plugin.flush(), SLUICE_OK);
  EXPECT_EQ(plugin.stats()["dirty"], 0);
  EXPECT_EQ(plugin.remaining(keys.front(), 10), 9);
}

}  // namespace
}  // namespace sluice::sqlite_test
