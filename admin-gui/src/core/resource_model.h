// The resources (models/endpoints) of the draft: name, its limits in a few words, warm-up.
#pragma once

#include "core/tier_model.h"

namespace sluice::admin {

class ResourceListModel : public DraftTableModel {
  Q_OBJECT
 public:
  enum Column { kName, kLimits, kWarmup, kDescription, kColumnCount };
  explicit ResourceListModel(PolicyDocument* doc, QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;

  QString resourceAt(int row) const;
  int rowOf(const QString& resource) const;
  Qt::ItemFlags flags(const QModelIndex& index) const override;
  // Name (renames, carrying the tiers' overrides along) and description are editable.
  bool setData(const QModelIndex& index, const QVariant& value, int role) override;
  // Structural edits, each one undoable step; -1 / false when refused (editRefused says why).
  int addResource(const QString& name = {});
  bool removeResource(int row);

 protected:
  QString pathOf(const QModelIndex& index) const override;
  void reload() override;
  QStringList shapeOf(const PolicySpec& draft) const override;

 private:
  std::vector<ResourceSpec> resources_;
};

// "10 per 1m (fixed_window)" for one limit; shared with the Live tab's legends.
QString describeLimit(const LimitSpec& limit);

}  // namespace sluice::admin
