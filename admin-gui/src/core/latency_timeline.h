// Decision latency over time. SL.STATS reports the engine's latency as one histogram counted
// since the engine started (docs/protocol.md, `latency`), not per second; the difference
// between two replies of the same engine is the histogram of the decisions made between them,
// and its percentiles are the latency of that interval. So the timeline has a sample per poll
// while the GUI watches, none for time it did not (before it connected, while paused it has one
// sample spanning the pause), and starts afresh when the engine restarts.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

namespace sluice::admin {

class LatencyTimeline {
 public:
  struct Sample {
    int64_t from = 0, to = 0;       // the unix seconds it covers, both included
    uint64_t decisions = 0;         // decisions made in them
    uint64_t p50Ns = 0, p99Ns = 0;  // upper bounds, as the engine's histogram gives them
  };

  // The cumulative histogram (`counts[i]` decisions took at most `upperNs[i]` ns) an engine
  // `instance` reported at `nowMs`. A first reply, another instance or counts that went down
  // only set the baseline; a reply within the same second as the baseline is skipped, so the
  // next one covers it.
  void add(int64_t nowMs, const std::string& instance, const std::vector<uint64_t>& upperNs,
           const std::vector<uint64_t>& counts);
  // Samples oldest first; those that ended more than `keepSeconds` before the newest go.
  const std::deque<Sample>& samples() const { return samples_; }
  // The sample covering `second`, or nullptr.
  const Sample* at(int64_t second) const;

  static constexpr int64_t keepSeconds = 900;

 private:
  std::deque<Sample> samples_;
  std::string instance_;
  int64_t baseSecond_ = -1;
  std::vector<uint64_t> baseCounts_;
};

// The upper bound of the bucket holding the q-quantile (0..1) of a histogram, as sluiced
// computes p50/p99; 0 for an empty histogram.
uint64_t histogramQuantile(const std::vector<uint64_t>& upperNs,
                           const std::vector<uint64_t>& counts, double q);

}  // namespace sluice::admin
