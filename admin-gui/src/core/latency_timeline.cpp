#include "core/latency_timeline.h"

#include <algorithm>
#include <numeric>

namespace sluice::admin {

uint64_t histogramQuantile(const std::vector<uint64_t>& upperNs,
                           const std::vector<uint64_t>& counts, double q) {
  const uint64_t n = std::accumulate(counts.begin(), counts.end(), uint64_t{0});
  if (n == 0 || upperNs.size() != counts.size()) return 0;
  const auto rank = static_cast<uint64_t>(q * static_cast<double>(n - 1)) + 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= rank) return upperNs[i];
  }
  return upperNs.back();
}

void LatencyTimeline::add(int64_t nowMs, const std::string& instance,
                          const std::vector<uint64_t>& upperNs,
                          const std::vector<uint64_t>& counts) {
  if (counts.empty() || upperNs.size() != counts.size()) return;
  const int64_t second = nowMs / 1000;
  const bool sameEngine = instance == instance_ && baseCounts_.size() == counts.size();
  bool grew = sameEngine;
  for (size_t i = 0; grew && i < counts.size(); ++i) grew = counts[i] >= baseCounts_[i];
  if (sameEngine && grew && second == baseSecond_) return;
  if (sameEngine && grew && second > baseSecond_) {
    std::vector<uint64_t> delta(counts.size());
    for (size_t i = 0; i < counts.size(); ++i) delta[i] = counts[i] - baseCounts_[i];
    Sample s;
    s.from = baseSecond_ + 1;
    s.to = second;
    s.decisions = std::accumulate(delta.begin(), delta.end(), uint64_t{0});
    s.p50Ns = histogramQuantile(upperNs, delta, 0.50);
    s.p99Ns = histogramQuantile(upperNs, delta, 0.99);
    samples_.push_back(s);
    while (!samples_.empty() && samples_.front().to <= second - keepSeconds) samples_.pop_front();
  }
  // A restart, or a reply older than the baseline (counts went down): start from here.
  instance_ = instance;
  baseSecond_ = second;
  baseCounts_ = counts;
}

const LatencyTimeline::Sample* LatencyTimeline::at(int64_t second) const {
  auto it = std::lower_bound(samples_.begin(), samples_.end(), second,
                             [](const Sample& s, int64_t sec) { return s.to < sec; });
  return it != samples_.end() && it->from <= second ? &*it : nullptr;
}

}  // namespace sluice::admin
