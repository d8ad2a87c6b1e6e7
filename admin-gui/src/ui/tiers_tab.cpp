#include "ui/tiers_tab.h"

#include <QApplication>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QShortcut>
#include <QTableView>
#include <QVBoxLayout>

#include "core/tier_model.h"

namespace sluice::admin {

void showErrorsUnder(QLabel* label, const PolicyDocument* doc, const QStringList& prefixes) {
  QStringList lines;
  for (const FieldError& e : doc->errors()) {
    for (const QString& p : prefixes) {
      if (e.path == p || e.path.startsWith(p + QLatin1Char('.')) ||
          e.path.startsWith(p + QLatin1Char('['))) {
        lines << QStringLiteral("⚠ ") + e.text().toHtmlEscaped();
        break;
      }
    }
  }
  // Rich text always: a single line has no tag, and Qt's guess would show its escaped
  // characters (`must be &gt; 0`) literally.
  label->setTextFormat(Qt::RichText);
  label->setText(lines.join(QStringLiteral("<br>")));
  label->setVisible(!lines.isEmpty());
}

TiersTab::TiersTab(TierTableModel* model, QWidget* parent)
    : QWidget(parent), model_(model), view_(new QTableView(this)), errors_(new QLabel(this)) {
  auto* layout = new QVBoxLayout(this);
  auto* hint = new QLabel(tr("Each tier multiplies every limit, unless it overrides a resource "
                             "(Models & limits). Double-click a cell or press F2 to edit."),
                          this);
  hint->setWordWrap(true);
  layout->addWidget(hint);

  view_->setModel(model_);
  view_->setSelectionBehavior(QAbstractItemView::SelectRows);
  view_->setSelectionMode(QAbstractItemView::SingleSelection);
  view_->setAlternatingRowColors(true);
  view_->horizontalHeader()->setStretchLastSection(true);
  view_->verticalHeader()->hide();
  view_->setEditTriggers(QAbstractItemView::DoubleClicked | QAbstractItemView::EditKeyPressed |
                         QAbstractItemView::AnyKeyPressed);
  view_->setColumnWidth(TierTableModel::kName, 160);
  layout->addWidget(view_, 1);

  errors_->setWordWrap(true);
  errors_->setStyleSheet(QStringLiteral("color: #b3261e;"));
  errors_->hide();
  layout->addWidget(errors_);

  auto* buttons = new QHBoxLayout;
  auto* add = new QPushButton(tr("&Add tier"), this);
  auto* rename = new QPushButton(tr("Re&name"), this);
  auto* remove = new QPushButton(tr("&Remove"), this);
  add->setToolTip(tr("Add a tier (Ins)"));
  rename->setToolTip(tr("Rename the selected tier (F2 on its name)"));
  remove->setToolTip(tr("Remove the selected tier (Del)"));
  buttons->addWidget(add);
  buttons->addWidget(rename);
  buttons->addWidget(remove);
  buttons->addStretch(1);
  layout->addLayout(buttons);

  auto currentRow = [this] {
    return view_->currentIndex().isValid() ? view_->currentIndex().row() : -1;
  };
  auto doAdd = [this] {
    const int row = model_->addTier();
    if (row >= 0) {
      const QModelIndex name = model_->index(row, TierTableModel::kName);
      view_->setCurrentIndex(name);
      view_->edit(name);
    }
  };
  auto doRename = [this, currentRow] {
    const int row = currentRow();
    if (row < 0) return;
    const QModelIndex name = model_->index(row, TierTableModel::kName);
    view_->setCurrentIndex(name);
    view_->edit(name);
  };
  auto doRemove = [this, currentRow] {
    const int row = currentRow();
    if (row >= 0 && model_->removeTier(row)) emit message(tr("Tier removed (undo with Ctrl+Z)."));
  };
  connect(add, &QPushButton::clicked, this, doAdd);
  connect(rename, &QPushButton::clicked, this, doRename);
  connect(remove, &QPushButton::clicked, this, doRemove);
  auto* ins =
      new QShortcut(QKeySequence(Qt::Key_Insert), view_, nullptr, nullptr, Qt::WidgetShortcut);
  connect(ins, &QShortcut::activated, this, doAdd);
  auto* del = new QShortcut(QKeySequence::Delete, view_, nullptr, nullptr, Qt::WidgetShortcut);
  connect(del, &QShortcut::activated, this, doRemove);

  // A draft edit that changes the table's shape (add, rename, remove) resets the model: the
  // view forgets its current row and, when the edit came from a cell editor (a name typed
  // after Add tier or F2), the editor with the focus is gone. Keep both on the tier: the same
  // name, or the same row for a renamed one.
  connect(model_, &QAbstractItemModel::modelAboutToBeReset, this, [this] {
    const QModelIndex current = view_->currentIndex();
    rowBeforeReset_ = current.isValid() ? current.row() : -1;
    columnBeforeReset_ = current.isValid() ? current.column() : 0;
    tierBeforeReset_ = model_->tierAt(rowBeforeReset_);
    QWidget* focus = QApplication::focusWidget();
    focusBeforeReset_ = focus && (focus == view_ || view_->isAncestorOf(focus));
  });
  connect(model_, &QAbstractItemModel::modelReset, this, [this] {
    if (rowBeforeReset_ < 0 || model_->rowCount() == 0) return;
    int row = -1;
    for (int r = 0; r < model_->rowCount(); ++r)
      if (model_->tierAt(r) == tierBeforeReset_) row = r;
    if (row < 0) row = std::min(rowBeforeReset_, model_->rowCount() - 1);
    view_->setCurrentIndex(model_->index(row, columnBeforeReset_));
    if (focusBeforeReset_) view_->setFocus();
  });

  connect(model_->document(), &PolicyDocument::errorsChanged, this, &TiersTab::updateErrors_);
  updateErrors_();
}

void TiersTab::updateErrors_() {
  showErrorsUnder(errors_, model_->document(),
                  {QStringLiteral("tiers"), QStringLiteral("default_tier")});
}

void TiersTab::selectTier(const QString& tier) {
  for (int r = 0; r < model_->rowCount(); ++r) {
    if (model_->tierAt(r) == tier) {
      view_->setCurrentIndex(model_->index(r, TierTableModel::kMultiplier));
      view_->setFocus();
      return;
    }
  }
}

}  // namespace sluice::admin
