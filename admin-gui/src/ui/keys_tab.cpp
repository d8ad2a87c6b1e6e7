#include "ui/keys_tab.h"

#include <QAction>
#include <QComboBox>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QShortcut>
#include <QStyledItemDelegate>
#include <QTableView>
#include <QVBoxLayout>

#include "core/api_key_model.h"
#include "ui/tiers_tab.h"

namespace sluice::admin {

namespace {
class TierDelegate : public QStyledItemDelegate {
 public:
  TierDelegate(ApiKeyModel* model, QObject* parent) : QStyledItemDelegate(parent), model_(model) {}
  QWidget* createEditor(QWidget* parent, const QStyleOptionViewItem&,
                        const QModelIndex&) const override {
    auto* c = new QComboBox(parent);
    c->addItems(model_->tierNames());
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
  ApiKeyModel* model_;
};
}  // namespace

KeysTab::KeysTab(ApiKeyModel* model, QWidget* parent)
    : QWidget(parent),
      model_(model),
      view_(new QTableView(this)),
      newKey_(new QLineEdit(this)),
      newTier_(new QComboBox(this)),
      newLabel_(new QLineEdit(this)),
      errors_(new QLabel(this)) {
  auto* layout = new QVBoxLayout(this);
  auto* hint = new QLabel(
      tr("Callers that send a mapped API key get its tier; everyone else gets the "
         "default tier. Keys are shown by their last 4 characters only; a label (who holds the "
         "key) tells apart keys that end alike."),
      this);
  hint->setWordWrap(true);
  layout->addWidget(hint);

  view_->setModel(model_);
  view_->setSelectionBehavior(QAbstractItemView::SelectRows);
  view_->setSelectionMode(QAbstractItemView::SingleSelection);
  view_->setAlternatingRowColors(true);
  view_->verticalHeader()->hide();
  view_->horizontalHeader()->setStretchLastSection(true);
  view_->setColumnWidth(ApiKeyModel::kKey, 260);
  view_->setItemDelegateForColumn(ApiKeyModel::kTier, new TierDelegate(model_, view_));
  layout->addWidget(view_, 1);

  errors_->setWordWrap(true);
  errors_->setStyleSheet(QStringLiteral("color: #b3261e;"));
  errors_->hide();
  layout->addWidget(errors_);

  auto* add = new QHBoxLayout;
  newKey_->setEchoMode(QLineEdit::Password);
  newKey_->setPlaceholderText(tr("New API key (hidden while typing)"));
  auto* reveal = newKey_->addAction(QIcon::fromTheme(QStringLiteral("view-visible")),
                                    QLineEdit::TrailingPosition);
  reveal->setCheckable(true);
  reveal->setToolTip(tr("Show the key while typing"));
  connect(reveal, &QAction::toggled, this,
          [this](bool on) { newKey_->setEchoMode(on ? QLineEdit::Normal : QLineEdit::Password); });
  auto* addButton = new QPushButton(tr("&Add key"), this);
  auto* removeButton = new QPushButton(tr("&Remove"), this);
  removeButton->setToolTip(tr("Remove the selected key (Del)"));
  add->addWidget(new QLabel(tr("Key:"), this));
  add->addWidget(newKey_, 2);
  add->addWidget(new QLabel(tr("Tier:"), this));
  add->addWidget(newTier_, 1);
  newLabel_->setPlaceholderText(tr("Label (optional): who holds it"));
  add->addWidget(newLabel_, 2);
  add->addWidget(addButton);
  add->addStretch(1);
  add->addWidget(removeButton);
  layout->addLayout(add);

  auto doAdd = [this] {
    if (newKey_->text().trimmed().isEmpty()) {
      newKey_->setFocus();
      return;
    }
    if (model_->addKey(newKey_->text(), newTier_->currentText(), newLabel_->text())) {
      newKey_->clear();
      newLabel_->clear();
    }
  };
  connect(addButton, &QPushButton::clicked, this, doAdd);
  connect(newKey_, &QLineEdit::returnPressed, this, doAdd);
  connect(newLabel_, &QLineEdit::returnPressed, this, doAdd);
  auto doRemove = [this] {
    if (view_->currentIndex().isValid()) model_->removeKey(view_->currentIndex().row());
  };
  connect(removeButton, &QPushButton::clicked, this, doRemove);
  auto* del = new QShortcut(QKeySequence::Delete, view_, nullptr, nullptr, Qt::WidgetShortcut);
  connect(del, &QShortcut::activated, this, doRemove);
  connect(model_, &DraftTableModel::editRefused, this, &KeysTab::message);
  connect(model_->document(), &PolicyDocument::draftChanged, this, &KeysTab::refreshTiers_);
  connect(model_->document(), &PolicyDocument::errorsChanged, this,
          [this] { showErrorsUnder(errors_, model_->document(), {QStringLiteral("api_keys")}); });
  refreshTiers_();
}

void KeysTab::refreshTiers_() {
  const QString current = newTier_->currentText();
  const QStringList tiers = model_->tierNames();
  if (tiers == [this] {
        QStringList l;
        for (int i = 0; i < newTier_->count(); ++i) l << newTier_->itemText(i);
        return l;
      }())
    return;
  newTier_->clear();
  newTier_->addItems(tiers);
  if (tiers.contains(current)) newTier_->setCurrentText(current);
}

}  // namespace sluice::admin
