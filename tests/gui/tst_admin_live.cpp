// The Live tab's analytics (issue 16 item 6): time range, per-model/tier/rule lines, hover
// values, an axis a single burst does not flatten, blocked %, latency over time and the
// warm-up overview. The model layer is driven with simulated SL.STATS replies (no sleeps); the
// warm-up overview's polling also against a real sluiced.
#include <QAbstractItemModelTester>
#include <QCheckBox>
#include <QComboBox>
#include <QGraphicsSimpleTextItem>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLineSeries>
#include <QScatterSeries>
#include <QTableView>
#include <QValueAxis>
#include <QtTest>
#include <cmath>

#include "core/admin_client.h"
#include "core/live_charts.h"
#include "core/live_models.h"
#include "core/stats_poller.h"
#include "core/warmup_overview.h"
#include "engine_process.h"
#include "sluice/stats.h"
#include "ui/live_chart_view.h"
#include "ui/live_tab.h"

using namespace sluice;
using namespace sluice::admin;

namespace {
const int64_t kT = 1'700'000'000;  // unix seconds

struct Series {
  QString resource, tier, rule;
  std::function<uint32_t(int64_t)> allowed, denied;
};

// An SL.STATS reply (docs/protocol.md) at second `now` covering `window` seconds, from engine
// `instance`; `latency` is the cumulative histogram's counts (bounds 0, 1, 3, 7, ... ns).
std::string statsReply(int64_t now, int window, const std::vector<Series>& series,
                       const QString& instance = QStringLiteral("engine-a"),
                       const std::vector<uint64_t>& latency = {}) {
  QJsonArray all;
  for (const auto& s : series) {
    QJsonArray allowed, denied, zeros;
    qint64 a = 0, d = 0;
    for (int64_t sec = now - window + 1; sec <= now; ++sec) {
      allowed.append(static_cast<qint64>(s.allowed(sec)));
      denied.append(static_cast<qint64>(s.denied(sec)));
      zeros.append(0);
      a += s.allowed(sec);
      d += s.denied(sec);
    }
    all.append(QJsonObject{
        {"resource", s.resource},
        {"tier", s.tier},
        {"rule", s.rule},
        {"totals",
         QJsonObject{{"allowed", a}, {"denied", d}, {"shadow_denied", 0}, {"storage_errors", 0}}},
        {"per_second", QJsonObject{{"allowed", allowed},
                                   {"denied", denied},
                                   {"shadow_denied", zeros},
                                   {"storage_errors", zeros}}}});
  }
  QJsonObject doc{{"now_ms", static_cast<qint64>(now * 1000 + 300)},
                  {"first_second", static_cast<qint64>(now - window + 1)},
                  {"window_seconds", window},
                  {"totals", QJsonObject{{"allowed", 0}, {"denied", 0}}},
                  {"series", all},
                  {"top_blocked", QJsonArray{}},
                  {"server", QJsonObject{{"instance", instance}, {"uptime_s", 100000}}}};
  if (!latency.empty()) {
    QJsonArray bounds, counts;
    for (size_t i = 0; i < latency.size(); ++i) {
      bounds.append(static_cast<qint64>(i == 0 ? 0 : (uint64_t{1} << i) - 1));
      counts.append(static_cast<qint64>(latency[i]));
    }
    doc.insert("latency", QJsonObject{{"upper_bound_ns", bounds}, {"counts", counts}});
  }
  return QJsonDocument(doc).toJson(QJsonDocument::Compact).toStdString();
}

void ingest(LiveStats& live, const std::string& reply) {
  auto snapshot = parseStatsJson(reply);
  QVERIFY2(snapshot.ok(), snapshot.status().message().c_str());
  live.ingest(snapshot.value());
}

std::function<uint32_t(int64_t)> constant(uint32_t n) {
  return [n](int64_t) { return n; };
}

std::vector<double> parseValues(const QString& spec) {
  // "895x10,5x400": 895 values of 10, then 5 of 400.
  std::vector<double> out;
  for (const QString& part : spec.split(QLatin1Char(','), Qt::SkipEmptyParts)) {
    const auto nv = part.split(QLatin1Char('x'));
    for (int i = 0; i < nv[0].toInt(); ++i) out.push_back(nv[1].toDouble());
  }
  return out;
}

QString clock(int64_t second) {
  return QDateTime::fromSecsSinceEpoch(second).toString(QStringLiteral("HH:mm:ss"));
}
}  // namespace

