// sluice-admin: administer a running sluiced from the desktop.
//
//   sluice-admin [--admin-socket PATH] [--policy FILE] [--tab NAME] [--resource NAME]
//                [--screenshot FILE.png [--screenshot-timeout SECONDS] [--screenshot-delay SECONDS]
//                 [--review]]
//
// With --screenshot it connects, waits for the running policy and the first statistics,
// renders the window (or one tab) to FILE.png and exits 0; it exits 1 when it cannot. With
// --review it opens the review dialog of the draft (--policy FILE) instead and renders it once
// the engine's simulation of the draft is shown.
#include <QApplication>
#include <QCommandLineParser>
#include <QTimer>
#include <algorithm>
#include <cstdio>

#include "core/admin_client.h"
#include "core/policy_document.h"
#include "core/policy_session.h"
#include "core/stats_poller.h"
#include "ui/diff_dialog.h"
#include "ui/main_window.h"
#include "ui/models_tab.h"

using sluice::admin::MainWindow;

namespace {

void fail(const QString& message) {
  std::fprintf(stderr, "sluice-admin: %s\n", qPrintable(message));
}

void render(QWidget* target, const QString& file) {
  if (!target->grab().save(file)) {
    fail(QStringLiteral("cannot write %1").arg(file));
    QCoreApplication::exit(1);
    return;
  }
  QCoreApplication::exit(0);
}

// Renders once both the policy and the first stats are in, or gives up after a timeout. With
// `review`, opens the review dialog then and renders it once its simulation is shown.
void scheduleScreenshot(MainWindow& w, const QString& file, const QString& tab, int timeoutMs,
                        bool review, int delayMs) {
  auto* state = new QObject(&w);
  auto tryRender = [&w, file, tab, state, review, delayMs] {
    if (!w.poller()->hasStats() || !w.document()->hasPolicy() || state->property("done").toBool())
      return;
    state->setProperty("done", true);
    if (review) {
      w.reviewAndApply();
      auto* dlg = w.findChild<sluice::admin::DiffDialog*>();
      if (dlg == nullptr) {
        fail(QStringLiteral("--review: the draft has no changes to review"));
        QCoreApplication::exit(1);
        return;
      }
      QObject::connect(dlg, &sluice::admin::DiffDialog::simulationShown, dlg, [dlg, file] {
        QTimer::singleShot(200, dlg, [dlg, file] { render(dlg, file); });
      });
      return;
    }
    // One more turn of the event loop so the charts lay out the data that just arrived.
    QTimer::singleShot(400 + delayMs, &w, [&w, file, tab] {
      render(tab.isEmpty() ? static_cast<QWidget*>(&w) : w.tabPage(tab), file);
    });
  };
  QObject::connect(w.poller(), &sluice::admin::StatsPoller::statsArrived, state, tryRender);
  QObject::connect(w.session(), &sluice::admin::PolicySession::policyLoaded, state, tryRender);
  QTimer::singleShot(timeoutMs, state, [&w, state, timeoutMs] {
    if (state->property("done").toBool()) return;
    const QString why = w.client()->lastError().isEmpty() ? QStringLiteral("no statistics arrived")
                                                          : w.client()->lastError();
    fail(QStringLiteral("no screenshot after %1 s: %2").arg(timeoutMs / 1000).arg(why));
    QCoreApplication::exit(1);
  });
}

// The command line. Built before the application so that --help and --version, which need no
// display, are answered by a QCoreApplication (a QApplication aborts without a display).
struct CommandLine {
  QCommandLineParser parser;
  const QCommandLineOption socketOpt{QStringLiteral("admin-socket"),
                                     QStringLiteral("The admin socket of a running sluiced."),
                                     QStringLiteral("PATH")};
  const QCommandLineOption policyOpt{
      QStringLiteral("policy"),
      QStringLiteral("Open a policy file as the draft (works without an engine)."),
      QStringLiteral("FILE")};
  const QCommandLineOption shotOpt{
      QStringLiteral("screenshot"),
      QStringLiteral("Render the window to FILE.png once the first statistics arrive, then exit."),
      QStringLiteral("FILE.png")};
  const QCommandLineOption tabOpt{
      QStringLiteral("tab"),
      QStringLiteral("The tab to show (and, with --screenshot, to render alone): %1.")
          .arg(MainWindow::tabNames().join(QStringLiteral(", "))),
      QStringLiteral("NAME")};
  const QCommandLineOption resourceOpt{QStringLiteral("resource"),
                                       QStringLiteral("The resource to select in Models & limits."),
                                       QStringLiteral("NAME")};
  const QCommandLineOption timeoutOpt{
      QStringLiteral("screenshot-timeout"),
      QStringLiteral("Seconds to wait for the engine with --screenshot (default 20)."),
      QStringLiteral("SECONDS"), QStringLiteral("20")};
  const QCommandLineOption delayOpt{
      QStringLiteral("screenshot-delay"),
      QStringLiteral("With --screenshot: keep polling this many seconds after the first "
                     "statistics before rendering (default 0), so the Live charts hold more."),
      QStringLiteral("SECONDS"), QStringLiteral("0")};
  const QCommandLineOption reviewOpt{
      QStringLiteral("review"),
      QStringLiteral("With --screenshot: render the review dialog of the draft (--policy FILE), "
                     "with the engine's simulation of it, instead of the window.")};

