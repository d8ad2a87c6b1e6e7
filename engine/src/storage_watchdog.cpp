#include "storage_watchdog.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "sluice/policy.h"

namespace sluice {

struct StorageWatchdog::Submission {
  std::array<sluice_item, kMaxLimitsPerResource> items{};
  std::array<sluice_item_result, kMaxLimitsPerResource> results{};
  std::array<char, kMaxKeyBytes> keys;
  sluice_batch batch{};
  void* call = nullptr;
  sluice_item_result* results_out = nullptr;
  StorageWatchdog* watchdog = nullptr;
  int64_t deadline_ns = 0;
  bool timed_out = false;
  Submission* prev = nullptr;  // in the in-flight list, or the free list
  Submission* next = nullptr;
};

StorageWatchdog::StorageWatchdog(Storage& storage, const Timer& timer, int64_t timeout_ms,
                                 Complete complete, void* owner)
    : storage_(storage),
      timer_(timer),
      timeout_ms_(timeout_ms),
      complete_(complete),
      owner_(owner),
      message_(fmt::format("storage did not answer within {} ms", timeout_ms)) {
  thread_ = std::thread([this] { run(); });
}

StorageWatchdog::~StorageWatchdog() { stop(); }

void StorageWatchdog::stop() {
  if (!thread_.joinable()) return;
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void StorageWatchdog::submit(const sluice_batch& batch, sluice_item_result* results_out,
                             void* call) {
  Submission* sub;
  {
    MutexLock lock(mu_);
    if (free_ != nullptr) {
      sub = free_;
      free_ = sub->next;
    } else {
      sub = all_.emplace_back(std::make_unique<Submission>()).get();
      sub->watchdog = this;
    }
    // The keys of a batch lie together in the caller's buffer: one copy, then each item's key
    // points at the same offset in ours.
    const size_t n = batch.count;
    const char* base = batch.items[0].key;
    const char* end = base;
    for (size_t i = 0; i < n; ++i) {
      base = std::min(base, batch.items[i].key);
      end = std::max(end, batch.items[i].key + batch.items[i].key_len);
    }
    std::copy(base, end, sub->keys.data());
    for (size_t i = 0; i < n; ++i) {
      sub->items[i] = batch.items[i];
      sub->items[i].key = sub->keys.data() + (batch.items[i].key - base);
    }
    sub->batch = {batch.now_ms, n, sub->items.data(), sub->results.data()};
    sub->call = call;
    sub->results_out = results_out;
    sub->timed_out = false;
    sub->deadline_ns = timer_.now_ns() + timeout_ms_ * 1'000'000;
    sub->next = nullptr;
    sub->prev = tail_;
    (tail_ != nullptr ? tail_->next : head_) = sub;
    tail_ = sub;
    // No wake-up: the thread never sleeps longer than one timeout, and this deadline is a full
    // timeout away (waking it on every decision cost a context switch each).
  }
  storage_.submit(sub->batch, &StorageWatchdog::on_done, sub);
}

void StorageWatchdog::on_done(void* user, sluice_status status, const char* message) {
  auto* sub = static_cast<Submission*>(user);
  StorageWatchdog& w = *sub->watchdog;
  void* call;
  {
    MutexLock lock(w.mu_);
    call = sub->timed_out ? nullptr : sub->call;
    if (call != nullptr) {
      (sub->prev != nullptr ? sub->prev->next : w.head_) = sub->next;
      (sub->next != nullptr ? sub->next->prev : w.tail_) = sub->prev;
      std::copy_n(sub->results.data(), sub->batch.count, sub->results_out);
    }
    sub->next = w.free_;
    w.free_ = sub;
  }
  // A submission already answered with a timeout is only recycled: its caller has moved on.
  if (call != nullptr) w.complete_(w.owner_, call, status, message);
}

void StorageWatchdog::run() {
  std::vector<void*> overdue;
  overdue.reserve(64);
  MutexLock lock(mu_);
  while (!stopping_) {
    const int64_t now = timer_.now_ns();
    if (head_ == nullptr) {
      timer_.wait_until(lock.native(), cv_, now + timeout_ms_ * 1'000'000);
      continue;
    }
    if (head_->deadline_ns > now) {
      timer_.wait_until(lock.native(), cv_, head_->deadline_ns);
      continue;
    }
    while (head_ != nullptr && head_->deadline_ns <= now) {
      Submission* sub = head_;
      sub->timed_out = true;
      overdue.push_back(sub->call);
      head_ = sub->next;
      (head_ != nullptr ? head_->prev : tail_) = nullptr;
    }
    lock.unlock();
    for (void* call : overdue) complete_(owner_, call, SLUICE_ERR_TIMEOUT, message_.c_str());
    overdue.clear();
    lock.lock();
  }
}

}  // namespace sluice
