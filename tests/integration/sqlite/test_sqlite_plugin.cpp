// The SQLite plugin's contract: configuration, restarts, all-or-nothing batches, both
// durability modes, incremental expiry and statistics.
#include <gtest/gtest.h>

#include "numbered.h"
#include "plugin_driver.h"
#include "sluice/storage.h"
#include "sqlite_harness.h"

namespace sluice::sqlite_test {
namespace {

// Unknown keys and bad values are refused at open with a sentence naming the key.
TEST(SqliteConfig, RefusesBadConfiguration) {
  TempDir dir;
  const std::string db = dir.file("c.db");
  const std::vector<std::pair<Config, std::string>> cases = {
      {{{"path", db}, {"colour", "blue"}}, "'colour'"},
      {{}, "path= is required"},
      {{{"path", db}, {"durability", "sometimes"}}, "durability=sometimes"},
      {{{"path", db}, {"interval_ms", "0"}}, "interval_ms=0"},
      {{{"path", db}, {"interval_ms", "50ms"}}, "interval_ms=50ms"},
      {{{"path", db}, {"exclusive", "maybe"}}, "exclusive=maybe"},
      {{{"path", db}, {"synchronous", "sometimes"}}, "synchronous=sometimes"},
  };
  for (const auto& [config, needle] : cases) {
    Instance plugin;
    std::string error;
    EXPECT_EQ(plugin.open(config, &error), SLUICE_ERR_INVALID) << needle;
    EXPECT_NE(error.find(needle), std::string::npos) << error;
  }
}

// The engine's loader finds the plugin by name and opens it.
TEST(SqliteConfig, LoadsThroughTheEngineLoader) {
  TempDir dir;
  auto storage = testing::load_plugin("sqlite", {{"path", dir.file("l.db")}});
  ASSERT_TRUE(storage.ok()) << storage.status().message();
  EXPECT_EQ(storage.value()->name(), "sqlite");
  EXPECT_TRUE(storage.value()->flush(5000).ok());
  const auto stats = nlohmann::json::parse(storage.value()->stats_json());
  EXPECT_EQ(stats["durability"], "interval");
  EXPECT_TRUE(stats["healthy"].get<bool>());
}

class SqliteModes : public ::testing::TestWithParam<std::string> {
 protected:
  Config config(const std::string& path) const {
    return {{"path", path}, {"durability", GetParam()}, {"interval_ms", "20"}};
  }
};

// A restart continues every window, bucket and lease where it was.
TEST_P(SqliteModes, RestartContinuesWhereItWas) {
  TempDir dir;
  const std::string db = dir.file("r.db");
  const std::string bucket_key = "bucket";
  const std::string lease_key = "lease";
  {
    Instance plugin;
    ASSERT_EQ(plugin.open(config(db)), SLUICE_OK);
    ASSERT_EQ(plugin.consume("window", 1000, 500).status, SLUICE_OK);
    auto bucket =
        make_item(bucket_key, SLUICE_OP_CONSUME, 100, 60'000, 30, SLUICE_ALG_TOKEN_BUCKET);
    ASSERT_EQ(plugin.submit({bucket}).status, SLUICE_OK);
    auto lease =
        make_item(lease_key, SLUICE_OP_LEASE_ACQUIRE, 2, 60'000, 1, SLUICE_ALG_CONCURRENCY);
    lease.lease_id = 7;
    lease.lease_expires_ms = kT0 + 60'000;
    const Outcome acquired = plugin.submit({lease});
    ASSERT_EQ(acquired.status, SLUICE_OK);
    ASSERT_EQ(acquired.results[0].allowed, 1);
  }
  Instance plugin;
  ASSERT_EQ(plugin.open(config(db)), SLUICE_OK);
  EXPECT_EQ(plugin.remaining("window", 1000), 500);
  auto bucket = make_item(bucket_key, SLUICE_OP_PEEK, 100, 60'000, 1, SLUICE_ALG_TOKEN_BUCKET);
  EXPECT_EQ(plugin.submit({bucket}).results[0].remaining, 69);  // 70 left, minus the peeked 1
  auto lease = make_item(lease_key, SLUICE_OP_PEEK, 2, 60'000, 1, SLUICE_ALG_CONCURRENCY);
  EXPECT_EQ(plugin.submit({lease}).results[0].remaining, 1);  // one of two slots still held
  EXPECT_EQ(plugin.stats()["keys"], 3);
}

// If one non-shadow item is denied, no item of the batch consumes; a shadow denial does not
// block the others.
TEST_P(SqliteModes, BatchesAreAllOrNothing) {
  TempDir dir;
  Instance plugin;
  ASSERT_EQ(plugin.open(config(dir.file("a.db"))), SLUICE_OK);
  ASSERT_EQ(plugin.consume("small", 2, 2).status, SLUICE_OK);

  const Outcome denied = plugin.submit({make_item("big", SLUICE_OP_CONSUME, 100, 3'600'000, 1),
                                        make_item("small", SLUICE_OP_CONSUME, 2, 3'600'000, 1)});
  ASSERT_EQ(denied.status, SLUICE_OK);
  EXPECT_EQ(denied.results[0].allowed, 1);  // would pass on its own
  EXPECT_EQ(denied.results[1].allowed, 0);
  EXPECT_EQ(plugin.remaining("big", 100), 100);

  auto shadow = make_item("small", SLUICE_OP_CONSUME, 2, 3'600'000, 1);
  shadow.shadow = 1;
  const Outcome shadowed =
      plugin.submit({make_item("big", SLUICE_OP_CONSUME, 100, 3'600'000, 1), shadow});
  EXPECT_EQ(shadowed.results[1].allowed, 0);
  EXPECT_EQ(plugin.remaining("big", 100), 99);
  EXPECT_EQ(plugin.remaining("small", 2), 0);
}

// A denied batch changes nothing at all, its refunds (ADJUST) and resets included.
TEST_P(SqliteModes, DeniedBatchChangesNoItem) {
  TempDir dir;
  Instance plugin;
  ASSERT_EQ(plugin.open(config(dir.file("j.db"))), SLUICE_OK);
  ASSERT_EQ(plugin.consume("k", 10, 10).status, SLUICE_OK);
  ASSERT_EQ(plugin.consume("full", 1, 1).status, SLUICE_OK);
  const Outcome o = plugin.submit({make_item("k", SLUICE_OP_ADJUST, 10, 3'600'000, -4),
                                   make_item("other", SLUICE_OP_CONSUME, 5),
                                   make_item("full", SLUICE_OP_CONSUME, 1),
                                   make_item("full", SLUICE_OP_RESET, 1)});
  EXPECT_EQ(o.results[2].allowed, 0);
  EXPECT_EQ(plugin.remaining("k", 10), 0);
  EXPECT_EQ(plugin.remaining("other", 5), 5);
  EXPECT_EQ(plugin.remaining("full", 1), 0);
  // On their own they apply.
  ASSERT_EQ(plugin.submit({make_item("k", SLUICE_OP_ADJUST, 10, 3'600'000, -4)}).status, SLUICE_OK);
  EXPECT_EQ(plugin.remaining("k", 10), 4);
  ASSERT_EQ(plugin.submit({make_item("k", SLUICE_OP_RESET, 10)}).status, SLUICE_OK);
  EXPECT_EQ(plugin.remaining("k", 10), 10);
}

// PEEK answers without writing anything to the file.
TEST_P(SqliteModes, PeekNeverWrites) {
  TempDir dir;
  const std::string db = dir.file("p.db");
  Config c = config(db);
  c.emplace_back("exclusive", "false");
  Instance plugin;
  ASSERT_EQ(plugin.open(c), SLUICE_OK);
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(plugin.remaining("peeked-" + std::to_string(i), 10), 10);
  }
  ASSERT_EQ(plugin.flush(), SLUICE_OK);
  EXPECT_EQ(count_rows(db), 0);
  EXPECT_EQ(plugin.stats()["keys"], 0);
}

INSTANTIATE_TEST_SUITE_P(Durability, SqliteModes, ::testing::Values("interval", "commit"));

// In commit mode a decision is answered only once its change is in the file, and the
// answer comes from the writer thread (group commit).
TEST(SqliteCommit, AnswersAfterTheCommit) {
  TempDir dir;
  const std::string db = dir.file("c.db");
  Instance plugin;
  ASSERT_EQ(plugin.open({{"path", db},
                         {"durability", "commit"},
                         {"exclusive", "false"},
                         {"interval_ms", "60000"}}),
            SLUICE_OK);
  for (int i = 0; i < 5; ++i) {
    const Outcome o = plugin.consume(sluice::testing::numbered("k", i), 10);
    ASSERT_EQ(o.status, SLUICE_OK);
    EXPECT_NE(o.completed_on, std::this_thread::get_id());
    // No flush: the interval is a minute, so only the commit itself can have written it.
    EXPECT_EQ(count_rows(db), i + 1);
  }
}

// Many threads deciding at once share commits instead of one commit per decision.
TEST(SqliteCommit, GroupsConcurrentDecisionsIntoFewCommits) {
  TempDir dir;
  Instance plugin;
  ASSERT_EQ(plugin.open({{"path", dir.file("g.db")}, {"durability", "commit"}}), SLUICE_OK);
  constexpr int kThreads = 8;
  constexpr int kEach = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        EXPECT_EQ(plugin.consume(sluice::testing::numbered("t", t), 1'000'000).status, SLUICE_OK);
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto stats = plugin.stats();
  EXPECT_LT(stats["commits"].get<int64_t>(), kThreads * kEach);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(plugin.remaining(sluice::testing::numbered("t", t), 1'000'000), 1'000'000 - kEach);
  }
}

// In interval mode the file catches up within the interval without any flush.
TEST(SqliteInterval, WritesBehindWithinTheInterval) {
  TempDir dir;
  const std::string db = dir.file("i.db");
  Instance plugin;
  ASSERT_EQ(plugin.open({{"path", db}, {"interval_ms", "20"}, {"exclusive", "false"}}), SLUICE_OK);
  for (int i = 0; i < 50; ++i)
    ASSERT_EQ(plugin.consume(sluice::testing::numbered("k", i), 10).status, SLUICE_OK);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (count_rows(db) < 50 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(count_rows(db), 50);
  EXPECT_GE(plugin.stats()["commits"].get<int64_t>(), 1);
}

// A write that outlasts the interval is reported, since a crash may then lose that long.
TEST(SqliteInterval, WarnsWhenAWriteOutlastsTheInterval) {
  LogSink::instance().clear();
  TempDir dir;
  Instance plugin;
  ASSERT_EQ(plugin.open({{"path", dir.file("w.db")}, {"interval_ms", "1"}}), SLUICE_OK);
  // One batch holds every shard while it applies, so all 50,000 changes reach the writer
  // together, in one write that takes well over a millisecond.
  std::vector<std::string> keys;
  for (int i = 0; i < 50'000; ++i) keys.push_back(sluice::testing::numbered("w", i));
  std::vector<sluice_item> items;
  for (const auto& k : keys) items.push_back(make_item(k, SLUICE_OP_CONSUME, 10));
  ASSERT_EQ(plugin.submit(items).status, SLUICE_OK);
  ASSERT_EQ(plugin.flush(), SLUICE_OK);
  EXPECT_TRUE(LogSink::instance().contains("longer than interval_ms=1; a crash now loses"))
      << LogSink::instance().all();
  EXPECT_GT(plugin.stats()["last_write_ms"].get<int64_t>(), 0);
}

// Idle keys leave memory and the file in small batches once they expire, never all at once.
TEST(SqliteExpiry, DropsExpiredKeysIncrementally) {
  TempDir dir;
  const std::string db = dir.file("e.db");
  Instance plugin;
  // A minute's interval: only the flushes below run writer cycles.
  ASSERT_EQ(
      plugin.open(
          {{"path", db}, {"expiry_batch", "10"}, {"exclusive", "false"}, {"interval_ms", "60000"}}),
      SLUICE_OK);
  for (int i = 0; i < 35; ++i) {
    const std::string key = sluice::testing::numbered("e", i);
    const auto item = make_item(key, SLUICE_OP_CONSUME, 5, 1000);
    ASSERT_EQ(plugin.submit({item}).status, SLUICE_OK);
  }
  ASSERT_EQ(plugin.consume("long-lived", 10).status, SLUICE_OK);
  ASSERT_EQ(plugin.flush(), SLUICE_OK);
  EXPECT_EQ(count_rows(db), 36);

  // A decision five seconds later tells the plugin what time it is. Each writer cycle (one
  // per flush here) drops at most expiry_batch keys; the long-lived key stays.
  EXPECT_EQ(plugin.remaining("clock", 10, kT0 + 5000), 10);
  int64_t keys = 36;
  for (int cycle = 0; cycle < 100 && keys > 1; ++cycle) {
    ASSERT_EQ(plugin.flush(), SLUICE_OK);
    const int64_t now_keys = plugin.stats()["keys"].get<int64_t>();
    EXPECT_LE(keys - now_keys, 10) << "one cycle dropped more than expiry_batch keys";
    EXPECT_LE(now_keys, keys);
    keys = now_keys;
    EXPECT_EQ(count_rows(db), keys);
  }
  EXPECT_EQ(keys, 1);
  EXPECT_EQ(plugin.stats()["expired"], 35);
  EXPECT_EQ(plugin.remaining("long-lived", 10, kT0 + 5000), 9);
}

// A file from the first schema version is migrated in place, its rows kept.
TEST(SqliteSchema, MigratesAVersionOneFile) {
  TempDir dir;
  const std::string db = dir.file("v1.db");
  {
    Instance plugin;
    ASSERT_EQ(plugin.open({{"path", db}}), SLUICE_OK);
    ASSERT_EQ(plugin.consume("kept", 10, 4).status, SLUICE_OK);
  }
  // Put the file back to version 1: the expiry index, no journal, only version 1 recorded.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw,
                         "CREATE INDEX counters_by_expiry ON counters(expires_at_ms);"
                         "DROP TABLE journal; DELETE FROM sluice_schema WHERE version > 1;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);

  Instance plugin;
  ASSERT_EQ(plugin.open({{"path", db}, {"exclusive", "false"}}), SLUICE_OK);
  EXPECT_EQ(plugin.remaining("kept", 10), 6);
  ASSERT_EQ(sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(raw,
                               "SELECT (SELECT max(version) FROM sluice_schema), "
                               "(SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
                               "name = 'counters_by_expiry')",
                               -1, &st, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(st), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(st, 0), 4);
  EXPECT_EQ(sqlite3_column_int(st, 1), 0);
  sqlite3_finalize(st);
  sqlite3_close(raw);
  EXPECT_EQ(table_rows(db, "journal"), 0);
}

// A file from schema version 2 (one upserted row per key, no journal) gains the journal and
// keeps its rows.
TEST(SqliteSchema, MigratesAVersionTwoFile) {
  TempDir dir;
  const std::string db = dir.file("v2.db");
  {
    Instance plugin;
    ASSERT_EQ(plugin.open({{"path", db}}), SLUICE_OK);
    ASSERT_EQ(plugin.consume("kept", 10, 4).status, SLUICE_OK);
  }
  // A clean close folds the journal, so the table holds the key: put the file back to
  // version 2 by dropping the journal.
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw, "DROP TABLE journal; DELETE FROM sluice_schema WHERE version > 2;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  ASSERT_EQ(table_rows(db, "journal"), -1);

  Instance plugin;
  ASSERT_EQ(plugin.open({{"path", db}, {"exclusive", "false"}, {"interval_ms", "60000"}}),
            SLUICE_OK);
  EXPECT_EQ(plugin.remaining("kept", 10), 6);
  ASSERT_EQ(plugin.consume("new", 10, 1).status, SLUICE_OK);
  ASSERT_EQ(plugin.flush(), SLUICE_OK);
  EXPECT_EQ(table_rows(db, "journal"), 1);
  EXPECT_EQ(count_rows(db), 2);
}

// Each writer cycle appends one journal row whatever the number of keys; a fold moves the
// journal into the per-key table and deletes the rows it folded.
TEST(SqliteJournal, FoldsTheJournalIntoTheTable) {
  TempDir dir;
  const std::string db = dir.file("f.db");
  Instance plugin;
  ASSERT_EQ(plugin.open({{"path", db}, {"exclusive", "false"}, {"interval_ms", "60000"}}),
            SLUICE_OK);
  for (int cycle = 0; cycle < 3; ++cycle) {
    for (int i = 0; i < 100; ++i)
      ASSERT_EQ(plugin.consume(sluice::testing::numbered("f", i), 1000).status, SLUICE_OK);
    ASSERT_EQ(plugin.flush(), SLUICE_OK);
  }
  EXPECT_EQ(table_rows(db, "journal"), 3);
  EXPECT_EQ(table_rows(db, "counters"), 0);
  EXPECT_EQ(count_rows(db), 100);
  EXPECT_EQ(plugin.stats()["folds"], 0);
  EXPECT_GT(plugin.stats()["journal_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(plugin.remaining("f7", 1000), 997);

  // A second instance sees the same from a copy of the files: start-up replays the journal.
  const std::string copy = dir.file("copy.db");
  fs::copy_file(db, copy);
  if (fs::exists(db + "-wal")) fs::copy_file(db + "-wal", copy + "-wal");
  {
    Instance replayed;
    ASSERT_EQ(replayed.open({{"path", copy}}), SLUICE_OK);
    EXPECT_EQ(replayed.remaining("f7", 1000), 997);
    EXPECT_EQ(replayed.stats()["keys"], 100);
  }

  // Closing folds everything: the table alone holds every key.
  plugin.close();
  EXPECT_EQ(table_rows(db, "journal"), 0);
  EXPECT_EQ(table_rows(db, "counters"), 100);
}

// With a short fold_interval_ms the fold runs while decisions go on, a few shards per cycle,
// and the journal rows it folded disappear.
TEST(SqliteJournal, FoldsInTheBackground) {
  TempDir dir;
  const std::string db = dir.file("b.db");
  Instance plugin;
  ASSERT_EQ(
      plugin.open(
          {{"path", db}, {"exclusive", "false"}, {"interval_ms", "5"}, {"fold_interval_ms", "1"}}),
      SLUICE_OK);
  for (int i = 0; i < 500; ++i)
    ASSERT_EQ(plugin.consume(sluice::testing::numbered("b", i % 50), 1000).status, SLUICE_OK);
  ASSERT_TRUE(eventually(plugin, [&] {
    return plugin.stats()["folds"].get<int64_t>() >= 1 && table_rows(db, "journal") == 0;
  }));
  EXPECT_EQ(table_rows(db, "counters"), 50);
  EXPECT_EQ(plugin.stats()["journal_bytes"], 0);
  EXPECT_GE(plugin.stats()["folded_rows"].get<int64_t>(), 50);
  EXPECT_EQ(plugin.remaining("b3", 1000), 990);
}

// A key erased (RESET) after it was folded leaves the table at the next fold.
TEST(SqliteJournal, EraseReachesTheTable) {
  TempDir dir;
  const std::string db = dir.file("r.db");
  Instance plugin;
  ASSERT_EQ(plugin.open({{"path", db}, {"exclusive", "false"}, {"interval_ms", "60000"}}),
            SLUICE_OK);
  ASSERT_EQ(plugin.consume("gone", 10, 3).status, SLUICE_OK);
  ASSERT_EQ(plugin.consume("stays", 10, 3).status, SLUICE_OK);
  plugin.close();
  ASSERT_EQ(table_rows(db, "counters"), 2);
  ASSERT_EQ(plugin.open({{"path", db}, {"exclusive", "false"}, {"interval_ms", "60000"}}),
            SLUICE_OK);
  ASSERT_EQ(plugin.submit({make_item("gone", SLUICE_OP_RESET, 10)}).status, SLUICE_OK);
  ASSERT_EQ(plugin.flush(), SLUICE_OK);
  EXPECT_EQ(count_rows(db), 1);
  plugin.close();
  EXPECT_EQ(table_rows(db, "counters"), 1);
  EXPECT_EQ(table_rows(db, "journal"), 0);
}

// Statistics report keys, pending changes, commits, errors and the file's size.
TEST(SqliteStats, ReportsWhatOperatorsNeed) {
  TempDir dir;
  Instance plugin;
  ASSERT_EQ(plugin.open({{"path", dir.file("s.db")}, {"interval_ms", "60000"}}), SLUICE_OK);
  for (int i = 0; i < 10; ++i)
    ASSERT_EQ(plugin.consume(sluice::testing::numbered("s", i), 5).status, SLUICE_OK);
  auto stats = plugin.stats();
  EXPECT_EQ(stats["keys"], 10);
  EXPECT_EQ(stats["dirty"], 10);
  EXPECT_EQ(stats["write_errors"], 0);
  ASSERT_EQ(plugin.flush(), SLUICE_OK);
  stats = plugin.stats();
  EXPECT_EQ(stats["dirty"], 0);
  EXPECT_EQ(stats["commits"], 1);
  EXPECT_EQ(stats["rows_written"], 10);
  EXPECT_GT(stats["journal_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(stats["folds"], 0);
  EXPECT_EQ(stats["folded_rows"], 0);
  EXPECT_GT(stats["db_size_bytes"].get<int64_t>(), 0);
  EXPECT_EQ(stats["last_error"], "");
}

// Keys whose 64-bit map keys collide keep their own states, across erases (a key further
// along a probe sequence stays reachable when an earlier one goes) and a restart. The test
// hook keeps 2 bits of the map key, so 40 keys share 4 map keys; the other 64 bits of the
// 128-bit hash tell them apart.
TEST(SqliteKeys, CollidingHashesKeepSeparateStates) {
  TempDir dir;
  const std::string db = dir.file("k.db");
  ::setenv("SLUICE_SQLITE_TEST_HASH_BITS", "2", 1);
  struct Unset {
    ~Unset() { ::unsetenv("SLUICE_SQLITE_TEST_HASH_BITS"); }
  } unset;
  const Config config{{"path", db}, {"exclusive", "false"}, {"interval_ms", "60000"}};
  constexpr int kKeys = 40;
  const auto key = [](int i) { return sluice::testing::numbered("k", i); };
  {
    Instance plugin;
    ASSERT_EQ(plugin.open(config), SLUICE_OK);
    for (int i = 0; i < kKeys; ++i)
      ASSERT_EQ(plugin.consume(key(i), 1000, i + 1).status, SLUICE_OK);
    for (int i = 0; i < kKeys; ++i) EXPECT_EQ(plugin.remaining(key(i), 1000), 1000 - (i + 1)) << i;
    // Every third key goes; the others, wherever they sit in their probe sequence, stay.
    for (int i = 0; i < kKeys; i += 3) {
      ASSERT_EQ(plugin.submit({make_item(key(i), SLUICE_OP_RESET, 1000)}).status, SLUICE_OK);
    }
    for (int i = 0; i < kKeys; ++i) {
      EXPECT_EQ(plugin.remaining(key(i), 1000), i % 3 == 0 ? 1000 : 1000 - (i + 1)) << i;
    }
    EXPECT_EQ(plugin.stats()["keys"], kKeys - (kKeys + 2) / 3);
    // A key new to a crowded map key takes a free step without disturbing the others.
    ASSERT_EQ(plugin.consume("new", 1000, 500).status, SLUICE_OK);
    EXPECT_EQ(plugin.remaining("new", 1000), 500);
  }
  Instance plugin;
  ASSERT_EQ(plugin.open(config), SLUICE_OK);
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ(plugin.remaining(key(i), 1000), i % 3 == 0 ? 1000 : 1000 - (i + 1)) << i;
  }
  EXPECT_EQ(plugin.remaining("new", 1000), 500);
  EXPECT_EQ(plugin.stats()["keys"], kKeys - (kKeys + 2) / 3 + 1);
  EXPECT_EQ(count_rows(db), kKeys - (kKeys + 2) / 3 + 1);
}

// Records (ABI 1.4) are in the file after a clean close in both durability modes, replaced
// and deleted ones included, and an expired one leaves the file through the expiry sweep.
TEST(SqliteRecords, SurviveReopenAndExpire) {
  for (const char* mode : {"interval", "commit"}) {
    SCOPED_TRACE(mode);
    TempDir dir;
    const std::string db = dir.file("records.db");
    const StorageConfig config = {
        {"path", db}, {"durability", mode}, {"interval_ms", "20"}, {"exclusive", "false"}};
    const int64_t hour = 3'600'000;
    {
      auto storage = sluice::testing::load_plugin("sqlite", config);
      ASSERT_TRUE(storage.ok()) << storage.status().message();
      Storage& s = *storage.value();
      ASSERT_TRUE(s.supports_records());
      using sluice::testing::record_delete_and_wait;
      using sluice::testing::record_put_and_wait;
      EXPECT_EQ(record_put_and_wait(s, "kept", std::string("a\0b", 3), kT0 + hour, kT0).status,
                SLUICE_OK);
      EXPECT_EQ(record_put_and_wait(s, "replaced", "old", kT0 + hour, kT0).status, SLUICE_OK);
      EXPECT_EQ(record_put_and_wait(s, "replaced", "new", kT0 + hour, kT0).status, SLUICE_OK);
      EXPECT_EQ(record_put_and_wait(s, "deleted", "x", kT0 + hour, kT0).status, SLUICE_OK);
      EXPECT_EQ(record_delete_and_wait(s, "deleted", kT0).value, "x");
      EXPECT_EQ(record_put_and_wait(s, "short", "x", kT0 + 10, kT0).status, SLUICE_OK);
    }
    EXPECT_EQ(table_rows(db, "records"), 3);
    auto storage = sluice::testing::load_plugin("sqlite", config);
    ASSERT_TRUE(storage.ok()) << storage.status().message();
    Storage& s = *storage.value();
    EXPECT_EQ(sluice::testing::record_get_and_wait(s, "kept", kT0).value, std::string("a\0b", 3));
    EXPECT_EQ(sluice::testing::record_get_and_wait(s, "replaced", kT0).value, "new");
    EXPECT_EQ(sluice::testing::record_get_and_wait(s, "deleted", kT0).value, std::nullopt);
    // Well past "short"'s expiry (and the sweep's slack), the sweep takes it out of the file.
    EXPECT_EQ(sluice::testing::record_get_and_wait(s, "short", kT0 + 60'000).value, std::nullopt);
    ASSERT_TRUE(s.flush(10'000).ok());
    EXPECT_EQ(table_rows(db, "records"), 2);
  }
}

}  // namespace
}  // namespace sluice::sqlite_test
