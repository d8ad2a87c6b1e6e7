#include "ui/main_window.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDialog>
#include <QDialogButtonBox>
#include <QDockWidget>
#include <QFileDialog>
#include <QFormLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMenuBar>
#include <QMessageBox>
#include <QStatusBar>
#include <QTabWidget>
#include <QTableView>
#include <QToolBar>
#include <QVBoxLayout>

#include "core/admin_client.h"
#include "core/api_key_model.h"
#include "core/consequences.h"
#include "core/live_models.h"
#include "core/policy_document.h"
#include "core/policy_names.h"
#include "core/policy_session.h"
#include "core/simulation.h"
#include "core/stats_poller.h"
#include "core/tier_model.h"
#include "core/warmup_monitor.h"
#include "ui/diff_dialog.h"
#include "ui/error_list.h"
#include "ui/keys_tab.h"
#include "ui/live_tab.h"
#include "ui/models_tab.h"
#include "ui/notice_bar.h"
#include "ui/settings_tab.h"
#include "ui/tiers_tab.h"

namespace sluice::admin {

MainWindow::MainWindow(QWidget* parent)
    : QMainWindow(parent),
      client_(new AdminClient(this)),
      doc_(new PolicyDocument(this)),
      session_(new PolicySession(client_, doc_, this)),
      live_(new LiveStats(this)),
      poller_(new StatsPoller(client_, live_, this)),
      warmup_(new WarmupMonitor(session_, this)),
      tierModel_(new TierTableModel(doc_, this)),
      keyModel_(new ApiKeyModel(doc_, this)) {
  setWindowTitle(QStringLiteral("sluice-admin[*]"));
  resize(1180, 780);
  setMinimumSize(800, 560);

  auto* central = new QWidget(this);
  auto* layout = new QVBoxLayout(central);
  layout->setContentsMargins(6, 6, 6, 0);
  notice_ = new NoticeBar(central);
  layout->addWidget(notice_);
  tabs_ = new QTabWidget(central);
  tiersTab_ = new TiersTab(tierModel_, tabs_);
  modelsTab_ = new ModelsTab(doc_, warmup_, tabs_);
  keysTab_ = new KeysTab(keyModel_, tabs_);
  liveTab_ = new LiveTab(live_, poller_, tabs_);
  settingsTab_ = new SettingsTab(doc_, tabs_);
  tabs_->addTab(tiersTab_, tr("&Tiers"));
  tabs_->addTab(modelsTab_, tr("&Models && limits"));
  tabs_->addTab(keysTab_, tr("API &keys"));
  tabs_->addTab(liveTab_, tr("&Live"));
  tabs_->addTab(settingsTab_, tr("&Settings"));
  layout->addWidget(tabs_, 1);
  setCentralWidget(central);

  errorList_ = new ErrorList(doc_, this);
  problemsDock_ = new QDockWidget(tr("Problems"), this);
  problemsDock_->setObjectName(QStringLiteral("problems"));
  problemsDock_->setWidget(errorList_);
  problemsDock_->setFeatures(QDockWidget::DockWidgetClosable | QDockWidget::DockWidgetMovable);
  addDockWidget(Qt::BottomDockWidgetArea, problemsDock_);
  problemsDock_->hide();
  connect(errorList_, &ErrorList::goToPath, this, &MainWindow::goToPath_);
  connect(doc_, &PolicyDocument::errorsChanged, this,
          [this] { problemsDock_->setVisible(doc_->hasErrors()); });

  connLabel_ = new QLabel(this);
  engineLabel_ = new QLabel(this);
  versionLabel_ = new QLabel(this);
  draftLabel_ = new QLabel(this);
  statusBar()->addWidget(connLabel_, 1);
  statusBar()->addPermanentWidget(draftLabel_);
  statusBar()->addPermanentWidget(versionLabel_);
  statusBar()->addPermanentWidget(engineLabel_);

  buildActions_();

  auto showMessage = [this](const QString& text) {
    notice_->show(NoticeBar::Kind::kWarning, text);
  };
  connect(tierModel_, &DraftTableModel::editRefused, this, showMessage);
  connect(tiersTab_, &TiersTab::message, this,
          [this](const QString& t) { notice_->show(NoticeBar::Kind::kInfo, t); });
  connect(modelsTab_, &ModelsTab::message, this, showMessage);
  connect(keysTab_, &KeysTab::message, this, showMessage);
  connect(settingsTab_, &SettingsTab::message, this, showMessage);

  connect(client_, &AdminClient::stateChanged, this, &MainWindow::updateStatus_);
  connect(client_, &AdminClient::disconnected, this, &MainWindow::updateStatus_);
  connect(session_, &PolicySession::infoChanged, this, &MainWindow::updateStatus_);
  connect(session_, &PolicySession::busyChanged, this, &MainWindow::updateStatus_);
  connect(poller_, &StatsPoller::serverInfo, session_, &PolicySession::updateInfo);
  connect(doc_, &PolicyDocument::draftChanged, this, &MainWindow::updateTitle_);
  connect(doc_, &PolicyDocument::baseChanged, this, &MainWindow::updateTitle_);
  connect(doc_, &PolicyDocument::draftChanged, this, [this] {
    QSet<QString> keys;
    for (const auto& [k, t] : doc_->draft().api_keys) keys.insert(QString::fromStdString(k));
    for (const auto& [k, t] : doc_->base().api_keys) keys.insert(QString::fromStdString(k));
    live_->setSecretSubjects(std::move(keys));
    QHash<QString, QString> labels;
    for (const auto* p : {&doc_->base(), &doc_->draft()})
      for (const auto& [k, l] : p->api_key_labels)
        labels.insert(QString::fromStdString(k), QString::fromStdString(l));
    live_->setSubjectLabels(std::move(labels));
  });

  connect(session_, &PolicySession::movedOn, this,
          [this](quint64 version, const QStringList& changes) {
            notice_->show(NoticeBar::Kind::kWarning,
                          tr("Someone else applied policy version %1 while you edit a draft of "
                             "version %2. They changed: %3. Apply will ask before anything is "
                             "overwritten.")
                              .arg(version)
                              .arg(doc_->baseVersion().value_or(0))
                              .arg(changes.isEmpty() ? tr("nothing you can see")
                                                     : changes.join(QStringLiteral("; "))));
          });
  connect(session_, &PolicySession::notice, this, [this](const QString& t) {
    notice_->show(NoticeBar::Kind::kWarning, t);
    updateStatus_();
  });
  connect(session_, &PolicySession::applied, this, [this](quint64 v) {
    notice_->show(NoticeBar::Kind::kSuccess,
                  tr("Applied: the engine now runs policy version %1.").arg(v));
  });
  connect(session_, &PolicySession::applyRejected, this,
          [this](const QString& message) { notice_->show(NoticeBar::Kind::kError, message); });
  connect(session_, &PolicySession::conflict, this, &MainWindow::onConflict_);
  connect(session_, &PolicySession::rebased, this, [this](const QStringList& failed) {
    QString text = tr("Your edits were replayed on the running policy (version %1).")
                       .arg(doc_->baseVersion().value_or(0));
    if (!failed.isEmpty())
      text += tr(" %n edit(s) no longer apply: %1", nullptr, static_cast<int>(failed.size()))
                  .arg(failed.join(QStringLiteral("; ")));
    notice_->show(failed.isEmpty() ? NoticeBar::Kind::kInfo : NoticeBar::Kind::kWarning, text,
                  {{tr("Review and apply…"), [this] { reviewAndApply(); }}});
  });
  connect(
      session_, &PolicySession::restarted, this,
      [this](quint64 version, const QStringList& failed) {
        QString text = tr("sluiced restarted and runs policy version %1.").arg(version);
        if (doc_->isDirty()) text += tr(" Your draft now builds on it.");
        if (!failed.isEmpty())
          text += tr(" %n edit(s) no longer apply: %1", nullptr, static_cast<int>(failed.size()))
                      .arg(failed.join(QStringLiteral("; ")));
        notice_->show(failed.isEmpty() ? NoticeBar::Kind::kInfo : NoticeBar::Kind::kWarning, text);
      });
  connect(liveTab_, &LiveTab::subjectReset, this, [this](bool ok, const QString& text) {
    notice_->show(ok ? NoticeBar::Kind::kSuccess : NoticeBar::Kind::kError, text);
  });
  connect(session_, &PolicySession::policyLoaded, this, &MainWindow::updateStatus_);

  updateStatus_();
  updateTitle_();
}

QStringList MainWindow::tabNames() {
  return {QStringLiteral("tiers"), QStringLiteral("models"), QStringLiteral("keys"),
          QStringLiteral("live"), QStringLiteral("settings")};
}

QWidget* MainWindow::tabPage(const QString& name) const {
  const QString n = name.trimmed().toLower();
  if (n == QLatin1String("tiers")) return tiersTab_;
  if (n == QLatin1String("models") || n == QLatin1String("limits")) return modelsTab_;
  if (n == QLatin1String("keys") || n == QLatin1String("api-keys")) return keysTab_;
  if (n == QLatin1String("live")) return liveTab_;
  if (n == QLatin1String("settings")) return settingsTab_;
  return nullptr;
}

bool MainWindow::selectTab(const QString& name) {
  QWidget* page = tabPage(name);
  if (!page) return false;
  tabs_->setCurrentWidget(page);
  return true;
}

namespace {
// The key docs/admin-gui.md promises first, then the platform's own bindings for the same
// action. A platform theme may bind nothing to a standard key: with no desktop environment
// (the generic X11 scheme, offscreen) QKeySequence::SaveAs is empty, so Ctrl+Shift+S did
// nothing.
void setShortcuts(QAction* a, const QKeySequence& documented, QKeySequence::StandardKey standard) {
  QList<QKeySequence> keys{documented};
  for (const QKeySequence& k : QKeySequence::keyBindings(standard))
    if (!keys.contains(k)) keys << k;
  a->setShortcuts(keys);
}
}  // namespace

void MainWindow::buildActions_() {
  auto* file = menuBar()->addMenu(tr("&File"));
  auto* connectAct = file->addAction(tr("&Connect to engine…"), this, &MainWindow::askForSocket);
  connectAct->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_K));
  file->addSeparator();
  auto* open = file->addAction(tr("&Open policy file…"), this, &MainWindow::openFile_);
  setShortcuts(open, QKeySequence(Qt::CTRL | Qt::Key_O), QKeySequence::Open);
  auto* save = file->addAction(tr("&Save draft"), this, [this] { saveFile_(false); });
  setShortcuts(save, QKeySequence(Qt::CTRL | Qt::Key_S), QKeySequence::Save);
  auto* saveAs = file->addAction(tr("Save draft &as…"), this, [this] { saveFile_(true); });
  setShortcuts(saveAs, QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_S), QKeySequence::SaveAs);
  saveAs->setObjectName(QStringLiteral("saveDraftAs"));
  file->addSeparator();
  auto* quit = file->addAction(tr("&Quit"), this, &QWidget::close);
  setShortcuts(quit, QKeySequence(Qt::CTRL | Qt::Key_Q), QKeySequence::Quit);

  auto* edit = menuBar()->addMenu(tr("&Edit"));
  QAction* undo = doc_->undoStack()->createUndoAction(this, tr("&Undo"));
  setShortcuts(undo, QKeySequence(Qt::CTRL | Qt::Key_Z), QKeySequence::Undo);
  QAction* redo = doc_->undoStack()->createRedoAction(this, tr("&Redo"));
  setShortcuts(redo, QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_Z), QKeySequence::Redo);
  edit->addAction(undo);
  edit->addAction(redo);

  auto* policy = menuBar()->addMenu(tr("&Policy"));
  applyAction_ = policy->addAction(tr("Review and &apply…"), this, &MainWindow::reviewAndApply);
  applyAction_->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Return));
  revertAction_ = policy->addAction(tr("&Revert draft"), this, [this] {
    doc_->revert();
    notice_->show(NoticeBar::Kind::kInfo, tr("Draft dropped; showing the running policy."));
  });
  revertAction_->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_R));
  auto* refresh = policy->addAction(tr("Re&fresh from engine"), session_, &PolicySession::refresh);
  setShortcuts(refresh, QKeySequence(Qt::Key_F5), QKeySequence::Refresh);
  policy->addAction(tr("Engine: re-read its policy &file"), session_,
                    &PolicySession::reloadEngineFile);

  auto* view = menuBar()->addMenu(tr("&View"));
  for (int i = 0; i < tabs_->count(); ++i) {
    auto* a = view->addAction(tabs_->tabText(i)
                                  .remove(QLatin1Char('&'))
                                  .replace(QStringLiteral("&&"), QStringLiteral("&")),
                              this, [this, i] { tabs_->setCurrentIndex(i); });
    a->setShortcut(QKeySequence(Qt::CTRL | static_cast<Qt::Key>(Qt::Key_1 + i)));
  }
  view->addSeparator();
  auto* pause = view->addAction(tr("&Pause/resume live"), liveTab_, &LiveTab::togglePause);
  pause->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Space));
  view->addAction(problemsDock_->toggleViewAction());
  auto* dismiss = new QAction(this);
  dismiss->setShortcut(QKeySequence(Qt::Key_Escape));
  connect(dismiss, &QAction::triggered, notice_, &QWidget::hide);
  addAction(dismiss);

  auto* tb = addToolBar(tr("Main"));
  tb->setObjectName(QStringLiteral("main-toolbar"));
  tb->setMovable(false);
  tb->setToolButtonStyle(Qt::ToolButtonTextOnly);
  tb->addAction(connectAct);
  tb->addAction(open);
  tb->addAction(save);
  tb->addSeparator();
  tb->addAction(undo);
  tb->addAction(redo);
  tb->addSeparator();
  tb->addAction(applyAction_);
  tb->addAction(revertAction_);
  tb->addAction(refresh);
  for (QAction* a :
       {connectAct, open, save, saveAs, applyAction_, revertAction_, refresh, undo, redo, pause})
    if (!a->shortcut().isEmpty())
      a->setToolTip(QStringLiteral("%1 (%2)").arg(
          a->text().remove(QLatin1Char('&')), a->shortcut().toString(QKeySequence::NativeText)));
}

