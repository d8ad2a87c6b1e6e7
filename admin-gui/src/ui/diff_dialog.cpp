#include "ui/diff_dialog.h"

#include <QDialogButtonBox>
#include <QGroupBox>
#include <QHeaderView>
#include <QLabel>
#include <QLocale>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QTableWidget>
#include <QVBoxLayout>
#include <algorithm>

#include "core/consequences.h"
#include "core/simulation.h"

namespace sluice::admin {

DiffDialog::DiffDialog(const QStringList& changes, const QStringList& problems, quint64 baseVersion,
                       QWidget* parent)
    : QDialog(parent) {
  setWindowTitle(tr("Review changes"));
  setAttribute(Qt::WA_DeleteOnClose);
  // Room for the diff, the changed settings, the effective limits and the simulation at once.
  resize(960, 720);
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

  // Every value the draft changes in place, old → new (the diff above says it in one line
  // each; this lists them as a table an operator scans).
  auto* settings = new QGroupBox(tr("Changed settings"), this);
  auto* settingsLayout = new QVBoxLayout(settings);
  settingsTable_ = new QTableWidget(0, 3, settings);
  settingsTable_->setHorizontalHeaderLabels({tr("Where"), tr("Setting"), tr("Before → after")});
  settingsTable_->horizontalHeader()->setStretchLastSection(true);
  settingsTable_->verticalHeader()->hide();
  settingsTable_->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 6);
  settingsTable_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  settingsTable_->setSelectionMode(QAbstractItemView::NoSelection);
  settingsLayout->addWidget(settingsTable_);
  settings->hide();  // until setConsequences, and while nothing changes in place
  layout->addWidget(settings);

  auto* limits = new QGroupBox(tr("Effective limits"), this);
  auto* limitsLayout = new QVBoxLayout(limits);
  limitsStatus_ = new QLabel(limits);
  limitsStatus_->setWordWrap(true);
  limitsLayout->addWidget(limitsStatus_);
  limitsTable_ = new QTableWidget(0, 4, limits);
  limitsTable_->setHorizontalHeaderLabels(
      {tr("Model"), tr("Tier"), tr("Limit"), tr("Before → after")});
  limitsTable_->horizontalHeader()->setStretchLastSection(true);
  limitsTable_->verticalHeader()->hide();
  // Compact rows: a multiplier change lists a row per model.
  limitsTable_->verticalHeader()->setDefaultSectionSize(fontMetrics().height() + 6);
  limitsTable_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  limitsTable_->setSelectionMode(QAbstractItemView::NoSelection);
  limitsTable_->hide();
  limitsLayout->addWidget(limitsTable_, 1);
  limits->hide();  // until setConsequences
  layout->addWidget(limits, 1);

  textOutcome_ = new QLabel(this);
  textOutcome_->setWordWrap(true);
  textOutcome_->hide();
  layout->addWidget(textOutcome_);
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

  auto* sim = new QGroupBox(tr("On recent traffic"), this);
  auto* simLayout = new QVBoxLayout(sim);
  simStatus_ = new QLabel(tr("Replaying the traffic the engine recorded through the draft…"), sim);
  simStatus_->setWordWrap(true);
  simLayout->addWidget(simStatus_);
  simTable_ = new QTableWidget(0, 5, sim);
  simTable_->setHorizontalHeaderLabels(
      {tr("Model"), tr("Tier"), tr("Rule"), tr("Denied now → with draft"), tr("Change")});
  simTable_->horizontalHeader()->setStretchLastSection(true);
  simTable_->verticalHeader()->hide();
  simTable_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  simTable_->setSelectionMode(QAbstractItemView::NoSelection);
  simTable_->hide();
  simLayout->addWidget(simTable_, 1);
  simTop_ = new QLabel(sim);
  simTop_->setWordWrap(true);
  simTop_->hide();
  simLayout->addWidget(simTop_);
  layout->addWidget(sim, 1);

  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
  apply_ = buttons->addButton(tr("&Apply"), QDialogButtonBox::AcceptRole);
  // Apply is enabled (and the default) only when the engine can accept the draft.
  apply_->setEnabled(problems.isEmpty());
  apply_->setDefault(problems.isEmpty());
  if (!problems.isEmpty()) buttons->button(QDialogButtonBox::Cancel)->setDefault(true);
  connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
  layout->addWidget(buttons);
}

void DiffDialog::setTextOutcome(bool inPlace, const QStringList& notes) {
  if (inPlace && notes.isEmpty()) {
    textOutcome_->setText(
        tr("The policy's YAML is edited in place: its comments and the "
           "spelling of every value you did not change are kept."));
    textOutcome_->setStyleSheet(QStringLiteral("color: #5f6368;"));
  } else {
    QStringList escaped;
    for (const QString& n : notes) escaped << n.toHtmlEscaped();
    textOutcome_->setText((inPlace ? tr("<b>Some comments will be lost:</b> ")
                                   : tr("<b>Comments will be lost:</b> ")) +
                          escaped.join(QStringLiteral("<br>")));
    textOutcome_->setStyleSheet(QStringLiteral("color: #8a5a00;"));
  }
  textOutcome_->show();
}

QString DiffDialog::textOutcome() const { return textOutcome_->text(); }

