#include "core/live_models.h"

#include <algorithm>

#include "core/policy_names.h"

namespace sluice::admin {

namespace {
QString qs(const std::string& s) { return QString::fromStdString(s); }
}  // namespace

// ---- LiveStats ----------------------------------------------------------------------------

LiveStats::LiveStats(QObject* parent) : QObject(parent), series_(this), top_(this) {}

void LiveStats::ingest(const StatsSnapshot& snapshot) {
  history_.merge(snapshot);
  const auto instance = snapshot.server.find("instance");
  latency_.add(snapshot.nowMs, instance == snapshot.server.end() ? std::string() : instance->second,
               snapshot.latencyUpperNs, snapshot.latencyCounts);
  latest_ = snapshot;
  for (auto& s : latest_.series)
    for (auto& v : s.perSecond) v = {};
  series_.update();
  top_.update();
  emit updated();
}

void LiveStats::markUnreachable(int64_t second) {
  const int64_t before = history_.lastSecond();
  history_.advanceTo(second);
  if (history_.lastSecond() == before) return;
  // Every row's last minute moves on too.
  series_.update();
  emit updated();
}

void LiveStats::setFilter(const QString& resource, const QString& tier) {
  if (resource == resource_ && tier == tier_) return;
  resource_ = resource;
  tier_ = tier;
  options_.resource = resource.toStdString();
  options_.tier = tier.toStdString();
  series_.update();
  top_.update();
  emit updated();
}

void LiveStats::setRange(int seconds) {
  seconds = std::clamp(seconds, 1, LiveHistory::kSeconds);
  if (seconds == options_.rangeSeconds) return;
  options_.rangeSeconds = seconds;
  emit updated();
}

void LiveStats::setSplit(SplitBy by) {
  if (by == options_.split) return;
  options_.split = by;
  emit updated();
}

void LiveStats::setClipBursts(bool clip) {
  if (clip == options_.clipBursts) return;
  options_.clipBursts = clip;
  emit updated();
}

std::vector<LiveHistory::Point> LiveStats::points() const {
  return history_.perSecond(resource_.toStdString(), tier_.toStdString());
}

StatsTotals LiveStats::totals() const {
  return history_.totals(resource_.toStdString(), tier_.toStdString());
}

QStringList LiveStats::resources() const {
  QStringList out;
  for (const auto& r : history_.resources()) out << qs(r);
  return out;
}

QStringList LiveStats::tiers() const {
  QStringList out;
  for (const auto& t : history_.tiers()) out << qs(t);
  return out;
}

// ---- LiveSeriesModel ----------------------------------------------------------------------

LiveSeriesModel::LiveSeriesModel(LiveStats* stats) : QAbstractTableModel(nullptr), stats_(stats) {}

void LiveSeriesModel::update() {
  auto rows = stats_->history().rows(stats_->resourceFilter().toStdString(),
                                     stats_->tierFilter().toStdString());
  bool sameShape = rows.size() == rows_.size();
  for (size_t i = 0; sameShape && i < rows.size(); ++i)
    sameShape = rows[i].resource == rows_[i].resource && rows[i].tier == rows_[i].tier &&
                rows[i].rule == rows_[i].rule;
  if (sameShape) {
    rows_ = std::move(rows);
    // Only the numbers change: keep selection and scroll position.
    if (!rows_.empty())
      emit dataChanged(index(0, kAllowed), index(rowCount() - 1, kColumnCount - 1),
                       {Qt::DisplayRole});
    return;
  }
  beginResetModel();
  rows_ = std::move(rows);
  endResetModel();
}

int LiveSeriesModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(rows_.size());
}
int LiveSeriesModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : kColumnCount;
}

QVariant LiveSeriesModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  const auto& r = rows_[static_cast<size_t>(index.row())];
  if (role == Qt::TextAlignmentRole && index.column() >= kAllowed)
    return QVariant(Qt::AlignRight | Qt::AlignVCenter);
  if (role != Qt::DisplayRole && role != Qt::UserRole) return {};
  switch (index.column()) {
    case kResource:
      return qs(r.resource);
    case kTier:
      return qs(r.tier);
    case kRule:
      return qs(r.rule);
    case kAllowed:
      return QVariant::fromValue<qulonglong>(r.totals.allowed);
    case kBlocked:
      return QVariant::fromValue<qulonglong>(r.totals.denied);
    case kBlockedLastMinute:
      return QVariant::fromValue<qulonglong>(r.blockedLastMinute);
    case kShadow:
      return QVariant::fromValue<qulonglong>(r.totals.shadowDenied);
    case kStorageErrors:
      return QVariant::fromValue<qulonglong>(r.totals.storageErrors);
    default:
      return {};
  }
}

