// Tiers: the table of tiers with add / rename (F2) / remove (Del). A refused removal says why.
#pragma once

#include <QWidget>

class QTableView;
class QLabel;

namespace sluice::admin {

class TierTableModel;
class PolicyDocument;

class TiersTab : public QWidget {
  Q_OBJECT
 public:
  TiersTab(TierTableModel* model, QWidget* parent = nullptr);
  QTableView* view() const { return view_; }
  void selectTier(const QString& tier);

 signals:
  void message(const QString& text);

 private:
  void updateErrors_();
  TierTableModel* model_;
  QTableView* view_;
  QLabel* errors_;
  int rowBeforeReset_ = -1;
  int columnBeforeReset_ = 0;
  QString tierBeforeReset_;
  bool focusBeforeReset_ = false;
};

// Lists the document's problems whose path starts with one of `prefixes` in `label`
// (hidden when there are none): the error shown next to the table it concerns.
void showErrorsUnder(QLabel* label, const PolicyDocument* doc, const QStringList& prefixes);

}  // namespace sluice::admin
