#include "sluice/timer.h"

#include <algorithm>
#include <chrono>

namespace sluice {

int64_t SteadyTimer::now_ns() const {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void SteadyTimer::wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                             int64_t deadline_ns) const {
  const int64_t left = deadline_ns - now_ns();
  if (left > 0) cv.wait_for(lock, std::chrono::nanoseconds(left));
}

SteadyTimer& SteadyTimer::instance() {
  static SteadyTimer timer;
  return timer;
}

void ManualTimer::wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                             int64_t deadline_ns) const {
  if (now_ns() >= deadline_ns) return;
  const std::pair<std::mutex*, std::condition_variable*> me{lock.mutex(), &cv};
  {
    MutexLock guard(mu_);
    waiters_.push_back(me);
  }
  // advance_ms() stores the time before it reads the waiters: either it finds this one and
  // notifies it under its mutex (which `lock` holds until wait() releases it), or the time
  // read here is already the new one.
  if (now_ns() < deadline_ns) cv.wait(lock);
  MutexLock guard(mu_);
  waiters_.erase(std::find(waiters_.begin(), waiters_.end(), me));
}

void ManualTimer::advance_ms(int64_t ms) {
  now_.fetch_add(ms * 1'000'000, std::memory_order_acq_rel);
  std::vector<std::pair<std::mutex*, std::condition_variable*>> waiting;
  {
    MutexLock guard(mu_);
    waiting = waiters_;
  }
  for (auto [mu, cv] : waiting) {
    std::lock_guard guard(*mu);
    cv->notify_all();
  }
}

}  // namespace sluice
