// The reply of SL.POLICY SIMULATE (docs/protocol.md): what a draft would have decided on the
// traffic sluiced recorded, compared with what was decided. Parsed once, shown by the review
// dialog.
#pragma once

#include <QString>
#include <QStringList>
#include <QVector>
#include <cstdint>
#include <optional>
#include <string>

namespace sluice::admin {

struct SimulationCounts {
  uint64_t requests = 0, deniedNow = 0, deniedDraft = 0, newlyDenied = 0, newlyAllowed = 0;
};

struct Simulation {
  SimulationCounts total;
  uint64_t subjectsNewlyDenied = 0;
  int64_t fromMs = 0, toMs = 0;
  struct Row {
    QString resource, tier, rule;
    SimulationCounts counts;
  };
  QVector<Row> rows;  // every resource x tier x rule replayed
  struct Subject {
    QString resource, subject;
    uint64_t newlyDenied = 0;
  };
  QVector<Subject> top;  // most newly denied first

  // "Over the last 4 min 12 s (3,000 requests): 312 more would be denied, from 4 subjects; ..."
  QString headline() const;
  // Only the rows where the draft decides differently.
  QVector<Row> changedRows() const;
  // A subject that is one of `apiKeys` is shown as the Live tab shows it: "API key ...1234",
  // told apart from keys that mask alike (maskApiKey(key, keys)), never in full.
  void maskApiKeys(const QStringList& apiKeys);
};

// nullopt (and `error`) when `json` is not a SIMULATE reply.
std::optional<Simulation> parseSimulation(const std::string& json, QString* error = nullptr);

}  // namespace sluice::admin
