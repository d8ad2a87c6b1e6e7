// Item models over the policy draft. They keep a copy of the rows they show (refreshed when
// the draft changes) so the view and the model always agree on the shape, and route every
// edit through PolicyDocument::edit (one undo step each). Cells with a validation problem
// carry it in ErrorRole, ToolTipRole and a red background, next to the field it concerns.
#pragma once

#include <QAbstractTableModel>
#include <vector>

#include "core/policy_document.h"

namespace sluice::admin {

class DraftTableModel : public QAbstractTableModel {
  Q_OBJECT
 public:
  enum Role { ErrorRole = Qt::UserRole + 1, PathRole };
  explicit DraftTableModel(PolicyDocument* doc, QObject* parent = nullptr);
  PolicyDocument* document() const { return doc_; }

 signals:
  // An edit was refused; `reason` says why (shown to the user).
  void editRefused(const QString& reason);

 protected:
  bool applyEdit(const QString& description, Edit op);
  // The policy path of a cell, for error lookup; empty when the cell has none.
  virtual QString pathOf(const QModelIndex& index) const = 0;
  // ErrorRole/ToolTipRole/BackgroundRole from the document's errors; invalid QVariant otherwise.
  QVariant errorData(const QModelIndex& index, int role) const;
  // Copies what the model shows from the draft.
  virtual void reload() = 0;
  // The identity of rows and columns the draft would give (names in order); a change of
  // shape resets the model, anything else is a dataChanged that keeps selection and editors.
  virtual QStringList shapeOf(const PolicySpec& draft) const = 0;
  // Call at the end of a subclass constructor, and when what the model looks at changes.
  void refresh();
  void emitAllChanged();

  PolicyDocument* doc_;
  QStringList shape_;
};

class TierTableModel : public DraftTableModel {
  Q_OBJECT
 public:
  enum Column {
    kName,
    kMultiplier,
    kUnlimited,
    kPriority,
    kDefault,
    kKeys,
    kDescription,
    kColumnCount
  };
  explicit TierTableModel(PolicyDocument* doc, QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;
  Qt::ItemFlags flags(const QModelIndex& index) const override;
  bool setData(const QModelIndex& index, const QVariant& value, int role) override;

  QString tierAt(int row) const;
  // A new tier with a free name ("tier-2"); returns its row or -1.
  int addTier(const QString& name = {});
  bool removeTier(int row);

 protected:
  QString pathOf(const QModelIndex& index) const override;
  void reload() override;
  QStringList shapeOf(const PolicySpec& draft) const override;

 private:
  std::vector<TierSpec> tiers_;
  std::string defaultTier_;
  std::vector<int> keyCounts_;
};

}  // namespace sluice::admin
