// The main window: four tabs over one PolicyDocument, the connection in the status bar,
// actions with keyboard shortcuts, and the apply flow (review -> APPLY ... EXPECT -> outcome
// in the notice bar). Owns the non-widget objects (client, session, poller) as children.
#pragma once

#include <QMainWindow>

class QLabel;
class QTabWidget;
class QAction;
class QDockWidget;

namespace sluice::admin {

class AdminClient;
class PolicyDocument;
class PolicySession;
class LiveStats;
class StatsPoller;
class WarmupMonitor;
class TierTableModel;
class ApiKeyModel;
class NoticeBar;
class ErrorList;
class TiersTab;
class SettingsTab;
class ModelsTab;
class KeysTab;
class LiveTab;

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  explicit MainWindow(QWidget* parent = nullptr);

  AdminClient* client() const { return client_; }
  PolicyDocument* document() const { return doc_; }
  PolicySession* session() const { return session_; }
  LiveStats* liveStats() const { return live_; }
  StatsPoller* poller() const { return poller_; }
  NoticeBar* noticeBar() const { return notice_; }
  ModelsTab* modelsTab() const { return modelsTab_; }

  void connectTo(const QString& socketPath);
  // A small window-modal dialog (open(), not exec()) to pick the admin socket.
  void askForSocket();

  // "tiers", "models", "keys", "live" (case-insensitive); false for another name.
  bool selectTab(const QString& name);
  QWidget* tabPage(const QString& name) const;
  static QStringList tabNames();

  // Review the draft, then apply it (what Ctrl+Return does).
  void reviewAndApply();

 protected:
  void closeEvent(QCloseEvent* e) override;

 private:
  void buildActions_();
  void updateStatus_();
  void updateTitle_();
  void goToPath_(const QString& path);
  void openFile_();
  void saveFile_(bool askForName);
  void onConflict_(quint64 runningVersion, const QString& message);

  AdminClient* client_;
  PolicyDocument* doc_;
  PolicySession* session_;
  LiveStats* live_;
  StatsPoller* poller_;
  WarmupMonitor* warmup_;
  TierTableModel* tierModel_;
  ApiKeyModel* keyModel_;

  NoticeBar* notice_;
  QTabWidget* tabs_;
  TiersTab* tiersTab_;
  SettingsTab* settingsTab_;
  ModelsTab* modelsTab_;
  KeysTab* keysTab_;
  LiveTab* liveTab_;
  ErrorList* errorList_;
  QDockWidget* problemsDock_;

  QLabel* connLabel_;
  QLabel* engineLabel_;
  QLabel* versionLabel_;
  QLabel* draftLabel_;

  QAction* applyAction_;
  QAction* revertAction_;
  QString filePath_;
};

}  // namespace sluice::admin
