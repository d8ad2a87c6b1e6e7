#include "database.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

namespace sluice::sqlite_plugin {
namespace {

// Marks the file as sluice's in its header (PRAGMA application_id, 'slce'), so that pointing
// path= at another program's database is refused instead of silently adding tables to it.
constexpr int kApplicationId = 0x736c6365;

// Migration i brings the schema from version i to i + 1. Append only; never edit a shipped one.
constexpr const char* kMigrations[] = {
    // 0 -> 1: one row per key. WITHOUT ROWID keeps the row in the primary-key b-tree, which
    // halves the size of small rows; the expiry index serves the incremental expiry sweep.
    "CREATE TABLE counters("
    "  key BLOB PRIMARY KEY NOT NULL,"
    "  state BLOB NOT NULL,"
    "  expires_at_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX counters_by_expiry ON counters(expires_at_ms);",
    // 1 -> 2: expiry sweeps the in-memory table instead, so the index only cost every write
    // a second b-tree update.
    "DROP INDEX IF EXISTS counters_by_expiry;",
    // 2 -> 3: each writer cycle appends its changes as one journal row instead of one upsert
    // per key; the rows are folded into `counters` now and then (see store.cpp). A version 2
    // file has no journal, so its counters table is already complete.
    "CREATE TABLE journal(id INTEGER PRIMARY KEY, records BLOB NOT NULL);",
    // 3 -> 4: records (ABI 1.4: the engine's leases), each with its expiry. Few and small, so
    // they are written as rows directly, not through the journal.
    "CREATE TABLE IF NOT EXISTS records("
    "  key BLOB PRIMARY KEY NOT NULL,"
    "  value BLOB NOT NULL,"
    "  expires_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;",
};
static_assert(std::size(kMigrations) == kSchemaVersion);

}  // namespace

Error Database::fail(int rc, std::string_view doing) {
  const int code = rc & 0xff;
  const std::string detail = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  const std::string& p = config_.path;
  std::string what;
  switch (code) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      what = "the file " + p + " is corrupt or not a SQLite database (" + detail +
             "); move it aside to start with fresh counters";
      break;
    case SQLITE_READONLY:
      if (rc == SQLITE_READONLY_DBMOVED) {
        what = "the file " + p + " was deleted or moved while in use (" + detail +
               "); sluice writes a new one when it can";
      } else {
        what = "the file " + p + " (or its directory) is read-only (" + detail +
               "); the sluice daemon must be able to write it";
      }
      break;
    case SQLITE_PERM:
      what = "permission to write " + p + " was denied (" + detail +
             "); the sluice daemon must be able to write it";
      break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      what = "the file " + p + " is locked by another process (" + detail +
             "); is another sluiced using the same file?";
      break;
    case SQLITE_FULL:
      what = "the disk holding " + p + " is full" +
             (config_.max_size_mb > 0
                  ? " or the file reached max_size_mb=" + std::to_string(config_.max_size_mb)
                  : std::string()) +
             " (" + detail + "); free some space";
      break;
    case SQLITE_CANTOPEN:
      what =
          "cannot open " + p + " (" + detail + "); check that its directory exists and is writable";
      break;
    case SQLITE_IOERR:
      what = "I/O error on " + p + " (" + detail + ")";
      break;
    default:
      what = "SQLite error on " + p + " (" + detail + ")";
      break;
  }
  close();
  return "sqlite storage: " + what + " while " + std::string(doing) + ".";
}

Error Database::exec(const char* sql, std::string_view doing) {
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return fail(rc, doing);
  return std::nullopt;
}