void MainWindow::connectTo(const QString& socketPath) {
  client_->setSocketPath(socketPath);
  client_->connectToEngine();
  updateStatus_();
}

void MainWindow::askForSocket() {
  auto* dlg = new QDialog(this);
  dlg->setAttribute(Qt::WA_DeleteOnClose);
  dlg->setWindowTitle(tr("Connect to sluiced"));
  auto* form = new QFormLayout(dlg);
  auto* path = new QLineEdit(
      client_->socketPath().isEmpty() ? QStringLiteral("./run/admin.sock") : client_->socketPath(),
      dlg);
  path->setMinimumWidth(360);
  form->addRow(new QLabel(tr("The admin socket of a running sluiced (its --admin-socket)."), dlg));
  form->addRow(tr("Admin &socket:"), path);
  auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, dlg);
  form->addRow(buttons);
  connect(buttons, &QDialogButtonBox::accepted, dlg, &QDialog::accept);
  connect(buttons, &QDialogButtonBox::rejected, dlg, &QDialog::reject);
  connect(dlg, &QDialog::accepted, this, [this, path] { connectTo(path->text().trimmed()); });
  dlg->open();
}

void MainWindow::updateStatus_() {
  using S = AdminClient::State;
  const auto& info = session_->engineInfo();
  QString state;
  switch (client_->state()) {
    case S::kConnected:
      state = tr("<span style='color:#1e8e3e'>●</span> connected to %1").arg(client_->socketPath());
      break;
    case S::kConnecting:
      state =
          tr("<span style='color:#f29900'>●</span> connecting to %1…").arg(client_->socketPath());
      break;
    case S::kDisconnected:
      state = tr("<span style='color:#d93025'>●</span> %1")
                  .arg(client_->lastError().isEmpty() ? tr("not connected") : client_->lastError());
      break;
  }
  if (session_->applying()) state += tr(" — applying…");
  connLabel_->setText(state);
  connLabel_->setToolTip(client_->lastError());
  engineLabel_->setText(info.isEmpty() ? QString()
                                       : tr("sluiced %1 · storage %2")
                                             .arg(info.value(QStringLiteral("version")),
                                                  info.value(QStringLiteral("storage"))));
  // While disconnected the last version seen is history, not what runs: say so.
  const bool live = client_->state() == S::kConnected;
  QString version;
  if (info.contains(QStringLiteral("policy_version"))) {
    version = live ? tr("policy v%1").arg(info.value(QStringLiteral("policy_version")))
                   : tr("<span style='color:gray'>last seen: policy v%1</span>")
                         .arg(info.value(QStringLiteral("policy_version")));
  }
  versionLabel_->setText(version);
  applyAction_->setEnabled(!session_->applying());
}

