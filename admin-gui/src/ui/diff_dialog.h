// Review before apply: the readable diff of the draft against the running policy, every
// setting it changes (old → new), the effective limit of every model × tier it changes
// (before → after), the problems the local validator already sees, and what the draft would
// have decided on the traffic the engine recorded (SL.POLICY SIMULATE, filled in when its reply
// arrives). Opened window-modal with open(), never exec(), so the event loop (live charts,
// reconnects) keeps running behind it.
#pragma once

#include <QDialog>

class QLabel;
class QPushButton;
class QTableWidget;

namespace sluice::admin {

struct Consequences;
struct Simulation;

class DiffDialog : public QDialog {
  Q_OBJECT
 public:
  DiffDialog(const QStringList& changes, const QStringList& problems, quint64 baseVersion,
             QWidget* parent = nullptr);

  // How the draft's YAML was written: in place (comments kept), with parts rewritten, or anew.
  void setTextOutcome(bool inPlace, const QStringList& notes);
  QString textOutcome() const;

  // The settings the draft changes, old → new, and the effective limits it changes
  // (core/consequences.h), or why those are unknown.
  void setConsequences(const Consequences& consequences);
  // One line per changed setting ("resource predict: limit per_minute: window 1m → 30s"), then
  // the effective limits' status line and one line per row
  // ("predict · premium · per_minute: 50 → 80").
  QString consequencesText() const;

  // Disabled while the draft has problems: the engine would refuse it.
  QPushButton* applyButton() const { return apply_; }

  // The simulation's outcome, or why there is none.
  void setSimulation(const Simulation& simulation);
  void setSimulationUnavailable(const QString& why);
  QString simulationText() const;

 signals:
  void simulationShown();

 private:
  QLabel* textOutcome_;
  QTableWidget* settingsTable_;
  QLabel* limitsStatus_;
  QTableWidget* limitsTable_;
  QPushButton* apply_;
  QLabel* simStatus_;
  QTableWidget* simTable_;
  QLabel* simTop_;
};

}  // namespace sluice::admin
