#include "ui/models_tab.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QPushButton>
#include <QSplitter>
#include <QStyledItemDelegate>
#include <QTableView>
#include <QVBoxLayout>

#include "core/effective_limit_model.h"
#include "core/limit_model.h"
#include "core/policy_names.h"
#include "core/resource_model.h"
#include "core/warmup_monitor.h"
#include "ui/tiers_tab.h"

namespace sluice::admin {

namespace {
// A fixed list of words (algorithms, cost units) edited with a combo box.
class ChoiceDelegate : public QStyledItemDelegate {
 public:
  ChoiceDelegate(QStringList choices, QObject* parent)
      : QStyledItemDelegate(parent), choices_(std::move(choices)) {}
  QWidget* createEditor(QWidget* parent, const QStyleOptionViewItem&,
                        const QModelIndex&) const override {
    auto* c = new QComboBox(parent);
    c->addItems(choices_);
    return c;
  }
  void setEditorData(QWidget* editor, const QModelIndex& index) const override {
    static_cast<QComboBox*>(editor)->setCurrentText(index.data(Qt::EditRole).toString());
  }
  void setModelData(QWidget* editor, QAbstractItemModel* model,
                    const QModelIndex& index) const override {
    model->setData(index, static_cast<QComboBox*>(editor)->currentText(), Qt::EditRole);
  }

 private:
  QStringList choices_;
};

QTableView* makeTable(QWidget* parent) {
  auto* v = new QTableView(parent);
  v->setAlternatingRowColors(true);
  v->setSelectionMode(QAbstractItemView::SingleSelection);
  v->horizontalHeader()->setStretchLastSection(true);
  v->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed |
                     QAbstractItemView::AnyKeyPressed);
  // Tab leaves the table (arrows move between cells): otherwise Tab cycles through its cells
  // and nothing after it is reachable by keyboard.
  v->setTabKeyNavigation(false);
  return v;
}
}  // namespace

