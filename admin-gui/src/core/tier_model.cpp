#include "core/tier_model.h"

#include <QColor>

#include "core/policy_names.h"

namespace sluice::admin {

// ---- DraftTableModel ----------------------------------------------------------------------

DraftTableModel::DraftTableModel(PolicyDocument* doc, QObject* parent)
    : QAbstractTableModel(parent), doc_(doc) {
  connect(doc_, &PolicyDocument::draftChanged, this, &DraftTableModel::refresh);
  connect(doc_, &PolicyDocument::errorsChanged, this, &DraftTableModel::emitAllChanged);
}

bool DraftTableModel::applyEdit(const QString& description, Edit op) {
  const Status s = doc_->edit(description, std::move(op));
  if (!s.ok()) {
    emit editRefused(QString::fromStdString(s.message()));
    return false;
  }
  return true;
}

QVariant DraftTableModel::errorData(const QModelIndex& index, int role) const {
  if (role != ErrorRole && role != Qt::ToolTipRole && role != Qt::BackgroundRole) return {};
  const QString path = pathOf(index);
  if (path.isEmpty()) return {};
  const QString error = doc_->errorAt(path);
  if (error.isEmpty()) return {};
  if (role == Qt::BackgroundRole) return QColor(255, 210, 210);
  return error;
}

void DraftTableModel::refresh() {
  QStringList shape = shapeOf(doc_->draft());
  if (shape == shape_) {
    reload();
    emitAllChanged();
    return;
  }
  beginResetModel();
  reload();
  shape_ = std::move(shape);
  endResetModel();
}

void DraftTableModel::emitAllChanged() {
  if (rowCount() > 0 && columnCount() > 0)
    emit dataChanged(index(0, 0), index(rowCount() - 1, columnCount() - 1));
}

// ---- TierTableModel -----------------------------------------------------------------------

TierTableModel::TierTableModel(PolicyDocument* doc, QObject* parent)
    : DraftTableModel(doc, parent) {
  refresh();
}

QStringList TierTableModel::shapeOf(const PolicySpec& draft) const {
  QStringList out;
  for (const auto& t : draft.tiers) out << QString::fromStdString(t.name);
  return out;
}

void TierTableModel::reload() {
  const PolicySpec& d = doc_->draft();
  tiers_ = d.tiers;
  defaultTier_ = d.default_tier;
  keyCounts_.assign(tiers_.size(), 0);
  for (size_t i = 0; i < tiers_.size(); ++i)
    for (const auto& [key, tier] : d.api_keys)
      if (tier == tiers_[i].name) ++keyCounts_[i];
}

int TierTableModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(tiers_.size());
}
int TierTableModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : kColumnCount;
}

QString TierTableModel::tierAt(int row) const {
  if (row < 0 || row >= rowCount()) return {};
  return QString::fromStdString(tiers_[static_cast<size_t>(row)].name);
}

QString TierTableModel::pathOf(const QModelIndex& index) const {
  const QString base = QStringLiteral("tiers.") + tierAt(index.row());
  switch (index.column()) {
    case kName:
      return base;
    case kMultiplier:
      return base + QStringLiteral(".multiplier");
    case kUnlimited:
      return base + QStringLiteral(".unlimited");
    case kPriority:
      return base + QStringLiteral(".priority");
    case kDefault:
      return QStringLiteral("default_tier");
    case kDescription:
      return base + QStringLiteral(".description");
    default:
      return {};
  }
}

QVariant TierTableModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  if (QVariant e = errorData(index, role); e.isValid()) return e;
  const TierSpec& t = tiers_[static_cast<size_t>(index.row())];
  const bool isDefault = t.name == defaultTier_;
  switch (role) {
    case Qt::DisplayRole:
    case Qt::EditRole:
      switch (index.column()) {
        case kName:
          return QString::fromStdString(t.name);
        case kMultiplier:
          return role == Qt::EditRole ? QVariant(t.multiplier)
                                      : QVariant(formatNumber(t.multiplier));
        case kPriority:
          return role == Qt::EditRole ? QVariant(static_cast<int>(t.priority))
                                      : QVariant(QString::number(t.priority));
        case kKeys:
          return keyCounts_[static_cast<size_t>(index.row())];
        case kDescription:
          return QString::fromStdString(t.description);
        default:
          return {};
      }
    case Qt::CheckStateRole:
      if (index.column() == kUnlimited) return t.unlimited ? Qt::Checked : Qt::Unchecked;
      if (index.column() == kDefault) return isDefault ? Qt::Checked : Qt::Unchecked;
      return {};
    case Qt::ToolTipRole:
      switch (index.column()) {
        case kMultiplier:
          return tr(
              "Every limit is multiplied by this for callers of this tier, "
              "unless the tier overrides the resource.");
        case kUnlimited:
          return tr("Callers of this tier are never limited.");
        case kPriority:
          return tr(
              "-1000 to 1000, default 0. Requests waiting for capacity (WAIT) are served higher "
              "priority first; a concurrency limit's reserve is kept for tiers at or above its "
              "min_priority.");
        case kDefault:
          return tr("Callers without a mapped API key get the default tier.");
        case kKeys:
          return tr("API keys mapped to this tier.");
        default:
          return {};
      }
    case Qt::TextAlignmentRole:
      if (index.column() == kMultiplier || index.column() == kPriority || index.column() == kKeys)
        return QVariant(Qt::AlignRight | Qt::AlignVCenter);
      return {};
    case ErrorRole:
    case PathRole:
      return role == PathRole ? QVariant(pathOf(index)) : QVariant();
    default:
      return {};
  }
}

