#include "core/event_loop_probe.h"

#include <algorithm>

namespace sluice::admin {

EventLoopProbe::EventLoopProbe(QObject* parent, int intervalMs)
    : QObject(parent), intervalMs_(intervalMs) {
  timer_.setTimerType(Qt::PreciseTimer);
  timer_.setInterval(intervalMs_);
  connect(&timer_, &QTimer::timeout, this, [this] {
    const qint64 now = clock_.nsecsElapsed();
    const double late = static_cast<double>(now - lastNs_) / 1e6 - intervalMs_;
    lastNs_ = now;
    const double v = std::max(0.0, late);
    maxMs_ = std::max(maxMs_, v);
    samples_.push_back(v);
  });
}

void EventLoopProbe::start() {
  reset();
  timer_.start();
}

void EventLoopProbe::reset() {
  clock_.start();
  lastNs_ = 0;
  maxMs_ = 0;
  samples_.clear();
}

double EventLoopProbe::percentileMs(double q) const {
  if (samples_.empty()) return 0;
  std::vector<double> s = samples_;
  const auto k = static_cast<size_t>(q * static_cast<double>(s.size() - 1));
  std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(k), s.end());
  return s[k];
}

}  // namespace sluice::admin