QVariant LiveSeriesModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o == Qt::Horizontal && role == Qt::ToolTipRole && section == kBlockedLastMinute)
    return tr("Blocked in the last minute");
  if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case kResource:
      return tr("Resource");
    case kTier:
      return tr("Tier");
    case kRule:
      return tr("Rule");
    case kAllowed:
      return tr("Allowed");
    case kBlocked:
      return tr("Blocked");
    case kBlockedLastMinute:
      return tr("Last min");
    case kShadow:
      return tr("Shadow");
    case kStorageErrors:
      return tr("Storage err.");
    default:
      return {};
  }
}

QStringList LiveStats::queueLines() const {
  QStringList lines;
  const std::string resource = resource_.toStdString();
  auto seconds = [](int64_t ms) {
    return QString::number(static_cast<double>(ms) / 1000.0, 'f', 1);
  };
  for (const auto& q : latest_.queues) {
    if (!resource.empty() && q.resource != resource) continue;
    lines << tr("%1: %2 waiting now; %3 admitted after waiting (p50 %4 s, p99 %5 s), %6 timed "
                "out, %7 refused at once")
                 .arg(qs(q.resource))
                 .arg(q.waiting)
                 .arg(q.admitted)
                 .arg(seconds(q.waitP50Ms), seconds(q.waitP99Ms))
                 .arg(q.expired)
                 .arg(q.rejected);
  }
  return lines;
}

// ---- TopBlockedModel ----------------------------------------------------------------------

TopBlockedModel::TopBlockedModel(LiveStats* stats) : QAbstractTableModel(nullptr), stats_(stats) {}

void TopBlockedModel::setWindowSeconds(int seconds) {
  if (seconds == windowSeconds_) return;
  windowSeconds_ = seconds;
  beginResetModel();
  rows_.clear();
  endResetModel();
  update();
}

void TopBlockedModel::update() {
  std::vector<TopBlocked> rows;
  const std::string resource = stats_->resourceFilter().toStdString();
  const std::string tier = stats_->tierFilter().toStdString();
  const auto& now = stats_->latest().blockedNow;
  const auto window = now.find(windowSeconds_);
  // An engine without blocked_now (older) only has the list since it started.
  const bool recent = windowSeconds_ > 0 && window != now.end();
  for (const auto& t : recent ? window->second : stats_->latest().top)
    if ((resource.empty() || t.resource == resource) && (!recent || tier.empty() || t.tier == tier))
      rows.push_back(t);
  bool sameShape = rows.size() == rows_.size();
  for (size_t i = 0; sameShape && i < rows.size(); ++i)
    sameShape = rows[i].subject == rows_[i].subject && rows[i].resource == rows_[i].resource;
  if (sameShape) {
    rows_ = std::move(rows);
    if (!rows_.empty())
      emit dataChanged(index(0, kTier), index(rowCount() - 1, kCount), {Qt::DisplayRole});
    return;
  }
  beginResetModel();
  rows_ = std::move(rows);
  endResetModel();
}

int TopBlockedModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(rows_.size());
}
int TopBlockedModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : kColumnCount;
}

QVariant TopBlockedModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  const auto& r = rows_[static_cast<size_t>(index.row())];
  const QString subject = qs(r.subject);
  if (role == Qt::TextAlignmentRole && index.column() == kCount)
    return QVariant(Qt::AlignRight | Qt::AlignVCenter);
  const bool recent = !r.tier.empty() || !r.rule.empty();
  if (role == Qt::ToolTipRole && index.column() == kCount && r.error > 0) {
    return recent ? tr("Between %1 and %2: with many blocked subjects the engine keeps the "
                       "top ones in bounded memory.")
                        .arg(r.count)
                        .arg(r.count + r.error)
                  : tr("May be over-counted by up to %1 (the engine keeps the top subjects in "
                       "bounded memory).")
                        .arg(r.error);
  }
  if (role != Qt::DisplayRole) return {};
  switch (index.column()) {
    case kSubject:
      if (!stats_->isSecret(subject)) return subject;
      if (const QString label = stats_->labelOf(subject); !label.isEmpty())
        return tr("API key %1 (%2)").arg(stats_->maskedKey(subject), label);
      return tr("API key %1").arg(stats_->maskedKey(subject));
    case kResource:
      return qs(r.resource);
    case kTier:
      return qs(r.tier);
    case kRule:
      return qs(r.rule);
    case kCount:
      if (r.error == 0) return QString::number(r.count);
      return recent ? QStringLiteral("%1–%2").arg(r.count).arg(r.count + r.error)
                    : QStringLiteral("≤ %1").arg(r.count);
    default:
      return {};
  }
}

QVariant TopBlockedModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case kSubject:
      return tr("Subject");
    case kResource:
      return tr("Resource");
    case kTier:
      return tr("Tier");
    case kRule:
      return tr("Rule");
    case kCount:
      return tr("Blocked");
    default:
      return {};
  }
}

}  // namespace sluice::admin
