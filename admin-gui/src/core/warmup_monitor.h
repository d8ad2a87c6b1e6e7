// Live warm-up state of one resource: SL.WARMUP <resource> STATUS every 2 seconds while
// watched, and START/READY on request. Never more than one STATUS in flight.
#pragma once

#include <QObject>
#include <QTimer>

#include "core/engine_replies.h"
#include "core/policy_session.h"

namespace sluice::admin {

class WarmupMonitor : public QObject {
  Q_OBJECT
 public:
  explicit WarmupMonitor(PolicySession* session, QObject* parent = nullptr);

  // Empty stops watching.
  void watch(const QString& resource);
  QString resource() const { return resource_; }
  void start();  // SL.WARMUP <resource> START
  void ready();  // SL.WARMUP <resource> READY
  void poll();

 signals:
  void stateChanged(const QString& resource, const sluice::admin::WarmupState& state);
  // The engine refused or could not answer; `message` is its sentence.
  void failed(const QString& resource, const QString& message);

 private:
  void action_(const QString& action);

  PolicySession* session_;
  QString resource_;
  QTimer timer_;
  QString inFlight_;  // the resource a STATUS request is out for
};

}  // namespace sluice::admin