Error Database::take_ownership() {
  // Only plain paths: a URI or :memory: has no file of its own to lock.
  if (!config_.exclusive_lock || config_.path.rfind("file:", 0) == 0 ||
      config_.path == ":memory:") {
    return std::nullopt;
  }
  const std::string& p = config_.path;
  owner_fd_ = ::open(p.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (owner_fd_ < 0) {
    const int err = errno;
    const std::string detail = std::strerror(err);
    if (err == EROFS || err == EACCES || err == EPERM) {
      return "sqlite storage: the file " + p + " (or its directory) is read-only (" + detail +
             "); the sluice daemon must be able to write it.";
    }
    return "sqlite storage: cannot open " + p + " (" + detail +
           "); check that its directory exists and is writable.";
  }
  // An flock on the file itself says "this engine owns these counters". It is independent of
  // SQLite's own (fcntl) locks, so two engines starting together cannot deadlock on them, each
  // holding a shared lock and waiting for the other's to go.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.busy_timeout_ms);
  while (::flock(owner_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno != EWOULDBLOCK && errno != EINTR) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      ::close(owner_fd_);
      owner_fd_ = -1;
      return "sqlite storage: the file " + p +
             " is locked by another process (another engine holds it); is another sluiced "
             "using the same file?";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return std::nullopt;
}

Error Database::open() {
  close();
  if (auto e = take_ownership()) return e;
  const int flags =
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(config_.path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) return fail(rc, "opening it");
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(db_, static_cast<int>(config_.busy_timeout_ms));
  if (sqlite3_db_readonly(db_, "main") == 1) {
    return fail(SQLITE_READONLY, "opening it");
  }

  // Exclusive locking before WAL: no shared-memory index is created and the lock taken by the
  // first write below is held until close, so a second daemon on the same file waits and
  // reports it instead of both keeping diverging counters in memory.
  if (config_.exclusive_lock) {
    if (auto e = exec("PRAGMA locking_mode=EXCLUSIVE", "setting its locking mode")) return e;
  }
  {
    sqlite3_stmt* st = nullptr;
    rc = sqlite3_prepare_v2(db_, "PRAGMA journal_mode=WAL", -1, &st, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    std::string mode;
    if (rc == SQLITE_ROW) {
      const auto* text = sqlite3_column_text(st, 0);
      mode = text ? reinterpret_cast<const char*>(text) : "";
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) return fail(rc, "switching it to WAL mode");
    if (mode != "wal" && mode != "memory") {
      return fail(SQLITE_READONLY, "switching it to WAL mode");
    }
  }
  // The default 2 MB page cache makes every write-behind batch over a large key set re-read
  // most of its b-tree pages.
  const std::string cache = "PRAGMA cache_size=-" + std::to_string(config_.cache_mb * 1024);
  if (auto e = exec(cache.c_str(), "sizing its page cache")) return e;
  // SQLite's default checkpoints every 1000 WAL pages. Write-behind and group commit of keys
  // spread over a large table touch hundreds of pages per transaction, so that default would
  // copy pages back into the file (and fsync it) after nearly every commit; a larger WAL lets
  // a page rewritten by many commits be copied back once.
  const std::string checkpoint =
      "PRAGMA wal_autocheckpoint=" + std::to_string(config_.checkpoint_pages) +
      "; PRAGMA journal_size_limit=" + std::to_string(config_.checkpoint_pages * 4096);
  if (auto e = exec(checkpoint.c_str(), "setting its checkpoint size")) return e;
  const std::string sync = "PRAGMA synchronous=" + config_.synchronous;
  if (auto e = exec(sync.c_str(), "setting synchronous")) return e;
  if (config_.max_size_mb > 0) {
    int page_size = 4096;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, "PRAGMA page_size", -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
      page_size = sqlite3_column_int(st, 0);
    }
    sqlite3_finalize(st);
    const int64_t pages = config_.max_size_mb * 1024 * 1024 / page_size;
    const std::string sql = "PRAGMA max_page_count=" + std::to_string(pages);
    if (auto e = exec(sql.c_str(), "setting max_size_mb")) return e;
  }
  if (auto e = migrate()) return e;

  const auto prepare = [&](const char* sql, sqlite3_stmt** out) -> Error {
    const int prc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, out, nullptr);
    if (prc != SQLITE_OK) return fail(prc, "preparing its statements");
    return std::nullopt;
  };
  if (auto e = prepare("INSERT INTO counters(key, state, expires_at_ms) VALUES(?1, ?2, ?3) "
                       "ON CONFLICT(key) DO UPDATE SET state = excluded.state, "
                       "expires_at_ms = excluded.expires_at_ms",
                       &upsert_)) {
    return e;
  }
  if (auto e = prepare("DELETE FROM counters WHERE key = ?1", &erase_)) return e;
  if (auto e = prepare("INSERT INTO journal(records) VALUES(?1)", &append_)) return e;
  if (auto e = prepare("DELETE FROM journal WHERE id <= ?1", &drop_journal_)) return e;
  if (auto e = prepare("INSERT INTO records(key, value, expires_ms) VALUES(?1, ?2, ?3) "
                       "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                       "expires_ms = excluded.expires_ms",
                       &record_upsert_)) {
    return e;
  }
  if (auto e = prepare("DELETE FROM records WHERE key = ?1", &record_erase_)) return e;
  return std::nullopt;
}

Error Database::migrate() {
  // IMMEDIATE takes the write lock now, so the version read below cannot change under us.
  if (auto e = exec("BEGIN IMMEDIATE", "locking it")) return e;
  int app_id = 0;
  int version = 0;
  bool has_version_table = false;
  {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db_, "PRAGMA application_id", -1, &st, nullptr);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
      app_id = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) return fail(rc, "reading its header");
    rc = sqlite3_prepare_v2(
        db_, "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sluice_schema'", -1, &st,
        nullptr);
    if (rc == SQLITE_OK) {
      rc = sqlite3_step(st);
      has_version_table = rc == SQLITE_ROW;
      if (rc == SQLITE_DONE) rc = SQLITE_ROW;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) return fail(rc, "reading its schema");
  }
  if (app_id != 0 && app_id != kApplicationId) {
    close();
    return "sqlite storage: the file " + config_.path +
           " belongs to another application (its application_id is " + std::to_string(app_id) +
           "); point path= at a file of its own.";
  }
  if (has_version_table) {
    sqlite3_stmt* st = nullptr;
    int rc = sqlite3_prepare_v2(db_, "SELECT coalesce(max(version), 0) FROM sluice_schema", -1, &st,
                                nullptr);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW)
      version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW) return fail(rc, "reading its schema version");
  } else {
    if (auto e = exec("CREATE TABLE sluice_schema(version INTEGER PRIMARY KEY, "
                      "applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)",
                      "creating its version table")) {
      return e;
    }
  }
  if (version > kSchemaVersion) {
    close();
    return "sqlite storage: the file " + config_.path + " has schema version " +
           std::to_string(version) + ", newer than the " + std::to_string(kSchemaVersion) +
           " this sluice understands; upgrade sluice or point path= at another file.";
  }
  for (int v = version; v < kSchemaVersion; ++v) {
    if (auto e = exec(kMigrations[v], "migrating its schema")) return e;
    const std::string record =
        "INSERT INTO sluice_schema(version) VALUES(" + std::to_string(v + 1) + ")";
    if (auto e = exec(record.c_str(), "migrating its schema")) return e;
  }
  if (app_id == 0) {
    const std::string sql = "PRAGMA application_id=" + std::to_string(kApplicationId);
    if (auto e = exec(sql.c_str(), "writing its header")) return e;
  }
  return exec("COMMIT", "creating its schema");
}

