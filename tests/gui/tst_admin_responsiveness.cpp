// The window stays responsive while the engine is busy: with the Live tab open and
// redis-benchmark (a separate process) driving at least 100 000 decisions/s at sluiced, the
// GUI thread's event loop is never more than 50 ms late. Prints the measured figures.
#include <QElapsedTimer>
#include <QStandardPaths>
#include <QTabWidget>
#include <QtTest>

#include "core/admin_client.h"
#include "core/event_loop_probe.h"
#include "core/live_models.h"
#include "core/stats_poller.h"
#include "engine_process.h"
#include "ui/main_window.h"

using namespace sluice::admin;

namespace {
const char* kPolicy = R"(version: 1
default_tier: free
tiers:
  free: {multiplier: 1}
  premium: {multiplier: 5}
resources:
  predict:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 50, window: 1m}
  generate:
    limits:
      - {name: per_second, algorithm: token_bucket, limit: 20, window: 1s, burst: 40}
)";

uint64_t decided(const LiveStats& live) {
  const auto& t = live.latest().totals;
  return t.allowed + t.denied + t.shadowDenied + t.storageErrors;
}
}  // namespace

class TestAdminResponsiveness : public QObject {
  Q_OBJECT
 private slots:
  void eventLoopStaysResponsiveUnderLoad() {
    const QString bench = QStandardPaths::findExecutable(QStringLiteral("redis-benchmark"));
    if (bench.isEmpty())
      QSKIP("redis-benchmark is not installed (scripts/install-deps installs redis-tools)");
    EngineProcess engine;
    QVERIFY2(engine.start(QString::fromLatin1(kPolicy)), qPrintable(engine.error()));

    MainWindow w;
    w.selectTab(QStringLiteral("live"));
    w.show();
    QSignalSpy first(w.poller(), &StatsPoller::firstStatsArrived);
    w.connectTo(engine.adminSocket());
    QVERIFY(first.wait(5000));

    // Many subjects, half of them over their limit: the Live tab has denials, several series
    // and a full top-blocked table to draw.
    QProcess load;
    load.setProcessChannelMode(QProcess::ForwardedErrorChannel);
    load.setStandardOutputFile(QProcess::nullDevice());
    load.start(bench, {QStringLiteral("-s"), engine.decisionSocket(), QStringLiteral("-P"),
                       QStringLiteral("16"), QStringLiteral("-c"), QStringLiteral("4"),
                       QStringLiteral("-n"), QStringLiteral("100000000"), QStringLiteral("-r"),
                       QStringLiteral("2000"), QStringLiteral("-q"), QStringLiteral("SL.CHECK"),
                       QStringLiteral("predict"), QStringLiteral("user:__rand_int__")});
    QVERIFY(load.waitForStarted(5000));

    QTest::qWait(1500);  // let the load reach its pace
    const uint64_t before = decided(*w.liveStats());
    const int64_t beforeMs = w.liveStats()->latest().nowMs;
    EventLoopProbe probe;
    probe.start();
    QTest::qWait(6000);
    probe.stop();
    const uint64_t after = decided(*w.liveStats());
    const int64_t afterMs = w.liveStats()->latest().nowMs;
    load.kill();
    load.waitForFinished(3000);

    QVERIFY(afterMs > beforeMs);
    const double rate =
        static_cast<double>(after - before) * 1000.0 / static_cast<double>(afterMs - beforeMs);
    qInfo(
        "engine served %.0f decisions/s; GUI event loop lateness: max %.1f ms, p99 %.1f ms, p50 "
        "%.2f ms over %d samples",
        rate, probe.maxLatenessMs(), probe.percentileMs(0.99), probe.percentileMs(0.50),
        probe.samples());
    QVERIFY2(rate >= 100000,
             qPrintable(QStringLiteral("load too light to measure: %1 decisions/s").arg(rate)));
    QVERIFY(w.liveStats()->totals().denied > 0);
    QVERIFY(probe.samples() > 100);
    QVERIFY2(probe.maxLatenessMs() <= 50.0,
             qPrintable(QStringLiteral("event loop was %1 ms late").arg(probe.maxLatenessMs())));
  }
};

QTEST_MAIN(TestAdminResponsiveness)
#include "tst_admin_responsiveness.moc"