class TestAdminLive : public QObject {
  Q_OBJECT
 private slots:
  // The axis rule: a burst far above the typical level (the 95th percentile) is clipped
  // rather than flattening everything else; steady or recurring traffic is not.
  void axisIsNotFlattenedByABurst_data() {
    QTest::addColumn<QString>("values");
    QTest::addColumn<bool>("clip");
    QTest::addColumn<double>("ceiling");
    QTest::addColumn<double>("top");
    QTest::addColumn<bool>("clipped");
    const double inf = std::numeric_limits<double>::infinity();
    QTest::newRow("nothing shown") << "" << true << inf << 5.0 << false;
    QTest::newRow("steady traffic") << "450x10,450x20" << true << inf << 25.0 << false;
    QTest::newRow("one 5-second burst in 15 minutes")
        << "895x10,5x400" << true << inf << 20.0 << true;
    QTest::newRow("the same, clipping off") << "895x10,5x400" << false << inf << 500.0 << false;
    QTest::newRow("a recurring rush is traffic, not a burst")
        << "765x10,135x40" << true << inf << 50.0 << false;
    QTest::newRow("a burst over silence is all there is to see")
        << "899x0,1x50" << true << inf << 60.0 << false;
    QTest::newRow("3 seconds of a minute") << "57x10,3x200" << true << inf << 20.0 << true;
    QTest::newRow("a burst 3x the level is drawn whole")
        << "890x10,10x30" << true << inf << 40.0 << false;
    QTest::newRow("percentages stop at 100") << "100x100" << true << 100.0 << 100.0 << false;
    QTest::newRow("small values keep the floor") << "100x1" << true << inf << 5.0 << false;
  }
  void axisIsNotFlattenedByABurst() {
    QFETCH(QString, values);
    QFETCH(bool, clip);
    QFETCH(double, ceiling);
    QFETCH(double, top);
    QFETCH(bool, clipped);
    const AxisScale s = chooseScale(parseValues(values), 5, ceiling, clip);
    QCOMPARE(s.top, top);
    QCOMPARE(s.clipped, clipped);
  }

  void roundUpToARoundNumber_data() {
    QTest::addColumn<double>("v");
    QTest::addColumn<double>("up");
    QTest::newRow("1") << 1.0 << 1.0;
    QTest::newRow("1.1") << 1.1 << 1.2;
    QTest::newRow("7") << 7.0 << 8.0;
    QTest::newRow("22") << 22.0 << 25.0;
    QTest::newRow("440") << 440.0 << 500.0;
    QTest::newRow("0.07") << 0.07 << 0.08;
    QTest::newRow("8001") << 8001.0 << 10000.0;
  }
  void roundUpToARoundNumber() {
    QFETCH(double, v);
    QFETCH(double, up);
    QVERIFY2(std::abs(roundUp(v) - up) < 1e-9, qPrintable(QString::number(roundUp(v))));
  }

  // The time range picks the last 1, 5 or 15 minutes; the split draws one line per model,
  // tier or rule (only those that counted something), following the filter.
  void timeRangeAndPerModelAndTierLines_data() {
    QTest::addColumn<int>("range");
    QTest::addColumn<int>("split");
    QTest::addColumn<QString>("tier");
    QTest::addColumn<QString>("lines");  // allowed chart's curves: name=allowed in the last second
    QTest::newRow("all, 15 min") << 900 << int(SplitBy::kNone) << ""
                                 << "allowed=13";
    QTest::newRow("per model, 1 min") << 60 << int(SplitBy::kResource) << ""
                                      << "generate=1,predict=12";
    QTest::newRow("per tier, 5 min") << 300 << int(SplitBy::kTier) << ""
                                     << "free=3,premium=10";
    QTest::newRow("per rule") << 60 << int(SplitBy::kRule) << ""
                              << "per_minute=12,tokens=1";
    QTest::newRow("per model, premium only") << 60 << int(SplitBy::kResource) << "premium"
                                             << "predict=10";
  }
  void timeRangeAndPerModelAndTierLines() {
    QFETCH(int, range);
    QFETCH(int, split);
    QFETCH(QString, tier);
    QFETCH(QString, lines);
    LiveStats live;
    ingest(live, statsReply(kT, 900,
                            {{"predict", "free", "per_minute", constant(2), constant(1)},
                             {"predict", "premium", "per_minute", constant(10), constant(0)},
                             {"generate", "free", "tokens", constant(1), constant(0)},
                             {"idle", "free", "per_minute", constant(0), constant(0)}}));
    live.setFilter(QString(), tier);
    live.setRange(range);
    live.setSplit(static_cast<SplitBy>(split));
    const LiveCharts charts = live.charts();
    QCOMPARE(charts.allowed.x.size(), size_t(range));
    QCOMPARE(charts.allowed.x.front(), kT - range + 1);
    QCOMPARE(charts.allowed.x.back(), kT);
    QStringList got;
    for (const auto& c : charts.allowed.curves)
      got << QStringLiteral("%1=%2").arg(c.name).arg(c.y.back());
    QCOMPARE(got.join(QLatin1Char(',')), lines);
    // The blocked chart has the same lines (plus the shadow line when not split).
    QCOMPARE(charts.blocked.curves.size(),
             charts.allowed.curves.size() + (split == int(SplitBy::kNone) ? 1 : 0));
  }