void DiffDialog::setConsequences(const Consequences& c) {
  settingsTable_->setRowCount(static_cast<int>(c.settings.size()));
  for (int i = 0; i < c.settings.size(); ++i) {
    const auto& s = c.settings[i];
    const QStringList cells = {s.what, s.field, QStringLiteral("%1 → %2").arg(s.before, s.after)};
    for (int col = 0; col < cells.size(); ++col) {
      auto* item = new QTableWidgetItem(cells[col]);
      item->setToolTip(s.text);
      settingsTable_->setItem(i, col, item);
    }
  }
  settingsTable_->resizeColumnsToContents();
  // As tall as its rows, up to 6 (then it scrolls): a few changed settings take little room.
  const int shown = std::min<int>(6, static_cast<int>(c.settings.size()));
  settingsTable_->setFixedHeight(settingsTable_->horizontalHeader()->sizeHint().height() +
                                 shown * settingsTable_->verticalHeader()->defaultSectionSize() +
                                 2 * settingsTable_->frameWidth() + 2);
  settingsTable_->parentWidget()->setVisible(!c.settings.isEmpty());

  limitsTable_->parentWidget()->show();
  if (!c.unavailable.isEmpty()) {
    limitsStatus_->setText(tr("Effective limits not computed: %1.").arg(c.unavailable));
    limitsTable_->hide();
    return;
  }
  limitsStatus_->setText(
      c.rows.isEmpty() ? tr("No model × tier effective limit changes.")
                       : tr("%n effective limit(s) change, as the engine would compile the draft "
                            "(— : the model, tier or limit does not exist on that side):",
                            nullptr, static_cast<int>(c.rows.size())));
  limitsTable_->setRowCount(static_cast<int>(c.rows.size()));
  for (int i = 0; i < c.rows.size(); ++i) {
    const auto& r = c.rows[i];
    const QStringList cells = {r.resource, r.tier, r.limit,
                               QStringLiteral("%1 → %2").arg(r.before, r.after)};
    for (int col = 0; col < cells.size(); ++col)
      limitsTable_->setItem(i, col, new QTableWidgetItem(cells[col]));
  }
  limitsTable_->resizeColumnsToContents();
  limitsTable_->setVisible(!c.rows.isEmpty());
}

QString DiffDialog::consequencesText() const {
  QStringList out;
  for (int i = 0; i < settingsTable_->rowCount(); ++i)
    out << QStringLiteral("%1: %2 %3")
               .arg(settingsTable_->item(i, 0)->text(), settingsTable_->item(i, 1)->text(),
                    settingsTable_->item(i, 2)->text());
  out << limitsStatus_->text();
  for (int i = 0; i < limitsTable_->rowCount(); ++i)
    out << QStringLiteral("%1 · %2 · %3: %4")
               .arg(limitsTable_->item(i, 0)->text(), limitsTable_->item(i, 1)->text(),
                    limitsTable_->item(i, 2)->text(), limitsTable_->item(i, 3)->text());
  return out.join(QLatin1Char('\n'));
}

void DiffDialog::setSimulation(const Simulation& s) {
  const QLocale locale;
  simStatus_->setText(s.headline());
  const auto rows = s.changedRows();
  simTable_->setRowCount(static_cast<int>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    const auto num = [&](uint64_t n) { return locale.toString(static_cast<qulonglong>(n)); };
    QStringList change;
    if (r.counts.newlyDenied > 0) change << tr("+%1 denied").arg(num(r.counts.newlyDenied));
    if (r.counts.newlyAllowed > 0) change << tr("%1 more allowed").arg(num(r.counts.newlyAllowed));
    const QStringList cells = {
        r.resource, r.tier, r.rule,
        tr("%1 → %2 of %3")
            .arg(num(r.counts.deniedNow), num(r.counts.deniedDraft), num(r.counts.requests)),
        change.join(QStringLiteral(", "))};
    for (int c = 0; c < cells.size(); ++c) simTable_->setItem(i, c, new QTableWidgetItem(cells[c]));
  }
  simTable_->resizeColumnsToContents();
  simTable_->setVisible(!rows.isEmpty());
  if (!s.top.isEmpty()) {
    QStringList names;
    for (const auto& t : s.top.mid(0, 5)) {
      names << tr("%1 on %2 (%3)")
                   .arg(t.subject.toHtmlEscaped(), t.resource.toHtmlEscaped(),
                        locale.toString(static_cast<qulonglong>(t.newlyDenied)));
    }
    simTop_->setText(tr("<b>Most newly denied:</b> %1").arg(names.join(QStringLiteral(", "))));
    simTop_->show();
  }
  emit simulationShown();
}

void DiffDialog::setSimulationUnavailable(const QString& why) {
  simStatus_->setText(tr("No simulation: %1").arg(why));
  emit simulationShown();
}

QString DiffDialog::simulationText() const {
  QString out = simStatus_->text();
  for (int i = 0; i < simTable_->rowCount(); ++i) {
    QStringList cells;
    for (int c = 0; c < simTable_->columnCount(); ++c) cells << simTable_->item(i, c)->text();
    out += QLatin1Char('\n') + cells.join(QStringLiteral(" | "));
  }
  if (simTop_->isVisible() || !simTop_->text().isEmpty())
    out += QLatin1Char('\n') + simTop_->text();
  return out;
}

}  // namespace sluice::admin
