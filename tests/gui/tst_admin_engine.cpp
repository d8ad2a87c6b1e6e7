// sluice-admin against a real sluiced: apply changes decisions, live statistics show traffic,
// conflicts and invalid drafts are caught with the engine's own words, the connection comes
// back after a restart, warm-up control, and --screenshot.
#include <QCheckBox>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QImage>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QTemporaryDir>
#include <QtTest>

#include "core/admin_client.h"
#include "core/engine_replies.h"
#include "core/limit_model.h"
#include "core/live_models.h"
#include "core/policy_document.h"
#include "core/policy_session.h"
#include "core/resource_model.h"
#include "core/stats_poller.h"
#include "core/subject_actions.h"
#include "core/tier_model.h"
#include "core/warmup_monitor.h"
#include "engine_process.h"
#include "ui/diff_dialog.h"
#include "ui/main_window.h"
#include "ui/models_tab.h"
#include "ui/notice_bar.h"

using namespace sluice;
using namespace sluice::admin;

namespace {
const char* kPolicy = R"(# The operator's notes, which Apply must keep.
version: 1
default_tier: free
tiers:
  free: {multiplier: 1, description: everyone}
  premium: {multiplier: 5}  # paying customers
resources:
  predict:
    limits:
      # two per minute, spelled in seconds
      - {name: per_minute, algorithm: fixed_window, limit: 2, window: 60s}
  heavy:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}
    warmup: {factor: 0.5}
)";

// One connection used like a blocking client, for the test's own requests.
resp::Value call(AdminClient& c, std::vector<std::string> args, int timeoutMs = 5000) {
  resp::Value out;
  bool done = false;
  c.send(std::move(args), nullptr, [&](const resp::Value& v) {
    out = v;
    done = true;
  });
  QElapsedTimer t;
  t.start();
  while (!done && t.elapsed() < timeoutMs)
    QCoreApplication::processEvents(QEventLoop::AllEvents, 10);
  if (!done) out = makeErrorValue(QStringLiteral("TIMEOUT no reply"));
  return out;
}

bool connectAndWait(AdminClient& c, const QString& path) {
  c.setSocketPath(path);
  c.connectToEngine();
  return QTest::qWaitFor([&] { return c.state() == AdminClient::State::kConnected; }, 5000);
}

// A session over one document, connected and holding the running policy.
struct Admin {
  AdminClient client;
  PolicyDocument doc;
  PolicySession session{&client, &doc};
  bool open(const QString& path) {
    return connectAndWait(client, path) && QTest::qWaitFor([&] { return doc.hasPolicy(); }, 5000);
  }
  // Sets tier `tier`'s multiplier in the draft, as one undo step.
  bool setMultiplier(size_t tier, double multiplier) {
    return doc
        .edit(QStringLiteral("x%1").arg(multiplier),
              [=](PolicySpec& p) {
                p.tiers[tier].multiplier = multiplier;
                return Status::Ok();
              })
        .ok();
  }
  // Applies the draft: the version the engine runs then, 0 when no apply came within 5 s.
  quint64 applyAndWait() {
    QSignalSpy applied(&session, &PolicySession::applied);
    session.apply();
    return applied.wait(5000) ? applied.first().at(0).toULongLong() : 0;
  }
};

QModelIndex find(const QAbstractItemModel& m, int column, const QString& text) {
  for (int r = 0; r < m.rowCount(); ++r)
    if (m.index(r, column).data().toString() == text) return m.index(r, column);
  return {};
}

int rowOfTier(const TierTableModel& m, const QString& tier) {
  for (int r = 0; r < m.rowCount(); ++r)
    if (m.tierAt(r) == tier) return r;
  return -1;
}
}  // namespace

class TestAdminEngine : public QObject {
  Q_OBJECT
 private slots:
  void init() {
    engine_ = std::make_unique<EngineProcess>();
    QVERIFY2(engine_->start(QString::fromLatin1(kPolicy)), qPrintable(engine_->error()));
    QVERIFY(connectAndWait(decide_, engine_->decisionSocket()));
  }
  void cleanup() {
    decide_.disconnectFromEngine();
    engine_.reset();
  }

  void connectsAndLoadsTheRunningPolicy() {
    Admin a;
    QVERIFY(a.open(engine_->adminSocket()));
    QCOMPARE(*a.doc.baseVersion(), uint64_t{1});
    QVERIFY(findTier(a.doc.draft(), "premium"));
    QVERIFY(QTest::qWaitFor(
        [&] { return a.session.engineInfo().contains(QStringLiteral("storage")); }, 3000));
    QCOMPARE(a.session.engineInfo().value(QStringLiteral("storage")), QStringLiteral("memory"));
    QVERIFY(!a.session.engineInfo().value(QStringLiteral("version")).isEmpty());
  }

