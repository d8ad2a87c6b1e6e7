// One SQLite connection to the counters file: schema and migrations, load, the journal, and
// the counters table the journal is folded into.
// Not thread-safe: after open it is used by the store's writer thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"

struct sqlite3;
struct sqlite3_stmt;

namespace sluice::sqlite_plugin {

// The schema version this build writes. A file with a higher version is refused.
inline constexpr int kSchemaVersion = 4;

// One key's change for the file: an upsert, or an erase when `erase` is set.
struct Row {
  std::string key;
  std::string state;
  int64_t expires_at_ms = 0;
  bool erase = false;
};

// One record's change for the file (ABI 1.4 records): an upsert, or an erase when `erase` is set.
struct RecordRow {
  std::string key;
  std::string value;
  int64_t expires_at_ms = 0;
  bool erase = false;
};

// Every failing call returns one sentence that says what is wrong with the file and what
// to do about it; the connection is then unusable until close() and open() again.
using Error = std::optional<std::string>;

class Database {
 public:
  explicit Database(const Config& config) : config_(config) {}
  ~Database() { close(); }
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  // Opens (creating if needed) the file, takes its lock and brings the schema up to date.
  Error open();
  bool is_open() const { return db_ != nullptr; }
  void close();

  using RowFn =
      std::function<void(std::string_view key, std::string_view state, int64_t expires_at_ms)>;
  using JournalFn = std::function<bool(int64_t id, std::string_view records)>;
  // Calls `row` for every row of the counters table, then `journal` for every journal row in
  // the order written. A `journal` that returns false marks the file as corrupt.
  Error load(const RowFn& row, const JournalFn& journal);

  // Appends one journal row in its own transaction; `id` receives its id.
  Error append_journal(std::string_view records, int64_t& id);
  // Writes `rows` into the counters table and, when `drop_journal_upto` > 0, deletes the
  // journal rows up to that id, all in one transaction.
  Error fold(const std::vector<Row>& rows, int64_t drop_journal_upto);
  // Replaces the whole file's content (table and journal) by `rows`, in one transaction.
  Error replace_all(const std::vector<Row>& rows);

  using RecordFn =
      std::function<void(std::string_view key, std::string_view value, int64_t expires_at_ms)>;
  // Calls `record` for every row of the records table.
  Error load_records(const RecordFn& record);
  // Writes `rows` into the records table in one transaction; with `replace`, in place of
  // everything the table held.
  Error write_records(const std::vector<RecordRow>& rows, bool replace);

  // Logical size of the main file (pages in use times page size); -1 if unknown.
  int64_t size_bytes();

 private:
  Error fail(int rc, std::string_view doing);
  Error exec(const char* sql, std::string_view doing);
  Error migrate();
  Error check_not_moved();
  Error take_ownership();
  Error write_rows(const std::vector<Row>& rows);
  Error step_once(sqlite3_stmt* st, std::string_view doing);

  const Config& config_;
  int owner_fd_ = -1;  // holds the flock that makes this engine the file's owner
  sqlite3* db_ = nullptr;
  sqlite3_stmt* upsert_ = nullptr;
  sqlite3_stmt* erase_ = nullptr;
  sqlite3_stmt* append_ = nullptr;
  sqlite3_stmt* drop_journal_ = nullptr;
  sqlite3_stmt* record_upsert_ = nullptr;
  sqlite3_stmt* record_erase_ = nullptr;
};

}  // namespace sluice::sqlite_plugin
