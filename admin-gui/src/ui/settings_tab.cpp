#include "ui/settings_tab.h"

#include <QComboBox>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QSignalBlocker>
#include <QVBoxLayout>

#include "core/policy_document.h"

namespace sluice::admin {

namespace {
QLabel* hint(const QString& text, QWidget* parent) {
  auto* l = new QLabel(text, parent);
  l->setWordWrap(true);
  l->setMinimumWidth(520);
  l->setStyleSheet(QStringLiteral("color: #5f6368;"));
  return l;
}

// Marks a field the validator has a problem with: red, the message as its tooltip.
void markField(QWidget* field, const QString& problem) {
  field->setStyleSheet(problem.isEmpty() ? QString()
                                         : QStringLiteral("border: 1px solid #b3261e;"));
  field->setToolTip(problem);
}
}  // namespace

SettingsTab::SettingsTab(PolicyDocument* doc, QWidget* parent)
    : QWidget(parent),
      doc_(doc),
      defaultTier_(new QComboBox(this)),
      unknown_(new QComboBox(this)),
      storage_(new QComboBox(this)),
      leaseTtl_(new QLineEdit(this)),
      defaultLimits_(new QLabel(this)),
      problems_(new QLabel(this)) {
  auto* layout = new QVBoxLayout(this);
  auto* form = new QFormLayout;
  form->setFieldGrowthPolicy(QFormLayout::ExpandingFieldsGrow);

  form->addRow(tr("&Default tier:"), defaultTier_);
  form->addRow(QString(), hint(tr("Callers that send no API key, or one that is not mapped, get "
                                  "this tier."),
                               this));

  unknown_->addItem(tr("deny — refuse them"), static_cast<int>(UnknownResourceMode::kDeny));
  unknown_->addItem(tr("allow — no limit"), static_cast<int>(UnknownResourceMode::kAllow));
  unknown_->addItem(tr("default limits"), static_cast<int>(UnknownResourceMode::kDefaultLimits));
  form->addRow(tr("&Unknown resources:"), unknown_);
  defaultLimits_->setWordWrap(true);
  defaultLimits_->setMinimumWidth(520);
  defaultLimits_->setStyleSheet(QStringLiteral("color: #5f6368;"));
  form->addRow(QString(), defaultLimits_);

  storage_->addItem(tr("fail closed — deny while storage cannot answer"),
                    static_cast<int>(StorageFailureMode::kFailClosed));
  storage_->addItem(tr("fail open — allow while storage cannot answer"),
                    static_cast<int>(StorageFailureMode::kFailOpen));
  form->addRow(tr("When &storage fails:"), storage_);

  leaseTtl_->setPlaceholderText(QStringLiteral("60s"));
  leaseTtl_->setMaximumWidth(160);
  form->addRow(tr("&Lease TTL:"), leaseTtl_);
  form->addRow(QString(), hint(tr("How long an SL.ACQUIRE lease holds its slot when the caller "
                                  "names no TTL and never releases it: 30s, 1m, 1m30s, 500ms."),
                               this));
  layout->addLayout(form);

  problems_->setWordWrap(true);
  problems_->setStyleSheet(QStringLiteral("color: #b3261e;"));
  problems_->hide();
  layout->addWidget(problems_);
  layout->addStretch(1);

  connect(defaultTier_, &QComboBox::activated, this, [this] {
    const QString tier = defaultTier_->currentText();
    const Status s =
        doc_->edit(tr("Default tier %1").arg(tier), edits::setDefaultTier(tier.toStdString()));
    if (!s.ok()) emit message(QString::fromStdString(s.message()));
  });
  connect(unknown_, &QComboBox::activated, this, [this] {
    const auto mode = static_cast<UnknownResourceMode>(unknown_->currentData().toInt());
    const Status s = doc_->edit(tr("Unknown resources: %1").arg(unknown_->currentText()),
                                edits::setUnknownResource(mode));
    if (!s.ok()) emit message(QString::fromStdString(s.message()));
  });
  connect(storage_, &QComboBox::activated, this, [this] {
    const auto mode = static_cast<StorageFailureMode>(storage_->currentData().toInt());
    const Status s = doc_->edit(tr("On storage failure: %1").arg(storage_->currentText()),
                                edits::setStorageFailure(mode));
    if (!s.ok()) emit message(QString::fromStdString(s.message()));
  });
  connect(leaseTtl_, &QLineEdit::editingFinished, this, &SettingsTab::leaseTtlEdited_);

  connect(doc_, &PolicyDocument::draftChanged, this, &SettingsTab::refresh_);
  connect(doc_, &PolicyDocument::errorsChanged, this, &SettingsTab::showProblems_);
  refresh_();
  showProblems_();
}

void SettingsTab::leaseTtlEdited_() {
  const QString text = leaseTtl_->text().trimmed();
  const Status s = doc_->edit(tr("Lease TTL %1").arg(text), edits::setLeaseTtl(text.toStdString()));
  if (s.ok()) return;
  markField(leaseTtl_, QString::fromStdString(s.message()));
  emit message(QString::fromStdString(s.message()));
}

void SettingsTab::refresh_() {
  const PolicySpec& p = doc_->draft();
  setEnabled(doc_->hasPolicy());
  {
    const QSignalBlocker block(defaultTier_);
    defaultTier_->clear();
    for (const auto& t : p.tiers) defaultTier_->addItem(QString::fromStdString(t.name));
    defaultTier_->setCurrentText(QString::fromStdString(p.default_tier));
  }
  unknown_->setCurrentIndex(unknown_->findData(static_cast<int>(p.unknown_resource)));
  storage_->setCurrentIndex(storage_->findData(static_cast<int>(p.on_storage_failure)));
  // Keep the operator's spelling while it means the same ("60s" is not rewritten as "1m").
  const auto shown = parse_duration_ms(leaseTtl_->text().trimmed().toStdString());
  if (!shown || *shown != p.lease_ttl_ms)
    leaseTtl_->setText(QString::fromStdString(format_duration_ms(p.lease_ttl_ms)));

  QStringList limits;
  for (const auto& l : p.default_limits)
    limits << tr("%1: %2 per %3")
                  .arg(QString::fromStdString(l.name))
                  .arg(l.limit)
                  .arg(QString::fromStdString(window_text(l)));
  defaultLimits_->setText(
      p.unknown_resource == UnknownResourceMode::kDefaultLimits
          ? tr("Resources the policy does not list are limited per subject by: %1 (edit these "
               "limits in the policy file).")
                .arg(limits.join(QStringLiteral(", ")))
          : tr("With default limits, resources the policy does not list get limits of their "
               "own (60 per minute to start with)."));
  showProblems_();
}

void SettingsTab::showProblems_() {
  QStringList all;
  auto mark = [&](QWidget* field, std::initializer_list<const char*> paths) {
    QStringList here;
    for (const char* path : paths) {
      const QString e = doc_->errorAt(QString::fromLatin1(path));
      if (!e.isEmpty()) here << e;
    }
    markField(field, here.join(QLatin1Char('\n')));
    all << here;
  };
  mark(defaultTier_, {"default_tier"});
  mark(unknown_, {"unknown_resource", "default_limits"});
  mark(storage_, {"on_storage_failure"});
  mark(leaseTtl_, {"lease_ttl", "lease_ttl_max"});
  problems_->setText(all.join(QLatin1Char('\n')));
  problems_->setVisible(!all.isEmpty());
}

QString SettingsTab::problemsText() const {
  return problems_->isHidden() ? QString() : problems_->text();
}

}  // namespace sluice::admin