  // Raising the default tier's multiplier in the Tiers model and applying it lets a subject
  // that was just denied through.
  void tierMultiplierApplyChangesDecisions() {
    auto check = [&] { return call(decide_, {"SL.CHECK", "predict", "alice"}); };
    QCOMPARE(check().elements.at(0).integer, 1);
    QCOMPARE(check().elements.at(0).integer, 1);
    const resp::Value denied = check();
    QCOMPARE(denied.elements.at(0).integer, 0);
    QCOMPARE(denied.elements.at(1).integer, 2);

    Admin a;
    QVERIFY(a.open(engine_->adminSocket()));
    TierTableModel tiers(&a.doc);
    QVERIFY(tiers.setData(
        tiers.index(rowOfTier(tiers, QStringLiteral("free")), TierTableModel::kMultiplier),
        QStringLiteral("3"), Qt::EditRole));
    QSignalSpy applied(&a.session, &PolicySession::applied);
    QSignalSpy rejected(&a.session, &PolicySession::applyRejected);
    a.session.apply();
    QVERIFY(a.session.applying());
    QVERIFY2(applied.wait(5000),
             rejected.isEmpty() ? "no reply" : qPrintable(rejected.at(0).at(0).toString()));
    QCOMPARE(applied.at(0).at(0).toULongLong(), 2ull);
    QVERIFY(!a.doc.isDirty());

    const resp::Value now = check();
    QCOMPARE(now.elements.at(0).integer, 1);  // allowed again
    QCOMPARE(now.elements.at(1).integer, 6);  // limit 2 x 3
  }

  // Applying from the GUI edits the running policy's text in place: the engine's policy keeps
  // every comment and the spelling of what was not edited (60s stays 60s), and the review says
  // so.
  void applyKeepsTheCommentsOfTheRunningPolicy() {
    MainWindow w;
    w.show();
    w.connectTo(engine_->adminSocket());
    QVERIFY(QTest::qWaitFor([&] { return w.document()->hasPolicy(); }, 5000));
    QVERIFY(w.document()->edit(QStringLiteral("x"), edits::setTierMultiplier("premium", 7)).ok());
    LimitSpec hourly;
    hourly.name = "per_hour";
    hourly.limit = 50;
    hourly.window_ms = 3'600'000;
    QVERIFY(w.document()->edit(QStringLiteral("y"), edits::addLimit("predict", hourly)).ok());
    w.reviewAndApply();
    auto* dlg = w.findChild<DiffDialog*>();
    QVERIFY(dlg);
    QVERIFY2(dlg->textOutcome().contains(QStringLiteral("comments")) &&
                 !dlg->textOutcome().contains(QStringLiteral("lost")),
             qPrintable(dlg->textOutcome()));
    QSignalSpy applied(w.session(), &PolicySession::applied);
    dlg->accept();
    QVERIFY(applied.wait(5000));

    Admin a;
    QVERIFY(connectAndWait(a.client, engine_->adminSocket()));
    const resp::Value got = call(a.client, {"SL.POLICY", "GET"});
    const auto running = parsePolicyGet(got);
    QVERIFY2(running, got.to_string().c_str());
    const QString text = QString::fromStdString(running->yaml);
    for (const char* line :
         {"# The operator's notes, which Apply must keep.",
          "  premium: {multiplier: 7}  # paying customers",
          "      # two per minute, spelled in seconds",
          "      - {name: per_minute, algorithm: fixed_window, limit: 2, window: 60s}",
          "      - {name: per_hour, algorithm: fixed_window, limit: 50, window: 1h}"}) {
      QVERIFY2(text.contains(QString::fromUtf8(line) + QLatin1Char('\n')),
               qPrintable(QStringLiteral("'%1' not in:\n%2").arg(QString::fromUtf8(line), text)));
    }
  }