  // With more groups than lines, the busiest have their own and the rest are summed.
  void aSplitShowsTheBusiestAndSumsTheRest() {
    LiveStats live;
    std::vector<Series> series;
    for (uint32_t i = 1; i <= 8; ++i)
      series.push_back({QStringLiteral("m%1").arg(i), "free", "r", constant(i), constant(0)});
    ingest(live, statsReply(kT, 60, series));
    live.setRange(60);
    live.setSplit(SplitBy::kResource);
    const ChartData c = live.charts().allowed;
    QCOMPARE(c.curves.size(), size_t(kMaxSplitLines));
    QStringList names;
    for (const auto& curve : c.curves) names << curve.name;
    QCOMPARE(names, (QStringList{"m8", "m7", "m6", "m5", "m4", "others"}));
    QCOMPARE(c.curves.back().y.back(), 1.0 + 2 + 3);
  }

  // A denial is never drawn as nothing: in the blocked charts (per second and %) every value
  // above 0 is drawn at least kMinVisibleBlockedShare of the axis high and says so on hover;
  // values above the axis are drawn at its top and said to be above it; 0 stays 0.
  void aDenialIsNeverDrawnAsNothing_data() {
    QTest::addColumn<int>("range");
    QTest::addColumn<bool>("splitByModel");
    QTest::addColumn<bool>("clip");
    QTest::addColumn<int>("raisedPerSecond");  // points drawn raised in blocked per second
    QTest::addColumn<int>("raisedPercent");    // ... in blocked %
    QTest::addColumn<bool>("clipped");
    // predict: a burst of 4000 denials at kT-10 and one denial at kT-30, nothing allowed;
    // generate: 5000 allowed a second, and 1 blocked in each of kT-40..kT-35. So 7 seconds
    // hold a single denial (0.02 % of that second's decisions).
    // In one minute the 7 single denials make the typical level: the burst is clipped at 5/s,
    // and the 0.02 % seconds are raised on a blocked-% axis of 1 % (the burst's 44 % clipped).
    QTest::newRow("1 minute") << 60 << false << true << 0 << 7 << true;
    // In 15 minutes the typical level is 0: the axis reaches 4000/s and the 7 single denials
    // would be 1/4000 of it: raised. Per 15-second bucket they are 7 of 75 007 on a 6 % axis.
    QTest::newRow("15 minutes") << 900 << false << true << 7 << 1 << false;
    QTest::newRow("15 minutes per model") << 900 << true << true << 7 << 1 << false;
    // Clipping off: the axis fits the burst in both charts, so every single denial is raised.
    QTest::newRow("1 minute, clipping off") << 60 << false << false << 7 << 7 << false;
  }

  void aDenialIsNeverDrawnAsNothing() {
    QFETCH(int, range);
    QFETCH(bool, splitByModel);
    QFETCH(bool, clip);
    QFETCH(int, raisedPerSecond);
    QFETCH(int, raisedPercent);
    QFETCH(bool, clipped);
    LiveStats live;
    ingest(live,
           statsReply(kT, 900,
                      {{"predict", "free", "per_minute", constant(0),
                        [](int64_t s) { return s == kT - 10   ? 4000u
                                               : s == kT - 30 ? 1u
                                                              : 0u; }},
                       {"generate", "free", "tokens", constant(5000),
                        [](int64_t s) { return s >= kT - 40 && s <= kT - 35 ? 1u : 0u; }}}));
    live.setRange(range);
    live.setClipBursts(clip);
    if (splitByModel) live.setSplit(SplitBy::kResource);
    const LiveCharts charts = live.charts();
    const auto check = [&](const ChartData& d, int expectRaised) {
      int raised = 0, nonZero = 0;
      for (const auto& curve : d.curves) {
        for (size_t i = 0; i < d.x.size(); ++i) {
          const double v = curve.y[i];
          if (std::isnan(v)) continue;
          const double drawn = d.drawnY(curve, i);
          if (v == 0) {
            QCOMPARE(drawn, 0.0);
            continue;
          }
          ++nonZero;
          QVERIFY2(drawn >= kMinVisibleBlockedShare * d.scale.top,
                   qPrintable(QStringLiteral("%1 at %2 drawn at %3 of %4")
                                  .arg(curve.name)
                                  .arg(clock(d.x[i]))
                                  .arg(drawn)
                                  .arg(d.scale.top)));
          QVERIFY(drawn <= d.scale.top);
          if (d.raised(curve, i)) {
            ++raised;
            QVERIFY(d.hoverText(static_cast<int>(i)).contains(QStringLiteral("drawn raised")));
          }
          if (v > d.scale.top)
            QVERIFY(d.hoverText(static_cast<int>(i)).contains(QStringLiteral("above the axis")));
        }
      }
      QVERIFY(nonZero > 0);
      QCOMPARE(raised, expectRaised);
    };
    check(charts.blocked, raisedPerSecond);
    check(charts.blockedPercent, raisedPercent);
    QCOMPARE(charts.blocked.scale.clipped, clipped);
    // Allowed traffic is drawn as it is: no minimum there.
    QCOMPARE(charts.allowed.minVisibleShare, 0.0);
  }