void MainWindow::updateTitle_() {
  setWindowModified(doc_->isDirty());
  const int changes = static_cast<int>(doc_->diff().size());
  QString text;
  if (!doc_->hasPolicy())
    text = tr("no policy loaded");
  else if (changes == 0)
    text = tr("no draft changes");
  else
    text = tr("<b>draft: %n change(s)</b> (Ctrl+Return to review)", nullptr, changes);
  if (doc_->hasPolicy() && doc_->baseVersion())
    text += tr(" · based on v%1").arg(*doc_->baseVersion());
  else if (doc_->hasPolicy())
    text += tr(" · from a file");
  draftLabel_->setText(text);
  revertAction_->setEnabled(doc_->isDirty());
}

void MainWindow::reviewAndApply() {
  if (session_->applying()) return;
  if (client_->state() != AdminClient::State::kConnected) {
    notice_->show(
        NoticeBar::Kind::kWarning,
        tr("Not connected to an engine, so there is nothing to apply to. You can save the draft "
           "to a file (Ctrl+S) and connect later (Ctrl+K)."));
    return;
  }
  const QStringList changes = doc_->diff();
  if (changes.isEmpty()) {
    notice_->show(NoticeBar::Kind::kInfo, tr("The draft has no changes to apply."));
    return;
  }
  QStringList problems;
  for (const auto& e : doc_->errors())
    problems << (e.path.isEmpty() ? e.text()
                                  : shownPath(e.path, apiKeysOf(doc_->draft())) +
                                        QStringLiteral(": ") + e.message);
  auto* dlg = new DiffDialog(changes, problems, doc_->baseVersion().value_or(0), this);
  dlg->setConsequences(draftConsequences(doc_->base(), doc_->draft()));
  const PolicyTextEdit yaml = doc_->draftText();
  QStringList textNotes;
  for (const auto& n : yaml.notes) textNotes << QString::fromStdString(n);
  dlg->setTextOutcome(yaml.in_place, textNotes);
  connect(dlg, &QDialog::accepted, session_, &PolicySession::apply);
  dlg->open();
  if (!problems.isEmpty()) {
    dlg->setSimulationUnavailable(tr("the draft has problems the engine would refuse."));
    return;
  }
  // The engine replays its recorded traffic through the draft; the dialog shows the outcome
  // when it arrives (a closed dialog drops the reply).
  QStringList apiKeys;
  for (const PolicySpec* p : {&doc_->base(), &doc_->draft()})
    for (const auto& [key, tier] : p->api_keys) apiKeys << QString::fromStdString(key);
  apiKeys.removeDuplicates();
  client_->send({"SL.POLICY", "SIMULATE", yaml.text}, dlg, [dlg, apiKeys](const resp::Value& r) {
    if (r.is_error()) {
      QString why = QString::fromStdString(r.str);
      if (why.startsWith(QLatin1String("ERR "))) why = why.mid(4);
      return dlg->setSimulationUnavailable(why);
    }
    QString error;
    if (auto sim = parseSimulation(r.str, &error)) {
      sim->maskApiKeys(apiKeys);
      return dlg->setSimulation(*sim);
    }
    dlg->setSimulationUnavailable(error);
  });
}