  // Denials driven at the engine show up as blocked counts in the Live model within 2 s.
  void trafficAppearsInLiveModelWithin2s() {
    AdminClient client;
    LiveStats live;
    StatsPoller poller(&client, &live);
    QSignalSpy first(&poller, &StatsPoller::firstStatsArrived);
    QVERIFY(connectAndWait(client, engine_->adminSocket()));
    QVERIFY(first.wait(3000));
    live.setFilter(QStringLiteral("predict"), QStringLiteral("free"));
    QCOMPARE(live.totals().denied, uint64_t{0});

    for (int i = 0; i < 30; ++i) decide_.send({"SL.CHECK", "predict", "mallory"}, nullptr, nullptr);
    QVERIFY(call(decide_, {"PING"}).str == "PONG");  // replies come in order: all 30 are decided
    QElapsedTimer since;
    since.start();
    QVERIFY(QTest::qWaitFor([&] { return live.totals().denied >= 28; }, 2000));
    qInfo("blocked counts visible %lld ms after the traffic",
          static_cast<long long>(since.elapsed()));
    QVERIFY(since.elapsed() <= 2000);

    const auto points = live.points();
    uint64_t blocked = 0;
    for (const auto& p : points) blocked += p.blocked;
    QCOMPARE(blocked, uint64_t{28});
    QCOMPARE(live.seriesModel()->rowCount(), 1);
    QCOMPARE(live.seriesModel()->index(0, LiveSeriesModel::kBlocked).data().toULongLong(), 28ull);
    QVERIFY(live.topModel()->rowCount() >= 1);
    QCOMPARE(live.topModel()->index(0, TopBlockedModel::kSubject).data().toString(),
             QStringLiteral("mallory"));
    QCOMPARE(live.topModel()->index(0, TopBlockedModel::kCount).data().toString(),
             QStringLiteral("28"));  // blocked in the last 5 minutes, exactly
    QCOMPARE(live.topModel()->index(0, TopBlockedModel::kTier).data().toString(),
             QStringLiteral("free"));

    // From the row: inspect the subject's limits, then reset them (audited); it gets through.
    const TopBlocked* row = live.topModel()->rowAt(0);
    QVERIFY(row != nullptr);
    const QString resource = QString::fromStdString(row->resource);
    const QString subject = QString::fromStdString(row->subject);
    bool answered = false, ok = false;
    QString text;
    auto collect = [&](bool success, const QString& t) {
      answered = true;
      ok = success;
      text = t;
    };
    inspectSubject(&client, nullptr, resource, subject, collect);
    QVERIFY(QTest::qWaitFor([&] { return answered; }, 3000));
    QVERIFY2(ok && text.startsWith(QStringLiteral("per_minute: 0 of 2 left")), qPrintable(text));
    QVERIFY2(text.contains(QStringLiteral("denies; retry in")), qPrintable(text));
    answered = false;
    resetSubject(&client, nullptr, resource, subject, collect);
    QVERIFY(QTest::qWaitFor([&] { return answered; }, 3000));
    QVERIFY2(ok, qPrintable(text));
    QCOMPARE(call(decide_, {"SL.CHECK", "predict", "mallory"}).elements.at(0).integer, 1);
    QVERIFY(QString::fromStdString(call(client, {"SL.AUDIT", "5"}).to_string())
                .contains(QStringLiteral("subject mallory reset")));
    answered = false;
    inspectSubject(&client, nullptr, QStringLiteral("nope"), subject, collect);
    QVERIFY(QTest::qWaitFor([&] { return answered; }, 3000));
    QVERIFY2(!ok && text.startsWith(QStringLiteral("NORESOURCE")), qPrintable(text));
  }

  // B applies a draft based on a version A has already replaced: CONFLICT, nothing is
  // overwritten; reload-and-reapply keeps both changes.
  void conflictingApplyIsDetected() {
    Admin a, b;
    QVERIFY(a.open(engine_->adminSocket()));
    QVERIFY(b.open(engine_->adminSocket()));
    QVERIFY(a.doc.edit(QStringLiteral("A"), edits::setTierMultiplier("premium", 7)).ok());
    QVERIFY(
        b.doc.edit(QStringLiteral("B"), edits::setTierDescription("free", "changed by B")).ok());

    QSignalSpy aApplied(&a.session, &PolicySession::applied);
    a.session.apply();
    QVERIFY(aApplied.wait(5000));

    QSignalSpy conflict(&b.session, &PolicySession::conflict);
    QSignalSpy bApplied(&b.session, &PolicySession::applied);
    b.session.apply();
    QVERIFY(conflict.wait(5000));
    QCOMPARE(conflict.at(0).at(0).toULongLong(), 2ull);
    QVERIFY(bApplied.isEmpty());
    const auto running = parsePolicyGet(call(a.client, {"SL.POLICY", "GET"}));
    QVERIFY(running);
    QCOMPARE(running->version, uint64_t{2});
    QVERIFY(running->yaml.find("changed by B") == std::string::npos);

    QSignalSpy rebased(&b.session, &PolicySession::rebased);
    b.session.reloadAndReapply();
    QVERIFY(rebased.wait(5000));
    QVERIFY(rebased.at(0).at(0).toStringList().isEmpty());
    QCOMPARE(findTier(b.doc.draft(), "premium")->multiplier, 7.0);
    b.session.apply();
    QVERIFY(bApplied.wait(5000));
    QCOMPARE(bApplied.at(0).at(0).toULongLong(), 3ull);
  }

