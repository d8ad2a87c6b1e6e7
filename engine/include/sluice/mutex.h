// A mutex that clang's thread-safety analysis understands (-Wthread-safety, on in every clang
// build: scripts/fuzz's build-fuzz is one, and scripts/test runs it). Members name the mutex
// that guards them with SLUICE_GUARDED_BY; functions that expect it held say SLUICE_REQUIRES.
// With other compilers the annotations compile to nothing.
#pragma once

#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define SLUICE_TSA(x) __attribute__((x))
#else
#define SLUICE_TSA(x)
#endif

#define SLUICE_CAPABILITY(name) SLUICE_TSA(capability(name))
#define SLUICE_SCOPED_CAPABILITY SLUICE_TSA(scoped_lockable)
#define SLUICE_GUARDED_BY(mu) SLUICE_TSA(guarded_by(mu))
#define SLUICE_PT_GUARDED_BY(mu) SLUICE_TSA(pt_guarded_by(mu))
#define SLUICE_REQUIRES(...) SLUICE_TSA(requires_capability(__VA_ARGS__))
#define SLUICE_ACQUIRE(...) SLUICE_TSA(acquire_capability(__VA_ARGS__))
#define SLUICE_RELEASE(...) SLUICE_TSA(release_capability(__VA_ARGS__))
#define SLUICE_EXCLUDES(...) SLUICE_TSA(locks_excluded(__VA_ARGS__))
#define SLUICE_NO_THREAD_SAFETY_ANALYSIS SLUICE_TSA(no_thread_safety_analysis)

namespace sluice {

class SLUICE_CAPABILITY("mutex") Mutex {
 public:
  void lock() SLUICE_ACQUIRE() { mu_.lock(); }
  void unlock() SLUICE_RELEASE() { mu_.unlock(); }

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// Holds a Mutex for its scope; can wait on a condition variable (releasing and retaking the
// mutex, which the analysis treats as held throughout, as it is whenever the caller runs).
class SLUICE_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) SLUICE_ACQUIRE(mu) : lock_(mu.mu_) {}
  ~MutexLock() SLUICE_RELEASE() = default;
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // Lets go of the mutex for a while (to call out without holding it) and takes it back.
  void unlock() SLUICE_RELEASE() { lock_.unlock(); }
  void lock() SLUICE_ACQUIRE() { lock_.lock(); }

  // For condition variables and APIs that take a std::unique_lock (sluice/timer.h).
  std::unique_lock<std::mutex>& native() { return lock_; }
  // Waits for a notification (spurious wake-ups included: call it in a loop over the
  // condition, which the analysis then checks as read under the mutex).
  void wait(std::condition_variable& cv) { cv.wait(lock_); }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace sluice
