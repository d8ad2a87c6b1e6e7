#include "core/api_key_model.h"

#include <QFontDatabase>

#include "core/policy_names.h"

namespace sluice::admin {

ApiKeyModel::ApiKeyModel(PolicyDocument* doc, QObject* parent) : DraftTableModel(doc, parent) {
  refresh();
}

QStringList ApiKeyModel::shapeOf(const PolicySpec& draft) const {
  QStringList out;
  for (const auto& [key, tier] : draft.api_keys) out << QString::fromStdString(key);
  return out;
}

void ApiKeyModel::reload() {
  const auto& m = doc_->draft().api_keys;
  keys_.assign(m.begin(), m.end());
  allKeys_.clear();
  for (const auto& [key, tier] : keys_) allKeys_ << QString::fromStdString(key);
}

int ApiKeyModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(keys_.size());
}
int ApiKeyModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : kColumnCount;
}

QString ApiKeyModel::pathOf(const QModelIndex& index) const {
  if (!index.isValid()) return {};
  return QStringLiteral("api_keys.") +
         QString::fromStdString(keys_[static_cast<size_t>(index.row())].first);
}

QVariant ApiKeyModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  if (QVariant e = errorData(index, role); e.isValid()) return e;
  const auto& [key, tier] = keys_[static_cast<size_t>(index.row())];
  if (role == Qt::DisplayRole || role == Qt::EditRole) {
    if (index.column() == kKey) return maskApiKey(QString::fromStdString(key), allKeys_);
    if (index.column() == kLabel) {
      const auto& labels = doc_->draft().api_key_labels;
      const auto it = labels.find(key);
      return it == labels.end() ? QString() : QString::fromStdString(it->second);
    }
    return QString::fromStdString(tier);
  }
  if (role == Qt::ToolTipRole && index.column() == kLabel)
    return tr("A label for people, e.g. who holds the key; never used in decisions.");
  if (role == Qt::ToolTipRole && index.column() == kKey)
    return tr(
        "Keys are shown by their last 4 characters only; keys that end alike also by 4 "
        "hex digits of their SHA-256 (#…).");
  if (role == Qt::FontRole && index.column() == kKey)
    return QFontDatabase::systemFont(QFontDatabase::FixedFont);
  return {};
}

QVariant ApiKeyModel::headerData(int section, Qt::Orientation o, int role) const {
  if (o != Qt::Horizontal || role != Qt::DisplayRole) return {};
  switch (section) {
    case kKey:
      return tr("API key");
    case kTier:
      return tr("Tier");
    case kLabel:
      return tr("Label");
    default:
      return {};
  }
}

Qt::ItemFlags ApiKeyModel::flags(const QModelIndex& index) const {
  if (!index.isValid()) return Qt::NoItemFlags;
  Qt::ItemFlags f = Qt::ItemIsEnabled | Qt::ItemIsSelectable;
  return index.column() == kKey ? f : f | Qt::ItemIsEditable;
}

bool ApiKeyModel::setData(const QModelIndex& index, const QVariant& value, int role) {
  if (role != Qt::EditRole || index.column() == kKey ||
      !checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return false;
  const std::string& key = keys_[static_cast<size_t>(index.row())].first;
  if (index.column() == kLabel) {
    const QString label = value.toString().trimmed();
    return applyEdit(
        tr("Label API key %1 \"%2\"").arg(maskApiKey(QString::fromStdString(key)), label),
        edits::setApiKeyLabel(key, label.toStdString()));
  }
  const QString tier = value.toString().trimmed();
  return applyEdit(tr("API key %1 → %2").arg(maskApiKey(QString::fromStdString(key)), tier),
                   edits::setApiKey(key, tier.toStdString()));
}

bool ApiKeyModel::addKey(const QString& key, const QString& tier, const QString& label) {
  const QString k = key.trimmed();
  if (doc_->draft().api_keys.contains(k.toStdString())) {
    emit editRefused(
        tr("The key %1 is already mapped; change its tier in the table.").arg(maskApiKey(k)));
    return false;
  }
  // One undo step: the key with its label.
  Edit add = edits::setApiKey(k.toStdString(), tier.toStdString());
  Edit labelled = edits::setApiKeyLabel(k.toStdString(), label.trimmed().toStdString());
  return applyEdit(tr("Add API key %1 → %2").arg(maskApiKey(k), tier),
                   [add, labelled](PolicySpec& spec) {
                     PolicySpec next = spec;
                     Status s = add(next);
                     if (s.ok()) s = labelled(next);
                     if (s.ok()) spec = std::move(next);
                     return s;
                   });
}

bool ApiKeyModel::removeKey(int row) {
  if (row < 0 || row >= rowCount()) return false;
  const std::string key = keys_[static_cast<size_t>(row)].first;
  return applyEdit(tr("Remove API key %1").arg(maskApiKey(QString::fromStdString(key))),
                   edits::removeApiKey(key));
}

QStringList ApiKeyModel::tierNames() const {
  QStringList out;
  for (const auto& t : doc_->draft().tiers) out << QString::fromStdString(t.name);
  return out;
}

}  // namespace sluice::admin