  // An invalid edit is refused by the engine and its message is shown on the field.
  void invalidEditIsRefusedWithTheEnginesMessage() {
    Admin a;
    QVERIFY(a.open(engine_->adminSocket()));
    TierTableModel tiers(&a.doc);
    const QModelIndex cell =
        tiers.index(rowOfTier(tiers, QStringLiteral("premium")), TierTableModel::kMultiplier);
    QVERIFY(tiers.setData(cell, QStringLiteral("0"), Qt::EditRole));

    // What the engine says about this very draft, asked independently.
    const resp::Value verdict = call(a.client, {"SL.POLICY", "VALIDATE", a.doc.draftYaml()});
    QCOMPARE(QByteArray(verdict.error_code().data(),
                        static_cast<qsizetype>(verdict.error_code().size())),
             QByteArray("INVALID"));

    QSignalSpy rejected(&a.session, &PolicySession::applyRejected);
    a.session.apply();
    QVERIFY(rejected.wait(5000));
    QVERIFY(rejected.at(0).at(0).toString().contains(QStringLiteral("multiplier")));
    QCOMPARE(a.doc.errors().size(), 1);
    const FieldError& e = a.doc.errors().at(0);
    QCOMPARE(e.source, FieldError::Source::kEngine);
    QCOMPARE(e.path, QStringLiteral("tiers.premium.multiplier"));
    QVERIFY2(verdict.str.find(e.message.toStdString()) != std::string::npos, verdict.str.c_str());
    QVERIFY(e.location.startsWith(QStringLiteral("<admin>:")));
    QCOMPARE(tiers.data(cell, DraftTableModel::ErrorRole).toString(), e.text());
    // The running policy is untouched.
    QCOMPARE(parsePolicyGet(call(a.client, {"SL.POLICY", "GET"}))->version, uint64_t{1});
    QVERIFY(a.doc.isDirty());
  }

  void reconnectsAfterTheDaemonRestarts() {
    Admin a;
    QVERIFY(a.open(engine_->adminSocket()));
    QSignalSpy loaded(&a.session, &PolicySession::policyLoaded);
    decide_.disconnectFromEngine();
    engine_->stop();
    QVERIFY(
        QTest::qWaitFor([&] { return a.client.state() != AdminClient::State::kConnected; }, 3000));
    QVERIFY(!a.client.lastError().isEmpty());
    QVERIFY(engine_->restart());
    QVERIFY(
        QTest::qWaitFor([&] { return a.client.state() == AdminClient::State::kConnected; }, 10000));
    QVERIFY(loaded.wait(5000));
  }

  // While disconnected the status bar does not show the last version as running.
  void theVersionSeenIsMarkedAsHistoryWhileDisconnected() {
    MainWindow w;
    w.client()->setSocketPath(engine_->adminSocket());
    w.client()->connectToEngine();
    auto versionText = [&w] {
      for (auto* label : w.findChildren<QLabel*>())
        if (label->text().contains(QStringLiteral("policy v"))) return label->text();
      return QString();
    };
    QVERIFY(QTest::qWaitFor([&] { return versionText() == QStringLiteral("policy v1"); }, 5000));
    decide_.disconnectFromEngine();
    engine_->stop();
    QVERIFY(
        QTest::qWaitFor([&] { return versionText().contains(QStringLiteral("last seen")); }, 5000));
  }

  // Pausing the Live view freezes the charts, not the version: an apply by someone else is
  // followed by a clean draft while paused.
  void aPausedViewStillFollowsTheRunningPolicy() {
    Admin a;
    QVERIFY(a.open(engine_->adminSocket()));
    LiveStats live;
    StatsPoller poller(&a.client, &live);
    connect(&poller, &StatsPoller::serverInfo, &a.session, &PolicySession::updateInfo);
    QSignalSpy first(&poller, &StatsPoller::firstStatsArrived);
    QVERIFY(first.wait(3000));
    poller.setPaused(true);
    QSignalSpy stats(&poller, &StatsPoller::statsArrived);
    const quint64 before = *a.doc.baseVersion();
    Admin b;
    QVERIFY(b.open(engine_->adminSocket()));
    QVERIFY(b.setMultiplier(1, 7));
    QVERIFY(b.applyAndWait() > 0);
    QVERIFY(QTest::qWaitFor([&] { return *a.doc.baseVersion() > before; }, 4000));
    QCOMPARE(findTier(a.doc.draft(), "premium")->multiplier, 7.0);
    QCOMPARE(stats.count(), 0);  // the charts stayed paused
  }

