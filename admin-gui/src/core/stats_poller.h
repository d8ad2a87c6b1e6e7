// Polls SL.STATS once a second without ever freezing the window: at most one request in
// flight, only the seconds not seen yet are asked for (all 900 the first time), and the JSON
// is parsed on a worker thread; the GUI thread only merges the parsed numbers.
#pragma once

#include <QElapsedTimer>
#include <QObject>
#include <QThread>
#include <QTimer>
#include <functional>
#include <memory>

#include "core/admin_client.h"
#include "core/live_history.h"
#include "core/live_models.h"

namespace sluice::admin {

using SnapshotPtr = std::shared_ptr<const StatsSnapshot>;

// Lives on the worker thread.
class StatsParser : public QObject {
  Q_OBJECT
 public slots:
  void parse(const QByteArray& json);
 signals:
  void parsed(sluice::admin::SnapshotPtr snapshot);
  void failed(const QString& reason);
};

class StatsPoller : public QObject {
  Q_OBJECT
 public:
  StatsPoller(AdminClient* client, LiveStats* stats, QObject* parent = nullptr);
  AdminClient* client() const { return client_; }
  ~StatsPoller() override;

  void setInterval(int ms) { timer_.setInterval(ms); }
  // The wall clock in unix milliseconds (tests pass their own): while the engine cannot be
  // reached, each tick moves the history on to it, so the outage is drawn as a gap.
  void setClock(std::function<int64_t()> nowMs) { nowMs_ = std::move(nowMs); }
  void setPaused(bool paused);
  bool paused() const { return paused_; }
  bool hasStats() const { return received_ > 0; }
  // Ask now rather than at the next tick (after a connect, after resuming).
  void pollNow();

 signals:
  void statsArrived();       // after the snapshot is merged into LiveStats
  void firstStatsArrived();  // once per poller
  void serverInfo(const QMap<QString, QString>& info);
  void failed(const QString& reason);
  void parseRequested(const QByteArray& json);  // to the worker thread

 private:
  void onParsed_(SnapshotPtr snapshot);

  AdminClient* client_;
  LiveStats* stats_;
  QTimer timer_;
  QThread thread_;
  StatsParser* parser_;
  bool inFlight_ = false;
  bool paused_ = false;
  int received_ = 0;
  QElapsedTimer sinceLast_;  // since the last snapshot was asked for successfully
  std::function<int64_t()> nowMs_;
};

}  // namespace sluice::admin

Q_DECLARE_METATYPE(sluice::admin::SnapshotPtr)
