// sluice-admin's logic without an engine: the item models (each watched by
// QAbstractItemModelTester while it is edited), the draft with undo, rebase after a conflict,
// engine error placement, files, and the live history fed by the engine's own Stats::to_json.
#include <QAbstractItemModelTester>
#include <QComboBox>
#include <QLineEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QTableView>
#include <QTemporaryDir>
#include <QtTest>

#include "core/api_key_model.h"
#include "core/consequences.h"
#include "core/effective_limit_model.h"
#include "core/engine_replies.h"
#include "core/limit_model.h"
#include "core/live_models.h"
#include "core/policy_document.h"
#include "core/resource_model.h"
#include "core/simulation.h"
#include "core/stats_poller.h"
#include "core/tier_model.h"
#include "core/warmup_monitor.h"
#include "core/yaml_locator.h"
#include "sluice/stats.h"
#include "ui/diff_dialog.h"
#include "ui/error_list.h"
#include "ui/main_window.h"
#include "ui/models_tab.h"
#include "ui/settings_tab.h"
#include "ui/tiers_tab.h"

using namespace sluice;
using namespace sluice::admin;

namespace {
const char* kPolicy = R"(version: 1
default_tier: free
tiers:
  free:
    description: Anonymous callers
    multiplier: 1
  premium:
    multiplier: 5
    overrides:
      predict: {limits: {per_minute: 30}}
api_keys:
  premium-user-key-1234: premium
  short: free
resources:
  predict:
    description: one prediction
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}
  generate:
    limits:
      - {name: tokens, algorithm: token_bucket, limit: 1000, window: 1m, burst: 2000, cost: tokens}
      - {name: daily, algorithm: fixed_window, limit: 100000, window: 1d, cost: tokens, shadow: true}
    warmup: {factor: 0.5, duration: 2m}
)";

const QStringList kAlikeKeys{"acme-prod-key", "beta-prod-key", "team-x.label"};

PolicySpec parsed(const char* yaml = kPolicy) {
  auto r = parse_policy(yaml, "test");
  if (!r.ok()) qFatal("test policy does not parse: %s", r.error_text().c_str());
  return *r.policy;
}

// An SL.STATS reply as sluiced sends it (docs/protocol.md), for one series (predict x free x
// per_minute): `deniedAt(second)` denials in each second of the `window` seconds up to `now`,
// `totalDenied` since the engine started `uptime` seconds before `now`.
std::string statsReply(int64_t now, int window, const std::string& instance, int64_t uptime,
                       const std::function<uint32_t(int64_t)>& deniedAt, uint64_t totalDenied) {
  QStringList denied, zeros;
  for (int64_t sec = now - window + 1; sec <= now; ++sec) {
    denied << QString::number(deniedAt(sec));
    zeros << QStringLiteral("0");
  }
  const QString totals =
      QStringLiteral(R"({"allowed":0,"denied":%1,"shadow_denied":0,"storage_errors":0})")
          .arg(totalDenied);
  return QStringLiteral(
             R"({"now_ms":%1,"first_second":%2,"window_seconds":%3,"totals":%4,)"
             R"("series":[{"resource":"predict","tier":"free","rule":"per_minute","totals":%4,)"
             R"("per_second":{"allowed":[%5],"denied":[%6],"shadow_denied":[%5]}}],)"
             R"("top_blocked":[],"server":{"instance":"%7","uptime_s":%8}})")
      .arg(now * 1000 + 400)
      .arg(now - window + 1)
      .arg(window)
      .arg(totals, zeros.join(QLatin1Char(',')), denied.join(QLatin1Char(',')),
           QString::fromStdString(instance))
      .arg(uptime)
      .toStdString();
}

void ingestReply(LiveStats& live, const std::string& reply) {
  auto snapshot = parseStatsJson(reply);
  QVERIFY2(snapshot.ok(), snapshot.status().message().c_str());
  live.ingest(snapshot.value());
}

const LiveHistory::Point& pointAt(const std::vector<LiveHistory::Point>& points, int64_t second) {
  for (const auto& p : points)
    if (p.second == second) return p;
  qFatal("no point for second %lld", static_cast<long long>(second));
}

QModelIndex find(const QAbstractItemModel& m, int column, const QString& text) {
  for (int r = 0; r < m.rowCount(); ++r)
    if (m.index(r, column).data().toString() == text) return m.index(r, column);
  return {};
}
}  // namespace

class TestAdminModels : public QObject {
  Q_OBJECT
 private slots:
  void init() {
    doc_ = std::make_unique<PolicyDocument>();
    doc_->setRunning(parsed(), 7);
  }

  // Tier table: editing the multiplier goes into the draft as one undo step; the tester
  // checks every signal the model sends on the way.
  void tierMultiplierEditIsUndoable() {
    TierTableModel m(doc_.get());
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    const QModelIndex premium = find(m, TierTableModel::kName, QStringLiteral("premium"));
    QVERIFY(premium.isValid());
    const QModelIndex mult = m.index(premium.row(), TierTableModel::kMultiplier);
    QVERIFY(m.setData(mult, QStringLiteral("6"), Qt::EditRole));
    QCOMPARE(findTier(doc_->draft(), "premium")->multiplier, 6.0);
    QVERIFY(doc_->isDirty());
    QCOMPARE(doc_->diff(), QStringList{QStringLiteral("tier premium: multiplier 5 → 6")});
    QCOMPARE(m.data(mult, Qt::DisplayRole).toString(), QStringLiteral("6"));
    doc_->undoStack()->undo();
    QCOMPARE(findTier(doc_->draft(), "premium")->multiplier, 5.0);
    QVERIFY(!doc_->isDirty());
    doc_->undoStack()->redo();
    QCOMPARE(findTier(doc_->draft(), "premium")->multiplier, 6.0);
  }

  void tierEditThatIsNotANumberIsRefused() {
    TierTableModel m(doc_.get());
    QSignalSpy refused(&m, &DraftTableModel::editRefused);
    QVERIFY(
        !m.setData(m.index(0, TierTableModel::kMultiplier), QStringLiteral("five"), Qt::EditRole));
    QCOMPARE(refused.count(), 1);
    QVERIFY(refused.at(0).at(0).toString().contains(QStringLiteral("not a number")));
    QVERIFY(!doc_->isDirty());
  }

  // The Priority column: a whole number is a draft edit (one undo step, in the review's
  // changed settings); one outside -1000..1000 is kept with the validator's message on the
  // cell; text that is not a whole number is refused with a sentence.
  void tierPriorityIsEditedValidatedAndReviewed_data() {
    QTest::addColumn<QString>("text");
    QTest::addColumn<bool>("accepted");
    QTest::addColumn<qlonglong>("stored");
    QTest::addColumn<QString>("error");
    QTest::newRow("raised") << "10" << true << 10LL << "";
    QTest::newRow("negative") << " -5 " << true << -5LL << "";
    QTest::newRow("out of range") << "1001" << true << 1001LL
                                  << "priority must be between -1000 and 1000, got 1001";
    QTest::newRow("not a number") << "high" << false << 0LL << "not a whole number";
    QTest::newRow("a fraction") << "2.5" << false << 0LL << "not a whole number";
  }

  void tierPriorityIsEditedValidatedAndReviewed() {
    QFETCH(QString, text);
    QFETCH(bool, accepted);
    QFETCH(qlonglong, stored);
    QFETCH(QString, error);
    TierTableModel m(doc_.get());
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QSignalSpy refused(&m, &DraftTableModel::editRefused);
    const QModelIndex cell = m.index(
        find(m, TierTableModel::kName, QStringLiteral("premium")).row(), TierTableModel::kPriority);
    QCOMPARE(m.headerData(TierTableModel::kPriority, Qt::Horizontal, Qt::DisplayRole).toString(),
             QStringLiteral("Priority"));
    QCOMPARE(cell.data().toString(), QStringLiteral("0"));
    QVERIFY(m.flags(cell).testFlag(Qt::ItemIsEditable));
    QCOMPARE(m.setData(cell, text, Qt::EditRole), accepted);
    QCOMPARE(findTier(doc_->draft(), "premium")->priority, stored);
    if (!accepted) {
      QCOMPARE(refused.count(), 1);
      QVERIFY2(refused.first().first().toString().contains(error),
               qPrintable(refused.first().first().toString()));
      QVERIFY(!doc_->isDirty());
      return;
    }
    QCOMPARE(cell.data().toString(), QString::number(stored));
    QCOMPARE(cell.data(DraftTableModel::ErrorRole).toString().contains(error), true);
    QCOMPARE(cell.data(DraftTableModel::ErrorRole).isValid(), !error.isEmpty());
    const QString line = QStringLiteral("tier premium: priority 0 → %1").arg(stored);
    QCOMPARE(doc_->diff(), QStringList{line});
    const Consequences c = draftConsequences(doc_->base(), doc_->draft());
    QCOMPARE(c.settings.size(), 1);
    QCOMPARE(c.settings[0].text, line);
    doc_->undoStack()->undo();
    QCOMPARE(findTier(doc_->draft(), "premium")->priority, 0);
    QCOMPARE(cell.data().toString(), QStringLiteral("0"));
  }

  // A multiplier of 0 is a number but not a valid policy: the draft keeps it and the cell
  // carries the validator's message (next to the field).
  void invalidMultiplierIsMarkedOnTheCell() {
    TierTableModel m(doc_.get());
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    const QModelIndex free =
        m.index(find(m, 0, QStringLiteral("free")).row(), TierTableModel::kMultiplier);
    QVERIFY(m.setData(free, 0, Qt::EditRole));
    const QString error = m.data(free, DraftTableModel::ErrorRole).toString();
    QVERIFY2(error.contains(QStringLiteral("multiplier")), qPrintable(error));
    QVERIFY(m.data(free, Qt::BackgroundRole).isValid());
    QVERIFY(!m.data(m.index(free.row(), TierTableModel::kDescription), DraftTableModel::ErrorRole)
                 .isValid());
  }