ModelsTab::ModelsTab(PolicyDocument* doc, WarmupMonitor* warmup, QWidget* parent)
    : QWidget(parent),
      doc_(doc),
      warmup_(warmup),
      resources_(new ResourceListModel(doc, this)),
      limits_(new LimitTableModel(doc, this)),
      effective_(new EffectiveLimitModel(doc, this)) {
  auto* outer = new QHBoxLayout(this);
  auto* split = new QSplitter(Qt::Horizontal, this);
  outer->addWidget(split);

  resourceView_ = makeTable(split);
  resourceView_->setModel(resources_);
  resourceView_->setSelectionBehavior(QAbstractItemView::SelectRows);
  for (int c = 1; c < ResourceListModel::kColumnCount; ++c) resourceView_->hideColumn(c);
  resourceView_->verticalHeader()->hide();
  resourceView_->setMinimumWidth(180);
  resourceView_->setEditTriggers(QAbstractItemView::EditKeyPressed |
                                 QAbstractItemView::DoubleClicked);  // F2 or double-click renames
  auto* left = new QWidget(split);
  auto* leftLayout = new QVBoxLayout(left);
  leftLayout->setContentsMargins(0, 0, 0, 0);
  leftLayout->addWidget(resourceView_);
  auto* resourceButtons = new QHBoxLayout;
  auto* addModel = new QPushButton(tr("Add &model"), left);
  auto* removeModel = new QPushButton(tr("Remove model"), left);
  addModel->setToolTip(
      tr("A new model with one limit (60 per minute) to edit; rename it with F2."));
  resourceButtons->addWidget(addModel);
  resourceButtons->addWidget(removeModel);
  leftLayout->addLayout(resourceButtons);
  split->addWidget(left);
  connect(addModel, &QPushButton::clicked, this, [this] {
    const int row = resources_->addResource();
    if (row < 0) return;
    resourceView_->setCurrentIndex(resources_->index(row, ResourceListModel::kName));
    resourceView_->setFocus();
    resourceView_->edit(resourceView_->currentIndex());
    emit message(tr("Model added: type its name (undo with Ctrl+Z)."));
  });
  connect(removeModel, &QPushButton::clicked, this, [this] {
    const QString resource = currentResource();
    if (resource.isEmpty()) return;
    if (QMessageBox::question(this, tr("Remove model"),
                              tr("Remove %1, its limits and every tier's overrides of it from "
                                 "the draft?")
                                  .arg(resource),
                              QMessageBox::Yes | QMessageBox::Cancel,
                              QMessageBox::Cancel) != QMessageBox::Yes)
      return;
    if (resources_->removeResource(resources_->rowOf(resource)))
      emit message(tr("Model %1 removed (undo with Ctrl+Z).").arg(resource));
  });

  auto* right = new QWidget(split);
  auto* layout = new QVBoxLayout(right);
  layout->setContentsMargins(6, 0, 0, 0);
  title_ = new QLabel(right);
  title_->setWordWrap(true);
  layout->addWidget(title_);

  auto* limitsBox = new QGroupBox(tr("Limits (for the base multiplier 1)"), right);
  auto* lb = new QVBoxLayout(limitsBox);
  limitView_ = makeTable(limitsBox);
  limitView_->setModel(limits_);
  limitView_->verticalHeader()->hide();
  limitView_->setItemDelegateForColumn(LimitTableModel::kAlgorithm,
                                       new ChoiceDelegate(algorithmNames(), limitView_));
  limitView_->setItemDelegateForColumn(LimitTableModel::kUnit,
                                       new ChoiceDelegate(unitNames(), limitView_));
  limitView_->setMinimumHeight(90);
  lb->addWidget(limitView_);
  auto* limitButtons = new QHBoxLayout;
  auto* addLimit = new QPushButton(tr("Add &limit"), limitsBox);
  auto* removeLimit = new QPushButton(tr("Remove limit"), limitsBox);
  auto* up = new QPushButton(tr("Move up"), limitsBox);
  auto* down = new QPushButton(tr("Move down"), limitsBox);
  for (auto* b : {addLimit, removeLimit, up, down}) limitButtons->addWidget(b);
  limitButtons->addStretch(1);
  lb->addLayout(limitButtons);
  connect(addLimit, &QPushButton::clicked, this, [this] {
    const int row = limits_->addLimit();
    if (row < 0) return;
    limitView_->setCurrentIndex(limits_->index(row, LimitTableModel::kName));
    limitView_->setFocus();
    limitView_->edit(limitView_->currentIndex());
  });
  connect(removeLimit, &QPushButton::clicked, this, [this] {
    const int row = limitView_->currentIndex().row();
    if (row >= 0 && limits_->removeLimit(row))
      emit message(tr("Limit removed (undo with Ctrl+Z)."));
  });
  for (auto [button, by] : {std::pair{up, -1}, std::pair{down, 1}}) {
    connect(button, &QPushButton::clicked, this, [this, by = by] {
      const QModelIndex current = limitView_->currentIndex();
      if (current.isValid() && limits_->moveLimit(current.row(), by))
        limitView_->setCurrentIndex(limits_->index(current.row() + by, current.column()));
    });
  }
  layout->addWidget(limitsBox, 2);

  auto* effBox = new QGroupBox(tr("Effective limit per tier"), right);
  auto* eb = new QVBoxLayout(effBox);
  auto* effHint =
      new QLabel(tr("Type a number in a cell to override that limit for the tier (bold); "
                    "clear it to go back to the tier's multiplier."),
                 effBox);
  effHint->setWordWrap(true);
  eb->addWidget(effHint);
  effectiveView_ = makeTable(effBox);
  effectiveView_->setModel(effective_);
  effectiveView_->horizontalHeader()->setSectionResizeMode(QHeaderView::Stretch);
  effectiveView_->setMinimumHeight(110);
  eb->addWidget(effectiveView_);
  effectiveNote_ = new QLabel(effBox);
  effectiveNote_->setStyleSheet(QStringLiteral("color: #8a5300;"));
  effectiveNote_->hide();
  eb->addWidget(effectiveNote_);
  layout->addWidget(effBox, 2);

  warmupBox_ = new QGroupBox(tr("Warm-up"), right);
  auto* wb = new QHBoxLayout(warmupBox_);
  auto* form = new QFormLayout;
  warmupEnabled_ = new QCheckBox(tr("Reduced limits while the model warms up"), warmupBox_);
  warmupFactor_ = new QDoubleSpinBox(warmupBox_);
  warmupFactor_->setRange(0.01, 1.0);
  warmupFactor_->setSingleStep(0.05);
  warmupFactor_->setDecimals(2);
  warmupFactor_->setToolTip(tr("Share of each limit while warming up (0.2 = a fifth)."));
  warmupDuration_ = new QLineEdit(warmupBox_);
  warmupDuration_->setPlaceholderText(tr("until READY"));
  warmupDuration_->setToolTip(
      tr("Warm-up ends by itself after this long (e.g. 5m); empty = only on READY."));
  warmupRamp_ = new QCheckBox(tr("Ramp limits up linearly over the duration"), warmupBox_);
  warmupCold_ =
      new QCheckBox(tr("Start warming up when the engine starts or loads the policy"), warmupBox_);
  form->addRow(warmupEnabled_);
  form->addRow(tr("Factor:"), warmupFactor_);
  form->addRow(tr("Duration:"), warmupDuration_);
  form->addRow(warmupRamp_);
  form->addRow(warmupCold_);
  wb->addLayout(form, 1);
  auto* live = new QVBoxLayout;
  auto* liveTitle = new QLabel(tr("<b>Live state</b>"), warmupBox_);
  warmupState_ = new QLabel(tr("not connected"), warmupBox_);
  warmupState_->setWordWrap(true);
  warmupStart_ = new QPushButton(tr("S&TART warm-up"), warmupBox_);
  warmupReady_ = new QPushButton(tr("Mark RE&ADY"), warmupBox_);
  warmupStart_->setToolTip(tr("SL.WARMUP <resource> START: apply the reduced limits now."));
  warmupReady_->setToolTip(tr("SL.WARMUP <resource> READY: the model is warm, full limits now."));
  live->addWidget(liveTitle);
  live->addWidget(warmupState_);
  live->addWidget(warmupStart_);
  live->addWidget(warmupReady_);
  live->addStretch(1);
  wb->addLayout(live, 1);
  layout->addWidget(warmupBox_, 1);

  errors_ = new QLabel(right);
  errors_->setWordWrap(true);
  errors_->setStyleSheet(QStringLiteral("color: #b3261e;"));
  errors_->hide();
  layout->addWidget(errors_);

  split->addWidget(right);
  split->setStretchFactor(1, 1);

  // Keyboard order: the model list and its buttons, the limits and theirs, the effective-limit
  // grid, the warm-up settings, START / READY.
  const QList<QWidget*> order{resourceView_,
                              addModel,
                              removeModel,
                              limitView_,
                              addLimit,
                              removeLimit,
                              up,
                              down,
                              effectiveView_,
                              warmupEnabled_,
                              warmupFactor_,
                              warmupDuration_,
                              warmupRamp_,
                              warmupCold_,
                              warmupStart_,
                              warmupReady_};
  for (qsizetype i = 1; i < order.size(); ++i) setTabOrder(order[i - 1], order[i]);
  split->setSizes({220, 800});

  connect(limits_, &QAbstractItemModel::modelReset, limitView_, [this] {
    limitView_->resizeColumnsToContents();
    limitView_->horizontalHeader()->setStretchLastSection(true);
  });
  connect(resourceView_->selectionModel(), &QItemSelectionModel::currentRowChanged, this,
          &ModelsTab::onResourceChanged_);
  connect(resources_, &QAbstractItemModel::modelAboutToBeReset, this,
          [this] { rowBeforeReset_ = resourceView_->currentIndex().row(); });
  connect(resources_, &QAbstractItemModel::modelReset, this, [this] {
    // Keep the selection on the same resource across draft changes; a renamed one keeps its
    // row, a removed one gives way to its neighbour.
    const QString current = limits_->resource();
    int row = resources_->rowOf(current);
    if (row < 0) row = std::clamp(rowBeforeReset_, 0, std::max(0, resources_->rowCount() - 1));
    resourceView_->setCurrentIndex(resources_->index(row, 0));
  });
  for (auto* m : {static_cast<DraftTableModel*>(limits_), static_cast<DraftTableModel*>(effective_),
                  static_cast<DraftTableModel*>(resources_)})
    connect(m, &DraftTableModel::editRefused, this, &ModelsTab::message);
  connect(doc_, &PolicyDocument::draftChanged, this, [this] {
    loadWarmupForm_();
    effectiveNote_->setText(effective_->unavailableReason());
    effectiveNote_->setVisible(!effective_->unavailableReason().isEmpty());
  });
  connect(doc_, &PolicyDocument::errorsChanged, this, &ModelsTab::updateErrors_);

  for (auto* c : {warmupEnabled_, warmupRamp_, warmupCold_})
    connect(c, &QCheckBox::toggled, this, &ModelsTab::saveWarmupForm_);
  connect(warmupFactor_, &QDoubleSpinBox::editingFinished, this, &ModelsTab::saveWarmupForm_);
  connect(warmupDuration_, &QLineEdit::editingFinished, this, &ModelsTab::saveWarmupForm_);
  connect(warmupStart_, &QPushButton::clicked, warmup_, &WarmupMonitor::start);
  connect(warmupReady_, &QPushButton::clicked, warmup_, &WarmupMonitor::ready);
  connect(warmup_, &WarmupMonitor::stateChanged, this, &ModelsTab::showWarmupState_);
  connect(warmup_, &WarmupMonitor::failed, this,
          [this](const QString& resource, const QString& msg) {
            if (resource != currentResource()) return;
            warmupState_->setText(msg);
            effective_->clearWarmupState();  // unknown now: the warm limits, as documented
          });

  if (resources_->rowCount() > 0) resourceView_->setCurrentIndex(resources_->index(0, 0));
}