void Database::close() {
  if (db_) {
    sqlite3_finalize(upsert_);
    sqlite3_finalize(erase_);
    sqlite3_finalize(append_);
    sqlite3_finalize(drop_journal_);
    sqlite3_finalize(record_upsert_);
    sqlite3_finalize(record_erase_);
    upsert_ = erase_ = append_ = drop_journal_ = record_upsert_ = record_erase_ = nullptr;
    // close_v2 never fails with BUSY; an open transaction is rolled back.
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
  // Only after SQLite has closed its descriptor: closing any descriptor of a file drops the
  // process's fcntl locks on it, SQLite's included.
  if (owner_fd_ >= 0) {
    ::close(owner_fd_);
    owner_fd_ = -1;
  }
}

Error Database::check_not_moved() {
  // A deleted file (or directory) still accepts writes through the open descriptor, which
  // would silently lose every counter at the next restart. SQLite can tell us.
  int moved = 0;
  if (sqlite3_file_control(db_, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK && moved) {
    return fail(SQLITE_READONLY_DBMOVED, "writing counters");
  }
  return std::nullopt;
}

Error Database::load(const RowFn& row, const JournalFn& journal) {
  sqlite3_stmt* st = nullptr;
  int rc =
      sqlite3_prepare_v2(db_, "SELECT key, state, expires_at_ms FROM counters", -1, &st, nullptr);
  if (rc != SQLITE_OK) return fail(rc, "loading counters");
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const auto* k = static_cast<const char*>(sqlite3_column_blob(st, 0));
    const int klen = sqlite3_column_bytes(st, 0);
    const auto* s = static_cast<const char*>(sqlite3_column_blob(st, 1));
    const int slen = sqlite3_column_bytes(st, 1);
    row(std::string_view(k ? k : "", static_cast<size_t>(klen)),
        std::string_view(s ? s : "", static_cast<size_t>(slen)), sqlite3_column_int64(st, 2));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return fail(rc, "loading counters");

  rc = sqlite3_prepare_v2(db_, "SELECT id, records FROM journal ORDER BY id", -1, &st, nullptr);
  if (rc != SQLITE_OK) return fail(rc, "loading the journal");
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const auto* r = static_cast<const char*>(sqlite3_column_blob(st, 1));
    const int rlen = sqlite3_column_bytes(st, 1);
    if (!journal(sqlite3_column_int64(st, 0),
                 std::string_view(r ? r : "", static_cast<size_t>(rlen)))) {
      rc = SQLITE_CORRUPT;
      break;
    }
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return fail(rc, "loading the journal");
  return std::nullopt;
}

Error Database::step_once(sqlite3_stmt* st, std::string_view doing) {
  const int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return fail(rc, doing);
  return std::nullopt;
}

Error Database::write_rows(const std::vector<Row>& rows) {
  for (const Row& row : rows) {
    sqlite3_stmt* st = row.erase ? erase_ : upsert_;
    sqlite3_bind_blob(st, 1, row.key.data(), static_cast<int>(row.key.size()), SQLITE_STATIC);
    if (!row.erase) {
      sqlite3_bind_blob(st, 2, row.state.data(), static_cast<int>(row.state.size()), SQLITE_STATIC);
      sqlite3_bind_int64(st, 3, row.expires_at_ms);
    }
    if (auto e = step_once(st, "writing counters")) return e;
  }
  return std::nullopt;
}

Error Database::append_journal(std::string_view records, int64_t& id) {
  if (auto e = check_not_moved()) return e;
  sqlite3_bind_blob64(append_, 1, records.data(), records.size(), SQLITE_STATIC);
  // One statement outside BEGIN is its own transaction.
  if (auto e = step_once(append_, "writing the journal")) return e;
  id = sqlite3_last_insert_rowid(db_);
  return std::nullopt;
}

Error Database::fold(const std::vector<Row>& rows, int64_t drop_journal_upto) {
  if (rows.empty() && drop_journal_upto <= 0) return std::nullopt;
  if (auto e = check_not_moved()) return e;
  // Deleting the folded journal first gives its pages back for the upserts: what makes room
  // on a full disk.
  if (auto e = exec("BEGIN IMMEDIATE", "folding the journal")) return e;
  if (drop_journal_upto > 0) {
    sqlite3_bind_int64(drop_journal_, 1, drop_journal_upto);
    if (auto e = step_once(drop_journal_, "folding the journal")) return e;
  }
  if (auto e = write_rows(rows)) return e;
  return exec("COMMIT", "committing counters");
}

Error Database::replace_all(const std::vector<Row>& rows) {
  if (auto e = check_not_moved()) return e;
  if (auto e = exec("BEGIN IMMEDIATE; DELETE FROM journal; DELETE FROM counters;",
                    "rewriting counters")) {
    return e;
  }
  if (auto e = write_rows(rows)) return e;
  return exec("COMMIT", "committing counters");
}

Error Database::load_records(const RecordFn& record) {
  sqlite3_stmt* st = nullptr;
  int rc = sqlite3_prepare_v2(db_, "SELECT key, value, expires_ms FROM records", -1, &st, nullptr);
  if (rc != SQLITE_OK) return fail(rc, "loading records");
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const auto* k = static_cast<const char*>(sqlite3_column_blob(st, 0));
    const int klen = sqlite3_column_bytes(st, 0);
    const auto* v = static_cast<const char*>(sqlite3_column_blob(st, 1));
    const int vlen = sqlite3_column_bytes(st, 1);
    record(std::string_view(k ? k : "", static_cast<size_t>(klen)),
           std::string_view(v ? v : "", static_cast<size_t>(vlen)), sqlite3_column_int64(st, 2));
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) return fail(rc, "loading records");
  return std::nullopt;
}

Error Database::write_records(const std::vector<RecordRow>& rows, bool replace) {
  if (rows.empty() && !replace) return std::nullopt;
  if (auto e = check_not_moved()) return e;
  if (auto e = exec(replace ? "BEGIN IMMEDIATE; DELETE FROM records;" : "BEGIN IMMEDIATE",
                    "writing records")) {
    return e;
  }
  for (const RecordRow& row : rows) {
    sqlite3_stmt* st = row.erase ? record_erase_ : record_upsert_;
    sqlite3_bind_blob(st, 1, row.key.data(), static_cast<int>(row.key.size()), SQLITE_STATIC);
    if (!row.erase) {
      // A zero-length blob must still be a blob, not NULL: a pointer that is never null.
      sqlite3_bind_blob(st, 2, row.value.empty() ? "" : row.value.data(),
                        static_cast<int>(row.value.size()), SQLITE_STATIC);
      sqlite3_bind_int64(st, 3, row.expires_at_ms);
    }
    if (auto e = step_once(st, "writing records")) return e;
  }
  return exec("COMMIT", "committing records");
}

int64_t Database::size_bytes() {
  if (!db_) return -1;
  int64_t pages = -1;
  int64_t page_size = 0;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_,
                         "SELECT page_count, page_size FROM pragma_page_count(), "
                         "pragma_page_size()",
                         -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW) {
    pages = sqlite3_column_int64(st, 0);
    page_size = sqlite3_column_int64(st, 1);
  }
  sqlite3_finalize(st);
  return pages < 0 ? -1 : pages * page_size;
}

}  // namespace sluice::sqlite_plugin