  void addRenameRemoveTiers() {
    TierTableModel m(doc_.get());
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    const int row = m.addTier(QStringLiteral("gold"));
    QCOMPARE(m.tierAt(row), QStringLiteral("gold"));
    QCOMPARE(m.rowCount(), 3);
    // Rename carries API keys and the default along.
    const int premium = find(m, 0, QStringLiteral("premium")).row();
    QVERIFY(
        m.setData(m.index(premium, TierTableModel::kName), QStringLiteral("pro"), Qt::EditRole));
    QCOMPARE(QString::fromStdString(doc_->draft().api_keys.at("premium-user-key-1234")),
             QStringLiteral("pro"));
    // Refused while a key uses it, with a reason naming the masked key.
    QSignalSpy refused(&m, &DraftTableModel::editRefused);
    QVERIFY(!m.removeTier(find(m, 0, QStringLiteral("pro")).row()));
    QVERIFY(refused.at(0).at(0).toString().contains(QStringLiteral("...1234")));
    QVERIFY(!refused.at(0).at(0).toString().contains(QStringLiteral("premium-user-key")));
    // Refused while it is the default tier.
    QVERIFY(doc_->edit(QStringLiteral("k"), edits::removeApiKey("short")).ok());
    QVERIFY(!m.removeTier(find(m, 0, QStringLiteral("free")).row()));
    QVERIFY(refused.at(1).at(0).toString().contains(QStringLiteral("default")));
    QVERIFY(m.removeTier(find(m, 0, QStringLiteral("gold")).row()));
    QCOMPARE(m.rowCount(), 2);
  }

  void defaultTierCheckbox() {
    TierTableModel m(doc_.get());
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    const int premium = find(m, 0, QStringLiteral("premium")).row();
    QVERIFY(m.setData(m.index(premium, TierTableModel::kDefault), Qt::Checked, Qt::CheckStateRole));
    QCOMPARE(doc_->draft().default_tier, std::string("premium"));
    QCOMPARE(m.index(premium, TierTableModel::kDefault).data(Qt::CheckStateRole).toInt(),
             int(Qt::Checked));
  }

