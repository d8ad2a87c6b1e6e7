// One Live chart: draws a ChartData (core/live_charts.h) with Qt Charts. Each curve is one
// line per run of points that have a value, so time without data is a gap (and a grey "no
// data" band where no engine reported); values above the axis are drawn at its top and marked
// with a triangle; a blocked value too small to see at the axis' scale is drawn raised and
// marked with a dot; a dotted line marks an engine restart. Under the mouse a vertical line and
// a box show the time and every curve's value there.
#pragma once

#include <QChartView>
#include <QPen>
#include <array>
#include <vector>

#include "core/live_charts.h"

class QAbstractSeries;
class QAreaSeries;
class QDateTimeAxis;
class QGraphicsLineItem;
class QGraphicsRectItem;
class QGraphicsSimpleTextItem;
class QLineSeries;
class QScatterSeries;
class QValueAxis;

namespace sluice::admin {

class LiveChartView : public QChartView {
  Q_OBJECT
 public:
  LiveChartView(const QString& title, const QString& axisTitle, QWidget* parent = nullptr);

  // Draws `data` with pens[i] for curve i (the last pen for any further curves); a restart at
  // `restartSecond` (unix seconds, -1: none) inside the chart's time is marked.
  void setData(ChartData data, const std::vector<QPen>& pens, int64_t restartSecond);
  const ChartData& data() const { return data_; }
  // What hovering `pos` (view coordinates) shows; empty outside the plot area.
  QString hoverTextAt(QPointF pos) const;

 protected:
  void mouseMoveEvent(QMouseEvent* e) override;
  void leaveEvent(QEvent* e) override;
  void resizeEvent(QResizeEvent* e) override;

 private:
  struct Curve {
    QString name;
    std::vector<QLineSeries*> parts;  // the first carries the legend entry
  };
  void setRuns_(Curve& curve, const QPen& pen, const QList<QList<QPointF>>& runs);
  void clearCurves_();
  // The series drawn over the curves: the no-data band, the restart line, the marks.
  std::array<QAbstractSeries*, 4> markSeries_() const;
  void showHover_(QPointF pos);
  void hideHover_();

  QString title_;
  ChartData data_;
  std::vector<Curve> curves_;
  QAreaSeries* gaps_ = nullptr;
  QLineSeries* restart_ = nullptr;
  QScatterSeries* clippedMarks_ = nullptr;
  QScatterSeries* raisedMarks_ = nullptr;
  QDateTimeAxis* x_ = nullptr;
  QValueAxis* y_ = nullptr;
  QGraphicsLineItem* cursorLine_ = nullptr;
  QGraphicsRectItem* hoverBox_ = nullptr;
  QGraphicsSimpleTextItem* hoverText_ = nullptr;
  QPointF hoverPos_{-1, -1};
};

}  // namespace sluice::admin
