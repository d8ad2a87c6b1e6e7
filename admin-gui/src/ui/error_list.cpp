#include "ui/error_list.h"

#include "core/policy_names.h"

namespace sluice::admin {

ErrorList::ErrorList(PolicyDocument* doc, QWidget* parent) : QListWidget(parent), doc_(doc) {
  setAlternatingRowColors(true);
  connect(doc_, &PolicyDocument::errorsChanged, this, &ErrorList::rebuild_);
  connect(this, &QListWidget::itemActivated, this,
          [this](QListWidgetItem* item) { emit goToPath(item->data(Qt::UserRole).toString()); });
  rebuild_();
}

void ErrorList::rebuild_() {
  clear();
  const QStringList keys = apiKeysOf(doc_->draft());
  for (const FieldError& e : doc_->errors()) {
    QString source;
    switch (e.source) {
      case FieldError::Source::kDraft:
        source = tr("draft");
        break;
      case FieldError::Source::kEngine:
        source = tr("engine");
        break;
      case FieldError::Source::kFile:
        source = tr("file");
        break;
    }
    QString text = QStringLiteral("[%1] ").arg(source);
    if (!e.path.isEmpty()) text += shownPath(e.path, keys) + QStringLiteral(" — ");
    text += e.text();
    auto* item = new QListWidgetItem(text, this);
    item->setData(Qt::UserRole, e.path);
    item->setToolTip(e.text());
  }
}

}  // namespace sluice::admin
