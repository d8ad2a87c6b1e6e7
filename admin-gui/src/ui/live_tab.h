// Live: allowed and blocked requests per second over the last 15 minutes (Qt Charts),
// filtered by model and tier; totals; the series table and the most blocked subjects;
// pause/resume. Redraws only when new numbers arrive and the tab is visible.
#pragma once

#include <QPen>
#include <QWidget>
#include <vector>

class QComboBox;
class QLabel;
class QPushButton;
class QTableView;
class QChart;
class QChartView;
class QLineSeries;
class QAreaSeries;
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
  // A curve drawn as one line per run of known seconds, so time without data is a gap.
  struct Curve {
    QString name;
    QPen pen;
    std::vector<QLineSeries*> parts;  // the first carries the legend entry
  };
  struct Chart {
    QChart* chart = nullptr;
    QChartView* view = nullptr;
    Curve a, b;                      // b unused when it has no name
    QAreaSeries* gaps = nullptr;     // shaded where no engine reported
    QLineSeries* restart = nullptr;  // a vertical line where the engine restarted
    QDateTimeAxis* x = nullptr;
    QValueAxis* y = nullptr;
  };
  Chart makeChart_(const QString& title, const QString& aName, const QColor& aColor,
                   const QString& bName, const QColor& bColor);
  void setRuns_(Chart& c, Curve& curve, const QList<QList<QPointF>>& runs);
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
