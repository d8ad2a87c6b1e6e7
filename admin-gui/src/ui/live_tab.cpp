#include "ui/live_tab.h"

#include <QAction>
#include <QCheckBox>
#include <QComboBox>
#include <QDateTime>
#include <QGridLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLocale>
#include <QMessageBox>
#include <QPushButton>
#include <QSplitter>
#include <QTableView>
#include <QVBoxLayout>

#include "core/live_models.h"
#include "core/policy_names.h"
#include "core/stats_poller.h"
#include "core/subject_actions.h"
#include "core/warmup_overview.h"
#include "ui/live_chart_view.h"

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
  v->setWordWrap(false);
  v->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  v->horizontalHeader()->setMinimumSectionSize(50);
  return v;
}

QPen pen(const QColor& color, Qt::PenStyle style = Qt::SolidLine) {
  QPen p(color, 1.5);
  p.setStyle(style);
  return p;
}

const QColor kAllowed(0x1e, 0x8e, 0x3e);
const QColor kBlocked(0xd9, 0x30, 0x25);
const QColor kShadow(0xf2, 0x99, 0x00);

// Split charts: line i has the same colour in every chart (the groups come in one order);
// the last, grey, is "others" when there are more groups than lines.
std::vector<QPen> splitPens() {
  std::vector<QPen> pens;
  for (const char* c : {"#1a73e8", "#e8710a", "#188038", "#d93025", "#9334e6", "#80868b"})
    pens.push_back(pen(QColor(QLatin1String(c))));
  return pens;
}

QLabel* label(const QString& text, QWidget* buddy, QWidget* parent) {
  auto* l = new QLabel(text, parent);
  l->setBuddy(buddy);
  return l;
}
}  // namespace

