// The limits of one resource of the draft: algorithm, limit, window, burst, cost unit,
// shadow. Every cell is editable; a value that cannot be read is refused with the reason.
#pragma once

#include "core/tier_model.h"

namespace sluice::admin {

class LimitTableModel : public DraftTableModel {
  Q_OBJECT
 public:
  enum Column { kName, kAlgorithm, kLimit, kWindow, kBurst, kUnit, kShadow, kColumnCount };
  explicit LimitTableModel(PolicyDocument* doc, QObject* parent = nullptr);

  void setResource(const QString& resource);
  QString resource() const { return resource_; }

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;
  Qt::ItemFlags flags(const QModelIndex& index) const override;
  bool setData(const QModelIndex& index, const QVariant& value, int role) override;
  // Structural edits of the resource's limits, each one undoable step; -1 / false when
  // refused (editRefused says why). A new limit is 60 requests per minute, fixed_window.
  int addLimit(const QString& name = {});
  bool removeLimit(int row);
  bool moveLimit(int row, int by);

 protected:
  QString pathOf(const QModelIndex& index) const override;
  void reload() override;
  QStringList shapeOf(const PolicySpec& draft) const override;

 private:
  QString resource_;
  std::vector<LimitSpec> limits_;
};

}  // namespace sluice::admin
