// The effective limit of each tier (rows) for each limit (columns) of one resource, as the
// engine would enforce it: computed by compiling the draft with sluice::CompiledPolicy, so it
// can never disagree with the engine. A cell is edited in place to set the tier's absolute
// override for that limit; clearing it removes the override (back to the multiplier).
// While the engine reports the resource warming up (setWarmupState, fed from SL.WARMUP STATUS),
// cells show the limit the engine applies now, "8 of 10 (warming 80 %)": the warm limit × the
// current factor, rounded down, at least 1 (the engine's own rule).
#pragma once

#include <memory>

#include "core/engine_replies.h"
#include "core/tier_model.h"

namespace sluice::admin {

class EffectiveLimitModel : public DraftTableModel {
  Q_OBJECT
 public:
  enum { IsOverrideRole = DraftTableModel::PathRole + 1 };
  explicit EffectiveLimitModel(PolicyDocument* doc, QObject* parent = nullptr);

  void setResource(const QString& resource);
  QString resource() const { return resource_; }
  // The live warm-up state of resource(); a new resource forgets it. Not a draft edit.
  void setWarmupState(const WarmupState& state);
  void clearWarmupState();
  // The factor the engine applies now, when it is warming the resource up (below 1).
  std::optional<double> warmingFactor() const { return warming_; }
  // What the engine applies to `limit` at warm-up `factor`: floor(limit × factor), at least 1
  // (engine.cpp's scale()); `limit` itself at a factor of 1 or more.
  static int64_t warmLimit(int64_t limit, double factor);
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
  std::optional<double> warming_;
  std::vector<TierSpec> tiers_;
  std::vector<LimitSpec> limits_;
  std::vector<std::vector<Cell>> cells_;  // [tier][limit]
};

}  // namespace sluice::admin