  // Someone else applies while this draft has edits: the session says so at once, with what
  // they changed, once per version; the draft keeps its base (Apply will ask).
  void anApplyElsewhereIsToldWithItsChanges() {
    Admin a;
    QVERIFY(a.open(engine_->adminSocket()));
    QVERIFY(a.setMultiplier(0, 2));
    const quint64 base = *a.doc.baseVersion();
    Admin b;
    QVERIFY(b.open(engine_->adminSocket()));
    const std::string tier = b.doc.draft().tiers[1].name;
    QVERIFY(b.setMultiplier(1, 7));
    const quint64 now = b.applyAndWait();
    QVERIFY(now > 0);
    QSignalSpy moved(&a.session, &PolicySession::movedOn);
    QMap<QString, QString> info{{QStringLiteral("policy_version"), QString::number(now)}};
    a.session.updateInfo(info);  // what the stats poller hands it every second
    QVERIFY(moved.wait(5000));
    QCOMPARE(moved.first().at(0).toULongLong(), now);
    const QStringList changes = moved.first().at(1).toStringList();
    QVERIFY2(changes.join(QStringLiteral("\n"))
                 .contains(QStringLiteral("tier %1: multiplier").arg(QString::fromStdString(tier))),
             qPrintable(changes.join(QStringLiteral("\n"))));
    QCOMPARE(*a.doc.baseVersion(), base);  // the draft keeps its base and its edit
    QCOMPARE(a.doc.draft().tiers[0].multiplier, 2.0);
    a.session.updateInfo(info);  // the same version again: told once (nothing is even asked)
    QCOMPARE(moved.count(), 1);
  }

  // A restart is told apart from someone else's apply (SL.INFO's instance changes): a dirty
  // draft is replayed on what now runs, and applying it is not a conflict.
  void aRestartIsNotSomeoneElsesApply() {
    Admin a;
    QVERIFY(a.open(engine_->adminSocket()));
    const QString instance = a.session.engineInfo().value(QStringLiteral("instance"));
    QCOMPARE(instance.size(), 16);
    // Someone else applies version 2; then the draft is edited on its stale base.
    Admin b;
    QVERIFY(b.open(engine_->adminSocket()));
    QVERIFY(b.setMultiplier(1, 6));
    QVERIFY(b.applyAndWait() > 0);
    QVERIFY(a.setMultiplier(0, 2));
    QSignalSpy restarted(&a.session, &PolicySession::restarted);
    decide_.disconnectFromEngine();
    engine_->stop();
    QVERIFY(engine_->restart());
    QVERIFY(restarted.wait(10000));
    QVERIFY(a.session.engineInfo().value(QStringLiteral("instance")) != instance);
    const quint64 running = restarted.first().at(0).toULongLong();
    qInfo("after the restart the engine runs policy version %llu",
          static_cast<unsigned long long>(running));
    QCOMPARE(*a.doc.baseVersion(), running);
    QSignalSpy conflict(&a.session, &PolicySession::conflict);
    QSignalSpy applied(&a.session, &PolicySession::applied);
    a.session.apply();
    QVERIFY(applied.wait(5000));
    QCOMPARE(conflict.count(), 0);
  }

  // Against a real daemon stopped and started again: the seconds it was down are a gap in
  // the Live history, not zeros, and afterwards the totals (the new engine's) and "blocked in
  // the last minute" agree instead of mixing the two engines' counts.
  void liveAgreesWithTheEngineAfterARestart() {
    AdminClient client;
    LiveStats live;
    StatsPoller poller(&client, &live);
    QVERIFY(connectAndWait(client, engine_->adminSocket()));
    for (int i = 0; i < 30; ++i) decide_.send({"SL.CHECK", "predict", "mallory"}, nullptr, nullptr);
    QVERIFY(call(decide_, {"PING"}).str == "PONG");
    QVERIFY(QTest::qWaitFor([&] { return live.totals().denied == 28; }, 5000));

    decide_.disconnectFromEngine();
    engine_->stop();
    // The poller's ticks find no engine: the history moves on without data.
    auto trailingGap = [&] {
      const auto points = live.points();
      int n = 0;
      for (auto it = points.rbegin(); it != points.rend() && !it->known; ++it) ++n;
      return n;
    };
    QVERIFY(QTest::qWaitFor([&] { return trailingGap() >= 3; }, 8000));
    QVERIFY(engine_->restart());
    QVERIFY(connectAndWait(decide_, engine_->decisionSocket()));
    for (int i = 0; i < 5; ++i) decide_.send({"SL.CHECK", "predict", "mallory"}, nullptr, nullptr);
    QVERIFY(call(decide_, {"PING"}).str == "PONG");  // 2 allowed, 3 denied by the new engine
    QVERIFY2(QTest::qWaitFor([&] { return live.totals().denied == 3; }, 8000),
             qPrintable(QString::number(live.totals().denied)));

    QVERIFY(live.history().restartSecond() > 0);
    const auto rows = live.seriesModel()->rows();
    uint64_t lastMinute = 0;
    for (const auto& r : rows) lastMinute += r.blockedLastMinute;
    QCOMPARE(lastMinute, uint64_t{3});  // not 28 + 3
    const auto points = live.points();
    const auto runs = LiveHistory::knownRuns(points);
    QVERIFY2(runs.size() >= 2, "the outage is not a gap");
    uint64_t drawn = 0;
    for (const auto& p : points) drawn += p.blocked;
    QCOMPARE(drawn, uint64_t{28 + 3});  // both engines' seconds stay drawn
  }