LiveTab::LiveTab(LiveStats* stats, StatsPoller* poller, QWidget* parent)
    : QWidget(parent),
      stats_(stats),
      poller_(poller),
      warmup_(new WarmupOverview(poller->client(), this)),
      resourceFilter_(new QComboBox(this)),
      tierFilter_(new QComboBox(this)),
      range_(new QComboBox(this)),
      split_(new QComboBox(this)),
      clip_(new QCheckBox(tr("&Clip bursts"), this)),
      blockedWindow_(new QComboBox(this)),
      pause_(new QPushButton(tr("&Pause"), this)),
      totals_(new QLabel(this)),
      updated_(new QLabel(this)) {
  auto* layout = new QVBoxLayout(this);
  auto* bar = new QHBoxLayout;
  bar->addWidget(label(tr("&Model:"), resourceFilter_, this));
  resourceFilter_->setMinimumContentsLength(14);
  resourceFilter_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  bar->addWidget(resourceFilter_);
  bar->addWidget(label(tr("T&ier:"), tierFilter_, this));
  bar->addWidget(tierFilter_);
  range_->addItem(tr("last minute"), 60);
  range_->addItem(tr("last 5 minutes"), 300);
  range_->addItem(tr("last 15 minutes"), 900);
  range_->setCurrentIndex(2);
  bar->addWidget(label(tr("&Show:"), range_, this));
  bar->addWidget(range_);
  split_->addItem(tr("in total"), static_cast<int>(SplitBy::kNone));
  split_->addItem(tr("per model"), static_cast<int>(SplitBy::kResource));
  split_->addItem(tr("per tier"), static_cast<int>(SplitBy::kTier));
  split_->addItem(tr("per rule"), static_cast<int>(SplitBy::kRule));
  split_->setToolTip(tr("One line in total, or one line per model, tier or rule (the busiest "
                        "%1; the rest summed as 'others')")
                         .arg(kMaxSplitLines - 1));
  bar->addWidget(split_);
  clip_->setChecked(true);
  clip_->setToolTip(
      tr("Scale the charts to the typical traffic: a burst far above it is cut off at the top "
         "and marked with a triangle (hover for its value)"));
  bar->addWidget(clip_);
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
  auto* grid = new QGridLayout(charts);
  grid->setContentsMargins(0, 0, 0, 0);
  grid->setSpacing(4);
  // The unit is in each title; the axes keep their width for the numbers.
  allowed_ = new LiveChartView(tr("Allowed per second"), QString(), charts);
  blocked_ = new LiveChartView(tr("Blocked per second"), QString(), charts);
  percent_ = new LiveChartView(tr("Blocked %"), QString(), charts);
  latency_ = new LiveChartView(tr("Decision latency, µs (whole engine)"), QString(), charts);
  grid->addWidget(allowed_, 0, 0);
  grid->addWidget(blocked_, 0, 1);
  grid->addWidget(percent_, 1, 0);
  grid->addWidget(latency_, 1, 1);
  split->addWidget(charts);

  auto* tables = new QSplitter(Qt::Horizontal, split);
  auto* left = new QSplitter(Qt::Vertical, tables);
  seriesView_ = makeTable(stats_->seriesModel(), left);
  left->addWidget(seriesView_);
  left->addWidget(makeWarmupPane_(left));
  left->setStretchFactor(0, 3);
  left->setStretchFactor(1, 1);
  // Who is blocked: now (the last minute, 5 or 15 minutes) or since the engine started.
  auto* topPane = new QWidget(tables);
  auto* topLayout = new QVBoxLayout(topPane);
  topLayout->setContentsMargins(0, 0, 0, 0);
  auto* windowBar = new QHBoxLayout;
  blockedWindow_->addItem(tr("the last minute"), 60);
  blockedWindow_->addItem(tr("the last 5 minutes"), 300);
  blockedWindow_->addItem(tr("the last 15 minutes"), 900);
  blockedWindow_->addItem(tr("all time (since the engine started)"), 0);
  blockedWindow_->setCurrentIndex(1);
  windowBar->addWidget(label(tr("&Blocked in:"), blockedWindow_, topPane));
  windowBar->addWidget(blockedWindow_);
  windowBar->addStretch(1);
  topLayout->addLayout(windowBar);
  topView_ = makeTable(stats_->topModel(), topPane);
  topLayout->addWidget(topView_);
  connect(blockedWindow_, &QComboBox::currentIndexChanged, this,
          [this] { stats_->topModel()->setWindowSeconds(blockedWindow_->currentData().toInt()); });
  addSubjectActions_();
  tables->addWidget(left);
  tables->addWidget(topPane);
  tables->setStretchFactor(0, 3);
  tables->setStretchFactor(1, 2);
  split->addWidget(tables);
  split->setStretchFactor(0, 5);
  split->setStretchFactor(1, 4);
  layout->addWidget(split, 1);

  connect(pause_, &QPushButton::toggled, this, [this](bool paused) {
    poller_->setPaused(paused);
    pause_->setText(paused ? tr("&Resume") : tr("&Pause"));
    updated_->setText(paused ? tr("paused") : updated_->text());
  });
  connect(resourceFilter_, &QComboBox::currentIndexChanged, this, &LiveTab::applyFilter_);
  connect(tierFilter_, &QComboBox::currentIndexChanged, this, &LiveTab::applyFilter_);
  connect(range_, &QComboBox::currentIndexChanged, this,
          [this] { stats_->setRange(range_->currentData().toInt()); });
  connect(split_, &QComboBox::currentIndexChanged, this,
          [this] { stats_->setSplit(static_cast<SplitBy>(split_->currentData().toInt())); });
  connect(clip_, &QCheckBox::toggled, stats_, &LiveStats::setClipBursts);
  stats_->setRange(range_->currentData().toInt());
  stats_->setSplit(SplitBy::kNone);
  stats_->setClipBursts(clip_->isChecked());
  // Warm-up is followed whether or not the view is paused (SL.INFO keeps coming then too).
  connect(poller_, &StatsPoller::serverInfo, warmup_, &WarmupOverview::updateInfo);
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

QWidget* LiveTab::makeWarmupPane_(QWidget* parent) {
  auto* pane = new QWidget(parent);
  auto* v = new QVBoxLayout(pane);
  v->setContentsMargins(0, 0, 0, 0);
  v->setSpacing(2);
  warmupTitle_ = new QLabel(pane);
  v->addWidget(warmupTitle_);
  auto* model = warmup_->model();
  warmupView_ = makeTable(model, pane);
  auto* header = warmupView_->horizontalHeader();
  header->setSectionResizeMode(QHeaderView::ResizeToContents);
  header->setSectionResizeMode(WarmupOverviewModel::kSettings, QHeaderView::Stretch);
  warmupView_->verticalHeader()->setDefaultSectionSize(warmupView_->fontMetrics().height() + 6);
  v->addWidget(warmupView_);
  auto update = [this, model] {
    const int rows = model->rowCount();
    const int warming = model->warmingCount();
    warmupTitle_->setText(rows == 0 ? tr("<b>Warm-up</b>: no model of the running policy has "
                                         "warm-up settings")
                          : warming == 0
                              ? tr("<b>Warm-up</b>: every model at full limits")
                              : tr("<b>Warm-up</b>: %n model(s) warming up", "", warming));
    warmupView_->setVisible(rows > 0);
  };
  connect(model, &QAbstractItemModel::modelReset, this, update);
  connect(model, &QAbstractItemModel::dataChanged, this, update);
  update();
  return pane;
}

void LiveTab::addSubjectActions_() {
  // From a blocked subject's row (right-click, or the keys when the table has focus): its
  // model's charts, every limit's state for it, and forgetting its counters.
  topView_->setContextMenuPolicy(Qt::ActionsContextMenu);
  auto selected = [this]() -> const TopBlocked* {
    return stats_->topModel()->rowAt(topView_->currentIndex().row());
  };
  auto shownSubject = [this](const QString& subject) {
    return stats_->isSecret(subject) ? tr("API key %1").arg(stats_->maskedKey(subject)) : subject;
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
  const StatsTotals t = stats_->totals();
  const StatsSnapshot& latest = stats_->latest();
  QString latency;
  if (latest.latencyCount > 0)
    latency = tr(" &nbsp; decision latency since the start p50 %1 µs, p99 %2 µs")
                  .arg(static_cast<double>(latest.p50Ns) / 1000.0, 0, 'f', 1)
                  .arg(static_cast<double>(latest.p99Ns) / 1000.0, 0, 'f', 1);
  // The engine's totals count since it started: after a restart, say since when.
  const int64_t restart = stats_->history().restartSecond();
  const QString since = restart < 0 ? QString()
                                    : tr(" (since the engine restarted at %1)")
                                          .arg(QDateTime::fromMSecsSinceEpoch(restart * 1000)
                                                   .toString(QStringLiteral("HH:mm:ss")));
  totals_->setText(
      tr("<b>Totals</b>%6 &nbsp; allowed <b style='color:#1e8e3e'>%1</b> &nbsp; blocked "
         "<b style='color:#d93025'>%2</b> &nbsp; shadow-blocked %3 &nbsp; storage errors %4%5")
          .arg(count(t.allowed), count(t.denied), count(t.shadowDenied), count(t.storageErrors),
               latency, since));
  const QStringList queues = stats_->queueLines();
  queues_->setText(tr("Queues (WAIT) — %1").arg(queues.join(QStringLiteral("; "))));
  queues_->setVisible(!queues.isEmpty());

  LiveCharts charts = stats_->charts();
  const bool split = stats_->chartOptions().split != SplitBy::kNone;
  const std::vector<QPen> pens = splitPens();
  allowed_->setData(std::move(charts.allowed), split ? pens : std::vector<QPen>{pen(kAllowed)},
                    restart);
  blocked_->setData(std::move(charts.blocked),
                    split ? pens : std::vector<QPen>{pen(kBlocked), pen(kShadow, Qt::DashLine)},
                    restart);
  percent_->setData(std::move(charts.blockedPercent),
                    split ? pens : std::vector<QPen>{pen(kBlocked)}, restart);
  percent_->chart()->setTitle(
      percent_->data().step > 1
          ? tr("%1 (per %2 s)").arg(percent_->chart()->title()).arg(percent_->data().step)
          : percent_->chart()->title());
  latency_->setData(std::move(charts.latency),
                    {pen(QColor(0x1a, 0x73, 0xe8)), pen(QColor(0x93, 0x34, 0xe6), Qt::DashLine)},
                    restart);

  const auto& x = allowed_->data().x;
  if (x.empty()) {
    updated_->setText(stats_->hasData() ? QString() : tr("waiting for the first statistics…"));
    return;
  }
  if (poller_->paused()) return;
  const QString range = range_->currentText();
  const auto& known = allowed_->data().known;
  if (known.back()) {
    updated_->setText(tr("%1, updated %2")
                          .arg(range, QDateTime::fromSecsSinceEpoch(x.back()).toString(
                                          QStringLiteral("HH:mm:ss"))));
    return;
  }
  size_t last = known.size();
  while (last > 0 && !known[last - 1]) --last;
  updated_->setText(last == 0 ? tr("%1, no data").arg(range)
                              : tr("%1, no data since %2")
                                    .arg(range, QDateTime::fromSecsSinceEpoch(x[last - 1])
                                                    .toString(QStringLiteral("HH:mm:ss"))));
}

}  // namespace sluice::admin