void MainWindow::onConflict_(quint64 runningVersion, const QString& message) {
  notice_->show(
      NoticeBar::Kind::kWarning,
      tr("Not applied: someone else changed the policy meanwhile (%1). Nothing was overwritten. "
         "Reload version %2 and replay your edits on top of it?")
          .arg(message)
          .arg(runningVersion),
      {{tr("Reload and reapply"), [this] { session_->reloadAndReapply(); }},
       {tr("Discard my draft"), [this] {
          doc_->revert();
          session_->refresh();
        }}});
}

void MainWindow::goToPath_(const QString& path) {
  const QStringList parts = path.split(QLatin1Char('.'));
  if (parts.value(0) == QLatin1String("api_keys")) {
    tabs_->setCurrentWidget(keysTab_);
  } else if (parts.value(0) == QLatin1String("resources")) {
    tabs_->setCurrentWidget(modelsTab_);
    modelsTab_->selectResource(parts.value(1).section(QLatin1Char('['), 0, 0));
  } else if (parts.value(0) == QLatin1String("tiers") &&
             parts.value(2) == QLatin1String("overrides")) {
    tabs_->setCurrentWidget(modelsTab_);
    modelsTab_->selectResource(parts.value(3));
  } else if (parts.value(0) == QLatin1String("tiers") ||
             parts.value(0) == QLatin1String("default_tier")) {
    tabs_->setCurrentWidget(tiersTab_);
    tiersTab_->selectTier(parts.value(1));
  } else {
    // unknown_resource, default_limits, on_storage_failure, lease_ttl, lease_ttl_max
    const QString top = parts.value(0).section(QLatin1Char('['), 0, 0);
    if (top == QLatin1String("unknown_resource") || top == QLatin1String("default_limits") ||
        top == QLatin1String("on_storage_failure") || top.startsWith(QLatin1String("lease_ttl")))
      tabs_->setCurrentWidget(settingsTab_);
  }
}