  void clearMessageWhenNoEngineListens() {
    AdminClient c;
    QSignalSpy down(&c, &AdminClient::disconnected);
    c.setAutoReconnect(false);
    c.setSocketPath(engine_->dir() + QStringLiteral("/nothing-here.sock"));
    c.connectToEngine();
    // The failure may be reported inside connectToEngine() already.
    QVERIFY(!down.isEmpty() || down.wait(3000));
    QVERIFY2(c.lastError().contains(QStringLiteral("not running")), qPrintable(c.lastError()));
    // A request while disconnected fails promptly instead of hanging.
    QVERIFY(call(c, {"PING"}, 1000).str.rfind("DISCONNECTED", 0) == 0);

    // The decision socket refuses admin commands: the client says so and lets go.
    AdminClient wrong;
    wrong.setAutoReconnect(false);
    QVERIFY(connectAndWait(wrong, engine_->decisionSocket()));
    QCOMPARE(QByteArray(call(wrong, {"SL.POLICY", "GET"}).error_code().data()).left(6),
             QByteArray("NOPERM"));
    QVERIFY(
        QTest::qWaitFor([&] { return wrong.state() == AdminClient::State::kDisconnected; }, 2000));
    QVERIFY2(wrong.lastError().contains(QStringLiteral("refused")), qPrintable(wrong.lastError()));
  }

  void warmupStartAndReady() {
    Admin a;
    QVERIFY(a.open(engine_->adminSocket()));
    WarmupMonitor m(&a.session);
    QList<WarmupState> states;
    connect(&m, &WarmupMonitor::stateChanged, this,
            [&](const QString&, const WarmupState& s) { states << s; });
    m.watch(QStringLiteral("heavy"));
    QVERIFY(QTest::qWaitFor([&] { return !states.isEmpty(); }, 3000));
    QVERIFY(states.last().enabled);
    QVERIFY(!states.last().warming);
    m.start();
    QVERIFY(QTest::qWaitFor([&] { return states.last().warming; }, 3000));
    QCOMPARE(states.last().factor, 0.5);
    m.ready();
    QVERIFY(QTest::qWaitFor([&] { return !states.last().warming; }, 3000));
  }

  // The window's apply flow: review dialog with the diff, APPLY, outcome in the notice bar;
  // a conflict offers "Reload and reapply", which replays the edit and applies on review.
  void windowReviewApplyAndConflict() {
    MainWindow w;
    w.show();
    w.connectTo(engine_->adminSocket());
    QVERIFY(QTest::qWaitFor([&] { return w.document()->hasPolicy(); }, 5000));
    QVERIFY(w.document()->edit(QStringLiteral("x"), edits::setTierMultiplier("premium", 6)).ok());
    w.reviewAndApply();
    auto* dlg = w.findChild<DiffDialog*>();
    QVERIFY(dlg);
    QVERIFY(dlg->findChild<QPlainTextEdit*>()->toPlainText().contains(
        QStringLiteral("tier premium: multiplier 5 → 6")));
    // What that does, compiled: every premium limit, before -> after.
    QVERIFY2(dlg->consequencesText().contains(
                 QStringLiteral("predict · premium · per_minute: 10 → 12")) &&
                 dlg->consequencesText().contains(
                     QStringLiteral("heavy · premium · per_minute: 50 → 60")),
             qPrintable(dlg->consequencesText()));
    QVERIFY(dlg->applyButton()->isEnabled());
    QSignalSpy applied(w.session(), &PolicySession::applied);
    dlg->accept();
    QVERIFY(applied.wait(5000));
    QVERIFY(w.noticeBar()->text().contains(QStringLiteral("version 2")));

    // Someone else applies meanwhile.
    Admin other;
    QVERIFY(other.open(engine_->adminSocket()));
    QVERIFY(other.doc.edit(QStringLiteral("y"), edits::setTierMultiplier("free", 2)).ok());
    QSignalSpy otherApplied(&other.session, &PolicySession::applied);
    other.session.apply();
    QVERIFY(otherApplied.wait(5000));

    QVERIFY(
        w.document()->edit(QStringLiteral("z"), edits::setTierDescription("premium", "mine")).ok());
    QSignalSpy conflict(w.session(), &PolicySession::conflict);
    w.reviewAndApply();
    QVERIFY(QTest::qWaitFor([&] { return w.findChild<DiffDialog*>() != nullptr; }, 2000));
    w.findChild<DiffDialog*>()->accept();
    QVERIFY(conflict.wait(5000));
    QPushButton* reapply = nullptr;
    for (auto* b : w.noticeBar()->findChildren<QPushButton*>())
      if (b->text() == QStringLiteral("Reload and reapply")) reapply = b;
    QVERIFY2(reapply, qPrintable(w.noticeBar()->text()));
    QSignalSpy rebased(w.session(), &PolicySession::rebased);
    reapply->click();
    QVERIFY(rebased.wait(5000));
    QCOMPARE(findTier(w.document()->draft(), "free")->multiplier, 2.0);
    QCOMPARE(findTier(w.document()->draft(), "premium")->description, std::string("mine"));
    QCOMPARE(*w.document()->baseVersion(), uint64_t{3});
  }