  void resourceAndLimitModels() {
    ResourceListModel resources(doc_.get());
    LimitTableModel limits(doc_.get());
    QAbstractItemModelTester t1(&resources, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QAbstractItemModelTester t2(&limits, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QCOMPARE(resources.rowCount(), 2);
    limits.setResource(QStringLiteral("generate"));
    QCOMPARE(limits.rowCount(), 2);
    QCOMPARE(limits.index(0, LimitTableModel::kAlgorithm).data().toString(),
             QStringLiteral("token_bucket"));
    QCOMPARE(limits.index(0, LimitTableModel::kBurst).data().toLongLong(), 2000);
    QCOMPARE(limits.index(1, LimitTableModel::kShadow).data(Qt::CheckStateRole).toInt(),
             int(Qt::Checked));
    QVERIFY(limits.setData(limits.index(0, LimitTableModel::kWindow), QStringLiteral("30s"),
                           Qt::EditRole));
    QCOMPARE(findResource(doc_->draft(), "generate")->limits[0].window_ms, 30000);
    QSignalSpy refused(&limits, &DraftTableModel::editRefused);
    QVERIFY(!limits.setData(limits.index(0, LimitTableModel::kWindow), QStringLiteral("soon"),
                            Qt::EditRole));
    QVERIFY(!limits.setData(limits.index(0, LimitTableModel::kAlgorithm), QStringLiteral("leaky"),
                            Qt::EditRole));
    QCOMPARE(refused.count(), 2);
    // A calendar window is typed by name and shown with its zone; a duration ends it.
    limits.setResource(QStringLiteral("predict"));
    const QModelIndex window = limits.index(0, LimitTableModel::kWindow);
    QVERIFY(limits.setData(window, QStringLiteral("calendar_month"), Qt::EditRole));
    QCOMPARE(findResource(doc_->draft(), "predict")->limits[0].calendar, CalendarPeriod::kMonth);
    QCOMPARE(window.data(Qt::DisplayRole).toString(), QStringLiteral("calendar_month (UTC)"));
    QCOMPARE(window.data(Qt::EditRole).toString(), QStringLiteral("calendar_month"));
    QVERIFY(validate_policy(doc_->draft()).empty());
    QVERIFY(limits.setData(window, QStringLiteral("1m"), Qt::EditRole));
    QCOMPARE(findResource(doc_->draft(), "predict")->limits[0].calendar, CalendarPeriod::kNone);
    QCOMPARE(findResource(doc_->draft(), "predict")->limits[0].window_ms, 60000);
    // Renaming a limit keeps the tier overrides that name it.
    QVERIFY(limits.setData(limits.index(0, LimitTableModel::kName), QStringLiteral("per_min"),
                           Qt::EditRole));
    QCOMPARE(findTier(doc_->draft(), "premium")->overrides.at("predict").limits.at("per_min"), 30);
    QVERIFY(validate_policy(doc_->draft()).empty());
    limits.setResource(QStringLiteral("gone"));
    QCOMPARE(limits.rowCount(), 0);
  }

  // Models and limits are added, renamed, reordered and removed through the models, each one
  // undoable step; overrides follow renames and go with what they name; refusals say why.
  void structuralEdits() {
    ResourceListModel resources(doc_.get());
    LimitTableModel limits(doc_.get());
    QAbstractItemModelTester t1(&resources, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QAbstractItemModelTester t2(&limits, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QSignalSpy refused(&resources, &DraftTableModel::editRefused);
    const int before = doc_->undoStack()->count();

    const int row = resources.addResource();
    QCOMPARE(resources.resourceAt(row), QStringLiteral("model-3"));
    QVERIFY(resources.setData(resources.index(row, ResourceListModel::kName),
                              QStringLiteral("models/new"), Qt::EditRole));
    QVERIFY(resources.setData(resources.index(resources.rowOf(QStringLiteral("models/new")),
                                              ResourceListModel::kDescription),
                              QStringLiteral("a new model"), Qt::EditRole));
    QCOMPARE(resources.addResource(QStringLiteral("models/new")), -1);  // taken
    QCOMPARE(refused.count(), 1);
    QVERIFY(refused.first().first().toString().contains(QStringLiteral("already exists")));

    limits.setResource(QStringLiteral("models/new"));
    QCOMPARE(limits.rowCount(), 1);
    QCOMPARE(limits.addLimit(), 1);
    QCOMPARE(limits.index(1, LimitTableModel::kName).data().toString(), QStringLiteral("limit_2"));
    QVERIFY(limits.setData(limits.index(1, LimitTableModel::kAlgorithm),
                           QStringLiteral("concurrency"), Qt::EditRole));
    QVERIFY(limits.moveLimit(1, -1));
    QCOMPARE(limits.index(0, LimitTableModel::kName).data().toString(), QStringLiteral("limit_2"));
    QVERIFY(!limits.moveLimit(0, -1));  // already first
    const ResourceSpec* added = findResource(doc_->draft(), "models/new");
    QVERIFY(added != nullptr);
    QCOMPARE(added->description, std::string("a new model"));
    QCOMPARE(added->limits.size(), size_t{2});
    QCOMPARE(added->limits[0].algorithm, SLUICE_ALG_CONCURRENCY);
    QVERIFY(validate_policy(doc_->draft()).empty());

    // Renaming predict carries premium's override; removing its only limit is refused.
    QVERIFY(resources.setData(
        resources.index(resources.rowOf(QStringLiteral("predict")), ResourceListModel::kName),
        QStringLiteral("predict2"), Qt::EditRole));
    QCOMPARE(findTier(doc_->draft(), "premium")->overrides.count("predict2"), size_t{1});
    QCOMPARE(findTier(doc_->draft(), "premium")->overrides.count("predict"), size_t{0});
    limits.setResource(QStringLiteral("predict2"));
    QSignalSpy limitRefused(&limits, &DraftTableModel::editRefused);
    QVERIFY(!limits.removeLimit(0));
    QVERIFY(limitRefused.first().first().toString().contains(QStringLiteral("last limit")));
    // Removing the model takes the override with it; the draft stays valid.
    QVERIFY(resources.removeResource(resources.rowOf(QStringLiteral("predict2"))));
    QCOMPARE(findTier(doc_->draft(), "premium")->overrides.size(), size_t{0});
    QVERIFY(validate_policy(doc_->draft()).empty());

    // Every step was one undo entry; undoing them all gives the policy back.
    QCOMPARE(doc_->undoStack()->count(), before + 8);
    while (doc_->undoStack()->index() > before) doc_->undoStack()->undo();
    QCOMPARE(doc_->draft(), parsed());
  }

  // The grid shows what the engine would enforce (compiled with the engine's own code) and
  // edits overrides in place.
  void effectiveLimitGrid() {
    EffectiveLimitModel m(doc_.get());
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    m.setResource(QStringLiteral("predict"));
    QCOMPARE(m.rowCount(), 2);
    QCOMPARE(m.columnCount(), 1);
    QCOMPARE(m.index(0, 0).data().toString(), QStringLiteral("10 (×1)"));
    QCOMPARE(m.index(1, 0).data().toString(), QStringLiteral("30 (override)"));
    QVERIFY(m.index(1, 0).data(EffectiveLimitModel::IsOverrideRole).toBool());
    QVERIFY(m.setData(m.index(1, 0), QString(), Qt::EditRole));  // clear -> multiplier
    QCOMPARE(m.index(1, 0).data().toString(), QStringLiteral("50 (×5)"));
    QVERIFY(findTier(doc_->draft(), "premium")->overrides.empty());
    QVERIFY(m.setData(m.index(0, 0), QStringLiteral("3"), Qt::EditRole));
    QCOMPARE(m.index(0, 0).data().toString(), QStringLiteral("3 (override)"));
    m.setResource(QStringLiteral("generate"));
    QCOMPARE(m.columnCount(), 2);
    QCOMPARE(m.index(1, 0).data().toString(), QStringLiteral("5000 (×5)"));
    // A draft that does not validate shows no numbers, and says why.
    TierTableModel tiers(doc_.get());
    QVERIFY(tiers.setData(tiers.index(0, TierTableModel::kMultiplier), 0, Qt::EditRole));
    QVERIFY(!m.unavailableReason().isEmpty());
    QCOMPARE(m.index(0, 0).data().toString(), QStringLiteral("?"));
  }

  // A budget (cost: usd) reads and is typed in dollars, in the limit table and in the grid.
  void budgetsAreInDollars() {
    LimitTableModel limits(doc_.get());
    EffectiveLimitModel grid(doc_.get());
    limits.setResource(QStringLiteral("predict"));
    QVERIFY(limits.setData(limits.index(0, LimitTableModel::kUnit), QStringLiteral("usd"),
                           Qt::EditRole));
    QVERIFY(limits.setData(limits.index(0, LimitTableModel::kLimit), QStringLiteral("12.5"),
                           Qt::EditRole));
    QCOMPARE(findResource(doc_->draft(), "predict")->limits[0].limit, int64_t{12'500'000});
    QCOMPARE(limits.index(0, LimitTableModel::kLimit).data().toString(), QStringLiteral("$12.5"));
    QCOMPARE(limits.index(0, LimitTableModel::kLimit).data(Qt::EditRole).toString(),
             QStringLiteral("12.5"));
    QSignalSpy refused(&limits, &DraftTableModel::editRefused);
    QVERIFY(!limits.setData(limits.index(0, LimitTableModel::kLimit), QStringLiteral("0.0000001"),
                            Qt::EditRole));
    QCOMPARE(refused.count(), 1);
    QVERIFY(refused.first().first().toString().contains(QStringLiteral("dollars")));
    // A budget needs prices; with them, the grid shows dollars and takes them.
    QVERIFY(doc_->edit(QStringLiteral("price predict's requests"),
                       [](PolicySpec& p) {
                         for (auto& r : p.resources) {
                           if (r.name != "predict") continue;
                           r.prices["requests"] =
                               1'000'000;  // a micro-dollar a request (pico-dollars)
                           r.limits[0].algorithm = SLUICE_ALG_FIXED_WINDOW;
                         }
                         return Status::Ok();
                       })
                .ok());
    grid.setResource(QStringLiteral("predict"));
    QCOMPARE(grid.index(0, 0).data().toString(), QStringLiteral("$12.5 (×1)"));
    QVERIFY(grid.setData(grid.index(1, 0), QStringLiteral("$40"), Qt::EditRole));
    QCOMPARE(findTier(doc_->draft(), "premium")->overrides.at("predict").limits.at("per_minute"),
             int64_t{40'000'000});
    QCOMPARE(grid.index(1, 0).data().toString(), QStringLiteral("$40 (override)"));
  }

  // The review's consequences: every model × tier × limit whose effective limit changes, both
  // sides compiled by the engine's CompiledPolicy. The base is kPolicy plus `extra` (more
  // resources), the draft the base with `from` replaced by `to`.
  void reviewShowsEffectiveLimitChanges_data() {
    QTest::addColumn<QString>("extra");
    QTest::addColumn<QString>("from");
    QTest::addColumn<QString>("to");
    QTest::addColumn<QStringList>("rows");
    const auto row = [](const char* name, const char* extra, const char* from, const char* to,
                        const QStringList& rows) {
      QTest::newRow(name) << QString::fromUtf8(extra) << QString::fromUtf8(from)
                          << QString::fromUtf8(to) << rows;
    };
    // premium ×5 -> ×8; predict keeps premium's absolute override of 30.
    row("multiplier", "", "multiplier: 5", "multiplier: 8",
        {"generate · premium · tokens: 5000 → 8000",
         "generate · premium · daily: 500000 → 800000"});
    row("absolute override", "", "per_minute: 30}", "per_minute: 50}",
        {"predict · premium · per_minute: 30 → 50"});
    row("new model", "", "  generate:\n",
        "  embed:\n    limits:\n      - {name: per_minute, algorithm: fixed_window, limit: 20, "
        "window: 1m}\n  generate:\n",
        {"embed · free · per_minute: — → 20", "embed · premium · per_minute: — → 100"});
    row("removed limit", "",
        "      - {name: daily, algorithm: fixed_window, limit: 100000, window: 1d, cost: tokens, "
        "shadow: true}\n",
        "", {"generate · free · daily: 100000 → —", "generate · premium · daily: 500000 → —"});
    row("tier made unlimited", "", "multiplier: 5", "multiplier: 5\n    unlimited: true",
        {"predict · premium · per_minute: 30 → unlimited",
         "generate · premium · tokens: 5000 → unlimited",
         "generate · premium · daily: 500000 → unlimited"});
    row("usd in dollars",
        "  chat:\n    prices: {tokens: 0.00001}\n    limits:\n      - {name: budget, algorithm: "
        "fixed_window, limit: 25, window: 1d, cost: usd}\n",
        "limit: 25,", "limit: 30.5,",
        {"chat · free · budget: $25 → $30.5", "chat · premium · budget: $125 → $152.5"});
    row("description only", "", "one prediction", "one forecast", {});
  }

  void reviewShowsEffectiveLimitChanges() {
    QFETCH(QString, extra);
    QFETCH(QString, from);
    QFETCH(QString, to);
    QFETCH(QStringList, rows);
    const QString base = QString::fromUtf8(kPolicy) + extra;
    QString draft = base;
    QVERIFY2(draft.contains(from), qPrintable(from));
    draft.replace(from, to);
    const QByteArray b = base.toUtf8(), d = draft.toUtf8();
    const Consequences c = draftConsequences(parsed(b.constData()), parsed(d.constData()));
    QVERIFY2(c.unavailable.isEmpty(), qPrintable(c.unavailable));
    QStringList got;
    for (const auto& r : c.rows) got << r.text();
    QCOMPARE(got, rows);
  }

  // The review's changed settings: every value the draft changes in place, old → new, in the
  // dialog's consequences (not only in the diff text), even while the effective limits cannot be
  // computed. The draft is kPolicy with `from` replaced by `to`.
  void reviewListsChangedSettingsOldToNew_data() {
    QTest::addColumn<QString>("from");
    QTest::addColumn<QString>("to");
    QTest::addColumn<QStringList>("lines");
    const auto row = [](const char* name, const char* from, const char* to,
                        const QStringList& lines) {
      QTest::newRow(name) << QString::fromUtf8(from) << QString::fromUtf8(to) << lines;
    };
    row("description", "one prediction", "one forecast",
        {R"(resource predict: description "one prediction" → "one forecast")"});
    row("long description", "one prediction",
        "one prediction of the model served from the GPU pool in the EU region, billed per call",
        {R"(resource predict: description "one prediction" → )"
         R"("one prediction of the model served from the GPU pool in the…")"});
    row("tier description", "Anonymous callers", "Anyone",
        {R"(tier free: description "Anonymous callers" → "Anyone")"});
    row("algorithm", "name: tokens, algorithm: token_bucket", "name: tokens, algorithm: gcra",
        {"resource generate: limit tokens: algorithm token_bucket → gcra"});
    row("window", "limit: 10, window: 1m", "limit: 10, window: 30s",
        {"resource predict: limit per_minute: window 1m → 30s"});
    row("burst", "burst: 2000", "burst: 3000",
        {"resource generate: limit tokens: burst 2000 → 3000"});
    row("cost unit", "burst: 2000, cost: tokens", "burst: 2000, cost: output_tokens",
        {"resource generate: limit tokens: cost tokens → output_tokens"});
    row("shadow", "cost: tokens, shadow: true", "cost: tokens, shadow: false",
        {"resource generate: limit daily: shadow true → false"});
    row("overdraft", "cost: tokens}", "cost: tokens, overdraft: 500}",
        {"resource generate: limit tokens: overdraft none → 500"});
    row("tier priority", "multiplier: 5", "multiplier: 5\n    priority: 10",
        {"tier premium: priority 0 → 10"});
    row("api key label", "premium-user-key-1234: premium",
        "premium-user-key-1234: {tier: premium, label: Acme Corp}",
        {R"(api key ...1234: label "" → "Acme Corp")"});
    row("warm-up and a setting", "factor: 0.5, duration: 2m", "factor: 0.25, duration: 2m",
        {"resource generate: warmup: factor 0.5 → 0.25"});
    row("lease ttl", "default_tier: free", "default_tier: free\nlease_ttl: 2m",
        {"policy: lease_ttl 1m → 2m"});
    row("added model: no setting changes", "  generate:\n",
        "  embed:\n    limits:\n      - {name: m, algorithm: fixed_window, limit: 2, window: 1m}\n"
        "  generate:\n",
        {});
  }

  void reviewListsChangedSettingsOldToNew() {
    QFETCH(QString, from);
    QFETCH(QString, to);
    QFETCH(QStringList, lines);
    QString draft = QString::fromUtf8(kPolicy);
    QVERIFY2(draft.contains(from), qPrintable(from));
    draft.replace(from, to);
    const QByteArray d = draft.toUtf8();
    const Consequences c = draftConsequences(parsed(), parsed(d.constData()));
    QStringList got;
    for (const auto& s : c.settings) {
      got << s.text;
      QCOMPARE(s.text, QStringLiteral("%1: %2 %3 → %4").arg(s.what, s.field, s.before, s.after));
    }
    QCOMPARE(got, lines);
    DiffDialog dlg(policyDiff(parsed(), parsed(d.constData())), {}, 1);
    dlg.setConsequences(c);
    for (const QString& line : lines)
      QVERIFY2(dlg.consequencesText().contains(line), qPrintable(dlg.consequencesText()));
  }

  // An invalid draft still lists what it changes; only the effective limits are unknown.
  void reviewListsSettingsOfAnInvalidDraft() {
    QString draft = QString::fromUtf8(kPolicy);
    draft.replace(QStringLiteral("limit: 10, window: 1m"), QStringLiteral("limit: 10, window: 2m"));
    const QByteArray d = draft.toUtf8();
    PolicySpec broken = parsed(d.constData());
    broken.tiers[1].multiplier = -1;
    const Consequences c = draftConsequences(parsed(), broken);
    QVERIFY(!c.unavailable.isEmpty());
    QStringList got;
    for (const auto& s : c.settings) got << s.text;
    QVERIFY2(got.contains(QStringLiteral("resource predict: limit per_minute: window 1m → 2m")),
             qPrintable(got.join(u'\n')));
  }

  // Keys that mask alike are told apart in the review as in the key table: the engine's diff
  // lines and the changed settings use maskApiKey(key, keys) over both sides' keys.
  void reviewTellsAlikeKeysApart_data() {
    QTest::addColumn<bool>("betaInBase");
    QTest::addColumn<QString>("acmeTier");
    QTest::addColumn<QString>("acmeLabel");
    QTest::addColumn<QStringList>("lines");  // %1: acme's mask, %2: beta's
    QTest::newRow("tier of one, the other added")
        << false << "premium"
        << "" << QStringList{"api key %1: tier free → premium", "api key %2: added (free)"};
    QTest::newRow("label of one, the other kept")
        << true << "free"
        << "Acme" << QStringList{R"(api key %1: label "" → "Acme")"};
  }

  void reviewTellsAlikeKeysApart() {
    QFETCH(bool, betaInBase);
    QFETCH(QString, acmeTier);
    QFETCH(QString, acmeLabel);
    QFETCH(QStringList, lines);
    PolicySpec base = parsed();
    base.api_keys["acme-prod-key"] = "free";
    if (betaInBase) base.api_keys["beta-prod-key"] = "free";
    PolicyDocument doc;
    doc.setRunning(base, 1);
    QVERIFY(doc.edit(QStringLiteral("keys"),
                     [&](PolicySpec& p) {
                       p.api_keys["acme-prod-key"] = acmeTier.toStdString();
                       if (!acmeLabel.isEmpty())
                         p.api_key_labels["acme-prod-key"] = acmeLabel.toStdString();
                       p.api_keys["beta-prod-key"] = "free";
                       return Status::Ok();
                     })
                .ok());
    const QStringList keys{"acme-prod-key", "beta-prod-key", "premium-user-key-1234", "short"};
    const QString acme = maskApiKey(QStringLiteral("acme-prod-key"), keys);
    const QString beta = maskApiKey(QStringLiteral("beta-prod-key"), keys);
    QVERIFY(acme != beta);
    QVERIFY2(acme.startsWith(QStringLiteral("...-key #")), qPrintable(acme));
    QStringList expected;
    for (QString l : lines)
      expected << l.replace(QLatin1String("%1"), acme).replace(QLatin1String("%2"), beta);
    // The diff the review shows (and the "someone else applied" notice).
    QCOMPARE(doc.diff(), expected);
    // The changed settings.
    const Consequences c = draftConsequences(doc.base(), doc.draft());
    QCOMPARE(c.settings.size(), 1);
    QCOMPARE(c.settings[0].what, QStringLiteral("api key %1").arg(acme));
  }

  // Through the document and the dialog: the rows are shown; an invalid draft gets no numbers
  // and Apply is disabled (not merely not the default).
  void reviewDialogShowsConsequencesAndRefusesInvalidDrafts() {
    TierTableModel tiers(doc_.get());
    QVERIFY(tiers.setData(tiers.index(1, TierTableModel::kMultiplier), QStringLiteral("8"),
                          Qt::EditRole));
    {
      DiffDialog dlg(doc_->diff(), {}, 7);
      dlg.setConsequences(draftConsequences(doc_->base(), doc_->draft()));
      QVERIFY(dlg.applyButton()->isEnabled());
      QVERIFY2(dlg.consequencesText().contains(
                   QStringLiteral("generate · premium · tokens: 5000 → 8000")),
               qPrintable(dlg.consequencesText()));
    }
    QVERIFY(doc_->edit(QStringLiteral("break"),
                       [](PolicySpec& p) {
                         p.tiers[1].multiplier = -1;
                         return Status::Ok();
                       })
                .ok());
    QVERIFY(!doc_->errors().isEmpty());
    QStringList problems;
    for (const auto& e : doc_->errors()) problems << e.text();
    DiffDialog dlg(doc_->diff(), problems, 7);
    const Consequences c = draftConsequences(doc_->base(), doc_->draft());
    QVERIFY(c.rows.isEmpty());
    QVERIFY(!c.unavailable.isEmpty());
    dlg.setConsequences(c);
    QVERIFY(!dlg.applyButton()->isEnabled());
    QVERIFY(!dlg.applyButton()->isDefault());
    QVERIFY(dlg.consequencesText().contains(QStringLiteral("not computed")));
  }

  // The keyboard table of docs/admin-gui.md: each key is bound, and to one action only (an
  // ambiguous shortcut does nothing). Ctrl+Shift+S used to be QKeySequence::SaveAs alone,
  // which the generic X11 and offscreen platforms bind to nothing.
  void documentedShortcutsAreBoundOnce_data() {
    QTest::addColumn<QString>("key");
    QTest::addColumn<QString>("action");
    const auto row = [](const char* key, const char* action) {
      QTest::newRow(key) << QString::fromLatin1(key) << QString::fromUtf8(action);
    };
    row("Ctrl+O", "Open policy file…");
    row("Ctrl+S", "Save draft");
    row("Ctrl+Shift+S", "Save draft as…");
    row("Ctrl+Z", "Undo");
    row("Ctrl+Shift+Z", "Redo");
    row("Ctrl+Return", "Review and apply…");
    row("Ctrl+Shift+R", "Revert draft");
    row("F5", "Refresh from engine");
    row("Ctrl+Q", "Quit");
  }

  void documentedShortcutsAreBoundOnce() {
    QFETCH(QString, key);
    QFETCH(QString, action);
    MainWindow w;
    const QKeySequence seq(key);
    QStringList bound;
    for (QAction* a : w.findChildren<QAction*>())
      if (a->shortcuts().contains(seq)) bound << a->text().remove(QLatin1Char('&'));
    bound.removeDuplicates();
    QCOMPARE(bound, QStringList{action});
  }

  void apiKeysAreMasked() {
    ApiKeyModel m(doc_.get());
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QCOMPARE(m.rowCount(), 2);
    for (int r = 0; r < m.rowCount(); ++r)
      for (int role : {int(Qt::DisplayRole), int(Qt::EditRole), int(Qt::ToolTipRole)}) {
        const QString v = m.index(r, ApiKeyModel::kKey).data(role).toString();
        QVERIFY2(!v.contains(QStringLiteral("premium-user")) && v != QStringLiteral("short"),
                 qPrintable(v));
      }
    QVERIFY(find(m, 0, QStringLiteral("...1234")).isValid());
    QVERIFY(find(m, 0, QStringLiteral("...")).isValid());  // short keys are hidden entirely
    QVERIFY(m.addKey(QStringLiteral("new-secret-key-9876"), QStringLiteral("premium")));
    QCOMPARE(m.rowCount(), 3);
    QVERIFY(!m.addKey(QStringLiteral("another-key-0000"), QStringLiteral("nosuchtier")));
    const int row = find(m, 0, QStringLiteral("...9876")).row();
    QVERIFY(m.setData(m.index(row, ApiKeyModel::kTier), QStringLiteral("free"), Qt::EditRole));
    QCOMPARE(doc_->draft().api_keys.at("new-secret-key-9876"), std::string("free"));
    QVERIFY(m.removeKey(row));
    QCOMPARE(m.rowCount(), 2);
  }

  // Keys that end alike ("...-key") are told apart by a hash fingerprint, the same in every
  // view; a key no other masks like keeps the plain mask; nothing of the key's text shows.
  void apiKeysThatMaskAlikeAreToldApart_data() {
    QTest::addColumn<QStringList>("keys");
    QTest::addColumn<bool>("fingerprinted");
    QTest::newRow("alike") << QStringList{"acme-prod-key", "beta-prod-key"} << true;
    QTest::newRow("short keys") << QStringList{"abc", "xyz"} << true;
    QTest::newRow("different") << QStringList{"acme-prod-1111", "beta-prod-2222"} << false;
    QTest::newRow("alone") << QStringList{"acme-prod-key"} << false;
  }

  void apiKeysThatMaskAlikeAreToldApart() {
    QFETCH(QStringList, keys);
    QFETCH(bool, fingerprinted);
    QStringList shown;
    for (const QString& k : keys) {
      const QString m = maskApiKey(k, keys);
      QVERIFY2(m.startsWith(maskApiKey(k)), qPrintable(m));
      QCOMPARE(m.contains(QStringLiteral(" #")), fingerprinted);
      QCOMPARE(maskApiKey(k, keys), m);  // stable
      if (k.size() >= 8) QVERIFY2(!m.contains(k.left(4)), qPrintable(m));
      shown << m;
    }
    shown.removeDuplicates();
    QCOMPARE(shown.size(), keys.size());
  }

  // The same through the key table and the tier table's key list.
  void apiKeyTableTellsAlikeKeysApart() {
    QVERIFY(doc_->edit(QStringLiteral("two keys alike"),
                       [](PolicySpec& p) {
                         p.api_keys["acme-prod-key"] = "premium";
                         p.api_keys["beta-prod-key"] = "premium";
                         return Status::Ok();
                       })
                .ok());
    ApiKeyModel m(doc_.get());
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QStringList alike;
    for (int r = 0; r < m.rowCount(); ++r) {
      const QString v = m.index(r, ApiKeyModel::kKey).data().toString();
      if (v.startsWith(QStringLiteral("...-key"))) alike << v;
    }
    QCOMPARE(alike.size(), 2);
    QVERIFY(alike[0] != alike[1]);
    QVERIFY(find(m, 0, QStringLiteral("...1234")).isValid());  // unique: no fingerprint
    // Removing the tier is refused with the keys still mapped to it, told apart too.
    PolicySpec spec = doc_->draft();
    const Status refused = edits::removeTier("premium")(spec);
    QVERIFY(!refused.ok());
    const QString list = QString::fromStdString(refused.message());
    QVERIFY2(list.contains(alike[0]) && list.contains(alike[1]), qPrintable(list));
    // And in Live's blocked subjects, where the keys are the running policy's and the draft's.
    LiveStats live;
    live.setSecretSubjects({QStringLiteral("acme-prod-key"), QStringLiteral("beta-prod-key")});
    ingestReply(live, R"({"now_ms":1700000000400,"first_second":1700000000,"window_seconds":1,)"
                      R"("totals":{},"series":[],"blocked_now":{"5m":{"seconds":300,"subjects":)"
                      R"([{"resource":"predict","subject":"acme-prod-key","count":3,)"
                      R"("error":0,"tier":"premium","rule":"per_minute"}]}}})");
    QCOMPARE(live.topModel()->index(0, TopBlockedModel::kSubject).data().toString(),
             QStringLiteral("API key ") + alike[0]);  // the table is sorted: acme first
  }

  // A key can carry a label for people: added with the key in one undo step, edited in
  // place, removed with the key, listed in the review, and shown next to the masked key in
  // Live's blocked subjects.
  void apiKeysCarryLabels() {
    ApiKeyModel m(doc_.get());
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    QCOMPARE(m.headerData(ApiKeyModel::kLabel, Qt::Horizontal, Qt::DisplayRole).toString(),
             QStringLiteral("Label"));
    QVERIFY(m.addKey(QStringLiteral("acme-prod-key-9876"), QStringLiteral("premium"),
                     QStringLiteral(" Acme Corp ")));
    QCOMPARE(doc_->undoStack()->count(), 1);
    QCOMPARE(doc_->draft().api_key_labels.at("acme-prod-key-9876"), std::string("Acme Corp"));
    const int row = find(m, ApiKeyModel::kKey, QStringLiteral("...9876")).row();
    QCOMPARE(m.index(row, ApiKeyModel::kLabel).data().toString(), QStringLiteral("Acme Corp"));
    QVERIFY(m.flags(m.index(row, ApiKeyModel::kLabel)) & Qt::ItemIsEditable);
    QVERIFY(!(m.flags(m.index(row, ApiKeyModel::kKey)) & Qt::ItemIsEditable));

    const int shortRow = find(m, ApiKeyModel::kKey, QStringLiteral("...")).row();
    QVERIFY(m.setData(m.index(shortRow, ApiKeyModel::kLabel), QStringLiteral("load test"),
                      Qt::EditRole));
    QCOMPARE(doc_->draft().api_key_labels.at("short"), std::string("load test"));
    QVERIFY(doc_->diff().contains(QStringLiteral(R"(api key ...: label "" → "load test")")));
    QVERIFY(m.setData(m.index(shortRow, ApiKeyModel::kLabel), QString(), Qt::EditRole));
    QVERIFY(!doc_->draft().api_key_labels.contains("short"));
    QVERIFY(!doc_->hasErrors());

    LiveStats live;
    live.setSecretSubjects({QStringLiteral("acme-prod-key-9876")});
    live.setSubjectLabels({{QStringLiteral("acme-prod-key-9876"), QStringLiteral("Acme Corp")}});
    ingestReply(live, R"({"now_ms":1700000000400,"first_second":1700000000,"window_seconds":1,)"
                      R"("totals":{},"series":[],"blocked_now":{"5m":{"seconds":300,"subjects":)"
                      R"([{"resource":"predict","subject":"acme-prod-key-9876","count":3,)"
                      R"("error":0,"tier":"premium","rule":"per_minute"}]}}})");
    QCOMPARE(live.topModel()->index(0, TopBlockedModel::kSubject).data().toString(),
             QStringLiteral("API key ...9876 (Acme Corp)"));

    QVERIFY(m.removeKey(row));
    QVERIFY(!doc_->draft().api_key_labels.contains("acme-prod-key-9876"));
    while (doc_->undoStack()->canUndo()) doc_->undoStack()->undo();
    QVERIFY(!doc_->isDirty());
  }

  // After a CONFLICT the session's edits are replayed on the newer running policy.
  void rebaseReplaysEdits() {
    QVERIFY(doc_->edit(QStringLiteral("m"), edits::setTierMultiplier("premium", 8)).ok());
    QVERIFY(doc_->edit(QStringLiteral("k"), edits::setApiKey("abcdefgh-key", "free")).ok());
    PolicySpec newer = parsed();
    newer.tiers[0].description = "changed by someone else";
    const QStringList failed = doc_->rebase(newer, 8);
    QVERIFY(failed.isEmpty());
    QCOMPARE(*doc_->baseVersion(), uint64_t{8});
    QCOMPARE(findTier(doc_->draft(), "premium")->multiplier, 8.0);
    QCOMPARE(findTier(doc_->draft(), "free")->description, std::string("changed by someone else"));
    QCOMPARE(doc_->diff().size(), 2);
    // An edit whose target disappeared is reported, not silently dropped.
    PolicySpec without = parsed();
    std::erase_if(without.tiers, [](const TierSpec& t) { return t.name == "premium"; });
    without.api_keys.erase("premium-user-key-1234");
    const QStringList failed2 = doc_->rebase(without, 9);
    QCOMPARE(failed2.size(), 1);
    QVERIFY(failed2[0].contains(QStringLiteral("premium")));
  }

  void revertDropsTheDraft() {
    QVERIFY(doc_->edit(QStringLiteral("m"), edits::setTierMultiplier("premium", 8)).ok());
    doc_->revert();
    QVERIFY(!doc_->isDirty());
    QCOMPARE(doc_->undoStack()->count(), 0);
  }

  // The engine reports "file:line:column: message" about the YAML we sent; the error lands
  // on the policy field at that place.
  void engineErrorsArePlacedOnFields() {
    QVERIFY(doc_->edit(QStringLiteral("m"), edits::setTierMultiplier("premium", 0)).ok());
    const std::string yaml = doc_->draftYaml();
    auto local = parse_policy(yaml, "<admin>");
    QCOMPARE(local.errors.size(), size_t{1});
    const std::string reply = "INVALID 1 problem(s): " + local.errors[0].to_string();
    const QList<FieldError> errors = parseInvalid(reply, yaml);
    QCOMPARE(errors.size(), 1);
    QCOMPARE(errors[0].path, QStringLiteral("tiers.premium.multiplier"));
    QCOMPARE(errors[0].message, QString::fromStdString(local.errors[0].message));
    QVERIFY(errors[0].location.startsWith(QStringLiteral("<admin>:")));
    // Several problems joined by "; ", one without a place.
    const QList<FieldError> two = parseInvalid(
        "INVALID 2 problem(s): <admin>:3:5: first; with a semicolon; <admin>:9:1: second", yaml);
    QCOMPARE(two.size(), 2);
    QCOMPARE(two[0].message, QStringLiteral("first; with a semicolon"));
    QCOMPARE(two[1].message, QStringLiteral("second"));
    QCOMPARE(conflictingVersion("CONFLICT the running policy is version 12, not 11"),
             std::optional<uint64_t>(12));
  }

  void yamlLocatorFindsNestedPaths() {
    const std::string yaml = policy_to_yaml(parsed());
    YamlLocator loc(yaml);
    int line = 0;
    const QStringList lines = QString::fromStdString(yaml).split(QLatin1Char('\n'));
    static const QRegularExpression limit1000(QStringLiteral("limit: 1000\\b"));
    for (int i = 0; i < lines.size() && line == 0; ++i)
      if (lines[i].contains(limit1000)) line = i + 1;
    QVERIFY(line > 0);
    const int column = static_cast<int>(lines[line - 1].indexOf(limit1000)) + 8;
    QCOMPARE(loc.pathAt(line, column), QStringLiteral("resources.generate.limits[0].limit"));
  }

  // Open/Save work without an engine; a broken file changes nothing and reports its errors.
  void openAndSaveFiles() {
    QTemporaryDir dir;
    PolicyDocument doc;
    const QString good = dir.filePath(QStringLiteral("good.yaml"));
    QFile f(good);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(kPolicy);
    f.close();
    QVERIFY(doc.openFile(good).ok());
    QVERIFY(doc.hasPolicy());
    QVERIFY(!doc.baseVersion());
    QVERIFY(doc.edit(QStringLiteral("m"), edits::setTierMultiplier("premium", 9)).ok());
    const QString out = dir.filePath(QStringLiteral("out.yaml"));
    QVERIFY(doc.saveFile(out).ok());
    auto back = parse_policy_file(out.toStdString());
    QVERIFY(back.ok());
    QCOMPARE(*back.policy, doc.draft());

    const QString bad = dir.filePath(QStringLiteral("bad.yaml"));
    QFile b(bad);
    QVERIFY(b.open(QIODevice::WriteOnly));
    b.write("version: 1\ndefault_tier: nope\ntiers:\n  free: {multiplier: -1}\nresources: {}\n");
    b.close();
    const PolicySpec before = doc.draft();
    QVERIFY(!doc.openFile(bad).ok());
    QCOMPARE(doc.draft(), before);
    QVERIFY(doc.errors().size() >= 2);
    QCOMPARE(doc.errors()[0].source, FieldError::Source::kFile);
    QVERIFY(doc.errors()[0].location.contains(QStringLiteral("bad.yaml:")));

    // Connecting afterwards keeps the file's content as a draft against the running policy.
    QVERIFY(doc.openFile(good).ok());
    PolicySpec running = parsed();
    running.tiers[1].multiplier = 2;
    doc.setRunning(running, 3);
    QCOMPARE(*doc.baseVersion(), uint64_t{3});
    QCOMPARE(doc.diff(), QStringList{QStringLiteral("tier premium: multiplier 2 → 5")});
  }

  // What Apply sends and Save writes is the running policy's (or the opened file's) own text
  // with only the edits made in it: comments and untouched spellings survive, and an edit
  // that cannot be made in place says so.
  void draftTextKeepsTheCommentsOfItsSource() {
    const std::string commented = std::string("# who may call what\n") + kPolicy +
                                  "  batch:  # nightly jobs\n    limits: []\n";
    PolicyDocument doc;
    doc.setRunning(parsed(commented.c_str()), 4, commented);
    QCOMPARE(doc.draftText().text, commented);
    QVERIFY(doc.edit(QStringLiteral("m"), edits::setTierMultiplier("premium", 6)).ok());
    PolicyTextEdit out = doc.draftText();
    QVERIFY(out.in_place);
    QVERIFY(out.notes.empty());
    std::string expected = commented;
    expected.replace(expected.find("multiplier: 5"), 13, "multiplier: 6");
    QCOMPARE(out.text, expected);

    // A moved limit moves as its line.
    QVERIFY(doc.edit(QStringLiteral("mv"), edits::moveLimit("generate", "daily", -1)).ok());
    out = doc.draftText();
    QVERIFY(out.in_place);
    QVERIFY(out.notes.empty());
    QVERIFY(out.text.find("shadow: true}\n      - {name: tokens,") != std::string::npos);
    // Moved and changed at once: that list is rewritten, and the notes name it.
    LimitSpec tokens = findResource(doc.draft(), "generate")->limits[1];
    tokens.limit = 1500;
    QVERIFY(doc.edit(QStringLiteral("l"), edits::setLimit("generate", "tokens", tokens)).ok());
    out = doc.draftText();
    QVERIFY(out.in_place);
    QCOMPARE(out.notes.size(), size_t{1});
    QVERIFY(QString::fromStdString(out.notes[0]).contains(QStringLiteral("generate.limits")));
    QVERIFY(out.text.starts_with("# who may call what\n"));

    // No text known (a policy built in code): written anew, and said so.
    PolicyDocument bare;
    bare.setRunning(parsed(), 1);
    QVERIFY(bare.edit(QStringLiteral("m"), edits::setTierMultiplier("premium", 6)).ok());
    QVERIFY(!bare.draftText().in_place);
    QVERIFY(!bare.draftText().notes.empty());

    // A file opened without an engine is saved with its comments.
    QTemporaryDir dir;
    const QString path = dir.filePath(QStringLiteral("p.yaml"));
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(commented.c_str());
    f.close();
    PolicyDocument fromFile;
    QVERIFY(fromFile.openFile(path).ok());
    QVERIFY(fromFile.edit(QStringLiteral("k"), edits::removeApiKey("short")).ok());
    QVERIFY(fromFile.saveFile(path).ok());
    QVERIFY(f.open(QIODevice::ReadOnly));
    const std::string saved = f.readAll().toStdString();
    std::string withoutKey = commented;
    withoutKey.erase(withoutKey.find("  short: free\n"), 14);
    QCOMPARE(saved, withoutKey);
  }

  // The top-level settings are draft edits like any other: one undo step each, validated,
  // and listed in the review's diff.
  void topLevelSettingsAreDraftEdits_data() {
    QTest::addColumn<QString>("setting");
    QTest::addColumn<QString>("value");
    QTest::addColumn<QStringList>("diff");
    QTest::newRow("default tier") << "default_tier"
                                  << "premium"
                                  << QStringList{"policy: default_tier free → premium"};
    QTest::newRow("unknown resources allowed")
        << "unknown_resource"
        << "allow" << QStringList{"policy: unknown_resource deny → allow"};
    QTest::newRow("unknown resources get default limits")
        << "unknown_resource"
        << "default_limits"
        << QStringList{"policy: unknown_resource deny → default_limits",
                       "default limits: limit per_minute added (fixed_window 60 requests per 1m)"};
    QTest::newRow("fail open") << "on_storage_failure"
                               << "fail_open"
                               << QStringList{"policy: on_storage_failure fail_closed → fail_open"};
    QTest::newRow("lease ttl") << "lease_ttl"
                               << "2m" << QStringList{"policy: lease_ttl 1m → 2m"};
    QTest::newRow("lease ttl in seconds") << "lease_ttl"
                                          << "90s" << QStringList{"policy: lease_ttl 1m → 1m30s"};
  }
  void topLevelSettingsAreDraftEdits() {
    QFETCH(QString, setting);
    QFETCH(QString, value);
    QFETCH(QStringList, diff);
    Edit op;
    if (setting == "default_tier") op = edits::setDefaultTier(value.toStdString());
    if (setting == "unknown_resource")
      op = edits::setUnknownResource(value == "allow" ? UnknownResourceMode::kAllow
                                                      : UnknownResourceMode::kDefaultLimits);
    if (setting == "on_storage_failure")
      op = edits::setStorageFailure(StorageFailureMode::kFailOpen);
    if (setting == "lease_ttl") op = edits::setLeaseTtl(value.toStdString());
    QVERIFY(op);
    QVERIFY(doc_->edit(QStringLiteral("s"), op).ok());
    QCOMPARE(doc_->diff(), diff);
    QVERIFY2(!doc_->hasErrors(), qPrintable(doc_->errors().value(0).text()));
    QCOMPARE(doc_->undoStack()->count(), 1);
    doc_->undoStack()->undo();
    QVERIFY(!doc_->isDirty());
  }

  // A lease TTL that is not a duration is refused; one out of range is a problem on its field,
  // shown by the Settings tab, which follows the draft through undo.
  void settingsTabEditsAndShowsProblems() {
    QVERIFY(!doc_->edit(QStringLiteral("t"), edits::setLeaseTtl("soon")).ok());
    QVERIFY(!doc_->isDirty());

    SettingsTab tab(doc_.get());
    QCOMPARE(tab.defaultTier()->currentText(), QStringLiteral("free"));
    QCOMPARE(tab.leaseTtl()->text(), QStringLiteral("1m"));
    QCOMPARE(tab.unknownResource()->currentData().toInt(),
             static_cast<int>(UnknownResourceMode::kDeny));

    tab.storageFailure()->setCurrentIndex(1);
    emit tab.storageFailure()->activated(1);
    QCOMPARE(doc_->draft().on_storage_failure, StorageFailureMode::kFailOpen);

    tab.defaultTier()->setCurrentText(QStringLiteral("premium"));
    emit tab.defaultTier()->activated(tab.defaultTier()->currentIndex());
    QCOMPARE(doc_->draft().default_tier, std::string("premium"));

    tab.leaseTtl()->setText(QStringLiteral("0s"));
    emit tab.leaseTtl()->editingFinished();
    QCOMPARE(doc_->draft().lease_ttl_ms, int64_t{0});
    QVERIFY(!tab.leaseTtl()->toolTip().isEmpty());
    QVERIFY(tab.problemsText().contains(QStringLiteral("lease_ttl")));

    tab.leaseTtl()->setText(QStringLiteral("45s"));
    emit tab.leaseTtl()->editingFinished();
    QCOMPARE(doc_->draft().lease_ttl_ms, int64_t{45'000});
    QVERIFY(tab.leaseTtl()->toolTip().isEmpty());
    QVERIFY(tab.problemsText().isEmpty());

    tab.leaseTtl()->setText(QStringLiteral("later"));
    emit tab.leaseTtl()->editingFinished();
    QCOMPARE(doc_->draft().lease_ttl_ms, int64_t{45'000});
    QVERIFY(tab.leaseTtl()->toolTip().contains(QStringLiteral("not a duration")));

    QCOMPARE(doc_->undoStack()->count(), 4);
    while (doc_->undoStack()->canUndo()) doc_->undoStack()->undo();
    QCOMPARE(tab.defaultTier()->currentText(), QStringLiteral("free"));
    QCOMPARE(tab.storageFailure()->currentData().toInt(),
             static_cast<int>(StorageFailureMode::kFailClosed));
    QCOMPARE(tab.leaseTtl()->text(), QStringLiteral("1m"));
  }

  // A clean draft follows the running policy; a dirty one keeps its base so APPLY ... EXPECT
  // can detect the change.
  void runningPolicyUpdates() {
    PolicySpec newer = parsed();
    newer.tiers[1].multiplier = 3;
    doc_->setRunning(newer, 8);
    QCOMPARE(findTier(doc_->draft(), "premium")->multiplier, 3.0);
    QVERIFY(doc_->edit(QStringLiteral("m"), edits::setTierMultiplier("premium", 4)).ok());
    doc_->setRunning(parsed(), 9);
    QCOMPARE(*doc_->baseVersion(), uint64_t{8});
    QCOMPARE(findTier(doc_->draft(), "premium")->multiplier, 4.0);
  }

  // Live history fed with documents from the engine's own statistics code.
  void liveHistoryFromEngineStats() {
    Stats stats;
    auto denied = stats.series("predict", "free", "per_minute");
    auto allowed = stats.series("predict", "premium", "per_minute");
    auto idle = stats.series("generate", "free", "tokens");
    (void)idle;
    const int64_t t0 = 1'700'000'000'000;
    for (int s = 0; s < 5; ++s) {
      for (int i = 0; i < 10 + s; ++i)
        Stats::record(allowed.get(), Outcome::kAllowed, t0 + s * 1000);
      for (int i = 0; i < s; ++i) Stats::record(denied.get(), Outcome::kDenied, t0 + s * 1000);
    }
    stats.record_blocked("predict", "premium-user-key-1234", "premium", "per_minute", t0);
    stats.record_blocked("predict", "10.0.0.7", "free", "per_minute", t0 + 3000);
    stats.record_blocked("predict", "10.0.0.7", "free", "per_minute", t0 + 3500);
    stats.record_blocked("predict", "10.0.0.9", "free", "per_minute", t0 - 400'000);

    auto snap = parseStatsJson(stats.to_json(
        t0 + 4000, 900,
        R"("queues":{"models/heavy":{"waiting":3,"admitted":120,"expired":4,"rejected":1,)"
        R"("wait_ms_sum":38211,"wait_ms_max":2950,"wait_ms_p50":500,"wait_ms_p99":2500}})"));
    QVERIFY2(snap.ok(), snap.status().message().c_str());
    LiveStats live;
    QAbstractItemModelTester t1(live.seriesModel(),
                                QAbstractItemModelTester::FailureReportingMode::QtTest);
    QAbstractItemModelTester t2(live.topModel(),
                                QAbstractItemModelTester::FailureReportingMode::QtTest);
    live.setSecretSubjects({QStringLiteral("premium-user-key-1234")});
    live.ingest(snap.value());
    QCOMPARE(live.seriesModel()->rowCount(), 2);  // the idle series is not listed
    const auto points = live.points();
    QCOMPARE(points.size(), size_t{900});
    QCOMPARE(points.back().second, (t0 + 4000) / 1000);
    QCOMPARE(points.back().allowed, uint64_t{14});
    QCOMPARE(points.back().blocked, uint64_t{4});
    QCOMPARE(live.totals().denied, uint64_t{0 + 1 + 2 + 3 + 4});
    QCOMPARE(live.topModel()->rowCount(), 2);
    // WAIT queues (issue 18): one line per queue of the shown models.
    QCOMPARE(live.queueLines(),
             QStringList{QStringLiteral("models/heavy: 3 waiting now; 120 admitted after waiting "
                                        "(p50 0.5 s, p99 2.5 s), 4 timed out, 1 refused at once")});
    QVERIFY(find(*live.topModel(), TopBlockedModel::kSubject, QStringLiteral("API key ...1234"))
                .isValid());
    QVERIFY(
        find(*live.topModel(), TopBlockedModel::kSubject, QStringLiteral("10.0.0.7")).isValid());
    // Who is blocked now (the last 5 minutes by default): most blocked first, with tier and
    // rule; 10.0.0.9, blocked almost 7 minutes ago, only in the 15 minutes and all time.
    auto* top = live.topModel();
    QCOMPARE(top->index(0, TopBlockedModel::kSubject).data().toString(),
             QStringLiteral("10.0.0.7"));
    QCOMPARE(top->index(0, TopBlockedModel::kTier).data().toString(), QStringLiteral("free"));
    QCOMPARE(top->index(0, TopBlockedModel::kRule).data().toString(), QStringLiteral("per_minute"));
    QCOMPARE(top->index(0, TopBlockedModel::kCount).data().toString(), QStringLiteral("2"));
    QCOMPARE(top->index(1, TopBlockedModel::kTier).data().toString(), QStringLiteral("premium"));
    top->setWindowSeconds(900);
    QCOMPARE(top->rowCount(), 3);
    QVERIFY(find(*top, TopBlockedModel::kSubject, QStringLiteral("10.0.0.9")).isValid());
    top->setWindowSeconds(0);
    QCOMPARE(top->rowCount(), 3);
    QCOMPARE(top->index(0, TopBlockedModel::kTier).data().toString(), QString());
    top->setWindowSeconds(300);

    // Filtering by tier.
    live.setFilter(QString(), QStringLiteral("premium"));
    QCOMPARE(live.totals().denied, uint64_t{0});
    QCOMPARE(live.seriesModel()->rowCount(), 1);
    live.setFilter(QStringLiteral("predict"), QString());
    QCOMPARE(live.seriesModel()->rowCount(), 2);

    // A later, short snapshot merges into the history instead of replacing it.
    for (int i = 0; i < 7; ++i) Stats::record(denied.get(), Outcome::kDenied, t0 + 5000);
    auto later = parseStatsJson(stats.to_json(t0 + 5000, 3));
    QVERIFY(later.ok());
    live.ingest(later.value());
    const auto p2 = live.points();
    QCOMPARE(p2.back().blocked, uint64_t{7});
    QCOMPARE(p2[p2.size() - 2].blocked, uint64_t{4});
    QCOMPARE(p2[p2.size() - 5].blocked, uint64_t{1});  // from the first snapshot
  }

  // Runs of known seconds, which the charts draw as lines (gaps between them): "1" a second
  // some engine reported, "0" one none did.
  void knownRunsOfSeconds_data() {
    QTest::addColumn<QString>("seconds");
    QTest::addColumn<QString>("runs");
    QTest::newRow("all known") << "1111"
                               << "0-3";
    QTest::newRow("none known") << "000"
                                << "";
    QTest::newRow("an outage") << "1100011"
                               << "0-1,5-6";
    QTest::newRow("before the engine started") << "0001111"
                                               << "3-6";
    QTest::newRow("unreachable now") << "11110"
                                     << "0-3";
    QTest::newRow("single seconds") << "10101"
                                    << "0-0,2-2,4-4";
  }
  void knownRunsOfSeconds() {
    QFETCH(QString, seconds);
    QFETCH(QString, runs);
    std::vector<LiveHistory::Point> points;
    for (int i = 0; i < seconds.size(); ++i)
      points.push_back({i, 0, 0, 0, seconds[i] == QLatin1Char('1')});
    QStringList got;
    for (const auto& [first, last] : LiveHistory::knownRuns(points))
      got << QStringLiteral("%1-%2").arg(first).arg(last);
    QCOMPARE(got.join(QLatin1Char(',')), runs);
  }

  // Fed with poll replies and an injected clock (no sleeps): while the engine cannot be
  // reached the history moves on without data (a gap, never zeros); a paused view stays put;
  // after a restart (another instance) the seconds before the new engine started stay gaps,
  // the old engine's seconds stay drawn, and the totals and "blocked in the last minute"
  // agree (both count since the restart), instead of "Blocked 55 / Last min 6000".
  void outagesAreGapsAndTotalsAgreeAfterARestart() {
    const int64_t t = 1'700'000'000;
    LiveStats live;
    QAbstractItemModelTester tester(live.seriesModel(),
                                    QAbstractItemModelTester::FailureReportingMode::QtTest);
    // 100 denials a second in the last minute of an engine up for over an hour.
    ingestReply(live, statsReply(
                          t, 900, "engine-a", 5000,
                          [&](int64_t sec) { return sec > t - 60 ? 100u : 0u; }, 6000));
    auto points = live.points();
    QCOMPARE(points.size(), size_t{900});
    QVERIFY(std::all_of(points.begin(), points.end(), [](const auto& p) { return p.known; }));
    QCOMPARE(live.seriesModel()->rows().at(0).blockedLastMinute, uint64_t{6000});

    // sluiced stops: the poller's ticks find no connection.
    AdminClient neverConnected;
    StatsPoller poller(&neverConnected, &live);
    int64_t nowMs = 0;
    poller.setClock([&] { return nowMs; });
    for (int64_t sec = t + 1; sec <= t + 20; ++sec) {
      nowMs = sec * 1000 + 250;
      poller.pollNow();
    }
    QCOMPARE(live.history().lastSecond(), t + 20);
    points = live.points();
    QVERIFY(!points.back().known);
    QCOMPARE(points.back().blocked, uint64_t{0});
    QVERIFY(pointAt(points, t).known);
    QCOMPARE(pointAt(points, t).blocked, uint64_t{100});
    QVERIFY(!pointAt(points, t + 1).known);
    // The last minute moves on with the clock: 20 of its seconds are the outage.
    QCOMPARE(live.seriesModel()->rows().at(0).blockedLastMinute, uint64_t{4000});

    // Paused, the view stays as it was; resumed, it catches up with the clock.
    poller.setPaused(true);
    nowMs = (t + 25) * 1000;
    poller.pollNow();
    QCOMPARE(live.history().lastSecond(), t + 20);
    poller.setPaused(false);
    QCOMPARE(live.history().lastSecond(), t + 25);

    // A new engine, up 9 s at t + 40.4 (so started during t + 30 or t + 31): 5 denials a
    // second since. It reports zeros for the seconds before it ran; those stay a gap.
    ingestReply(live, statsReply(
                          t + 40, 43, "engine-b", 9,
                          [&](int64_t sec) { return sec >= t + 30 ? 5u : 0u; }, 55));
    QCOMPARE(live.history().restartSecond(), t + 30);
    QCOMPARE(live.totals().denied, uint64_t{55});
    const auto rows = live.seriesModel()->rows();
    QCOMPARE(rows.size(), size_t{1});
    QCOMPARE(rows[0].totals.denied, uint64_t{55});
    QCOMPARE(rows[0].blockedLastMinute, uint64_t{55});
    const QModelIndex row = live.seriesModel()->index(0, LiveSeriesModel::kBlockedLastMinute);
    QCOMPARE(row.data().toString(),
             live.seriesModel()->index(0, LiveSeriesModel::kBlocked).data().toString());
    points = live.points();
    QCOMPARE(pointAt(points, t).blocked, uint64_t{100});  // the old engine's, still drawn
    for (int64_t sec = t + 1; sec < t + 30; ++sec) QVERIFY(!pointAt(points, sec).known);
    for (int64_t sec = t + 30; sec <= t + 40; ++sec) {
      QVERIFY(pointAt(points, sec).known);
      QCOMPARE(pointAt(points, sec).blocked, uint64_t{5});
    }
    const auto runs = LiveHistory::knownRuns(points);
    QCOMPARE(runs.size(), size_t{2});
    QCOMPARE(points[runs[0].second].second, t);
    QCOMPARE(points[runs[1].first].second, t + 30);
  }

  // The same engine, reachable again, reports the seconds the GUI missed: they are data, not
  // a gap (the engine was counting all along).
  void theSameEngineFillsTheSecondsItWasUnreachable() {
    const int64_t t = 1'700'000'000;
    LiveStats live;
    ingestReply(live, statsReply(
                          t, 900, "engine-a", 5000, [](int64_t) { return 1u; }, 900));
    live.markUnreachable(t + 10);
    QVERIFY(!live.points().back().known);
    ingestReply(live, statsReply(
                          t + 10, 13, "engine-a", 5010, [](int64_t) { return 2u; }, 920));
    const auto points = live.points();
    QVERIFY(std::all_of(points.begin(), points.end(), [](const auto& p) { return p.known; }));
    QCOMPARE(pointAt(points, t + 5).blocked, uint64_t{2});
    QCOMPARE(live.history().restartSecond(), int64_t{-1});
  }

  // A problem's path names an API key ("api_keys.<key>"): shown masked, told apart from its
  // look-alikes; other paths as they are.
  void problemPathsMaskApiKeys_data() {
    QTest::addColumn<QString>("path");
    QTest::addColumn<QString>("shown");
    const QString acme = maskApiKey(QStringLiteral("acme-prod-key"), kAlikeKeys);
    QTest::newRow("not a key") << "tiers.premium.multiplier"
                               << "tiers.premium.multiplier";
    QTest::newRow("a key") << "api_keys.acme-prod-key"
                           << "api_keys." + acme;
    QTest::newRow("its label") << "api_keys.acme-prod-key.label"
                               << "api_keys." + acme + ".label";
    QTest::newRow("a key ending in .label") << "api_keys.team-x.label"
                                            << "api_keys." + maskApiKey("team-x.label", kAlikeKeys);
    QTest::newRow("a key not in the policy") << "api_keys.unknown-key-9999"
                                             << "api_keys....9999";
  }

  void problemPathsMaskApiKeys() {
    QFETCH(QString, path);
    QFETCH(QString, shown);
    QCOMPARE(shownPath(path, kAlikeKeys), shown);
  }

  // Through the Problems panel and the review's problem list: a key mapped to a missing tier is
  // never shown in full, and two look-alike keys are two different lines.
  void problemsNeverShowAFullApiKey() {
    QVERIFY(doc_->edit(QStringLiteral("keys to a missing tier"),
                       [](PolicySpec& p) {
                         p.api_keys["acme-prod-key"] = "gold";
                         p.api_keys["beta-prod-key"] = "gold";
                         return Status::Ok();
                       })
                .ok());
    ErrorList list(doc_.get());
    QStringList lines;
    for (int i = 0; i < list.count(); ++i) lines << list.item(i)->text();
    QCOMPARE(lines.size(), 2);
    for (const QString& line : lines)
      QVERIFY2(!line.contains(QStringLiteral("prod")), qPrintable(line));
    QVERIFY(lines[0] != lines[1]);
    QVERIFY2(lines[0].contains(QStringLiteral("api_keys....-key #")), qPrintable(lines[0]));
  }

  // SL.POLICY SIMULATE's reply, as the review dialog reads it.
  void simulationReplyIsReadAndSummarised() {
    const std::string reply = R"({"requests":3000,"denied_now":10,"denied_draft":312,
      "newly_denied":312,"newly_allowed":10,"subjects_newly_denied":4,
      "period":{"from_ms":1000,"to_ms":253000,"counters":"empty at the start of the period"},
      "breakdown":[
        {"resource":"predict","tier":"free","rule":"per_minute","requests":2000,"denied_now":0,
         "denied_draft":312,"newly_denied":312,"newly_allowed":0},
        {"resource":"chat","tier":"free","rule":"per_minute","requests":1000,"denied_now":10,
         "denied_draft":0,"newly_denied":0,"newly_allowed":10},
        {"resource":"embed","tier":"free","rule":"pace","requests":5,"denied_now":0,
         "denied_draft":0,"newly_denied":0,"newly_allowed":0}],
      "top_newly_denied":[{"resource":"predict","subject":"10.0.0.7","newly_denied":200}]})";
    const auto sim = parseSimulation(reply);
    QVERIFY(sim);
    QCOMPARE(sim->total.newlyDenied, uint64_t{312});
    QCOMPARE(sim->rows.size(), 3);
    QCOMPARE(sim->changedRows().size(), 2);  // embed decides the same: not shown
    QCOMPARE(sim->top.front().subject, QStringLiteral("10.0.0.7"));
    const QString headline = sim->headline();
    QVERIFY2(headline.contains(QStringLiteral("last 4 min 12 s")), qPrintable(headline));
    QVERIFY2(headline.contains(QStringLiteral("312 more would be denied, from 4 subject(s)")),
             qPrintable(headline));
    QVERIFY2(headline.contains(QStringLiteral("10 denied now would be allowed")),
             qPrintable(headline));

    QString error;
    QVERIFY(!parseSimulation("not json", &error));
    QVERIFY(!error.isEmpty());
    QVERIFY(!parseSimulation(R"({"other":1})"));
    const auto empty = parseSimulation(R"({"requests":0})");
    QVERIFY(empty);
    QVERIFY(empty->headline().contains(QStringLiteral("No traffic was recorded")));
  }

  // A subject that is an API key is never shown in full in the review's simulation: masked,
  // and told apart from a key that masks alike, as in the key table and Live.
  void simulationSubjectsThatAreKeysAreMasked() {
    auto sim = parseSimulation(R"({"requests":3,"newly_denied":3,"top_newly_denied":[
      {"resource":"predict","subject":"acme-prod-key","newly_denied":2},
      {"resource":"predict","subject":"10.0.0.7","newly_denied":1}]})");
    QVERIFY(sim);
    const QStringList keys{"acme-prod-key", "beta-prod-key"};
    sim->maskApiKeys(keys);
    QCOMPARE(sim->top[0].subject,
             QStringLiteral("API key %1").arg(maskApiKey(QStringLiteral("acme-prod-key"), keys)));
    QVERIFY(sim->top[0].subject.contains(QStringLiteral(" #")));
    QVERIFY(!sim->top[0].subject.contains(QStringLiteral("prod")));
    QCOMPARE(sim->top[1].subject, QStringLiteral("10.0.0.7"));
    DiffDialog dlg({QStringLiteral("x")}, {}, 1);
    dlg.setSimulation(*sim);
    QVERIFY(!dlg.simulationText().contains(QStringLiteral("acme")));
  }

  void statsJsonErrorsAreReported() {
    QVERIFY(!parseStatsJson("not json").ok());
    QVERIFY(!parseStatsJson("{\"now_ms\": 1}").ok());
    QVERIFY(!parseStatsJson("[1,2]").ok());
  }

  // Models tab by keyboard: from the model list, Tab leaves the list (it used to cycle through
  // its rows) and reaches the limits table, the effective-limit grid and the warm-up fields.
  void modelsTabIsReachableByTab() {
    MainWindow w;
    w.document()->setRunning(parsed(), 7);
    QVERIFY(w.selectTab(QStringLiteral("models")));
    w.show();
    QVERIFY(QTest::qWaitForWindowActive(&w));
    ModelsTab* tab = w.modelsTab();
    tab->selectResource(QStringLiteral("generate"));  // warm-up on: every field enabled
    tab->resourceView()->setFocus();
    QTRY_COMPARE(QApplication::focusWidget(), static_cast<QWidget*>(tab->resourceView()));
    QList<QWidget*> visited;
    for (int i = 0; i < 20; ++i) {
      QTest::keyClick(QApplication::focusWidget(), Qt::Key_Tab);
      QWidget* f = QApplication::focusWidget();
      QVERIFY(f);
      if (f == tab->resourceView()) break;  // once round the whole window
      visited << f;
    }
    const qsizetype limits = visited.indexOf(tab->limitView());
    const qsizetype grid = visited.indexOf(tab->effectiveView());
    const qsizetype factor = visited.indexOf(tab->warmupFactorField());
    QVERIFY2(limits >= 0, "Tab never reaches the limits table");
    QVERIFY2(grid > limits, "Tab does not reach the effective-limit grid after the limits");
    QVERIFY2(factor > grid, "Tab does not reach the warm-up factor after the grid");
    // The list itself is left after one Tab, without moving its current row.
    QCOMPARE(tab->currentResource(), QStringLiteral("generate"));
  }

  // Tiers tab: Add tier opens the new tier's name for typing; after Return the focus stays
  // in the table on that tier's row (the draft's reload used to drop it), by the button and
  // by Ins.
  void focusStaysOnARenamedNewTier_data() {
    QTest::addColumn<bool>("byKey");
    QTest::newRow("Add tier button") << false;
    QTest::newRow("Ins") << true;
  }

  void focusStaysOnARenamedNewTier() {
    QFETCH(bool, byKey);
    MainWindow w;
    w.document()->setRunning(parsed(), 7);
    QVERIFY(w.selectTab(QStringLiteral("tiers")));
    w.show();
    QVERIFY(QTest::qWaitForWindowActive(&w));
    auto* tab = qobject_cast<TiersTab*>(w.tabPage(QStringLiteral("tiers")));
    QVERIFY(tab);
    QTableView* view = tab->view();
    if (byKey) {
      view->setFocus();
      QTRY_COMPARE(QApplication::focusWidget(), static_cast<QWidget*>(view));
      QTest::keyClick(view, Qt::Key_Insert);
    } else {
      QPushButton* add = nullptr;
      for (auto* b : tab->findChildren<QPushButton*>())
        if (b->text() == QStringLiteral("&Add tier")) add = b;
      QVERIFY(add);
      add->setFocus();
      QTest::mouseClick(add, Qt::LeftButton);
    }
    QTRY_VERIFY(qobject_cast<QLineEdit*>(QApplication::focusWidget()));
    auto* editor = qobject_cast<QLineEdit*>(QApplication::focusWidget());
    editor->selectAll();
    QTest::keyClicks(editor, QStringLiteral("gold"));
    QTest::keyClick(editor, Qt::Key_Return);
    // The delegate commits a Return after the editor has seen it (queued).
    QTRY_VERIFY(findTier(w.document()->draft(), "gold"));
    QTRY_COMPARE(QApplication::focusWidget(), static_cast<QWidget*>(view));
    QVERIFY(view->currentIndex().isValid());
    QCOMPARE(view->model()->index(view->currentIndex().row(), TierTableModel::kName).data(),
             QVariant(QStringLiteral("gold")));
    // Still there after the event loop has run (a late reload must not take it away).
    QTest::qWait(50);
    QCOMPARE(QApplication::focusWidget(), static_cast<QWidget*>(view));
    QCOMPARE(view->model()->index(view->currentIndex().row(), TierTableModel::kName).data(),
             QVariant(QStringLiteral("gold")));
  }

  // The effective-limit grid during a warm-up: the limit the engine applies now (warm limit ×
  // the factor, rounded down, at least 1), marked as warming; the warm limit otherwise.
  void effectiveGridShowsWarmupLimits_data() {
    QTest::addColumn<QString>("resource");
    QTest::addColumn<QString>("tier");
    QTest::addColumn<bool>("enabled");
    QTest::addColumn<bool>("warming");
    QTest::addColumn<double>("factor");
    QTest::addColumn<QString>("shown");
    QTest::newRow("no warm-up") << "predict"
                                << "free" << false << false << 1.0 << "10 (×1)";
    QTest::newRow("ready") << "predict"
                           << "free" << true << false << 1.0 << "10 (×1)";
    QTest::newRow("warming 80 %") << "predict"
                                  << "free" << true << true << 0.8 << "8 of 10 (warming 80 %)";
    QTest::newRow("rounded down") << "predict"
                                  << "free" << true << true << 0.29 << "2 of 10 (warming 29 %)";
    QTest::newRow("at least 1") << "predict"
                                << "free" << true << true << 0.01 << "1 of 10 (warming 1 %)";
    QTest::newRow("override") << "predict"
                              << "premium" << true << true << 0.5
                              << "15 of 30 (override, warming 50 %)";
    QTest::newRow("multiplier") << "generate"
                                << "premium" << true << true << 0.2
                                << "1000 of 5000 (warming 20 %)";
  }

  void effectiveGridShowsWarmupLimits() {
    QFETCH(QString, resource);
    QFETCH(QString, tier);
    QFETCH(bool, enabled);
    QFETCH(bool, warming);
    QFETCH(double, factor);
    QFETCH(QString, shown);
    EffectiveLimitModel m(doc_.get());
    QAbstractItemModelTester tester(&m, QAbstractItemModelTester::FailureReportingMode::QtTest);
    m.setResource(resource);
    QSignalSpy changed(&m, &QAbstractItemModel::dataChanged);
    WarmupState state;
    state.enabled = enabled;
    state.warming = warming;
    state.factor = factor;
    m.setWarmupState(state);
    QCOMPARE(changed.isEmpty(), !warming);
    int row = -1;
    for (int r = 0; r < m.rowCount(); ++r)
      if (m.headerData(r, Qt::Vertical, Qt::DisplayRole).toString().startsWith(tier + u' '))
        row = r;
    QVERIFY(row >= 0);
    QCOMPARE(m.index(row, 0).data().toString(), shown);
    // Never blank: every cell of the grid shows a number, warming or not.
    for (int r = 0; r < m.rowCount(); ++r)
      for (int c = 0; c < m.columnCount(); ++c)
        QVERIFY2(!m.index(r, c).data().toString().isEmpty(), qPrintable(QString::number(c)));
    // The tooltip says what the engine applies now.
    if (warming) QVERIFY(m.index(row, 0).data(Qt::ToolTipRole).toString().contains(u"warming up"));
    // A draft edit keeps the warm-up state (it is the engine's, not the draft's); another
    // resource forgets it.
    QVERIFY(doc_->edit(QStringLiteral("d"), edits::setTierDescription("free", "x")).ok());
    QCOMPARE(m.index(row, 0).data().toString(), shown);
    m.setResource(resource == u"predict" ? QStringLiteral("generate") : QStringLiteral("predict"));
    QVERIFY(!m.warmingFactor());
    QVERIFY(!m.index(0, 0).data().toString().contains(u"warming"));
  }

  // The Models tab feeds the grid from the live warm-up state (WarmupMonitor, every 2 s) of the
  // model it shows, and from no other.
  void modelsTabFeedsTheGridWithTheLiveWarmup() {
    MainWindow w;
    w.document()->setRunning(parsed(), 7);
    ModelsTab* tab = w.modelsTab();
    tab->selectResource(QStringLiteral("predict"));
    auto* monitor = w.findChild<WarmupMonitor*>();
    QVERIFY(monitor);
    WarmupState state;
    state.enabled = true;
    state.warming = true;
    state.factor = 0.8;
    emit monitor->stateChanged(QStringLiteral("generate"), state);  // not the one shown
    QVERIFY(!tab->effectiveModel()->warmingFactor());
    emit monitor->stateChanged(QStringLiteral("predict"), state);
    QCOMPARE(tab->effectiveModel()->index(0, 0).data().toString(),
             QStringLiteral("8 of 10 (warming 80 %)"));
    emit monitor->failed(QStringLiteral("predict"), QStringLiteral("not connected"));
    QCOMPARE(tab->effectiveModel()->index(0, 0).data().toString(), QStringLiteral("10 (×1)"));
    emit monitor->stateChanged(QStringLiteral("predict"), state);
    tab->selectResource(QStringLiteral("generate"));
    QVERIFY(!tab->effectiveModel()->warmingFactor());
  }

 private:
  std::unique_ptr<PolicyDocument> doc_;
};

QTEST_MAIN(TestAdminModels)
#include "tst_admin_models.moc"
