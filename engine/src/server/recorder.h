// Recent decision requests, kept so that a draft policy can be tried on real traffic
// (SL.POLICY SIMULATE, simulate.h). Every thread that records writes to a byte ring of its own,
// so recording takes no lock another thread holds, and allocates nothing once its ring exists.
// The rings are bounded by memory (the oldest records are overwritten) and records older than
// the time bound are not replayed.
//
// What is kept is what the engine saw: resource, subject, the tier or API key the request named,
// cost, the decision and the tier and rule that made it. docs/operations.md says what this
// means for privacy; --record-seconds 0 turns it off.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/engine.h"
#include "sluice/mutex.h"

namespace sluice::server {

// One recorded request, as written and as read back (the views then point into the copy).
struct Recorded {
  // kWarmupStart/kWarmupReady: SL.WARMUP on the admin socket (resource only), so that a
  // replay warms up when the live engine did.
  enum class Kind : uint8_t { kCheck, kPeek, kAcquire, kRelease, kWarmupStart, kWarmupReady };
  int64_t time_ms = 0;
  Kind kind = Kind::kCheck;
  bool allowed = false;
  int64_t cost = 1;
  NamedCosts named;          // COST <unit> <n>
  int64_t lease_ttl_ms = 0;  // kAcquire: as requested (0: the policy's)
  uint64_t lease_id = 0;     // kAcquire: the lease granted; kRelease: the lease released
  int64_t actual = -1;       // kRelease: ACTUAL, or -1
  std::string_view resource, subject;
  std::string_view tier, api_key;         // as the request named them (may be empty)
  std::string_view live_tier, live_rule;  // what decided it
};

class Recorder {
 public:
  struct Options {
    int64_t seconds = 900;                // records older than this are not replayed
    size_t max_bytes = size_t{64} << 20;  // over every ring together
    size_t rings = 1;                     // threads expected to record (splits max_bytes)
  };
  explicit Recorder(Options options);
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Appends `r` to the calling thread's ring. Strings longer than the protocol allows are cut.
  void record(const Recorded& r);

  class Ring;
  // Several records of the calling thread under one acquisition of its ring (a pipeline's
  // decisions are recorded together).
  class Batch {
   public:
    explicit Batch(Recorder& recorder);
    ~Batch();
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;
    void append(const Recorded& r);

   private:
    Ring& ring_;
  };

  // What was recorded in the `seconds` before `now_ms` (all that is kept when 0), oldest
  // first. The views point into `storage`.
  struct Copy {
    std::vector<char> storage;
    std::vector<Recorded> records;
    int64_t from_ms = 0, to_ms = 0;  // the times of the first and last record
  };
  Copy copy(int64_t now_ms, int64_t seconds) const;

  const Options& options() const { return options_; }
  size_t ring_bytes() const { return ring_bytes_; }

 private:
  Ring& ring_for_this_thread();

  const Options options_;
  const size_t ring_bytes_;
  const uint64_t id_;  // tells this recorder's thread-local rings from another's
  mutable Mutex mu_;
  std::vector<std::unique_ptr<Ring>> rings_ SLUICE_GUARDED_BY(mu_);
};

}  // namespace sluice::server
