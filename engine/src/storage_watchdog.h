// The storage timeout. A plugin that completes on its own thread (Redis, SQLite in commit mode)
// gets a copy of each batch, owned here, and a deadline; a thread answers the batches whose
// deadline passes first with SLUICE_ERR_TIMEOUT, and the plugin's late answer is then only
// recycled. The caller may reuse its buffers as soon as it has an answer, whichever came first.
//
// Time comes from an injected Timer: tests move a ManualTimer instead of waiting.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sluice/mutex.h"
#include "sluice/storage.h"
#include "sluice/storage_plugin.h"
#include "sluice/timer.h"

namespace sluice {

class StorageWatchdog {
 public:
  // Runs exactly once per submitted batch, with the plugin's answer (its results copied to
  // `results_out` first) or with SLUICE_ERR_TIMEOUT, on the plugin's or the watchdog's thread.
  using Complete = void (*)(void* owner, void* call, sluice_status status, const char* message);

  // Largest batch (keys of every item together) submit() accepts.
  static constexpr size_t kMaxKeyBytes = 16 * 1024;

  StorageWatchdog(Storage& storage, const Timer& timer, int64_t timeout_ms, Complete complete,
                  void* owner);
  ~StorageWatchdog();
  StorageWatchdog(const StorageWatchdog&) = delete;
  StorageWatchdog& operator=(const StorageWatchdog&) = delete;

  // Copies `batch` (items, their keys) and hands the copy to storage with a deadline of one
  // timeout from now.
  void submit(const sluice_batch& batch, sluice_item_result* results_out, void* call);
  // Stops the thread. Answers still owed by the plugin arrive later (the Storage completes them
  // when it closes) and are delivered as usual; the watchdog must outlive the Storage's close.
  void stop();

 private:
  struct Submission;
  static void on_done(void* user, sluice_status status, const char* message);
  void run();

  Storage& storage_;
  const Timer& timer_;
  const int64_t timeout_ms_;
  const Complete complete_;
  void* const owner_;
  const std::string message_;  // "storage did not answer within N ms"

  // In-flight submissions in deadline order (one timeout for all, so arrival order), and the
  // recycled ones.
  Mutex mu_;  // also guards Submission::timed_out/prev/next
  std::condition_variable cv_;
  Submission* head_ SLUICE_GUARDED_BY(mu_) = nullptr;
  Submission* tail_ SLUICE_GUARDED_BY(mu_) = nullptr;
  Submission* free_ SLUICE_GUARDED_BY(mu_) = nullptr;
  std::vector<std::unique_ptr<Submission>> all_ SLUICE_GUARDED_BY(mu_);
  bool stopping_ SLUICE_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace sluice
