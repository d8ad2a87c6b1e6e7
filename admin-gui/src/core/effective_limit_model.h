// The effective limit of each tier (rows) for each limit (columns) of one resource, as the
// engine would enforce it: computed by compiling the draft with sluice::CompiledPolicy, so it
// can never disagree with the engine. A cell is edited in place to set the tier's absolute
// override for that limit; clearing it removes the override (back to the multiplier).
#pragma once

#include <memory>

#include "core/tier_model.h"

namespace sluice::admin {

class EffectiveLimitModel : public DraftTableModel {
  Q_OBJECT
 public:
  enum { IsOverrideRole = DraftTableModel::PathRole + 1 };
  explicit EffectiveLimitModel(PolicyDocument* doc, QObject* parent = nullptr);

  void setResource(const QString& resource);
  QString resource() const { return resource_; }
  // Why cells show no number (the draft does not compile); empty when they do.
  QString unavailableReason() const { return unavailable_; }

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;
  Qt::ItemFlags flags(const QModelIndex& index) const override;
  bool setData(const QModelIndex& index, const QVariant& value, int role) override;

 protected:
  QString pathOf(const QModelIndex& index) const override;
  void reload() override;
  QStringList shapeOf(const PolicySpec& draft) const override;

 private:
  struct Cell {
    int64_t limit = 0;
    bool unlimited = false;
    std::optional<int64_t> override_;
    bool known = false;  // the draft compiled
  };
  QString resource_;
  QString unavailable_;
  std::vector<TierSpec> tiers_;
  std::vector<LimitSpec> limits_;
  std::vector<std::vector<Cell>> cells_;  // [tier][limit]
};

}  // namespace sluice::admin
