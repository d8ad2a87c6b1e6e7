// The journal's record format: what the writer appends is what a start-up replays.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "journal.h"

namespace sluice::sqlite_plugin::journal {
namespace {

struct Replayed {
  std::vector<std::string> events;
  bool ok = false;
};

Replayed replay_all(const std::string& row) {
  Replayed r;
  r.ok = replay(
      row,
      [&](std::string_view key, std::string_view state, int64_t expires) {
        r.events.push_back("put " + std::string(key) + "=" + std::string(state) + "@" +
                           std::to_string(expires));
      },
      [&](std::string_view key) { r.events.push_back("erase " + std::string(key)); });
  return r;
}

// Puts and erases come back in the order written, binary keys and states included.
TEST(SqliteJournal, ReplaysRecordsInOrder) {
  std::string row(1, static_cast<char>(kFormat));
  append_put(row, "a", "s1", 10);
  append_erase(row, "b");
  append_put(row, std::string("k\0z", 3), "", -5);
  const Replayed r = replay_all(row);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.events, (std::vector<std::string>{"put a=s1@10", "erase b",
                                                "put " + std::string("k\0z", 3) + "=@-5"}));
}

// A key decided again before the writer's turn rewrites its record in place when the state
// keeps its length, and not otherwise.
TEST(SqliteJournal, OverwritesARecordOfTheSameLength) {
  std::string row(1, static_cast<char>(kFormat));
  const size_t at = append_put(row, "a", "s1", 10);
  append_put(row, "b", "t1", 20);
  EXPECT_TRUE(overwrite(row, at, "s2", 11));
  EXPECT_FALSE(overwrite(row, at, "longer", 12));
  EXPECT_EQ(replay_all(row).events, (std::vector<std::string>{"put a=s2@11", "put b=t1@20"}));
}

// A truncated row, an unknown record kind or another format version is refused.
TEST(SqliteJournal, RefusesMalformedRows) {
  std::string row(1, static_cast<char>(kFormat));
  append_put(row, "key", "state", 1);
  EXPECT_TRUE(replay_all(row).ok);
  EXPECT_FALSE(replay_all(row.substr(0, row.size() - 1)).ok);
  EXPECT_FALSE(replay_all(row + "\x07").ok);
  std::string other = row;
  other[0] = static_cast<char>(kFormat + 1);
  EXPECT_FALSE(replay_all(other).ok);
  EXPECT_FALSE(replay_all("").ok);
}

}  // namespace
}  // namespace sluice::sqlite_plugin::journal