  // The widget draws the raised points where drawnY says and marks them with dots; a clipped
  // blocked burst is drawn at the top and marked with a triangle.
  void chartViewRaisesSmallDenialsAndMarksClippedOnes() {
    LiveStats live;
    ingest(live,
           statsReply(kT, 900, {{"predict", "free", "per_minute", constant(100), [](int64_t s) {
                                   return s == kT - 10 ? 5000u : s == kT - 20 ? 0u : 10u;
                                 }}}));
    live.setRange(60);
    LiveCharts charts = live.charts();
    LiveChartView view(QStringLiteral("Blocked per second"), QStringLiteral("per second"));
    view.resize(600, 300);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    const auto marks = [&](const QString& name) -> QList<QPointF> {
      for (QAbstractSeries* s : view.chart()->series())
        if (s->name() == name && s->isVisible()) return static_cast<QScatterSeries*>(s)->points();
      return {};
    };
    // A clipped burst: the triangle at the axis' top.
    view.setData(charts.blocked, {QPen(Qt::red)}, -1);
    QVERIFY(charts.blocked.scale.clipped);
    const QList<QPointF> clippedMarks = marks(QStringLiteral("above the axis"));
    QCOMPARE(clippedMarks.size(), 1);
    QCOMPARE(clippedMarks.front().y(), charts.blocked.scale.top);
    QVERIFY(marks(QStringLiteral("too few to see: raised")).isEmpty());
    // One denial under an axis of thousands (clipping off): raised and marked with a dot.
    ingest(live,
           statsReply(kT + 2, 1, {{"predict", "free", "per_minute", constant(0), constant(1)}}));
    live.setClipBursts(false);
    charts = live.charts();
    const double top = charts.blocked.scale.top;
    QVERIFY2(top >= 5000 && !charts.blocked.scale.clipped, qPrintable(QString::number(top)));
    view.setData(charts.blocked, {QPen(Qt::red)}, -1);
    const QList<QPointF> dots = marks(QStringLiteral("too few to see: raised"));
    QVERIFY(!dots.isEmpty());
    bool seenTheLastDenial = false;
    for (const QPointF& p : dots) {
      QCOMPARE(p.y(), kMinVisibleBlockedShare * top);
      seenTheLastDenial = seenTheLastDenial || p.x() == (kT + 2) * 1000.0;
    }
    QVERIFY(seenTheLastDenial);
    // The line itself goes up there (the first series is the blocked curve's first run).
    bool lineRaised = false;
    for (QAbstractSeries* s : view.chart()->series())
      if (auto* line = qobject_cast<QLineSeries*>(s);
          line && s->name() == QStringLiteral("blocked"))
        for (const QPointF& p : line->points())
          lineRaised = lineRaised || (p.x() == (kT + 2) * 1000.0 && p.y() > 0);
    QVERIFY(lineRaised);
  }

  // Blocked % is blocked / (allowed + blocked) per bucket of range/60 seconds; a bucket with
  // nothing decided has no value (not 0 %), one no engine reported is "no data".
  void blockedPercentPerBucket_data() {
    QTest::addColumn<int>("range");
    QTest::addColumn<int>("step");
    QTest::addColumn<double>("last");  // the last bucket's %
    QTest::addColumn<QString>("detail");
    QTest::newRow("1 min: per second") << 60 << 1 << 25.0 << "1 of 4";
    QTest::newRow("5 min: per 5 s") << 300 << 5 << 25.0 << "5 of 20";
    QTest::newRow("15 min: per 15 s") << 900 << 15 << 25.0 << "15 of 60";
  }
  void blockedPercentPerBucket() {
    QFETCH(int, range);
    QFETCH(int, step);
    QFETCH(double, last);
    QFETCH(QString, detail);
    LiveStats live;
    // 3 allowed and 1 blocked a second, except a silent minute 10 minutes ago.
    auto quiet = [](int64_t sec) { return sec > kT - 660 && sec <= kT - 600; };
    ingest(live, statsReply(kT, 900,
                            {{"predict", "free", "per_minute",
                              [&](int64_t s) { return quiet(s) ? 0u : 3u; },
                              [&](int64_t s) { return quiet(s) ? 0u : 1u; }}}));
    live.markUnreachable(kT + 1);  // the newest second: no engine reported it
    live.setRange(range);
    const ChartData pct = live.charts().blockedPercent;
    QCOMPARE(pct.step, step);
    QCOMPARE(pct.x.size(), size_t(60));
    QCOMPARE(pct.x.front(), kT + 1 - range + 1);
    // The last bucket holds the unreachable second: its known seconds count.
    QCOMPARE(pct.curves[0].y.back(), step == 1 ? std::nan("") : last);
    if (step == 1) {
      QVERIFY(std::isnan(pct.curves[0].y.back()));
      QVERIFY(!pct.known.back());
      QCOMPARE(pct.curves[0].y[58], last);
      QCOMPARE(pct.curves[0].detail[58], detail);
    } else {
      QVERIFY(pct.known.back());
      QCOMPARE(pct.curves[0].detail.back(),
               QStringLiteral("%1 of %2").arg(step - 1).arg((step - 1) * 4));
    }
    if (range == 900) {
      // The silent minute: no value in its buckets, yet known (the engine reported zeros).
      const int i = pct.indexAt(kT - 630);
      QVERIFY(i >= 0);
      QVERIFY(pct.known[static_cast<size_t>(i)]);
      QVERIFY(std::isnan(pct.curves[0].y[static_cast<size_t>(i)]));
    }
  }