QString ModelsTab::currentResource() const { return limits_->resource(); }

QWidget* ModelsTab::warmupFactorField() const { return warmupFactor_; }

void ModelsTab::selectResource(const QString& resource) {
  const int row = resources_->rowOf(resource);
  if (row >= 0) resourceView_->setCurrentIndex(resources_->index(row, 0));
}

void ModelsTab::onResourceChanged_() {
  const QString r = resources_->resourceAt(resourceView_->currentIndex().row());
  limits_->setResource(r);
  effective_->setResource(r);
  const ResourceSpec* spec = findResource(doc_->draft(), r.toStdString());
  title_->setText(
      spec ? QStringLiteral("<b>%1</b> — %2")
                 .arg(r.toHtmlEscaped(), QString::fromStdString(spec->description).toHtmlEscaped())
           : QString());
  effectiveNote_->setText(effective_->unavailableReason());
  effectiveNote_->setVisible(!effective_->unavailableReason().isEmpty());
  loadWarmupForm_();
  warmupState_->setText(tr("asking the engine…"));
  if (isVisible()) warmup_->watch(r);
  updateErrors_();
}

void ModelsTab::loadWarmupForm_() {
  const ResourceSpec* spec = findResource(doc_->draft(), currentResource().toStdString());
  warmupBox_->setEnabled(spec != nullptr);
  if (!spec) return;
  loadingForm_ = true;
  const WarmupSpec& w = spec->warmup;
  warmupEnabled_->setChecked(w.enabled);
  warmupFactor_->setValue(w.factor);
  warmupDuration_->setText(
      w.duration_ms > 0 ? QString::fromStdString(format_duration_ms(w.duration_ms)) : QString());
  warmupRamp_->setChecked(w.ramp);
  warmupCold_->setChecked(w.start_cold);
  for (QWidget* wd :
       std::initializer_list<QWidget*>{warmupFactor_, warmupDuration_, warmupRamp_, warmupCold_})
    wd->setEnabled(w.enabled);
  loadingForm_ = false;
}

