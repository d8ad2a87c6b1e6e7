#include "ui/live_chart_view.h"

#include <QAreaSeries>
#include <QBrush>
#include <QDateTime>
#include <QDateTimeAxis>
#include <QGraphicsLineItem>
#include <QGraphicsRectItem>
#include <QGraphicsSimpleTextItem>
#include <QLegendMarker>
#include <QLineSeries>
#include <QMouseEvent>
#include <QScatterSeries>
#include <QValueAxis>
#include <cmath>

namespace sluice::admin {

namespace {
// A tick interval that divides `top` into 2 to 6 steps of 1, 2, 2.5 or 5 times a power of
// ten, so the labels are round numbers.
double tickInterval(double top) {
  for (int steps : {4, 5, 3, 6, 2}) {
    const double step = top / steps;
    const double power = std::pow(10.0, std::floor(std::log10(step)));
    for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
      if (std::abs(step - m * power) < 1e-9 * top) return step;
  }
  return top / 4;
}

// Where point i of `c` is drawn: the middle of the time it covers, in ms for QDateTimeAxis.
qreal xOf(const ChartData& c, size_t i) {
  return static_cast<qreal>(c.x[i]) * 1000.0 + static_cast<qreal>(c.step - 1) * 500.0;
}
}  // namespace

LiveChartView::LiveChartView(const QString& title, const QString& axisTitle, QWidget* parent)
    : QChartView(new QChart, parent), title_(title) {
  QChart* c = chart();
  c->setTitle(title);
  // Beside the plot rather than above it: the charts are wider than they are tall.
  c->legend()->setAlignment(Qt::AlignRight);
  c->setMargins(QMargins(2, 2, 2, 2));
  x_ = new QDateTimeAxis(c);
  x_->setFormat(QStringLiteral("HH:mm"));
  x_->setTickCount(6);
  y_ = new QValueAxis(c);
  y_->setLabelFormat(QStringLiteral("%.0f"));
  if (!axisTitle.isEmpty()) y_->setTitleText(axisTitle);
  y_->setRange(0, 1);
  c->addAxis(x_, Qt::AlignBottom);
  c->addAxis(y_, Qt::AlignLeft);

  auto* gapTop = new QLineSeries(c);
  gaps_ = new QAreaSeries(gapTop);
  gaps_->setName(tr("no data"));
  gaps_->setPen(Qt::NoPen);
  gaps_->setBrush(QColor(0x9a, 0xa0, 0xa6, 60));
  restart_ = new QLineSeries(c);
  restart_->setName(tr("engine restarted"));
  QPen restartPen(QColor(0x5f, 0x63, 0x68), 1.5);
  restartPen.setStyle(Qt::DotLine);
  restart_->setPen(restartPen);
  clippedMarks_ = new QScatterSeries(c);
  clippedMarks_->setName(tr("above the axis"));
  clippedMarks_->setMarkerShape(QScatterSeries::MarkerShapeTriangle);
  clippedMarks_->setMarkerSize(8);
  clippedMarks_->setColor(QColor(0x70, 0x1a, 0x14));
  clippedMarks_->setBorderColor(QColor(0x70, 0x1a, 0x14));
  raisedMarks_ = new QScatterSeries(c);
  raisedMarks_->setName(tr("too few to see: raised"));
  raisedMarks_->setMarkerShape(QScatterSeries::MarkerShapeCircle);
  raisedMarks_->setMarkerSize(6);
  raisedMarks_->setColor(QColor(0xb3, 0x26, 0x1e));
  raisedMarks_->setBorderColor(QColor(0xb3, 0x26, 0x1e));
  for (QAbstractSeries* s : markSeries_()) {
    c->addSeries(s);
    s->attachAxis(x_);
    s->attachAxis(y_);
    s->setVisible(false);
  }

  // The hover line and box live in the chart's scene, above everything.
  cursorLine_ = new QGraphicsLineItem(c);
  cursorLine_->setPen(QPen(QColor(0x5f, 0x63, 0x68, 160), 1));
  cursorLine_->setZValue(20);
  cursorLine_->hide();
  hoverBox_ = new QGraphicsRectItem(c);
  hoverBox_->setBrush(QColor(255, 255, 255, 235));
  hoverBox_->setPen(QPen(QColor(0x9a, 0xa0, 0xa6)));
  hoverBox_->setZValue(21);
  hoverBox_->hide();
  hoverText_ = new QGraphicsSimpleTextItem(hoverBox_);

  setRenderHint(QPainter::Antialiasing);
  setMouseTracking(true);
  viewport()->setMouseTracking(true);
  setMinimumHeight(150);
}

std::array<QAbstractSeries*, 4> LiveChartView::markSeries_() const {
  return {gaps_, restart_, clippedMarks_, raisedMarks_};
}

void LiveChartView::clearCurves_() {
  for (auto& curve : curves_)
    for (QLineSeries* part : curve.parts) {
      chart()->removeSeries(part);
      delete part;
    }
  curves_.clear();
}

void LiveChartView::setRuns_(Curve& curve, const QPen& pen, const QList<QList<QPointF>>& runs) {
  // At least one part, which holds the curve's legend entry even while it has no points.
  while (curve.parts.size() < std::max<size_t>(1, static_cast<size_t>(runs.size()))) {
    auto* part = new QLineSeries(chart());
    part->setName(curve.name);
    part->setPen(pen);
    chart()->addSeries(part);
    part->attachAxis(x_);
    part->attachAxis(y_);
    // One legend entry per curve, however many runs it is drawn in.
    if (!curve.parts.empty())
      for (auto* marker : chart()->legend()->markers(part)) marker->setVisible(false);
    curve.parts.push_back(part);
  }
  for (size_t i = 0; i < curve.parts.size(); ++i) {
    curve.parts[i]->setPen(pen);
    // replace() swaps a whole run at once: one repaint instead of 900 point insertions.
    if (i < static_cast<size_t>(runs.size()))
      curve.parts[i]->replace(runs[static_cast<qsizetype>(i)]);
    else
      curve.parts[i]->clear();
  }
}

void LiveChartView::setData(ChartData data, const std::vector<QPen>& pens, int64_t restartSecond) {
  data_ = std::move(data);
  const ChartData& d = data_;
  // Another set of curves (a new split or filter): rebuild them, so the legend lists them
  // in order; otherwise only their points change.
  bool sameCurves = curves_.size() == d.curves.size();
  for (size_t i = 0; sameCurves && i < d.curves.size(); ++i)
    sameCurves = curves_[i].name == d.curves[i].name;
  if (!sameCurves) {
    clearCurves_();
    for (const auto& c : d.curves) curves_.push_back({c.name, {}});
    for (size_t c = 0; c < curves_.size(); ++c)
      setRuns_(curves_[c], pens.empty() ? QPen() : pens[std::min(c, pens.size() - 1)], {});
    // The band, restart line and burst marks after the curves, so the legend lists the
    // curves first.
    for (QAbstractSeries* s : markSeries_()) {
      chart()->removeSeries(s);
      chart()->addSeries(s);
      s->attachAxis(x_);
      s->attachAxis(y_);
    }
  }
  if (d.x.empty()) {
    for (auto& curve : curves_) setRuns_(curve, pens.empty() ? QPen() : pens.front(), {});
    for (QAbstractSeries* s : markSeries_()) s->setVisible(false);
    return;
  }
  const qreal top = d.scale.top;
  QList<QPointF> clipped, raised;
  for (size_t c = 0; c < d.curves.size(); ++c) {
    QList<QList<QPointF>> runs;
    bool inRun = false;
    for (size_t i = 0; i < d.x.size(); ++i) {
      const double v = d.curves[c].y[i];
      if (std::isnan(v)) {
        inRun = false;
        continue;
      }
      if (!inRun) runs.emplace_back();
      inRun = true;
      const QPointF at(xOf(d, i), d.drawnY(d.curves[c], i));
      runs.back().append(at);
      if (v > top) clipped.append(at);
      if (d.raised(d.curves[c], i)) raised.append(at);
    }
    const QPen& pen = pens.empty() ? QPen() : pens[std::min(c, pens.size() - 1)];
    setRuns_(curves_[c], pen, runs);
  }
  // The no-data band: from the start to the end of every run of unknown points.
  QList<QPointF> band;
  const qreal from = static_cast<qreal>(d.x.front()) * 1000.0;
  const qreal to = static_cast<qreal>(d.x.back() + d.step - 1) * 1000.0;
  for (size_t i = 0; i < d.x.size();) {
    if (d.known[i]) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j + 1 < d.x.size() && !d.known[j + 1]) ++j;
    const qreal a = i == 0 ? from : xOf(d, i - 1);
    const qreal b = j + 1 == d.x.size() ? to : xOf(d, j + 1);
    band << QPointF(a, 0) << QPointF(a, top) << QPointF(b, top) << QPointF(b, 0);
    i = j + 1;
  }
  gaps_->upperSeries()->replace(band);
  gaps_->setVisible(!band.isEmpty());
  const bool restartShown = restartSecond >= d.x.front() && restartSecond <= d.x.back() + d.step;
  restart_->replace(restartShown
                        ? QList<QPointF>{{restartSecond * 1000.0, 0}, {restartSecond * 1000.0, top}}
                        : QList<QPointF>{});
  restart_->setVisible(restartShown);
  clippedMarks_->replace(clipped);
  clippedMarks_->setVisible(!clipped.isEmpty());
  raisedMarks_->replace(raised);
  raisedMarks_->setVisible(!raised.isEmpty());
  chart()->setTitle(d.scale.clipped ? tr("%1 — peak %2%3 above the axis")
                                          .arg(title_)
                                          .arg(d.scale.peak, 0, 'f', d.decimals)
                                          .arg(d.unit)
                                    : title_);
  x_->setFormat(to - from <= 120'000 ? QStringLiteral("HH:mm:ss") : QStringLiteral("HH:mm"));
  x_->setRange(QDateTime::fromMSecsSinceEpoch(static_cast<qint64>(from)),
               QDateTime::fromMSecsSinceEpoch(static_cast<qint64>(to)));
  const double interval = tickInterval(top);
  y_->setTickType(QValueAxis::TicksDynamic);
  y_->setTickAnchor(0);
  y_->setTickInterval(interval);
  y_->setLabelFormat(std::abs(interval - std::round(interval)) < 1e-9 ? QStringLiteral("%.0f")
                                                                      : QStringLiteral("%.1f"));
  y_->setRange(0, top);
  if (hoverBox_->isVisible()) showHover_(hoverPos_);
}

QString LiveChartView::hoverTextAt(QPointF pos) const {
  const QPointF at = chart()->mapFromScene(mapToScene(pos.toPoint()));
  if (data_.x.empty() || !chart()->plotArea().contains(at)) return {};
  // The point drawn nearest to the cursor (a point of several seconds sits in their middle).
  const double t = chart()->mapToValue(at).x() / 1000.0;
  const double slot = (t - static_cast<double>(data_.x.front()) - (data_.step - 1) / 2.0) /
                      static_cast<double>(data_.step);
  const auto i = std::clamp<long>(std::lround(slot), 0, static_cast<long>(data_.x.size()) - 1);
  return data_.hoverText(static_cast<int>(i));
}

void LiveChartView::showHover_(QPointF pos) {
  const QString text = hoverTextAt(pos);
  if (text.isEmpty()) return hideHover_();
  hoverPos_ = pos;
  pos = chart()->mapFromScene(mapToScene(pos.toPoint()));
  const QRectF plot = chart()->plotArea();
  cursorLine_->setLine(pos.x(), plot.top(), pos.x(), plot.bottom());
  cursorLine_->show();
  hoverText_->setText(text);
  const QRectF textRect = hoverText_->boundingRect();
  const QSizeF box(textRect.width() + 10, textRect.height() + 8);
  // Beside the cursor, on whichever side has room.
  qreal left = pos.x() + 12;
  if (left + box.width() > plot.right()) left = pos.x() - 12 - box.width();
  const qreal topEdge = std::clamp(pos.y() - box.height() / 2, plot.top(),
                                   std::max(plot.top(), plot.bottom() - box.height()));
  hoverBox_->setRect(0, 0, box.width(), box.height());
  hoverBox_->setPos(left, topEdge);
  hoverText_->setPos(5, 4);
  hoverBox_->show();
}

void LiveChartView::hideHover_() {
  cursorLine_->hide();
  hoverBox_->hide();
  hoverPos_ = {-1, -1};
}

void LiveChartView::mouseMoveEvent(QMouseEvent* e) {
  QChartView::mouseMoveEvent(e);
  showHover_(e->position());
}

void LiveChartView::leaveEvent(QEvent* e) {
  QChartView::leaveEvent(e);
  hideHover_();
}

void LiveChartView::resizeEvent(QResizeEvent* e) {
  QChartView::resizeEvent(e);
  hideHover_();
}

}  // namespace sluice::admin
