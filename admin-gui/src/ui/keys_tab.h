// API keys: key -> tier and an optional label, keys masked except their last 4 characters;
// add and remove.
#pragma once

#include <QWidget>

class QTableView;
class QLineEdit;
class QComboBox;
class QLabel;

namespace sluice::admin {

class ApiKeyModel;

class KeysTab : public QWidget {
  Q_OBJECT
 public:
  KeysTab(ApiKeyModel* model, QWidget* parent = nullptr);
  QTableView* view() const { return view_; }

 signals:
  void message(const QString& text);

 private:
  void refreshTiers_();
  ApiKeyModel* model_;
  QTableView* view_;
  QLineEdit* newKey_;
  QComboBox* newTier_;
  QLineEdit* newLabel_;
  QLabel* errors_;
};

}  // namespace sluice::admin
