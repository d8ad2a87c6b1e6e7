// The Live tab's state: the merged history, the model/tier filter, what the charts show (time
// range, split, burst clipping), the engine's latest totals and latency over time, and two
// item models (series totals, top blocked subjects). Fed with parsed snapshots by
// StatsPoller; read by the charts and tables.
#pragma once

#include <QAbstractTableModel>
#include <QHash>
#include <QObject>
#include <QSet>
#include <QString>

#include "core/latency_timeline.h"
#include "core/live_charts.h"
#include "core/live_history.h"
#include "core/policy_names.h"

namespace sluice::admin {

class LiveStats;

class LiveSeriesModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Column {
    kResource,
    kTier,
    kRule,
    kAllowed,
    kBlocked,
    kBlockedLastMinute,
    kShadow,
    kStorageErrors,
    kColumnCount
  };
  explicit LiveSeriesModel(LiveStats* stats);
  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;
  void update();
  const std::vector<LiveHistory::Row>& rows() const { return rows_; }

 private:
  LiveStats* stats_;
  std::vector<LiveHistory::Row> rows_;
};

class TopBlockedModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Column { kSubject, kResource, kTier, kRule, kCount, kColumnCount };
  explicit TopBlockedModel(LiveStats* stats);
  // Which denials the table counts: those of the last `seconds` (60, 300 or 900; the
  // default, 300) or, with 0, all since the engine started (no tier or rule then).
  void setWindowSeconds(int seconds);
  // The row as the engine reported it (the subject unmasked); nullptr out of range.
  const TopBlocked* rowAt(int row) const {
    return row >= 0 && row < static_cast<int>(rows_.size()) ? &rows_[static_cast<size_t>(row)]
                                                            : nullptr;
  }
  int windowSeconds() const { return windowSeconds_; }
  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;
  void update();

 private:
  LiveStats* stats_;
  std::vector<TopBlocked> rows_;
  int windowSeconds_ = 300;
};

class LiveStats : public QObject {
  Q_OBJECT
 public:
  explicit LiveStats(QObject* parent = nullptr);

  void ingest(const StatsSnapshot& snapshot);
  // The engine cannot be reached at `second` (unix seconds): the charts move on with a gap.
  void markUnreachable(int64_t second);
  // Empty strings show everything.
  void setFilter(const QString& resource, const QString& tier);
  QString resourceFilter() const { return resource_; }
  QString tierFilter() const { return tier_; }
  // The charts' time range: the last 60, 300 or 900 seconds (others are clamped to 1..900).
  void setRange(int seconds);
  // One line in total, or one per model, tier or rule.
  void setSplit(SplitBy by);
  // Whether a burst may be clipped so it does not flatten the rest (live_charts.h).
  void setClipBursts(bool clip);
  const LiveChartOptions& chartOptions() const { return options_; }
  // The four charts for the current filter and options.
  LiveCharts charts() const { return buildLiveCharts(history_, latency_, options_); }
  const LatencyTimeline& latency() const { return latency_; }
  // Subjects that are API keys are shown masked, like everywhere else.
  void setSecretSubjects(QSet<QString> keys) { secrets_ = std::move(keys); }
  bool isSecret(const QString& subject) const { return secrets_.contains(subject); }
  // A secret subject masked, told apart from the other keys that mask alike.
  QString maskedKey(const QString& subject) const { return maskApiKey(subject, secrets_.values()); }
  // The policy's labels of API keys, shown next to the masked key.
  void setSubjectLabels(QHash<QString, QString> labels) { labels_ = std::move(labels); }
  QString labelOf(const QString& subject) const { return labels_.value(subject); }

  const LiveHistory& history() const { return history_; }
  std::vector<LiveHistory::Point> points() const;
  StatsTotals totals() const;
  // The WAIT queues of the shown resources, one sentence each ("models/heavy: 3 waiting, ..."),
  // empty when no request has waited.
  QStringList queueLines() const;
  const StatsSnapshot& latest() const { return latest_; }
  bool hasData() const { return !history_.empty(); }
  QStringList resources() const;
  QStringList tiers() const;

  LiveSeriesModel* seriesModel() { return &series_; }
  TopBlockedModel* topModel() { return &top_; }

 signals:
  void updated();

 private:
  LiveHistory history_;
  LatencyTimeline latency_;
  LiveChartOptions options_;
  StatsSnapshot latest_;  // without per-second data
  QString resource_, tier_;
  QSet<QString> secrets_;
  QHash<QString, QString> labels_;
  LiveSeriesModel series_;
  TopBlockedModel top_;
};

}  // namespace sluice::admin
