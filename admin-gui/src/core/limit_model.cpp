#include "core/limit_model.h"

#include "core/policy_names.h"

namespace sluice::admin {

LimitTableModel::LimitTableModel(PolicyDocument* doc, QObject* parent)
    : DraftTableModel(doc, parent) {
  refresh();
}

void LimitTableModel::setResource(const QString& resource) {
  if (resource == resource_) return;
  resource_ = resource;
  refresh();
}

QStringList LimitTableModel::shapeOf(const PolicySpec& draft) const {
  QStringList out{resource_};
  if (const ResourceSpec* r = findResource(draft, resource_.toStdString()))
    for (const auto& l : r->limits) out << QString::fromStdString(l.name);
  return out;
}

void LimitTableModel::reload() {
  const ResourceSpec* r = findResource(doc_->draft(), resource_.toStdString());
  limits_ = r ? r->limits : std::vector<LimitSpec>{};
}

int LimitTableModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(limits_.size());
}
int LimitTableModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : kColumnCount;
}

QString LimitTableModel::pathOf(const QModelIndex& index) const {
  static const char* const kFields[kColumnCount] = {"name",  "algorithm", "limit", "window",
                                                    "burst", "cost",      "shadow"};
  if (index.column() < 0 || index.column() >= kColumnCount) return {};
  return QStringLiteral("resources.%1.limits[%2].%3")
      .arg(resource_)
      .arg(index.row())
      .arg(QLatin1String(kFields[index.column()]));
}

QVariant LimitTableModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  if (QVariant e = errorData(index, role); e.isValid()) return e;
  if (role == PathRole) return pathOf(index);
  const LimitSpec& l = limits_[static_cast<size_t>(index.row())];
  if (role == Qt::CheckStateRole && index.column() == kShadow)
    return l.shadow ? Qt::Checked : Qt::Unchecked;
  if (role == Qt::TextAlignmentRole && (index.column() == kLimit || index.column() == kBurst))
    return QVariant(Qt::AlignRight | Qt::AlignVCenter);
  if (role == Qt::ToolTipRole && index.column() == kShadow)
    return tr("A shadow limit counts and reports what it would deny, and never denies.");
  if (role != Qt::DisplayRole && role != Qt::EditRole) return {};
  switch (index.column()) {
    case kName:
      return QString::fromStdString(l.name);
    case kAlgorithm:
      return algorithmName(l.algorithm);
    case kLimit:  // a budget (cost: usd) in dollars
      if (l.unit == kUnitUsd) return amountText(l, l.limit, role == Qt::EditRole);
      return QVariant::fromValue<qlonglong>(l.limit);
    case kWindow:  // a calendar window shows its zone; editing shows what can be typed back
      return QString::fromStdString(window_text(l, role == Qt::DisplayRole));
    case kBurst:
      if (!algorithmTakesBurst(l.algorithm))
        return role == Qt::EditRole ? QVariant(0) : QVariant(QString());
      if (l.burst == 0 && role == Qt::DisplayRole) return tr("= limit");
      return QVariant::fromValue<qlonglong>(l.burst);
    case kUnit:
      return unitName(l.unit);
    default:
      return {};
  }
}

QVariant LimitTableModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case kName:
      return tr("Limit");
    case kAlgorithm:
      return tr("Algorithm");
    case kLimit:
      return tr("Limit (base tier)");
    case kWindow:
      return tr("Window");
    case kBurst:
      return tr("Burst");
    case kUnit:
      return tr("Cost unit");
    case kShadow:
      return tr("Shadow");
    default:
      return {};
  }
}

Qt::ItemFlags LimitTableModel::flags(const QModelIndex& index) const {
  if (!index.isValid()) return Qt::NoItemFlags;
  const Qt::ItemFlags f = Qt::ItemIsEnabled | Qt::ItemIsSelectable;
  if (index.column() == kShadow) return f | Qt::ItemIsUserCheckable;
  if (index.column() == kBurst &&
      !algorithmTakesBurst(limits_[static_cast<size_t>(index.row())].algorithm))
    return f;
  return f | Qt::ItemIsEditable;
}