  // Latency over time: each poll's difference of the engine's cumulative histogram; a first
  // reply, a restart or counts that went down only set the baseline.
  void latencyOverTimeFromHistogramDifferences() {
    LiveStats live;
    const std::vector<Series> none;
    // Bucket i holds decisions of at most 2^i - 1 ns.
    ingest(live, statsReply(kT, 900, none, "a", {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0}));
    QVERIFY(live.latency().samples().empty());
    // In the next second: 98 decisions of <= 1023 ns and 2 of <= 8191 ns.
    ingest(live, statsReply(kT + 1, 3, none, "a", {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 98, 100, 0, 2}));
    QCOMPARE(live.latency().samples().size(), size_t(1));
    const auto s = live.latency().samples().back();
    QCOMPARE(s.from, kT + 1);
    QCOMPARE(s.to, kT + 1);
    QCOMPARE(s.decisions, uint64_t(100));
    QCOMPARE(s.p50Ns, uint64_t(1023));
    QCOMPARE(s.p99Ns, uint64_t(8191));
    // Another reply in the same second: skipped, the next one covers it.
    ingest(live, statsReply(kT + 1, 3, none, "a", {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 99, 100, 0, 2}));
    QCOMPARE(live.latency().samples().size(), size_t(1));
    // A 4-second pause: one sample spans it.
    ingest(live, statsReply(kT + 5, 6, none, "a", {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 98, 110, 0, 2}));
    QCOMPARE(live.latency().samples().size(), size_t(2));
    QCOMPARE(live.latency().samples().back().from, kT + 2);
    QCOMPARE(live.latency().samples().back().p50Ns, uint64_t(2047));
    // A restart: the new engine's counts are its own; only a baseline.
    ingest(live, statsReply(kT + 6, 3, none, "b", {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0}));
    QCOMPARE(live.latency().samples().size(), size_t(2));
    ingest(live, statsReply(kT + 7, 3, none, "b", {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0}));
    QCOMPARE(live.latency().samples().size(), size_t(3));
    QCOMPARE(live.latency().samples().back().decisions, uint64_t(0));

    // The chart: p50/p99 in µs per second; no data before the first sample; no value in a
    // second without decisions.
    live.setRange(60);
    const ChartData lat = live.charts().latency;
    QCOMPARE(lat.x.back(), kT + 7);
    QCOMPARE(lat.curves.size(), size_t(2));
    const size_t at1 = static_cast<size_t>(lat.indexAt(kT + 1));
    QCOMPARE(lat.curves[0].y[at1], 1.023);
    QCOMPARE(lat.curves[1].y[at1], 8.191);
    QVERIFY(!lat.known[static_cast<size_t>(lat.indexAt(kT))]);
    QVERIFY(lat.known[static_cast<size_t>(lat.indexAt(kT + 3))]);
    QCOMPARE(lat.curves[0].y[static_cast<size_t>(lat.indexAt(kT + 3))], 2.047);
    QVERIFY(!lat.known[static_cast<size_t>(lat.indexAt(kT + 6))]);  // the restart's baseline
    QVERIFY(std::isnan(lat.curves[0].y.back()));
    QVERIFY(lat.known.back());
    QVERIFY(lat.hoverText(lat.indexAt(kT + 3)).contains(QStringLiteral("10 decisions in")));
  }

