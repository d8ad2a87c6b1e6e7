#include "core/resource_model.h"

#include "core/policy_names.h"

namespace sluice::admin {

QString describeLimit(const LimitSpec& l) {
  QString s = QStringLiteral("%1 %2 per %3")
                  .arg(l.limit)
                  .arg(unitName(l.unit), QString::fromStdString(window_text(l, true)));
  if (l.shadow) s += QObject::tr(" (shadow)");
  return s;
}

ResourceListModel::ResourceListModel(PolicyDocument* doc, QObject* parent)
    : DraftTableModel(doc, parent) {
  refresh();
}

QStringList ResourceListModel::shapeOf(const PolicySpec& draft) const {
  QStringList out;
  for (const auto& r : draft.resources) out << QString::fromStdString(r.name);
  return out;
}

void ResourceListModel::reload() { resources_ = doc_->draft().resources; }

int ResourceListModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(resources_.size());
}
int ResourceListModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : kColumnCount;
}

QString ResourceListModel::resourceAt(int row) const {
  if (row < 0 || row >= rowCount()) return {};
  return QString::fromStdString(resources_[static_cast<size_t>(row)].name);
}

int ResourceListModel::rowOf(const QString& resource) const {
  for (int r = 0; r < rowCount(); ++r)
    if (resourceAt(r) == resource) return r;
  return -1;
}

Qt::ItemFlags ResourceListModel::flags(const QModelIndex& index) const {
  Qt::ItemFlags f = DraftTableModel::flags(index);
  if (index.isValid() && (index.column() == kName || index.column() == kDescription))
    f |= Qt::ItemIsEditable;
  return f;
}

bool ResourceListModel::setData(const QModelIndex& index, const QVariant& value, int role) {
  if (role != Qt::EditRole ||
      !checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return false;
  const QString resource = resourceAt(index.row());
  const QString text = value.toString().trimmed();
  if (index.column() == kName)
    return applyEdit(tr("Rename model %1 to %2").arg(resource, text),
                     edits::renameResource(resource.toStdString(), text.toStdString()));
  if (index.column() == kDescription)
    return applyEdit(
        tr("Describe model %1").arg(resource),
        edits::setResourceDescription(resource.toStdString(), value.toString().toStdString()));
  return false;
}

int ResourceListModel::addResource(const QString& name) {
  QString n = name.trimmed();
  if (n.isEmpty()) {
    for (int i = rowCount() + 1;; ++i) {
      n = QStringLiteral("model-%1").arg(i);
      if (!findResource(doc_->draft(), n.toStdString())) break;
    }
  }
  if (!applyEdit(tr("Add model %1").arg(n), edits::addResource(n.toStdString()))) return -1;
  return rowOf(n);
}

bool ResourceListModel::removeResource(int row) {
  const QString resource = resourceAt(row);
  if (resource.isEmpty()) return false;
  return applyEdit(tr("Remove model %1").arg(resource),
                   edits::removeResource(resource.toStdString()));
}

QString ResourceListModel::pathOf(const QModelIndex& index) const {
  return index.column() == kName ? QStringLiteral("resources.") + resourceAt(index.row())
                                 : QString();
}

QVariant ResourceListModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  if (QVariant e = errorData(index, role); e.isValid()) return e;
  const ResourceSpec& r = resources_[static_cast<size_t>(index.row())];
  if (role == PathRole) return pathOf(index);
  if (role != Qt::DisplayRole && role != Qt::ToolTipRole && role != Qt::EditRole) return {};
  switch (index.column()) {
    case kName:
      if (role == Qt::ToolTipRole) return QString::fromStdString(r.description);
      return QString::fromStdString(r.name);
    case kLimits: {
      QStringList parts;
      for (const auto& l : r.limits) parts << describeLimit(l);
      return parts.isEmpty() ? tr("not limited") : parts.join(QStringLiteral(", "));
    }
    case kWarmup:
      if (!r.warmup.enabled) return QString();
      return tr("%1% until ready").arg(r.warmup.factor * 100.0, 0, 'g', 3);
    case kDescription:
      return QString::fromStdString(r.description);
    default:
      return {};
  }
}

QVariant ResourceListModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case kName:
      return tr("Resource");
    case kLimits:
      return tr("Limits");
    case kWarmup:
      return tr("Warm-up");
    case kDescription:
      return tr("Description");
    default:
      return {};
  }
}

}  // namespace sluice::admin
