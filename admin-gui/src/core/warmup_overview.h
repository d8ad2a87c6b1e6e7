// Every model's warm-up at a glance (the Live tab): the running policy's resources that have
// warm-up settings, one row each, with the engine's state from SL.WARMUP <resource> STATUS
// every 2 seconds, whether or not the Live view is paused. The rows follow the running policy:
// it is read again (SL.POLICY GET) when the engine reports another policy version or instance.
#pragma once

#include <QAbstractTableModel>
#include <QMap>
#include <QTimer>
#include <optional>
#include <vector>

#include "core/admin_client.h"
#include "core/engine_replies.h"
#include "sluice/policy.h"

namespace sluice::admin {

class WarmupOverviewModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Column { kModel, kState, kLimitsAt, kElapsed, kRemaining, kSettings, kColumnCount };
  using QAbstractTableModel::QAbstractTableModel;

  // The rows: the policy's resources with warm-up settings, in policy order. The state of a
  // resource that stays is kept until the next STATUS reply.
  void setPolicy(const PolicySpec& policy);
  // The engine's answer to STATUS for `resource`, or the sentence it refused with.
  void setState(const QString& resource, const WarmupState& state);
  void setError(const QString& resource, const QString& message);

  QStringList resources() const;
  int warmingCount() const;

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;

 private:
  struct Row {
    QString resource;
    WarmupSpec spec;
    std::optional<WarmupState> state;
    QString error;
  };
  int rowOf_(const QString& resource) const;
  void changed_(int row);
  std::vector<Row> rows_;
};

// "45 s", "2 min 31 s", "1 h 5 min".
QString durationText(int64_t ms);

class WarmupOverview : public QObject {
  Q_OBJECT
 public:
  explicit WarmupOverview(AdminClient* client, QObject* parent = nullptr);
  WarmupOverviewModel* model() { return &model_; }
  void setInterval(int ms) { timer_.setInterval(ms); }
  // The engine's facts as SL.STATS / SL.INFO report them: another policy_version or instance
  // means the list of resources must be read again.
  void updateInfo(const QMap<QString, QString>& info);
  // Reads the policy if needed, then asks every listed resource's STATUS (pipelined); does
  // nothing while the previous round is out or the engine is not connected.
  void poll();

 signals:
  void updated();

 private:
  void askStates_();

  AdminClient* client_;
  WarmupOverviewModel model_;
  QTimer timer_;
  QString loadedFrom_;  // "<instance>/<policy_version>" the rows were read for
  QString running_;     // the same, as the engine reports it now
  bool policyStale_ = true;
  int outstanding_ = 0;  // replies of the current round still to come
};

}  // namespace sluice::admin