void MainWindow::openFile_() {
  auto* dlg = new QFileDialog(this, tr("Open policy"), QString(),
                              tr("Policies (*.yaml *.yml);;All files (*)"));
  dlg->setAttribute(Qt::WA_DeleteOnClose);
  dlg->setFileMode(QFileDialog::ExistingFile);
  connect(dlg, &QFileDialog::fileSelected, this, [this](const QString& path) {
    const Status s = doc_->openFile(path);
    if (!s.ok()) {
      notice_->show(NoticeBar::Kind::kError,
                    tr("%1 is not a valid policy; see Problems.").arg(path));
      return;
    }
    filePath_ = path;
    notice_->show(NoticeBar::Kind::kInfo,
                  doc_->baseVersion()
                      ? tr("Opened %1 as a draft; review and apply it with Ctrl+Return.").arg(path)
                      : tr("Opened %1.").arg(path));
  });
  dlg->open();
}

void MainWindow::saveFile_(bool askForName) {
  if (!doc_->hasPolicy()) {
    notice_->show(NoticeBar::Kind::kInfo, tr("There is no policy to save yet."));
    return;
  }
  auto write = [this](const QString& path) {
    const Status s = doc_->saveFile(path);
    if (!s.ok()) {
      notice_->show(NoticeBar::Kind::kError,
                    tr("Could not save %1: %2").arg(path, QString::fromStdString(s.message())));
      return;
    }
    filePath_ = path;
    notice_->show(doc_->hasErrors() ? NoticeBar::Kind::kWarning : NoticeBar::Kind::kSuccess,
                  doc_->hasErrors() ? tr("Saved %1, but the draft still has problems.").arg(path)
                                    : tr("Saved %1.").arg(path));
  };
  if (!askForName && !filePath_.isEmpty()) return write(filePath_);
  auto* dlg = new QFileDialog(this, tr("Save policy"), filePath_, tr("Policies (*.yaml *.yml)"));
  dlg->setAttribute(Qt::WA_DeleteOnClose);
  dlg->setAcceptMode(QFileDialog::AcceptSave);
  dlg->setDefaultSuffix(QStringLiteral("yaml"));
  connect(dlg, &QFileDialog::fileSelected, this, write);
  dlg->open();
}

void MainWindow::closeEvent(QCloseEvent* e) {
  if (!doc_->isDirty()) return e->accept();
  // Closing is the user's own action, not a network wait: asking here blocks nothing pending.
  const auto answer = QMessageBox::question(
      this, tr("Unapplied draft"),
      tr("The draft has %n change(s) that are not applied. Quit and lose them?", nullptr,
         static_cast<int>(doc_->diff().size())),
      QMessageBox::Discard | QMessageBox::Cancel, QMessageBox::Cancel);
  if (answer == QMessageBox::Discard)
    e->accept();
  else
    e->ignore();
}

}  // namespace sluice::admin
