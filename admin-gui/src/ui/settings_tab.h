// Settings: the policy's top-level settings — the default tier, what unknown resources get,
// what happens when storage fails, the lease TTL — edited as draft edits (undo, validation
// and review as for everything else), with the validator's problems on their fields.
#pragma once

#include <QWidget>

class QComboBox;
class QLabel;
class QLineEdit;

namespace sluice::admin {

class PolicyDocument;

class SettingsTab : public QWidget {
  Q_OBJECT
 public:
  explicit SettingsTab(PolicyDocument* doc, QWidget* parent = nullptr);

  QComboBox* defaultTier() const { return defaultTier_; }
  QComboBox* unknownResource() const { return unknown_; }
  QComboBox* storageFailure() const { return storage_; }
  QLineEdit* leaseTtl() const { return leaseTtl_; }
  QString problemsText() const;

 signals:
  void message(const QString& text);

 private:
  void refresh_();
  void showProblems_();
  void leaseTtlEdited_();

  PolicyDocument* doc_;
  QComboBox* defaultTier_;
  QComboBox* unknown_;
  QComboBox* storage_;
  QLineEdit* leaseTtl_;
  QLabel* defaultLimits_;
  QLabel* problems_;
};

}  // namespace sluice::admin