  // Hovering shows the time (a range for buckets) and every line's value; time no engine
  // reported says so; a clipped burst says it is above the axis.
  void hoverShowsTimeAndValues() {
    LiveStats live;
    ingest(live, statsReply(kT, 900,
                            {{"predict", "free", "per_minute",
                              [](int64_t s) { return s == kT - 10 ? 400u : 10u; }, constant(2)}}));
    live.markUnreachable(kT + 1);
    live.setRange(60);
    const LiveCharts charts = live.charts();
    const ChartData& a = charts.allowed;
    QVERIFY(a.scale.clipped);
    QCOMPARE(a.scale.peak, 400.0);
    QCOMPARE(a.hoverText(a.indexAt(kT - 11)), clock(kT - 11) + "\nallowed: 10/s");
    QCOMPARE(a.hoverText(a.indexAt(kT - 10)), clock(kT - 10) + "\nallowed: 400/s, above the axis");
    QCOMPARE(a.hoverText(a.indexAt(kT + 1)), clock(kT + 1) + "\nno data");
    QCOMPARE(charts.blocked.hoverText(charts.blocked.indexAt(kT)),
             clock(kT) + "\nblocked: 2/s\nwould block (shadow): 0/s");
    live.setRange(300);
    const ChartData pct = live.charts().blockedPercent;
    const int i = pct.indexAt(kT - 20);
    QCOMPARE(pct.hoverText(i), QStringLiteral("%1–%2\nblocked: 16.7 % (10 of 60)")
                                   .arg(clock(pct.x[static_cast<size_t>(i)]),
                                        clock(pct.x[static_cast<size_t>(i)] + 4)));
    QCOMPARE(a.indexAt(kT - 60), -1);
  }

  // The chart widget draws what the model computed: its axis is the scale's top, bursts are
  // marked, and the mouse over a point shows that point's hover text in the chart.
  void chartViewShowsTheScaleAndHoverValues() {
    LiveStats live;
    ingest(live, statsReply(kT, 900,
                            {{"predict", "free", "per_minute",
                              [](int64_t s) { return s == kT - 10 ? 400u : 10u; }, constant(0)}}));
    live.setRange(60);
    LiveChartView view(QStringLiteral("Allowed per second"), QStringLiteral("per second"));
    view.resize(600, 300);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.setData(live.charts().allowed, {QPen(Qt::green)}, -1);
    auto* y = qobject_cast<QValueAxis*>(view.chart()->axes(Qt::Vertical).front());
    QCOMPARE(y->max(), 20.0);
    QVERIFY(view.chart()->title().contains(QStringLiteral("peak 400/s above the axis")));
    QCoreApplication::processEvents();
    const ChartData& d = view.data();
    const size_t i = static_cast<size_t>(d.indexAt(kT - 30));
    const QPointF inChart = view.chart()->mapToPosition(QPointF(d.x[i] * 1000.0, 5));
    const QPoint pos = view.mapFromScene(view.chart()->mapToScene(inChart));
    QCOMPARE(view.hoverTextAt(pos), d.hoverText(static_cast<int>(i)));
    QTest::mouseMove(view.viewport(), pos);
    QCoreApplication::processEvents();
    bool shown = false;
    for (QGraphicsItem* item : view.scene()->items())
      if (auto* text = dynamic_cast<QGraphicsSimpleTextItem*>(item))
        shown = shown || (text->isVisible() && text->text() == d.hoverText(static_cast<int>(i)));
    QVERIFY(shown);
    QCOMPARE(view.hoverTextAt(QPoint(1, 1)), QString());  // outside the plot
    // Clipping off: the whole burst fits.
    live.setClipBursts(false);
    view.setData(live.charts().allowed, {QPen(Qt::green)}, -1);
    QCOMPARE(y->max(), 500.0);
  }

  // The tab's choices reach the model: range, split, clipping.
  void liveTabChoicesDriveTheCharts() {
    LiveStats live;
    AdminClient neverConnected;
    StatsPoller poller(&neverConnected, &live);
    LiveTab tab(&live, &poller);
    tab.resize(1100, 700);
    tab.show();
    QVERIFY(QTest::qWaitForWindowExposed(&tab));
    ingest(live, statsReply(kT, 900,
                            {{"predict", "free", "per_minute", constant(3), constant(1)},
                             {"generate", "premium", "tokens", constant(1), constant(0)}}));
    QCOMPARE(tab.allowedChart()->data().x.size(), size_t(900));
    QComboBox* range = nullptr;
    QComboBox* split = nullptr;
    for (auto* box : tab.findChildren<QComboBox*>()) {
      if (box->findText(QStringLiteral("last minute")) >= 0) range = box;
      if (box->findText(QStringLiteral("per tier")) >= 0) split = box;
    }
    QVERIFY(range && split);
    range->setCurrentIndex(range->findText(QStringLiteral("last minute")));
    QCOMPARE(live.chartOptions().rangeSeconds, 60);
    QCOMPARE(tab.allowedChart()->data().x.size(), size_t(60));
    split->setCurrentIndex(split->findText(QStringLiteral("per tier")));
    QCOMPARE(tab.blockedChart()->data().curves.size(), size_t(2));
    QCOMPARE(tab.blockedPercentChart()->data().curves[0].name, QStringLiteral("free"));
    QCOMPARE(tab.blockedPercentChart()->data().curves[0].y.back(), 25.0);
    auto* clip = tab.findChild<QCheckBox*>();
    QVERIFY(clip && clip->isChecked());
    clip->setChecked(false);
    QVERIFY(!live.chartOptions().clipBursts);
  }

