// Measures how late the GUI thread's event loop runs a timer: a 10 ms timer whose lateness
// is the time the loop was busy with something else. Used by the responsiveness test.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QTimer>
#include <vector>

namespace sluice::admin {

class EventLoopProbe : public QObject {
  Q_OBJECT
 public:
  explicit EventLoopProbe(QObject* parent = nullptr, int intervalMs = 10);
  void start();
  void stop() { timer_.stop(); }
  void reset();
  // Lateness beyond the interval, in ms.
  double maxLatenessMs() const { return maxMs_; }
  double percentileMs(double q) const;
  int samples() const { return static_cast<int>(samples_.size()); }

 private:
  QTimer timer_;
  QElapsedTimer clock_;
  int intervalMs_;
  qint64 lastNs_ = 0;
  double maxMs_ = 0;
  std::vector<double> samples_;
};

}  // namespace sluice::admin
