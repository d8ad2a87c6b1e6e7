// Live: four charts over the last 1, 5 or 15 minutes (allowed and blocked per second, blocked
// %, decision latency), in total or one line per model, tier or rule, filtered by model and
// tier, with hover values and an axis a single burst does not flatten; totals; the series
// table, every model's warm-up, and who is blocked now; pause/resume. Redraws only when new
// numbers arrive and the tab is visible.
#pragma once

#include <QWidget>

class QCheckBox;
class QComboBox;
class QLabel;
class QPushButton;
class QTableView;

namespace sluice::admin {

class LiveChartView;
class LiveStats;
class StatsPoller;
class WarmupOverview;

class LiveTab : public QWidget {
  Q_OBJECT
 public:
  LiveTab(LiveStats* stats, StatsPoller* poller, QWidget* parent = nullptr);
  void togglePause();
  QTableView* seriesView() const { return seriesView_; }
  QTableView* blockedView() const { return topView_; }
  QTableView* warmupView() const { return warmupView_; }
  WarmupOverview* warmupOverview() const { return warmup_; }
  LiveChartView* allowedChart() const { return allowed_; }
  LiveChartView* blockedChart() const { return blocked_; }
  LiveChartView* blockedPercentChart() const { return percent_; }
  LiveChartView* latencyChart() const { return latency_; }

 signals:
  // The outcome of a row's Inspect and Reset (the main window shows resets in its bar).
  void subjectInspected(bool ok, const QString& text);
  void subjectReset(bool ok, const QString& text);

 protected:
  void showEvent(QShowEvent* e) override;

 private:
  void addSubjectActions_();
  QWidget* makeWarmupPane_(QWidget* parent);
  void redraw_();
  void refreshFilters_();
  void applyFilter_();

  LiveStats* stats_;
  StatsPoller* poller_;
  WarmupOverview* warmup_;
  QComboBox* resourceFilter_;
  QComboBox* tierFilter_;
  QComboBox* range_;
  QComboBox* split_;
  QCheckBox* clip_;
  QComboBox* blockedWindow_;
  QLabel* queues_ = nullptr;
  QPushButton* pause_;
  QLabel* totals_;
  QLabel* updated_;
  LiveChartView* allowed_ = nullptr;
  LiveChartView* blocked_ = nullptr;
  LiveChartView* percent_ = nullptr;
  LiveChartView* latency_ = nullptr;
  QTableView* seriesView_;
  QTableView* topView_;
  QTableView* warmupView_ = nullptr;
  QLabel* warmupTitle_ = nullptr;
  bool dirty_ = false;
};

}  // namespace sluice::admin