  // The review dialog shows what the draft would have decided on the traffic the engine just
  // served (SL.POLICY SIMULATE), next to the diff.
  void reviewShowsTheSimulationOfTheDraft() {
    AdminClient decide;
    QVERIFY(connectAndWait(decide, engine_->decisionSocket()));
    for (const char* subject : {"alice", "bob"}) {
      for (int i = 0; i < 2; ++i) {
        const resp::Value v = call(decide, {"SL.CHECK", "predict", subject});
        QVERIFY2(!v.elements.empty() && v.elements[0].integer == 1, v.to_string().c_str());
      }
    }
    MainWindow w;
    w.show();
    w.connectTo(engine_->adminSocket());
    QVERIFY(QTest::qWaitFor([&] { return w.document()->hasPolicy(); }, 5000));
    // free at half: predict's 2 per minute becomes 1, so each subject's second request is denied.
    QVERIFY(w.document()->edit(QStringLiteral("x"), edits::setTierMultiplier("free", 0.5)).ok());
    w.reviewAndApply();
    auto* dlg = w.findChild<DiffDialog*>();
    QVERIFY(dlg);
    QSignalSpy shown(dlg, &DiffDialog::simulationShown);
    QVERIFY(shown.wait(5000));
    const QString text = dlg->simulationText();
    QVERIFY2(text.contains(QStringLiteral("2 more would be denied, from 2 subject(s)")),
             qPrintable(text));
    QVERIFY2(text.contains(QStringLiteral("predict | free | per_minute | 0 → 2 of 4 | +2 denied")),
             qPrintable(text));
    QVERIFY2(text.contains(QStringLiteral("alice on predict (1)")), qPrintable(text));
    dlg->reject();
  }

  void screenshotOfOneTab() {
    const QString png = engine_->dir() + QStringLiteral("/live.png");
    QProcess p;
    p.setProcessChannelMode(QProcess::ForwardedChannels);
    p.start(QStringLiteral(SLUICE_BINARY_DIR "/bin/sluice-admin"),
            {QStringLiteral("--admin-socket"), engine_->adminSocket(),
             QStringLiteral("--screenshot"), png, QStringLiteral("--tab"), QStringLiteral("live")});
    QVERIFY(p.waitForFinished(30000));
    QCOMPARE(p.exitStatus(), QProcess::NormalExit);
    QCOMPARE(p.exitCode(), 0);
    QImage image(png);
    QVERIFY(!image.isNull());
    QVERIFY(image.width() > 400 && image.height() > 300);

    // Without an engine it fails with a reason instead of hanging.
    QProcess q;
    q.start(QStringLiteral(SLUICE_BINARY_DIR "/bin/sluice-admin"),
            {QStringLiteral("--admin-socket"), engine_->dir() + QStringLiteral("/none.sock"),
             QStringLiteral("--screenshot"), png, QStringLiteral("--screenshot-timeout"),
             QStringLiteral("2")});
    QVERIFY(q.waitForFinished(15000));
    QCOMPARE(q.exitCode(), 1);
    QVERIFY(q.readAllStandardError().contains("not running"));
  }

