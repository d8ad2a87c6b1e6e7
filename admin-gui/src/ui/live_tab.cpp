#include "ui/live_tab.h"

#include <QAction>
#include <QAreaSeries>
#include <QChart>
#include <QChartView>
#include <QComboBox>
#include <QDateTime>
#include <QDateTimeAxis>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLegendMarker>
#include <QLineSeries>
#include <QLocale>
#include <QMessageBox>
#include <QPushButton>
#include <QSplitter>
#include <QTableView>
#include <QVBoxLayout>
#include <QValueAxis>

#include "core/live_models.h"
#include "core/policy_names.h"
#include "core/stats_poller.h"
#include "core/subject_actions.h"

namespace sluice::admin {

namespace {
QString count(uint64_t n) { return QLocale().toString(static_cast<qulonglong>(n)); }

QTableView* makeTable(QAbstractItemModel* model, QWidget* parent) {
  auto* v = new QTableView(parent);
  v->setModel(model);
  v->setAlternatingRowColors(true);
  v->setSelectionBehavior(QAbstractItemView::SelectRows);
  v->setEditTriggers(QAbstractItemView::NoEditTriggers);
  v->verticalHeader()->hide();
  v->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  v->horizontalHeader()->setMinimumSectionSize(50);
  return v;
}
}  // namespace

LiveTab::Chart LiveTab::makeChart_(const QString& title, const QString& aName, const QColor& aColor,
                                   const QString& bName, const QColor& bColor) {
  Chart c{};
  c.chart = new QChart;
  c.chart->setTitle(title);
  c.chart->legend()->setAlignment(Qt::AlignTop);
  c.chart->setMargins(QMargins(4, 4, 4, 4));
  c.x = new QDateTimeAxis(c.chart);
  c.x->setFormat(QStringLiteral("HH:mm"));
  c.x->setTickCount(6);
  c.y = new QValueAxis(c.chart);
  c.y->setLabelFormat(QStringLiteral("%.0f"));
  c.y->setTitleText(tr("per second"));
  c.y->setMin(0);
  c.chart->addAxis(c.x, Qt::AlignBottom);
  c.chart->addAxis(c.y, Qt::AlignLeft);
  c.a.name = aName;
  c.a.pen = QPen(aColor, 1.5);
  setRuns_(c, c.a, {{}});
  if (!bName.isEmpty()) {
    c.b.name = bName;
    c.b.pen = QPen(bColor, 1.5);
    c.b.pen.setStyle(Qt::DashLine);
    setRuns_(c, c.b, {{}});
  }

  // After the curves, so the legend lists them first; the shading only meets their ends.
  auto* gapTop = new QLineSeries(c.chart);
  c.gaps = new QAreaSeries(gapTop);
  c.gaps->setName(tr("no data"));
  c.gaps->setPen(Qt::NoPen);
  c.gaps->setBrush(QColor(0x9a, 0xa0, 0xa6, 60));
  c.chart->addSeries(c.gaps);
  c.gaps->attachAxis(c.x);
  c.gaps->attachAxis(c.y);
  c.gaps->setVisible(false);
  c.restart = new QLineSeries(c.chart);
  c.restart->setName(tr("engine restarted"));
  QPen restartPen(QColor(0x5f, 0x63, 0x68), 1.5);
  restartPen.setStyle(Qt::DotLine);
  c.restart->setPen(restartPen);
  c.chart->addSeries(c.restart);
  c.restart->attachAxis(c.x);
  c.restart->attachAxis(c.y);
  c.restart->setVisible(false);

  c.view = new QChartView(c.chart, this);
  c.view->setRenderHint(QPainter::Antialiasing);
  c.view->setMinimumHeight(170);
  return c;
}

void LiveTab::setRuns_(Chart& c, Curve& curve, const QList<QList<QPointF>>& runs) {
  while (curve.parts.size() < static_cast<size_t>(runs.size())) {
    auto* part = new QLineSeries(c.chart);
    part->setName(curve.name);
    part->setPen(curve.pen);
    c.chart->addSeries(part);
    part->attachAxis(c.x);
    part->attachAxis(c.y);
    // One legend entry per curve, however many runs it is drawn in.
    if (!curve.parts.empty())
      for (auto* marker : c.chart->legend()->markers(part)) marker->setVisible(false);
    curve.parts.push_back(part);
  }
  for (size_t i = 0; i < curve.parts.size(); ++i) {
    // replace() swaps the whole series at once: one repaint instead of 900 point insertions.
    if (i < static_cast<size_t>(runs.size())) {
      curve.parts[i]->replace(runs[static_cast<qsizetype>(i)]);
    } else {
      curve.parts[i]->clear();
    }
  }
}

LiveTab::LiveTab(LiveStats* stats, StatsPoller* poller, QWidget* parent)
    : QWidget(parent),
      stats_(stats),
      poller_(poller),
      resourceFilter_(new QComboBox(this)),
      tierFilter_(new QComboBox(this)),
      blockedWindow_(new QComboBox(this)),
      pause_(new QPushButton(tr("&Pause"), this)),
      totals_(new QLabel(this)),
      updated_(new QLabel(this)) {
  auto* layout = new QVBoxLayout(this);
  auto* bar = new QHBoxLayout;
  bar->addWidget(new QLabel(tr("&Model:"), this));
  static_cast<QLabel*>(bar->itemAt(0)->widget())->setBuddy(resourceFilter_);
  resourceFilter_->setMinimumContentsLength(16);
  resourceFilter_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  bar->addWidget(resourceFilter_);
  auto* tierLabel = new QLabel(tr("T&ier:"), this);
  tierLabel->setBuddy(tierFilter_);
  bar->addWidget(tierLabel);
  bar->addWidget(tierFilter_);
  pause_->setCheckable(true);
  pause_->setToolTip(tr("Pause or resume the live view (Ctrl+Space)"));
  bar->addWidget(pause_);
  bar->addStretch(1);
  updated_->setStyleSheet(QStringLiteral("color: gray;"));
  bar->addWidget(updated_);
  layout->addLayout(bar);

  totals_->setTextFormat(Qt::RichText);
  layout->addWidget(totals_);
  queues_ = new QLabel(this);
  queues_->setTextFormat(Qt::PlainText);
  queues_->setWordWrap(true);
  queues_->hide();
  layout->addWidget(queues_);

  auto* split = new QSplitter(Qt::Vertical, this);
  auto* charts = new QWidget(split);
  auto* chartLayout = new QHBoxLayout(charts);
  chartLayout->setContentsMargins(0, 0, 0, 0);
  allowed_ = makeChart_(tr("Allowed per second"), tr("allowed"), QColor(0x1e, 0x8e, 0x3e),
                        QString(), Qt::transparent);
  blocked_ = makeChart_(tr("Blocked per second"), tr("blocked"), QColor(0xd9, 0x30, 0x25),
                        tr("would block (shadow)"), QColor(0xf2, 0x99, 0x00));
  chartLayout->addWidget(allowed_.view);
  chartLayout->addWidget(blocked_.view);
  split->addWidget(charts);

  auto* tables = new QSplitter(Qt::Horizontal, split);
  seriesView_ = makeTable(stats_->seriesModel(), tables);
  // Who is blocked: now (the last minute, 5 or 15 minutes) or since the engine started.
  auto* topPane = new QWidget(tables);
  auto* topLayout = new QVBoxLayout(topPane);
  topLayout->setContentsMargins(0, 0, 0, 0);
  auto* windowBar = new QHBoxLayout;
  auto* windowLabel = new QLabel(tr("&Blocked in:"), topPane);
  windowLabel->setBuddy(blockedWindow_);
  blockedWindow_->addItem(tr("the last minute"), 60);
  blockedWindow_->addItem(tr("the last 5 minutes"), 300);
  blockedWindow_->addItem(tr("the last 15 minutes"), 900);
  blockedWindow_->addItem(tr("all time (since the engine started)"), 0);
  blockedWindow_->setCurrentIndex(1);
  windowBar->addWidget(windowLabel);
  windowBar->addWidget(blockedWindow_);
  windowBar->addStretch(1);
  topLayout->addLayout(windowBar);
  topView_ = makeTable(stats_->topModel(), topPane);
  topLayout->addWidget(topView_);
  connect(blockedWindow_, &QComboBox::currentIndexChanged, this,
          [this] { stats_->topModel()->setWindowSeconds(blockedWindow_->currentData().toInt()); });
  addSubjectActions_();
  tables->addWidget(seriesView_);
  tables->addWidget(topPane);
  tables->setStretchFactor(0, 3);
  tables->setStretchFactor(1, 2);
  split->addWidget(tables);
  split->setStretchFactor(0, 3);
  split->setStretchFactor(1, 2);
  layout->addWidget(split, 1);

  connect(pause_, &QPushButton::toggled, this, [this](bool paused) {
    poller_->setPaused(paused);
    pause_->setText(paused ? tr("&Resume") : tr("&Pause"));
    updated_->setText(paused ? tr("paused") : updated_->text());
  });
  connect(resourceFilter_, &QComboBox::currentIndexChanged, this, &LiveTab::applyFilter_);
  connect(tierFilter_, &QComboBox::currentIndexChanged, this, &LiveTab::applyFilter_);
  connect(stats_, &LiveStats::updated, this, [this] {
    refreshFilters_();
    if (isVisible())
      redraw_();
    else
      dirty_ = true;
  });
  refreshFilters_();
  redraw_();
}

void LiveTab::addSubjectActions_() {
  // From a blocked subject's row (right-click, or the keys when the table has focus): its
  // model's charts, every limit's state for it, and forgetting its counters.
  topView_->setContextMenuPolicy(Qt::ActionsContextMenu);
  auto selected = [this]() -> const TopBlocked* {
    return stats_->topModel()->rowAt(topView_->currentIndex().row());
  };
  auto shownSubject = [this](const QString& subject) {
    return stats_->isSecret(subject) ? tr("API key %1").arg(maskApiKey(subject)) : subject;
  };
  auto* show = new QAction(tr("Show this model's charts"), topView_);
  connect(show, &QAction::triggered, this, [this, selected] {
    if (const TopBlocked* row = selected()) {
      const int i = resourceFilter_->findText(QString::fromStdString(row->resource));
      if (i > 0) resourceFilter_->setCurrentIndex(i);
    }
  });
  auto* inspect = new QAction(tr("Inspect its limits…"), topView_);
  inspect->setShortcut(QKeySequence(Qt::Key_Return));
  inspect->setShortcutContext(Qt::WidgetShortcut);
  connect(inspect, &QAction::triggered, this, [this, selected, shownSubject] {
    const TopBlocked* row = selected();
    if (!row) return;
    const QString resource = QString::fromStdString(row->resource);
    const QString subject = QString::fromStdString(row->subject);
    const QString title = tr("%1 on %2").arg(shownSubject(subject), resource);
    inspectSubject(poller_->client(), this, resource, subject,
                   [this, title](bool ok, const QString& text) {
                     emit subjectInspected(ok, text);
                     if (!isVisible()) return;
                     if (ok)
                       QMessageBox::information(this, title, text);
                     else
                       QMessageBox::warning(this, title, text);
                   });
  });
  auto* reset = new QAction(tr("Reset its counters…"), topView_);
  reset->setShortcut(QKeySequence::Delete);
  reset->setShortcutContext(Qt::WidgetShortcut);
  connect(reset, &QAction::triggered, this, [this, selected, shownSubject] {
    const TopBlocked* row = selected();
    if (!row) return;
    const QString resource = QString::fromStdString(row->resource);
    const QString subject = QString::fromStdString(row->subject);
    const auto answer = QMessageBox::question(
        this, tr("Reset counters"),
        tr("Forget what %1 has used on %2? Its limits start afresh at once. The engine records "
           "the reset in its audit log.")
            .arg(shownSubject(subject), resource),
        QMessageBox::Reset | QMessageBox::Cancel, QMessageBox::Cancel);
    if (answer != QMessageBox::Reset) return;
    resetSubject(poller_->client(), this, resource, subject,
                 [this](bool ok, const QString& text) { emit subjectReset(ok, text); });
  });
  topView_->addActions({show, inspect, reset});
}

void LiveTab::togglePause() { pause_->toggle(); }

void LiveTab::showEvent(QShowEvent* e) {
  QWidget::showEvent(e);
  if (dirty_) redraw_();
}

void LiveTab::refreshFilters_() {
  auto sync = [](QComboBox* box, const QString& all, const QStringList& items) {
    QStringList have;
    for (int i = 1; i < box->count(); ++i) have << box->itemText(i);
    if (have == items && box->count() > 0) return;
    const QString current = box->currentIndex() > 0 ? box->currentText() : QString();
    const QSignalBlocker block(box);
    box->clear();
    box->addItem(all);
    box->addItems(items);
    const int i = current.isEmpty() ? 0 : box->findText(current);
    box->setCurrentIndex(i > 0 ? i : 0);
  };
  sync(resourceFilter_, tr("All models"), stats_->resources());
  sync(tierFilter_, tr("All tiers"), stats_->tiers());
}

void LiveTab::applyFilter_() {
  stats_->setFilter(
      resourceFilter_->currentIndex() > 0 ? resourceFilter_->currentText() : QString(),
      tierFilter_->currentIndex() > 0 ? tierFilter_->currentText() : QString());
}

void LiveTab::redraw_() {
  dirty_ = false;
  const auto points = stats_->points();
  const StatsTotals t = stats_->totals();
  const StatsSnapshot& latest = stats_->latest();
  QString latency;
  if (latest.latencyCount > 0)
    latency = tr(" &nbsp; decision latency p50 %1 µs, p99 %2 µs")
                  .arg(static_cast<double>(latest.p50Ns) / 1000.0, 0, 'f', 1)
                  .arg(static_cast<double>(latest.p99Ns) / 1000.0, 0, 'f', 1);
  // The engine's totals count since it started: after a restart, say since when.
  const int64_t restarted = stats_->history().restartSecond();
  const QString since = restarted < 0 ? QString()
                                      : tr(" (since the engine restarted at %1)")
                                            .arg(QDateTime::fromMSecsSinceEpoch(restarted * 1000)
                                                     .toString(QStringLiteral("HH:mm:ss")));
  totals_->setText(
      tr("<b>Totals</b>%6 &nbsp; allowed <b style='color:#1e8e3e'>%1</b> &nbsp; blocked "
         "<b style='color:#d93025'>%2</b> &nbsp; shadow-blocked %3 &nbsp; storage errors %4%5")
          .arg(count(t.allowed), count(t.denied), count(t.shadowDenied), count(t.storageErrors),
               latency, since));
  const QStringList queues = stats_->queueLines();
  queues_->setText(tr("Queues (WAIT) — %1").arg(queues.join(QStringLiteral("; "))));
  queues_->setVisible(!queues.isEmpty());
  if (points.empty()) {
    updated_->setText(stats_->hasData() ? QString() : tr("waiting for the first statistics…"));
    return;
  }
  // Runs of seconds some engine reported; between them, time no engine did.
  QList<QList<QPointF>> allowed, blocked, shadow;
  QList<QPointF> gapTop;
  uint64_t maxAllowed = 0, maxBlocked = 0;
  auto x = [](int64_t second) { return static_cast<qreal>(second * 1000); };
  const auto runs = LiveHistory::knownRuns(points);
  for (const auto& [first, last] : runs) {
    QList<QPointF>& a = allowed.emplace_back();
    QList<QPointF>& b = blocked.emplace_back();
    QList<QPointF>& s = shadow.emplace_back();
    for (size_t i = first; i <= last; ++i) {
      const auto& p = points[i];
      a.append({x(p.second), static_cast<qreal>(p.allowed)});
      b.append({x(p.second), static_cast<qreal>(p.blocked)});
      s.append({x(p.second), static_cast<qreal>(p.shadow)});
      maxAllowed = std::max(maxAllowed, p.allowed);
      maxBlocked = std::max({maxBlocked, p.blocked, p.shadow});
    }
  }
  auto nice = [](uint64_t v) { return std::max<qreal>(5.0, static_cast<qreal>(v) * 1.15); };
  const qreal allowedTop = nice(maxAllowed);
  const qreal blockedTop = nice(maxBlocked);
  // The gaps: from the last known second before to the first known second after.
  size_t next = 0;
  for (const auto& [first, last] : runs) {
    if (first > next) {
      gapTop << QPointF(x(points[next].second), 0) << QPointF(x(points[next].second), 1)
             << QPointF(x(points[first].second), 1) << QPointF(x(points[first].second), 0);
    }
    next = last + 1;
  }
  if (next < points.size()) {
    gapTop << QPointF(x(points[next].second), 0) << QPointF(x(points[next].second), 1)
           << QPointF(x(points.back().second), 1) << QPointF(x(points.back().second), 0);
  }
  const QDateTime from = QDateTime::fromMSecsSinceEpoch(points.front().second * 1000);
  const QDateTime to = QDateTime::fromMSecsSinceEpoch(points.back().second * 1000);
  const int64_t restart = stats_->history().restartSecond();
  for (Chart* c : {&allowed_, &blocked_}) {
    const qreal top = c == &allowed_ ? allowedTop : blockedTop;
    QList<QPointF> shaded = gapTop;
    for (auto& p : shaded) p.setY(p.y() * top);
    c->gaps->upperSeries()->replace(shaded);
    c->gaps->setVisible(!shaded.isEmpty());
    const bool restartShown = restart >= points.front().second;
    c->restart->replace(restartShown ? QList<QPointF>{{x(restart), 0}, {x(restart), top}}
                                     : QList<QPointF>{});
    c->restart->setVisible(restartShown);
    c->x->setRange(from, to);
    c->y->setRange(0, top);
  }
  setRuns_(allowed_, allowed_.a, allowed);
  setRuns_(blocked_, blocked_.a, blocked);
  setRuns_(blocked_, blocked_.b, shadow);
  if (!poller_->paused()) {
    if (points.back().known) {
      updated_->setText(
          tr("last 15 minutes, updated %1").arg(to.toString(QStringLiteral("HH:mm:ss"))));
    } else {
      updated_->setText(runs.empty() ? tr("last 15 minutes, no data")
                                     : tr("last 15 minutes, no data since %1")
                                           .arg(QDateTime::fromMSecsSinceEpoch(
                                                    points[runs.back().second].second * 1000)
                                                    .toString(QStringLiteral("HH:mm:ss"))));
    }
  }
}

}  // namespace sluice::admin
