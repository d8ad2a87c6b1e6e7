// Configuration of one SQLite plugin instance, parsed from the host's KEY=VALUE pairs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace sluice::sqlite_plugin {

enum class Durability {
  kInterval,  // answer from memory, write behind every interval_ms
  kCommit,    // answer only after the change is committed (group commit)
};

struct Config {
  std::string path;
  Durability durability = Durability::kInterval;
  int64_t interval_ms = 50;
  // SQLite's PRAGMA synchronous. Empty means the mode's default: NORMAL for interval (a
  // process crash loses nothing committed; a power cut may lose the last commits), FULL for
  // commit (a commit survives a power cut too).
  std::string synchronous;
  int64_t busy_timeout_ms = 1000;
  bool exclusive_lock = true;  // one engine owns the file; see docs/storage-sqlite.md
  int64_t expiry_batch = 500;
  int64_t retry_max_ms = 5000;
  int64_t max_size_mb = 0;           // 0: no cap beyond the disk
  int64_t cache_mb = 64;             // SQLite page cache
  int64_t checkpoint_pages = 16384;  // WAL size (pages) that triggers a checkpoint
  // The journal is folded into the counters table once it holds fold_mb, or fold_interval_ms
  // after the last fold, whichever comes first.
  int64_t fold_mb = 64;
  int64_t fold_interval_ms = 60'000;

  std::string_view durability_name() const {
    return durability == Durability::kCommit ? "commit" : "interval";
  }
};

// Fills `out` from `count` pairs. Returns one sentence naming the offending key on error.
std::optional<std::string> parse_config(const char* const* keys, const char* const* values,
                                        size_t count, Config& out);

}  // namespace sluice::sqlite_plugin