  // Through the GUI's model layer: a new model with two limits and a new tier, applied to the
  // engine, decides with them; a limit removed and applied is gone.
  void structuralEditsReachTheEngine() {
    Admin a;
    QVERIFY(a.open(engine_->adminSocket()));
    ResourceListModel resources(&a.doc);
    LimitTableModel limits(&a.doc);
    TierTableModel tiers(&a.doc);
    QVERIFY(resources.addResource(QStringLiteral("models/new")) >= 0);
    limits.setResource(QStringLiteral("models/new"));
    QVERIFY(limits.setData(limits.index(0, LimitTableModel::kLimit), 3, Qt::EditRole));
    const int hourly = limits.addLimit(QStringLiteral("per_hour"));
    QVERIFY(hourly >= 0);
    QVERIFY(limits.setData(limits.index(hourly, LimitTableModel::kLimit), 5, Qt::EditRole));
    QVERIFY(limits.setData(limits.index(hourly, LimitTableModel::kWindow), QStringLiteral("1h"),
                           Qt::EditRole));
    const int gold = tiers.addTier(QStringLiteral("gold"));
    QVERIFY(gold >= 0);
    QVERIFY(tiers.setData(tiers.index(gold, TierTableModel::kMultiplier), QStringLiteral("2"),
                          Qt::EditRole));
    QSignalSpy applied(&a.session, &PolicySession::applied);
    a.session.apply();
    QVERIFY(applied.wait(5000));

    for (int i = 0; i < 3; ++i)
      QCOMPARE(call(decide_, {"SL.CHECK", "models/new", "alice"}).elements.at(0).integer, 1);
    const auto denied = call(decide_, {"SL.CHECK", "models/new", "alice"});
    QCOMPARE(denied.elements.at(0).integer, 0);
    QCOMPARE(denied.elements.at(5).str, std::string("per_minute"));
    QCOMPARE(denied.elements.at(8).elements.size(), size_t{2});  // both limits reported
    const auto goldCheck = call(decide_, {"SL.CHECK", "models/new", "bob", "TIER", "gold"});
    QCOMPARE(goldCheck.elements.at(1).integer, 6);  // 3 x 2

    const QModelIndex perMinute =
        find(limits, LimitTableModel::kName, QStringLiteral("per_minute"));
    QVERIFY(perMinute.isValid());
    QVERIFY(limits.removeLimit(perMinute.row()));
    QSignalSpy appliedAgain(&a.session, &PolicySession::applied);
    a.session.apply();
    QVERIFY(appliedAgain.wait(5000));
    const auto after = call(decide_, {"SL.CHECK", "models/new", "alice"});
    QCOMPARE(after.elements.at(0).integer, 1);  // per_hour: 4 of 5 used
    QCOMPARE(after.elements.at(5).str, std::string("per_hour"));
    QCOMPARE(after.elements.at(8).elements.size(), size_t{1});
  }

  // Small things an operator tripped over: switching warm-up on starts from a fifth of the
  // limits, not from 1.00 (no reduction); an error with '>' reads as '>', not '&gt;'.
  void warmupDefaultAndErrorTextReadWell() {
    QTemporaryDir dir;
    const QString file = dir.filePath(QStringLiteral("p.yaml"));
    QFile f(file);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(kPolicy);
    f.close();
    MainWindow w;
    QVERIFY(w.document()->openFile(file).ok());
    w.selectTab(QStringLiteral("models"));
    w.modelsTab()->selectResource(QStringLiteral("predict"));
    QCheckBox* warmup = nullptr;
    for (auto* box : w.modelsTab()->findChildren<QCheckBox*>())
      if (box->text().startsWith(QStringLiteral("Reduced limits"))) warmup = box;
    QVERIFY(warmup != nullptr);
    QVERIFY(!warmup->isChecked());
    warmup->click();
    const ResourceSpec* predict = findResource(w.document()->draft(), "predict");
    QVERIFY(predict->warmup.enabled);
    QCOMPARE(predict->warmup.factor, 0.2);

    QVERIFY(w.document()
                ->edit(QStringLiteral("break"),
                       [](PolicySpec& p) {
                         p.tiers[0].multiplier = -1;
                         return Status::Ok();
                       })
                .ok());
    w.selectTab(QStringLiteral("tiers"));
    bool shown = false;
    for (auto* label : w.findChildren<QLabel*>()) {
      if (!label->text().contains(QStringLiteral("multiplier must be"))) continue;
      shown = true;
      QCOMPARE(label->textFormat(), Qt::RichText);  // '&gt;' renders as '>'
    }
    QVERIFY(shown);
  }

 private:
  std::unique_ptr<EngineProcess> engine_;
  AdminClient decide_;  // on the decision socket
};

QTEST_MAIN(TestAdminEngine)
#include "tst_admin_engine.moc"