  // From a blocked subject's row, "Show this model's charts" filters the tab (charts, totals,
  // tables) to the model it was blocked on.
  void aBlockedRowShowsItsModelsCharts() {
    Stats stats;
    auto predict = stats.series("predict", "free", "per_minute");
    auto generate = stats.series("generate", "free", "tokens");
    const int64_t t0 = kT * 1000;
    for (int s = 0; s < 5; ++s) {
      Stats::record(predict.get(), Outcome::kAllowed, t0 + s * 1000);
      Stats::record(generate.get(), Outcome::kDenied, t0 + s * 1000);
    }
    stats.record_blocked("generate", "10.0.0.7", "free", "tokens", t0 + 3000);
    auto snap = parseStatsJson(stats.to_json(t0 + 4000, 900));
    QVERIFY2(snap.ok(), snap.status().message().c_str());
    LiveStats live;
    AdminClient neverConnected;
    StatsPoller poller(&neverConnected, &live);
    LiveTab tab(&live, &poller);
    tab.resize(1100, 700);
    tab.show();
    QVERIFY(QTest::qWaitForWindowExposed(&tab));
    live.ingest(snap.value());
    QCOMPARE(tab.blockedChart()->data().curves.size(), size_t(2));  // blocked, shadow
    QTableView* top = nullptr;
    for (auto* view : tab.findChildren<QTableView*>())
      if (view->model() == live.topModel()) top = view;
    QVERIFY(top != nullptr);
    QCOMPARE(live.topModel()->rowCount(), 1);
    top->setCurrentIndex(live.topModel()->index(0, 0));
    QAction* show = nullptr;
    for (QAction* a : top->actions())
      if (a->text() == QStringLiteral("Show this model's charts")) show = a;
    QVERIFY(show != nullptr);
    QCOMPARE(live.chartOptions().resource, std::string());
    show->trigger();
    QCOMPARE(live.chartOptions().resource, std::string("generate"));
    // predict's allowed requests are no longer in the chart.
    for (double v : tab.allowedChart()->data().curves.front().y) QVERIFY(std::isnan(v) || v == 0);
  }

