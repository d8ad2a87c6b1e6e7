#include "core/effective_limit_model.h"

#include <QFont>
#include <cmath>

#include "core/policy_names.h"

namespace sluice::admin {

EffectiveLimitModel::EffectiveLimitModel(PolicyDocument* doc, QObject* parent)
    : DraftTableModel(doc, parent) {
  refresh();
}

void EffectiveLimitModel::setResource(const QString& resource) {
  if (resource == resource_) return;
  resource_ = resource;
  warming_.reset();
  refresh();
}

void EffectiveLimitModel::setWarmupState(const WarmupState& state) {
  std::optional<double> f;
  if (state.enabled && state.warming && state.factor > 0.0 && state.factor < 1.0) f = state.factor;
  if (f == warming_) return;
  warming_ = f;
  emitAllChanged();
}

void EffectiveLimitModel::clearWarmupState() { setWarmupState(WarmupState{}); }

int64_t EffectiveLimitModel::warmLimit(int64_t limit, double factor) {
  return warm_limit(limit, factor);  // the engine's own rule
}

namespace {
QString percent(double factor) { return QString::number(factor * 100.0, 'g', 3); }
}  // namespace

QStringList EffectiveLimitModel::shapeOf(const PolicySpec& draft) const {
  QStringList out{resource_};
  for (const auto& t : draft.tiers) out << QStringLiteral("tier:") + QString::fromStdString(t.name);
  if (const ResourceSpec* r = findResource(draft, resource_.toStdString()))
    for (const auto& l : r->limits)
      out << QStringLiteral("limit:") + QString::fromStdString(l.name);
  return out;
}

void EffectiveLimitModel::reload() {
  const PolicySpec& draft = doc_->draft();
  tiers_ = draft.tiers;
  const ResourceSpec* r = findResource(draft, resource_.toStdString());
  limits_ = r ? r->limits : std::vector<LimitSpec>{};
  cells_.assign(tiers_.size(), std::vector<Cell>(limits_.size()));
  unavailable_.clear();
  if (!r) return;

  for (size_t t = 0; t < tiers_.size(); ++t) {
    auto ov = tiers_[t].overrides.find(r->name);
    for (size_t l = 0; l < limits_.size(); ++l) {
      if (ov == tiers_[t].overrides.end()) continue;
      auto it = ov->second.limits.find(limits_[l].name);
      if (it != ov->second.limits.end()) cells_[t][l].override_ = it->second;
    }
  }
  if (!validate_policy(draft).empty()) {
    unavailable_ = tr("The draft has problems; fix them to see the effective limits.");
    return;
  }
  auto compiled = CompiledPolicy::compile(draft, 0);
  if (!compiled.ok()) {
    unavailable_ = QString::fromStdString(compiled.status().message());
    return;
  }
  const CompiledResource* cr = compiled.value()->find_resource(r->name);
  if (!cr) return;
  for (size_t t = 0; t < tiers_.size(); ++t) {
    const CompiledTier* ct = compiled.value()->find_tier(tiers_[t].name);
    if (!ct) continue;
    for (size_t l = 0; l < limits_.size() && l < cr->limits.size(); ++l) {
      Cell& c = cells_[t][l];
      c.known = true;
      c.unlimited = cr->unlimited_for_tier[ct->index];
      c.limit = cr->effective[ct->index][l].limit;
    }
  }
}

int EffectiveLimitModel::rowCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(tiers_.size());
}
int EffectiveLimitModel::columnCount(const QModelIndex& parent) const {
  return parent.isValid() ? 0 : static_cast<int>(limits_.size());
}

QString EffectiveLimitModel::pathOf(const QModelIndex& index) const {
  if (!index.isValid()) return {};
  return QStringLiteral("tiers.%1.overrides.%2.limits.%3")
      .arg(QString::fromStdString(tiers_[static_cast<size_t>(index.row())].name), resource_,
           QString::fromStdString(limits_[static_cast<size_t>(index.column())].name));
}

