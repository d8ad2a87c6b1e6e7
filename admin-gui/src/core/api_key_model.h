// API key -> tier, with an optional label for people. Keys are shown by their last 4
// characters only (no role of this model returns a whole key); the tier and the label are
// edited in place.
#pragma once

#include "core/tier_model.h"

namespace sluice::admin {

class ApiKeyModel : public DraftTableModel {
  Q_OBJECT
 public:
  enum Column { kKey, kTier, kLabel, kColumnCount };
  explicit ApiKeyModel(PolicyDocument* doc, QObject* parent = nullptr);

  int rowCount(const QModelIndex& parent = {}) const override;
  int columnCount(const QModelIndex& parent = {}) const override;
  QVariant data(const QModelIndex& index, int role) const override;
  QVariant headerData(int section, Qt::Orientation o, int role) const override;
  Qt::ItemFlags flags(const QModelIndex& index) const override;
  bool setData(const QModelIndex& index, const QVariant& value, int role) override;

  bool addKey(const QString& key, const QString& tier, const QString& label = {});
  bool removeKey(int row);
  QStringList tierNames() const;

 protected:
  QString pathOf(const QModelIndex& index) const override;
  void reload() override;
  QStringList shapeOf(const PolicySpec& draft) const override;

 private:
  std::vector<std::pair<std::string, std::string>> keys_;  // sorted by key
  QStringList allKeys_;                                    // to tell apart keys that mask alike
};

}  // namespace sluice::admin
