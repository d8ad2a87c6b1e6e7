// Models & limits: the resources on the left; for the selected one its limits, the grid of
// effective limits per tier (overrides edited in place), its warm-up settings and the live
// warm-up state with START / READY.
#pragma once

#include <QWidget>

class QLabel;
class QTableView;
class QCheckBox;
class QDoubleSpinBox;
class QLineEdit;
class QPushButton;
class QGroupBox;

namespace sluice::admin {

class PolicyDocument;
class ResourceListModel;
class LimitTableModel;
class EffectiveLimitModel;
class WarmupMonitor;
struct WarmupState;

class ModelsTab : public QWidget {
  Q_OBJECT
 public:
  ModelsTab(PolicyDocument* doc, WarmupMonitor* warmup, QWidget* parent = nullptr);
  void selectResource(const QString& resource);
  QString currentResource() const;
  ResourceListModel* resourceModel() const { return resources_; }
  LimitTableModel* limitModel() const { return limits_; }
  EffectiveLimitModel* effectiveModel() const { return effective_; }
  QTableView* resourceView() const { return resourceView_; }
  QTableView* limitView() const { return limitView_; }
  QTableView* effectiveView() const { return effectiveView_; }
  QWidget* warmupFactorField() const;

 signals:
  void message(const QString& text);

 protected:
  void showEvent(QShowEvent* e) override;
  void hideEvent(QHideEvent* e) override;

 private:
  int rowBeforeReset_ = 0;
  void onResourceChanged_();
  void loadWarmupForm_();
  void saveWarmupForm_();
  void showWarmupState_(const QString& resource, const WarmupState& state);
  void updateErrors_();

  PolicyDocument* doc_;
  WarmupMonitor* warmup_;
  ResourceListModel* resources_;
  LimitTableModel* limits_;
  EffectiveLimitModel* effective_;
  QTableView* resourceView_;
  QTableView* limitView_;
  QTableView* effectiveView_;
  QLabel* title_;
  QLabel* effectiveNote_;
  QLabel* errors_;
  QGroupBox* warmupBox_;
  QCheckBox* warmupEnabled_;
  QDoubleSpinBox* warmupFactor_;
  QLineEdit* warmupDuration_;
  QCheckBox* warmupRamp_;
  QCheckBox* warmupCold_;
  QLabel* warmupState_;
  QPushButton* warmupStart_;
  QPushButton* warmupReady_;
  bool loadingForm_ = false;
};

}  // namespace sluice::admin
