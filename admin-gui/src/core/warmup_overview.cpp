#include "core/warmup_overview.h"

#include <QBrush>
#include <QColor>
#include <algorithm>

namespace sluice::admin {

QString durationText(int64_t ms) {
  const int64_t s = (std::max<int64_t>(ms, 0) + 999) / 1000;
  if (s < 60) return QObject::tr("%1 s").arg(s);
  if (s < 3600)
    return s % 60 == 0 ? QObject::tr("%1 min").arg(s / 60)
                       : QObject::tr("%1 min %2 s").arg(s / 60).arg(s % 60);
  const int64_t min = (s % 3600) / 60;
  return min == 0 ? QObject::tr("%1 h").arg(s / 3600)
                  : QObject::tr("%1 h %2 min").arg(s / 3600).arg(min);
}

namespace {
QString percent(double factor) { return QStringLiteral("%1 %").arg(factor * 100.0, 0, 'g', 3); }

QString settingsText(const WarmupSpec& w) {
  QString s = w.duration_ms > 0
                  ? QObject::tr("%1 for %2").arg(percent(w.factor), durationText(w.duration_ms))
                  : QObject::tr("%1 until READY").arg(percent(w.factor));
  if (w.ramp) s += QObject::tr(", ramp");
  if (w.start_cold) s += QObject::tr(", starts cold");
  return s;
}
}  // namespace

// ---- WarmupOverviewModel --------------------------------------------------------------------

void WarmupOverviewModel::setPolicy(const PolicySpec& policy) {
  std::vector<Row> rows;
  for (const auto& r : policy.resources) {
    if (!r.warmup.enabled) continue;
    Row row{QString::fromStdString(r.name), r.warmup, std::nullopt, {}};
    if (const int old = rowOf_(row.resource); old >= 0) {
      row.state = rows_[static_cast<size_t>(old)].state;
      row.error = rows_[static_cast<size_t>(old)].error;
    }
    rows.push_back(std::move(row));
  }
  beginResetModel();
  rows_ = std::move(rows);
  endResetModel();
}

void WarmupOverviewModel::setState(const QString& resource, const WarmupState& state) {
  const int row = rowOf_(resource);
  if (row < 0) return;
  rows_[static_cast<size_t>(row)].state = state;
  rows_[static_cast<size_t>(row)].error.clear();
  changed_(row);
}

void WarmupOverviewModel::setError(const QString& resource, const QString& message) {
  const int row = rowOf_(resource);
  if (row < 0) return;
  rows_[static_cast<size_t>(row)].state.reset();
  rows_[static_cast<size_t>(row)].error = message;
  changed_(row);
}

QStringList WarmupOverviewModel::resources() const {
  QStringList out;
  for (const auto& r : rows_) out << r.resource;
  return out;
}

int WarmupOverviewModel::warmingCount() const {
  return static_cast<int>(std::count_if(rows_.begin(), rows_.end(),
                                        [](const Row& r) { return r.state && r.state->warming; }));
}

int WarmupOverviewModel::rowOf_(const QString& resource) const {
  for (size_t i = 0; i < rows_.size(); ++i)
    if (rows_[i].resource == resource) return static_cast<int>(i);
  return -1;
}

void WarmupOverviewModel::changed_(int row) {
  emit dataChanged(index(row, kState), index(row, kColumnCount - 1));
}

int WarmupOverviewModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(rows_.size());
}
int WarmupOverviewModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : kColumnCount;
}

QVariant WarmupOverviewModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  const Row& r = rows_[static_cast<size_t>(index.row())];
  const bool warming = r.state && r.state->warming;
  if (role == Qt::ForegroundRole && index.column() == kState) {
    if (!r.error.isEmpty()) return QBrush(QColor(0xd9, 0x30, 0x25));
    if (r.state) return QBrush(warming ? QColor(0xb0, 0x60, 0x00) : QColor(0x1e, 0x8e, 0x3e));
    return {};
  }
  if (role == Qt::ToolTipRole && index.column() == kState && r.state) return r.state->describe();
  if (role != Qt::DisplayRole) return {};
  switch (index.column()) {
    case kModel:
      return r.resource;
    case kState:
      if (!r.error.isEmpty()) return r.error;
      if (!r.state) return tr("…");
      return warming ? tr("warming up") : tr("ready");
    case kLimitsAt:
      return r.state ? percent(warming ? r.state->factor : 1.0) : QString();
    case kElapsed:
      return warming ? durationText(r.state->elapsedMs) : QStringLiteral("–");
    case kRemaining:
      if (!warming) return QStringLiteral("–");
      return r.state->remainingMs > 0 ? durationText(r.state->remainingMs) : tr("until READY");
    case kSettings:
      return settingsText(r.spec);
    default:
      return {};
  }
}

QVariant WarmupOverviewModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case kModel:
      return tr("Warm-up");
    case kState:
      return tr("State");
    case kLimitsAt:
      return tr("Limits at");
    case kElapsed:
      return tr("Elapsed");
    case kRemaining:
      return tr("Remaining");
    case kSettings:
      return tr("Settings");
    default:
      return {};
  }
}

// ---- WarmupOverview -------------------------------------------------------------------------

WarmupOverview::WarmupOverview(AdminClient* client, QObject* parent)
    : QObject(parent), client_(client) {
  timer_.setInterval(2000);
  connect(&timer_, &QTimer::timeout, this, &WarmupOverview::poll);
  connect(client_, &AdminClient::connected, this, [this] {
    policyStale_ = true;
    poll();
  });
  timer_.start();
}

void WarmupOverview::updateInfo(const QMap<QString, QString>& info) {
  const QString version = info.value(QStringLiteral("policy_version"));
  if (version.isEmpty()) return;
  running_ = info.value(QStringLiteral("instance")) + QLatin1Char('/') + version;
  if (running_ != loadedFrom_) {
    policyStale_ = true;
    poll();
  }
}

void WarmupOverview::poll() {
  if (outstanding_ > 0 || client_->state() != AdminClient::State::kConnected) return;
  if (!policyStale_) return askStates_();
  outstanding_ = 1;
  const QString wanted = running_;
  client_->send({"SL.POLICY", "GET"}, this, [this, wanted](const resp::Value& r) {
    outstanding_ = 0;
    auto running = parsePolicyGet(r);
    if (!running) return;  // the next tick tries again
    PolicyParseResult parsed = parse_policy(running->yaml, "<running policy>");
    if (!parsed.ok()) return;
    model_.setPolicy(*parsed.policy);
    loadedFrom_ = wanted;
    policyStale_ = running_ != wanted;
    askStates_();
  });
}

void WarmupOverview::askStates_() {
  const QStringList resources = model_.resources();
  if (resources.isEmpty()) {
    emit updated();
    return;
  }
  outstanding_ = static_cast<int>(resources.size());
  for (const QString& resource : resources) {
    client_->send({"SL.WARMUP", resource.toStdString(), "STATUS"}, this,
                  [this, resource](const resp::Value& r) {
                    if (auto state = parseWarmupStatus(r); state && !r.is_error())
                      model_.setState(resource, *state);
                    else if (r.error_code() != "DISCONNECTED")
                      model_.setError(resource, errorMessage(r));
                    if (--outstanding_ == 0) emit updated();
                  });
  }
}

}  // namespace sluice::admin