namespace {
constexpr double kDefaultWarmupFactor = 0.2;
}  // namespace

void ModelsTab::saveWarmupForm_() {
  if (loadingForm_) return;
  const QString r = currentResource();
  const ResourceSpec* spec = findResource(doc_->draft(), r.toStdString());
  if (!spec) return;
  WarmupSpec w = spec->warmup;
  w.enabled = warmupEnabled_->isChecked();
  w.factor = warmupFactor_->value();
  // Switching warm-up on with the factor at 1 (no reduction, the value of a model that never
  // had warm-up) starts from a fifth of the limits instead, as policies/ml-api.yaml does.
  if (w.enabled && !spec->warmup.enabled && w.factor >= 1.0) w.factor = kDefaultWarmupFactor;
  const QString d = warmupDuration_->text().trimmed();
  if (d.isEmpty()) {
    w.duration_ms = 0;
  } else if (auto ms = parse_duration_ms(d.toStdString())) {
    w.duration_ms = *ms;
  } else {
    emit message(tr("'%1' is not a duration; write e.g. 30s, 5m or 1h.").arg(d));
    loadWarmupForm_();
    return;
  }
  w.ramp = warmupRamp_->isChecked();
  w.start_cold = warmupCold_->isChecked();
  const Status s = doc_->edit(tr("Warm-up of %1").arg(r), edits::setWarmup(r.toStdString(), w));
  if (!s.ok()) emit message(QString::fromStdString(s.message()));
}

void ModelsTab::showWarmupState_(const QString& resource, const WarmupState& state) {
  if (resource != currentResource()) return;
  effective_->setWarmupState(state);
  warmupState_->setText(state.describe());
  warmupStart_->setEnabled(state.enabled);
  warmupReady_->setEnabled(state.enabled && state.warming);
}

void ModelsTab::updateErrors_() {
  const QString r = currentResource();
  QStringList prefixes{QStringLiteral("resources.") + r};
  for (const auto& t : doc_->draft().tiers)
    prefixes << QStringLiteral("tiers.%1.overrides.%2").arg(QString::fromStdString(t.name), r);
  showErrorsUnder(errors_, doc_, prefixes);
}

void ModelsTab::showEvent(QShowEvent* e) {
  QWidget::showEvent(e);
  warmup_->watch(currentResource());
}

void ModelsTab::hideEvent(QHideEvent* e) {
  QWidget::hideEvent(e);
  warmup_->watch(QString());
}

}  // namespace sluice::admin
