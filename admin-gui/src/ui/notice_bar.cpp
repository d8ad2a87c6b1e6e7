#include "ui/notice_bar.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QPushButton>
#include <QToolButton>

namespace sluice::admin {

NoticeBar::NoticeBar(QWidget* parent) : QFrame(parent), label_(new QLabel(this)) {
  setFrameShape(QFrame::StyledPanel);
  auto* layout = new QHBoxLayout(this);
  layout->setContentsMargins(8, 4, 4, 4);
  label_->setWordWrap(true);
  label_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  layout->addWidget(label_, 1);
  buttons_ = new QHBoxLayout;
  layout->addLayout(buttons_);
  auto* close = new QToolButton(this);
  close->setText(QStringLiteral("✕"));
  close->setToolTip(tr("Dismiss (Esc)"));
  close->setAutoRaise(true);
  connect(close, &QToolButton::clicked, this, &QWidget::hide);
  layout->addWidget(close);
  autoHide_.setSingleShot(true);
  connect(&autoHide_, &QTimer::timeout, this, &QWidget::hide);
  hide();
}

QString NoticeBar::text() const { return isVisible() || !isHidden() ? label_->text() : QString(); }

void NoticeBar::show(Kind kind, const QString& text, QList<Action> actions) {
  static const char* const kColors[] = {"#e8f0fe", "#e6f4ea", "#fef7e0", "#fce8e6"};
  static const char* const kBorders[] = {"#8ab4f8", "#81c995", "#fdd663", "#f28b82"};
  const auto k = static_cast<int>(kind);
  setStyleSheet(
      QStringLiteral(
          "sluice--admin--NoticeBar { background: %1; border: 1px solid %2; border-radius: 4px; }")
          .arg(QLatin1String(kColors[k]), QLatin1String(kBorders[k])));
  label_->setText(text);
  while (QLayoutItem* item = buttons_->takeAt(0)) {
    delete item->widget();
    delete item;
  }
  for (auto& a : actions) {
    auto* b = new QPushButton(a.text, this);
    connect(b, &QPushButton::clicked, this, [this, run = a.run] {
      hide();
      run();
    });
    buttons_->addWidget(b);
  }
  setVisible(true);
  autoHide_.stop();
  if ((kind == Kind::kInfo || kind == Kind::kSuccess) && actions.isEmpty()) autoHide_.start(6000);
}

}  // namespace sluice::admin
