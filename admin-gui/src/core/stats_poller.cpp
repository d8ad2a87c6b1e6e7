#include "core/stats_poller.h"

#include <QDateTime>
#include <QMap>
#include <algorithm>

#include "core/engine_replies.h"

namespace sluice::admin {

void StatsParser::parse(const QByteArray& json) {
  auto r = parseStatsJson(std::string_view(json.constData(), static_cast<size_t>(json.size())));
  if (!r.ok()) {
    emit failed(QString::fromStdString(r.status().message()));
    return;
  }
  emit parsed(std::make_shared<const StatsSnapshot>(std::move(r).value()));
}

StatsPoller::StatsPoller(AdminClient* client, LiveStats* stats, QObject* parent)
    : QObject(parent), client_(client), stats_(stats), parser_(new StatsParser), nowMs_([] {
        return QDateTime::currentMSecsSinceEpoch();
      }) {
  qRegisterMetaType<SnapshotPtr>();
  parser_->moveToThread(&thread_);
  connect(&thread_, &QThread::finished, parser_, &QObject::deleteLater);
  connect(this, &StatsPoller::parseRequested, parser_, &StatsParser::parse);
  connect(parser_, &StatsParser::parsed, this, &StatsPoller::onParsed_);
  connect(parser_, &StatsParser::failed, this, [this](const QString& reason) {
    inFlight_ = false;
    emit failed(reason);
  });
  thread_.setObjectName(QStringLiteral("stats-parser"));
  thread_.start();

  timer_.setInterval(1000);
  connect(&timer_, &QTimer::timeout, this, &StatsPoller::pollNow);
  connect(client_, &AdminClient::connected, this, &StatsPoller::pollNow);
  timer_.start();
}

StatsPoller::~StatsPoller() {
  thread_.quit();
  thread_.wait();
}

void StatsPoller::setPaused(bool paused) {
  if (paused == paused_) return;
  paused_ = paused;
  if (!paused_) pollNow();
}

void StatsPoller::pollNow() {
  if (client_->state() != AdminClient::State::kConnected) {
    // Not zeros: time without an engine to ask. A paused view stays as it was.
    if (!paused_) stats_->markUnreachable(nowMs_() / 1000);
    return;
  }
  if (inFlight_) return;
  if (paused_) {
    // The charts stay frozen, but the running policy's version is still followed, so a
    // paused window never shows a replaced policy as running.
    inFlight_ = true;
    client_->send({"SL.INFO"}, this, [this](const resp::Value& r) {
      inFlight_ = false;
      if (r.is_error()) return;
      const QMap<QString, QString> info = parseInfo(r);
      if (!info.isEmpty()) emit serverInfo(info);
    });
    return;
  }
  // Everything the history may lack since the last answer, plus a margin for the seconds
  // that were still being counted then.
  int seconds = LiveHistory::kSeconds;
  if (received_ > 0 && sinceLast_.isValid())
    seconds =
        std::clamp(static_cast<int>(sinceLast_.elapsed() / 1000) + 3, 3, LiveHistory::kSeconds);
  inFlight_ = true;
  client_->send({"SL.STATS", std::to_string(seconds)}, this, [this](const resp::Value& r) {
    if (r.type != resp::Value::Type::kBulk) {
      inFlight_ = false;
      if (r.error_code() != "DISCONNECTED")
        emit failed(tr("SL.STATS failed: %1")
                        .arg(QString::fromStdString(r.is_error() ? r.str : r.to_string())));
      return;
    }
    sinceLast_.start();
    emit parseRequested(QByteArray(r.str.data(), static_cast<qsizetype>(r.str.size())));
  });
}

void StatsPoller::onParsed_(SnapshotPtr snapshot) {
  inFlight_ = false;
  stats_->ingest(*snapshot);
  QMap<QString, QString> info;
  for (const auto& [k, v] : snapshot->server)
    info.insert(QString::fromStdString(k), QString::fromStdString(v));
  if (!info.isEmpty()) emit serverInfo(info);
  emit statsArrived();
  if (received_++ == 0) emit firstStatsArrived();
}

}  // namespace sluice::admin