int LimitTableModel::addLimit(const QString& name) {
  if (resource_.isEmpty()) return -1;
  QString n = name.trimmed();
  auto taken = [this](const QString& candidate) {
    for (const auto& l : limits_)
      if (QString::fromStdString(l.name) == candidate) return true;
    return false;
  };
  if (n.isEmpty()) {
    n = QStringLiteral("per_minute");
    for (int i = 2; taken(n); ++i) n = QStringLiteral("limit_%1").arg(i);
  }
  LimitSpec l;
  l.name = n.toStdString();
  l.algorithm = SLUICE_ALG_FIXED_WINDOW;
  l.limit = 60;
  l.window_ms = 60'000;
  if (!applyEdit(tr("Add limit %1/%2").arg(resource_, n),
                 edits::addLimit(resource_.toStdString(), std::move(l))))
    return -1;
  for (int r = 0; r < rowCount(); ++r)
    if (QString::fromStdString(limits_[static_cast<size_t>(r)].name) == n) return r;
  return -1;
}

bool LimitTableModel::removeLimit(int row) {
  if (row < 0 || row >= rowCount()) return false;
  const std::string name = limits_[static_cast<size_t>(row)].name;
  return applyEdit(tr("Remove limit %1/%2").arg(resource_, QString::fromStdString(name)),
                   edits::removeLimit(resource_.toStdString(), name));
}

bool LimitTableModel::moveLimit(int row, int by) {
  if (row < 0 || row >= rowCount()) return false;
  const std::string name = limits_[static_cast<size_t>(row)].name;
  return applyEdit(tr("Move limit %1/%2").arg(resource_, QString::fromStdString(name)),
                   edits::moveLimit(resource_.toStdString(), name, by));
}

bool LimitTableModel::setData(const QModelIndex& index, const QVariant& value, int role) {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return false;
  LimitSpec l = limits_[static_cast<size_t>(index.row())];
  const std::string oldName = l.name;
  const QString text = value.toString().trimmed();
  const QString what = QStringLiteral("%1/%2").arg(resource_, QString::fromStdString(oldName));
  auto refuse = [this](const QString& reason) {
    emit editRefused(reason);
    return false;
  };
  if (role == Qt::CheckStateRole && index.column() == kShadow) {
    l.shadow = value.toInt() == Qt::Checked;
  } else if (role == Qt::EditRole) {
    bool ok = false;
    switch (index.column()) {
      case kName:
        l.name = text.toStdString();
        break;
      case kAlgorithm: {
        auto a = algorithmFromName(text);
        if (!a)
          return refuse(tr("'%1' is not an algorithm; use one of %2.")
                            .arg(text, algorithmNames().join(QStringLiteral(", "))));
        l.algorithm = *a;
        if (!algorithmTakesBurst(l.algorithm)) l.burst = 0;
        break;
      }
      case kLimit: {
        const auto v = parseAmount(l, text);
        if (!v) {
          return refuse(l.unit == kUnitUsd
                            ? tr("'%1' is not an amount of dollars (at most 6 decimals).").arg(text)
                            : tr("'%1' is not a whole number.").arg(text));
        }
        l.limit = *v;
        break;
      }
      case kWindow:
        if (!set_window(l, text.toStdString()))
          return refuse(tr("'%1' is not a window; write a duration such as 500ms, 30s, 1m, 1h "
                           "or 1m30s, or calendar_day, calendar_week or calendar_month.")
                            .arg(text));
        break;
      case kBurst:
        l.burst = text.isEmpty() ? 0 : text.toLongLong(&ok);
        if (!text.isEmpty() && !ok) return refuse(tr("'%1' is not a whole number.").arg(text));
        break;
      case kUnit: {
        auto u = unitFromName(text);
        if (!u)
          return refuse(tr("'%1' is not a cost unit; use requests, tokens, input_tokens, "
                           "output_tokens, items, usd or another name of lower-case letters, "
                           "digits and '_'.")
                            .arg(text));
        l.unit = *u;
        break;
      }
      default:
        return false;
    }
  } else {
    return false;
  }
  return applyEdit(
      tr("Limit %1: %2")
          .arg(what, headerData(index.column(), Qt::Horizontal, Qt::DisplayRole).toString()),
      edits::setLimit(resource_.toStdString(), oldName, std::move(l)));
}

}  // namespace sluice::admin