QVariant EffectiveLimitModel::data(const QModelIndex& index, int role) const {
  if (!checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return {};
  if (QVariant e = errorData(index, role); e.isValid()) return e;
  const Cell& c = cells_[static_cast<size_t>(index.row())][static_cast<size_t>(index.column())];
  const TierSpec& t = tiers_[static_cast<size_t>(index.row())];
  const LimitSpec& l = limits_[static_cast<size_t>(index.column())];
  switch (role) {
    case Qt::DisplayRole:
      if (!c.known)
        return c.override_ ? QVariant(amountText(l, *c.override_)) : QVariant(QStringLiteral("?"));
      if (c.unlimited) return tr("unlimited");
      if (warming_) {
        const QString now = amountText(l, warmLimit(c.limit, *warming_));
        return c.override_ ? tr("%1 of %2 (override, warming %3 %)")
                                 .arg(now, amountText(l, c.limit), percent(*warming_))
                           : tr("%1 of %2 (warming %3 %)")
                                 .arg(now, amountText(l, c.limit), percent(*warming_));
      }
      if (c.override_) return tr("%1 (override)").arg(amountText(l, c.limit));
      return tr("%1 (×%2)").arg(amountText(l, c.limit), formatNumber(t.multiplier));
    case Qt::EditRole:
      return c.override_ ? QVariant(amountText(l, *c.override_, true)) : QVariant(QString());
    case Qt::FontRole:
      if (c.override_) {
        QFont f;
        f.setBold(true);
        return f;
      }
      return {};
    case Qt::ToolTipRole: {
      if (!c.known) return unavailable_;
      if (c.unlimited) return tr("Tier %1 is not limited.").arg(QString::fromStdString(t.name));
      const QString warm =
          warming_ ? tr("\nThe model is warming up: the engine applies %1 (%2 % of %3, rounded "
                        "down) until it is ready.")
                         .arg(amountText(l, warmLimit(c.limit, *warming_)), percent(*warming_),
                              amountText(l, c.limit))
                   : QString();
      if (c.override_)
        return tr("Tier %1 overrides %2 with %3 %4 per %5. Clear the cell to use the multiplier "
                  "again.")
                   .arg(QString::fromStdString(t.name), QString::fromStdString(l.name))
                   .arg(amountText(l, *c.override_))
                   .arg(unitName(l.unit), QString::fromStdString(window_text(l, true))) +
               warm;
      return tr("%1 × %2 = %3 %4 per %5. Type a number to override it for this tier.")
                 .arg(amountText(l, l.limit), formatNumber(t.multiplier), amountText(l, c.limit),
                      unitName(l.unit), QString::fromStdString(window_text(l, true))) +
             warm;
    }
    case Qt::TextAlignmentRole:
      return QVariant(Qt::AlignRight | Qt::AlignVCenter);
    case IsOverrideRole:
      return c.override_.has_value();
    case PathRole:
      return pathOf(index);
    default:
      return {};
  }
}

QVariant EffectiveLimitModel::headerData(int section, Qt::Orientation o, int role) const {
  if (role != Qt::DisplayRole) return {};
  if (o == Qt::Horizontal) {
    if (section < 0 || section >= columnCount()) return {};
    const LimitSpec& l = limits_[static_cast<size_t>(section)];
    return QStringLiteral("%1\n%2 per %3")
        .arg(QString::fromStdString(l.name), unitName(l.unit),
             QString::fromStdString(window_text(l, true)));
  }
  if (section < 0 || section >= rowCount()) return {};
  const TierSpec& t = tiers_[static_cast<size_t>(section)];
  return QStringLiteral("%1 ×%2").arg(QString::fromStdString(t.name), formatNumber(t.multiplier));
}

Qt::ItemFlags EffectiveLimitModel::flags(const QModelIndex& index) const {
  if (!index.isValid()) return Qt::NoItemFlags;
  return Qt::ItemIsEnabled | Qt::ItemIsSelectable | Qt::ItemIsEditable;
}

bool EffectiveLimitModel::setData(const QModelIndex& index, const QVariant& value, int role) {
  if (role != Qt::EditRole ||
      !checkIndex(index, CheckIndexOption::IndexIsValid | CheckIndexOption::ParentIsInvalid))
    return false;
  const std::string tier = tiers_[static_cast<size_t>(index.row())].name;
  const LimitSpec& spec_limit = limits_[static_cast<size_t>(index.column())];
  const std::string limit = spec_limit.name;
  const QString text = value.toString().trimmed();
  std::optional<int64_t> v;
  if (!text.isEmpty()) {
    v = parseAmount(spec_limit, text);
    if (!v) {
      emit editRefused(spec_limit.unit == kUnitUsd
                           ? tr("'%1' is not an amount of dollars; leave the cell empty to drop "
                                "the override.")
                                 .arg(text)
                           : tr("'%1' is not a whole number; leave the cell empty to drop the "
                                "override.")
                                 .arg(text));
      return false;
    }
  }
  const QString what =
      QStringLiteral("%1 %2/%3")
          .arg(QString::fromStdString(tier), resource_, QString::fromStdString(limit));
  return applyEdit(v ? tr("Override %1 = %2").arg(what, amountText(spec_limit, *v))
                     : tr("Clear override %1").arg(what),
                   edits::setOverrideLimit(tier, resource_.toStdString(), limit, v));
}

}  // namespace sluice::admin