  CommandLine() {
    parser.setApplicationDescription(
        QStringLiteral("Edit sluice's tiers and limits and watch what gets blocked."));
    parser.addHelpOption();
    parser.addVersionOption();
    parser.addOptions(
        {socketOpt, policyOpt, shotOpt, tabOpt, resourceOpt, timeoutOpt, delayOpt, reviewOpt});
  }
};

void nameApplication() {
  QCoreApplication::setApplicationName(QStringLiteral("sluice-admin"));
  QCoreApplication::setOrganizationName(QStringLiteral("sluice"));
  QCoreApplication::setApplicationVersion(QStringLiteral(SLUICE_ADMIN_VERSION));
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const QByteArray arg(argv[i]);
    if (arg == "--help" || arg == "-h" || arg == "-?" || arg == "--help-all" ||
        arg == "--version" || arg == "-v") {
      QCoreApplication core(argc, argv);
      nameApplication();
      CommandLine line;
      line.parser.process(core);  // prints and exits
    }
  }
  QApplication app(argc, argv);
  nameApplication();
  CommandLine line;
  QCommandLineParser& parser = line.parser;
  const QCommandLineOption& socketOpt = line.socketOpt;
  const QCommandLineOption& policyOpt = line.policyOpt;
  const QCommandLineOption& shotOpt = line.shotOpt;
  const QCommandLineOption& tabOpt = line.tabOpt;
  const QCommandLineOption& resourceOpt = line.resourceOpt;
  const QCommandLineOption& timeoutOpt = line.timeoutOpt;
  const QCommandLineOption& reviewOpt = line.reviewOpt;
  parser.process(app);

  const QString tab = parser.value(tabOpt);
  if (!tab.isEmpty() && !MainWindow::tabNames().contains(tab.toLower()) &&
      tab.toLower() != QLatin1String("limits") && tab.toLower() != QLatin1String("api-keys")) {
    fail(QStringLiteral("unknown tab '%1' (tabs: %2)")
             .arg(tab, MainWindow::tabNames().join(QStringLiteral(", "))));
    return 2;
  }
  const QString shot = parser.value(shotOpt);
  if (!shot.isEmpty() && !parser.isSet(socketOpt)) {
    fail(
        QStringLiteral("--screenshot needs --admin-socket (it waits for the engine's statistics)"));
    return 2;
  }

  MainWindow w;
  if (!tab.isEmpty()) w.selectTab(tab);
  if (parser.isSet(policyOpt)) {
    const auto s = w.document()->openFile(parser.value(policyOpt));
    if (!s.ok()) {
      fail(QString::fromStdString(s.message()));
      if (!shot.isEmpty()) return 1;
    }
  }
  w.show();
  if (parser.isSet(resourceOpt)) {
    // The resource list fills when the policy arrives; select it then.
    const QString resource = parser.value(resourceOpt);
    QObject::connect(w.session(), &sluice::admin::PolicySession::policyLoaded, &w,
                     [&w, resource] { w.modelsTab()->selectResource(resource); });
    w.modelsTab()->selectResource(resource);
  }
  if (!shot.isEmpty()) {
    bool ok = false;
    const int seconds = parser.value(timeoutOpt).toInt(&ok);
    scheduleScreenshot(w, shot, tab, (ok && seconds > 0 ? seconds : 20) * 1000,
                       parser.isSet(reviewOpt),
                       std::max(0, parser.value(line.delayOpt).toInt()) * 1000);
  }
  if (parser.isSet(socketOpt))
    w.connectTo(parser.value(socketOpt));
  else
    QTimer::singleShot(0, &w, &MainWindow::askForSocket);
  return QApplication::exec();
}
