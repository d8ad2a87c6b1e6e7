#include "ui/diff_dialog.h"

#include <QDialogButtonBox>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QVBoxLayout>

namespace sluice::admin {

DiffDialog::DiffDialog(const QStringList& changes, const QStringList& problems, quint64 baseVersion,
                       QWidget* parent)
    : QDialog(parent) {
  setWindowTitle(tr("Review changes"));
  setAttribute(Qt::WA_DeleteOnClose);
  resize(640, 420);
  auto* layout = new QVBoxLayout(this);
  layout->addWidget(new QLabel(
      tr("%n change(s) to the running policy (version %1). Apply sends them as one new version; "
         "if someone else applied meanwhile you will be asked before anything is overwritten.",
         nullptr, static_cast<int>(changes.size()))
          .arg(baseVersion),
      this));
  auto* text = new QPlainTextEdit(this);
  text->setReadOnly(true);
  text->setFont(QFont(QStringLiteral("monospace")));
  text->setPlainText(changes.join(QLatin1Char('\n')));
  layout->addWidget(text, 1);
  if (!problems.isEmpty()) {
    QStringList escaped;
    for (const QString& p : problems.mid(0, 5)) escaped << p.toHtmlEscaped();
    auto* warn =
        new QLabel(tr("<b>The draft has %n problem(s)</b>; the engine will refuse it:<br>%1",
                      nullptr, static_cast<int>(problems.size()))
                       .arg(escaped.join(QStringLiteral("<br>"))),
                   this);
    warn->setWordWrap(true);
    warn->setStyleSheet(QStringLiteral("color: #b3261e;"));
    layout->addWidget(warn);
  }
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
  auto* apply = buttons->addButton(tr("&Apply"), QDialogButtonBox::AcceptRole);
  apply->setDefault(true);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  layout->addWidget(buttons);
}

}  // namespace sluice::admin