  // The warm-up overview's rows: the policy's resources with warm-up settings, each with the
  // engine's STATUS said in words.
  void warmupOverviewRows_data() {
    QTest::addColumn<bool>("warming");
    QTest::addColumn<double>("factor");
    QTest::addColumn<qlonglong>("elapsedMs");
    QTest::addColumn<qlonglong>("remainingMs");
    QTest::addColumn<QString>("row");  // state | limits at | elapsed | remaining
    QTest::newRow("warming with a duration")
        << true << 0.2 << 151'000LL << 149'000LL << "warming up|20 %|2 min 31 s|2 min 29 s";
    QTest::newRow("warming until READY")
        << true << 0.5 << 5'000LL << 0LL << "warming up|50 %|5 s|until READY";
    QTest::newRow("a ramp part-way")
        << true << 0.625 << 600'000LL << 600'000LL << "warming up|62.5 %|10 min|10 min";
    QTest::newRow("ready") << false << 1.0 << 0LL << 0LL << "ready|100 %|–|–";
  }
  void warmupOverviewRows() {
    QFETCH(bool, warming);
    QFETCH(double, factor);
    QFETCH(qlonglong, elapsedMs);
    QFETCH(qlonglong, remainingMs);
    QFETCH(QString, row);
    WarmupOverviewModel m;
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    auto policy = parse_policy(R"(version: 1
default_tier: free
tiers: {free: {multiplier: 1}}
resources:
  heavy:
    limits: [{name: m, algorithm: fixed_window, limit: 10, window: 1m}]
    warmup: {factor: 0.2, duration: 5m, start: cold}
  plain:
    limits: [{name: m, algorithm: fixed_window, limit: 10, window: 1m}]
  ramped:
    limits: [{name: m, algorithm: fixed_window, limit: 10, window: 1m}]
    warmup: {factor: 0.25, duration: 20m, ramp: true}
)",
                               "test");
    QVERIFY(policy.ok());
    m.setPolicy(*policy.policy);
    QCOMPARE(m.resources(), (QStringList{"heavy", "ramped"}));
    QCOMPARE(m.index(0, WarmupOverviewModel::kSettings).data().toString(),
             QStringLiteral("20 % for 5 min, starts cold"));
    QCOMPARE(m.index(1, WarmupOverviewModel::kSettings).data().toString(),
             QStringLiteral("25 % for 20 min, ramp"));
    QCOMPARE(m.index(0, WarmupOverviewModel::kState).data().toString(), QStringLiteral("…"));
    WarmupState st;
    st.enabled = true;
    st.warming = warming;
    st.factor = factor;
    st.elapsedMs = elapsedMs;
    st.remainingMs = remainingMs;
    m.setState(QStringLiteral("heavy"), st);
    QStringList got;
    for (int c : {WarmupOverviewModel::kState, WarmupOverviewModel::kLimitsAt,
                  WarmupOverviewModel::kElapsed, WarmupOverviewModel::kRemaining})
      got << m.index(0, c).data().toString();
    QCOMPARE(got.join(QLatin1Char('|')), row);
    QCOMPARE(m.warmingCount(), warming ? 1 : 0);
    m.setError(QStringLiteral("heavy"), QStringLiteral("unknown resource 'heavy'"));
    QCOMPARE(m.index(0, WarmupOverviewModel::kState).data().toString(),
             QStringLiteral("unknown resource 'heavy'"));
    QCOMPARE(m.warmingCount(), 0);
  }

  // Against a real sluiced: the overview lists every model with warm-up, follows START and
  // READY, and re-reads the list when another policy is applied.
  void warmupOverviewFollowsTheEngine() {
    EngineProcess engine;
    QVERIFY2(engine.start(QStringLiteral(R"(version: 1
default_tier: free
tiers: {free: {multiplier: 1}}
resources:
  heavy:
    limits: [{name: m, algorithm: fixed_window, limit: 10, window: 1m}]
    warmup: {factor: 0.2, duration: 5m, start: cold}
  light:
    limits: [{name: m, algorithm: fixed_window, limit: 10, window: 1m}]
    warmup: {factor: 0.5}
  plain:
    limits: [{name: m, algorithm: fixed_window, limit: 10, window: 1m}]
)")),
             qPrintable(engine.error()));
    AdminClient client;
    client.setSocketPath(engine.adminSocket());
    WarmupOverview overview(&client);
    overview.setInterval(100);
    auto* m = overview.model();
    QAbstractItemModelTester tester(m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    client.connectToEngine();
    auto state = [&](int row) {
      return m->index(row, WarmupOverviewModel::kState).data().toString();
    };
    QVERIFY(QTest::qWaitFor([&] { return m->rowCount() == 2 && state(1) == "ready"; }, 5000));
    QCOMPARE(m->resources(), (QStringList{"heavy", "light"}));
    QCOMPARE(state(0), QStringLiteral("warming up"));
    QCOMPARE(m->index(0, WarmupOverviewModel::kLimitsAt).data().toString(), QStringLiteral("20 %"));

    AdminClient admin;
    admin.setSocketPath(engine.adminSocket());
    admin.connectToEngine();
    QVERIFY(QTest::qWaitFor([&] { return admin.state() == AdminClient::State::kConnected; }, 5000));
    admin.send({"SL.WARMUP", "light", "START"}, nullptr, [](const resp::Value&) {});
    admin.send({"SL.WARMUP", "heavy", "READY"}, nullptr, [](const resp::Value&) {});
    QVERIFY(QTest::qWaitFor([&] { return state(0) == "ready" && state(1) == "warming up"; }, 5000));
    QCOMPARE(m->index(1, WarmupOverviewModel::kRemaining).data().toString(),
             QStringLiteral("until READY"));

    // Another policy: `plain` gains a warm-up, `heavy` loses it.
    bool applied = false;
    admin.send({"SL.POLICY", "APPLY", R"(version: 1
default_tier: free
tiers: {free: {multiplier: 1}}
resources:
  light:
    limits: [{name: m, algorithm: fixed_window, limit: 10, window: 1m}]
    warmup: {factor: 0.5}
  plain:
    limits: [{name: m, algorithm: fixed_window, limit: 10, window: 1m}]
    warmup: {factor: 0.1, duration: 1m}
)"},
               nullptr,
               [&](const resp::Value& r) { applied = r.type == resp::Value::Type::kInteger; });
    QVERIFY(QTest::qWaitFor([&] { return applied; }, 5000));
    overview.updateInfo({{"policy_version", "2"}, {"instance", "x"}});
    QVERIFY(QTest::qWaitFor([&] { return m->resources() == QStringList{"light", "plain"}; }, 5000));
    QCOMPARE(m->index(1, WarmupOverviewModel::kSettings).data().toString(),
             QStringLiteral("10 % for 1 min"));
  }
};

QTEST_MAIN(TestAdminLive)
#include "tst_admin_live.moc"
