#include "core/warmup_monitor.h"

namespace sluice::admin {

WarmupMonitor::WarmupMonitor(PolicySession* session, QObject* parent)
    : QObject(parent), session_(session) {
  timer_.setInterval(2000);
  connect(&timer_, &QTimer::timeout, this, &WarmupMonitor::poll);
  connect(session_->client(), &AdminClient::connected, this, &WarmupMonitor::poll);
}

void WarmupMonitor::watch(const QString& resource) {
  resource_ = resource;
  if (resource_.isEmpty()) {
    timer_.stop();
    return;
  }
  timer_.start();
  poll();
}

void WarmupMonitor::poll() {
  // One request per resource at a time; a newly selected resource is asked at once.
  if (resource_.isEmpty() || inFlight_ == resource_ ||
      session_->client()->state() != AdminClient::State::kConnected)
    return;
  inFlight_ = resource_;
  const QString resource = resource_;
  session_->warmup(resource, QStringLiteral("STATUS"), this,
                   [this, resource](std::optional<WarmupState> state, const QString& error) {
                     if (inFlight_ == resource) inFlight_.clear();
                     if (resource != resource_) return;  // the user moved on
                     if (state)
                       emit stateChanged(resource, *state);
                     else
                       emit failed(resource, error);
                   });
}

void WarmupMonitor::start() { action_(QStringLiteral("START")); }
void WarmupMonitor::ready() { action_(QStringLiteral("READY")); }

void WarmupMonitor::action_(const QString& action) {
  if (resource_.isEmpty()) return;
  const QString resource = resource_;
  session_->warmup(resource, action, this,
                   [this, resource](std::optional<WarmupState>, const QString& error) {
                     if (!error.isEmpty()) emit failed(resource, error);
                     poll();
                   });
}

}  // namespace sluice::admin
