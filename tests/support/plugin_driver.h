// Drives a storage plugin the way the engine does: load it from the build tree (or open a
// table already in the process), submit a batch, wait for its completion, which may run inline
// or on the plugin's own thread. The one helper every C++ plugin test uses.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sluice/status.h"
#include "sluice/storage.h"
#include "sluice/storage_plugin.h"

namespace sluice::testing {

// This build tree's plugin folder.
std::string build_plugin_dir();

// Loads plugin `name` (or a path) from `plugin_dirs`, by default the build tree's folder.
Result<std::unique_ptr<Storage>> load_plugin(std::string_view name,
                                             const StorageConfig& config = {},
                                             const std::vector<std::string>& plugin_dirs = {
                                                 build_plugin_dir()});

// One batch's completion: pass &Completion::done and the object as the user data. Waits
// without a timeout or with one; thread-safe.
class Completion {
 public:
  // The sluice_completion_fn: records the status, the message and the calling thread.
  static void done(void* self, sluice_status status, const char* message);

  // Blocks until the completion has run; returns its status.
  sluice_status wait();
  // False when the completion has not run within `timeout`.
  bool wait_for(std::chrono::milliseconds timeout);
  bool finished() const;

  // What the completion said (read after it has run).
  sluice_status status() const;
  std::string message() const;
  std::thread::id thread() const;
  // How often it ran (the ABI says exactly once).
  int calls() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int calls_ = 0;
  sluice_status status_ = SLUICE_OK;
  std::string message_;
  std::thread::id thread_;
};

// Submits `batch` to `storage` and waits for its completion; returns the status and, when
// asked, the message. Allocates nothing on success.
sluice_status submit_and_wait(Storage& storage, const sluice_batch& batch,
                              std::string* message = nullptr);

// A batch's outcome: the completion's status and message, one result per item.
struct Outcome {
  sluice_status status = SLUICE_ERR_INTERNAL;
  std::string message;
  std::vector<sluice_item_result> results;
};

// Submits `items` at `now_ms` as one batch and waits for its completion.
Outcome submit_and_wait(Storage& storage, int64_t now_ms, const std::vector<sluice_item>& items);

// A record operation's outcome (ABI 1.4): the completion's status and message, the value it
// handed over (nullopt: none), and how often it had run when the wait ended.
struct RecordOutcome {
  sluice_status status = SLUICE_ERR_INTERNAL;
  std::string message;
  std::optional<std::string> value;
  int calls = 0;
};
RecordOutcome record_put_and_wait(Storage& storage, std::string_view key, std::string_view value,
                                  int64_t expires_at_ms, int64_t now_ms);
RecordOutcome record_get_and_wait(Storage& storage, std::string_view key, int64_t now_ms);
RecordOutcome record_delete_and_wait(Storage& storage, std::string_view key, int64_t now_ms);

}  // namespace sluice::testing