QVariant TierTableModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case kName:
      return tr("Tier");
    case kMultiplier:
      return tr("Multiplier");
    case kUnlimited:
      return tr("Unlimited");
    case kPriority:
      return tr("Priority");
    case kDefault:
      return tr("Default");
    case kKeys:
      return tr("API keys");
    case kDescription:
      return tr("Description");
    default:
      return {};
  }
}

Qt::ItemFlags TierTableModel::flags(const QModelIndex& index) const {
  if (!index.isValid()) return Qt::NoItemFlags;
  Qt::ItemFlags f = Qt::ItemIsEnabled | Qt::ItemIsSelectable;
  switch (index.column()) {
    case kName:
    case kMultiplier:
    case kPriority:
    case kDescription:
      return f | Qt::ItemIsEditable;
    case kUnlimited:
    case kDefault:
      return f | Qt::ItemIsUserCheckable;
    default:
      return f;
  }
}

bool TierTableModel::setData(const QModelIndex& index, const QVariant& value, int role) {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return false;
  const std::string tier = tiers_[static_cast<size_t>(index.row())].name;
  const QString qtier = QString::fromStdString(tier);
  if (role == Qt::CheckStateRole) {
    const bool on = value.toInt() == Qt::Checked;
    if (index.column() == kUnlimited)
      return applyEdit(tr("Tier %1: unlimited %2").arg(qtier, on ? tr("on") : tr("off")),
                       edits::setTierUnlimited(tier, on));
    if (index.column() == kDefault) {
      if (!on) {
        emit editRefused(
            tr("Pick another tier as the default instead; one tier is always the default."));
        return false;
      }
      return applyEdit(tr("Default tier: %1").arg(qtier), edits::setDefaultTier(tier));
    }
    return false;
  }
  if (role != Qt::EditRole) return false;
  switch (index.column()) {
    case kName: {
      const QString to = value.toString().trimmed();
      return applyEdit(tr("Rename tier %1 to %2").arg(qtier, to),
                       edits::renameTier(tier, to.toStdString()));
    }
    case kMultiplier: {
      bool ok = false;
      const double m = value.toString().trimmed().toDouble(&ok);
      if (!ok) {
        emit editRefused(tr("'%1' is not a number; a multiplier is a number like 5 or 0.5.")
                             .arg(value.toString()));
        return false;
      }
      return applyEdit(tr("Tier %1: multiplier %2").arg(qtier, formatNumber(m)),
                       edits::setTierMultiplier(tier, m));
    }
    case kPriority: {
      bool ok = false;
      const qlonglong p = value.toString().trimmed().toLongLong(&ok);
      if (!ok) {
        emit editRefused(
            tr("'%1' is not a whole number; a priority is a whole number from -1000 to 1000.")
                .arg(value.toString()));
        return false;
      }
      return applyEdit(tr("Tier %1: priority %2").arg(qtier).arg(p),
                       edits::setTierPriority(tier, p));
    }
    case kDescription:
      return applyEdit(tr("Tier %1: description").arg(qtier),
                       edits::setTierDescription(tier, value.toString().toStdString()));
    default:
      return false;
  }
}

int TierTableModel::addTier(const QString& name) {
  QString n = name.trimmed();
  if (n.isEmpty()) {
    for (int i = static_cast<int>(tiers_.size()) + 1;; ++i) {
      n = QStringLiteral("tier-%1").arg(i);
      if (!findTier(doc_->draft(), n.toStdString())) break;
    }
  }
  if (!applyEdit(tr("Add tier %1").arg(n), edits::addTier(n.toStdString()))) return -1;
  for (int r = 0; r < rowCount(); ++r)
    if (tierAt(r) == n) return r;
  return -1;
}

bool TierTableModel::removeTier(int row) {
  const QString tier = tierAt(row);
  if (tier.isEmpty()) return false;
  return applyEdit(tr("Remove tier %1").arg(tier), edits::removeTier(tier.toStdString()));
}

}  // namespace sluice::admin
