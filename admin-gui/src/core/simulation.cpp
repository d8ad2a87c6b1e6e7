#include "core/simulation.h"

#include <QCoreApplication>
#include <QLocale>
#include <nlohmann/json.hpp>

#include "core/policy_names.h"

namespace sluice::admin {
namespace {

SimulationCounts readCounts(const nlohmann::json& j) {
  SimulationCounts c;
  c.requests = j.value("requests", uint64_t{0});
  c.deniedNow = j.value("denied_now", uint64_t{0});
  c.deniedDraft = j.value("denied_draft", uint64_t{0});
  c.newlyDenied = j.value("newly_denied", uint64_t{0});
  c.newlyAllowed = j.value("newly_allowed", uint64_t{0});
  return c;
}

QString str(const nlohmann::json& j, const char* key) {
  return QString::fromStdString(j.value(key, std::string()));
}

QString duration(int64_t ms) {
  const int64_t s = (ms + 500) / 1000;
  if (s < 60) return QObject::tr("%1 s").arg(s);
  if (s < 3600) return QObject::tr("%1 min %2 s").arg(s / 60).arg(s % 60);
  return QObject::tr("%1 h %2 min").arg(s / 3600).arg(s % 3600 / 60);
}

}  // namespace

std::optional<Simulation> parseSimulation(const std::string& json, QString* error) {
  const auto doc = nlohmann::json::parse(json, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("requests")) {
    if (error) *error = QObject::tr("the engine's reply is not a simulation");
    return std::nullopt;
  }
  Simulation s;
  s.total = readCounts(doc);
  s.subjectsNewlyDenied = doc.value("subjects_newly_denied", uint64_t{0});
  if (doc.contains("period") && doc["period"].is_object()) {
    s.fromMs = doc["period"].value("from_ms", int64_t{0});
    s.toMs = doc["period"].value("to_ms", int64_t{0});
  }
  for (const auto& r : doc.value("breakdown", nlohmann::json::array())) {
    s.rows.push_back({str(r, "resource"), str(r, "tier"), str(r, "rule"), readCounts(r)});
  }
  for (const auto& t : doc.value("top_newly_denied", nlohmann::json::array())) {
    s.top.push_back({str(t, "resource"), str(t, "subject"), t.value("newly_denied", uint64_t{0})});
  }
  return s;
}

void Simulation::maskApiKeys(const QStringList& apiKeys) {
  for (auto& t : top)
    if (apiKeys.contains(t.subject))
      t.subject = QCoreApplication::translate("Simulation", "API key %1")
                      .arg(maskApiKey(t.subject, apiKeys));
}

QString Simulation::headline() const {
  const QLocale locale;
  if (total.requests == 0) {
    return QObject::tr("No traffic was recorded yet: nothing to compare the draft with.");
  }
  const QString period = QObject::tr(
                             "Replayed the last %1 of traffic (%2 requests, from empty "
                             "counters):")
                             .arg(duration(toMs - fromMs))
                             .arg(locale.toString(static_cast<qulonglong>(total.requests)));
  if (total.newlyDenied == 0 && total.newlyAllowed == 0) {
    return period + QLatin1Char(' ') + QObject::tr("the draft decides every request the same way.");
  }
  QStringList parts;
  if (total.newlyDenied > 0) {
    parts << QObject::tr("%1 more would be denied, from %n subject(s)", nullptr,
                         static_cast<int>(subjectsNewlyDenied))
                 .arg(locale.toString(static_cast<qulonglong>(total.newlyDenied)));
  }
  if (total.newlyAllowed > 0) {
    parts << QObject::tr("%1 denied now would be allowed")
                 .arg(locale.toString(static_cast<qulonglong>(total.newlyAllowed)));
  }
  return period + QLatin1Char(' ') + parts.join(QStringLiteral("; ")) + QLatin1Char('.');
}

QVector<Simulation::Row> Simulation::changedRows() const {
  QVector<Row> out;
  for (const Row& r : rows) {
    if (r.counts.newlyDenied > 0 || r.counts.newlyAllowed > 0) out.push_back(r);
  }
  return out;
}

}  // namespace sluice::admin
