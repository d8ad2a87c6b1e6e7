// Live: allowed and blocked requests per second over the last 15 minutes (Qt Charts),
// filtered by model and tier; totals; the series table and the most blocked subjects;
// pause/resume. Redraws only when new numbers arrive and the tab is visible.
#pragma once

#include <QWidget>

class QComboBox;
class QLabel;
class QPushButton;
class QTableView;
class QChart;
class QChartView;
class QLineSeries;
class QDateTimeAxis;
class QValueAxis;

namespace sluice::admin {

class LiveStats;
class StatsPoller;

class LiveTab : public QWidget {
  Q_OBJECT
 public:
  LiveTab(LiveStats* stats, StatsPoller* poller, QWidget* parent = nullptr);
  void togglePause();
  QTableView* seriesView() const { return seriesView_; }
  QTableView* blockedView() const { return topView_; }

 signals:
  // The outcome of a row's Inspect and Reset (the main window shows resets in its bar).
  void subjectInspected(bool ok, const QString& text);
  void subjectReset(bool ok, const QString& text);

 protected:
  void showEvent(QShowEvent* e) override;

 private:
  void addSubjectActions_();
  struct Chart {
    QChart* chart;
    QChartView* view;
    QLineSeries* a;
    QLineSeries* b;
    QDateTimeAxis* x;
    QValueAxis* y;
  };
  Chart makeChart_(const QString& title, const QString& aName, const QColor& aColor,
                   const QString& bName, const QColor& bColor);
  void redraw_();
  void refreshFilters_();
  void applyFilter_();

  LiveStats* stats_;
  StatsPoller* poller_;
  QComboBox* resourceFilter_;
  QComboBox* tierFilter_;
  QComboBox* blockedWindow_;
  QLabel* queues_ = nullptr;
  QPushButton* pause_;
  QLabel* totals_;
  QLabel* updated_;
  Chart allowed_;
  Chart blocked_;
  QTableView* seriesView_;
  QTableView* topView_;
  bool dirty_ = false;
};

}  // namespace sluice::admin
