// The GUI suites' handle on a real sluiced: the shared daemon fixture (tests/support,
// sluiced_fixture.h) with Qt types at its surface. The daemon runs from this build tree on
// temporary sockets; stopped (and its directory removed) on destruction.
#pragma once

#include <QString>
#include <QStringList>
#include <memory>

namespace sluice::testing {
class Daemon;
}

class EngineProcess {
 public:
  EngineProcess();
  ~EngineProcess();

  // Starts sluiced with `policyYaml`; false (with error()) when it does not answer in 10 s.
  bool start(const QString& policyYaml, const QStringList& extraArgs = {});
  // Stops it with SIGTERM (SIGKILL after 5 s).
  void stop();
  // Restarts on the same sockets and policy file.
  bool restart();

  QString adminSocket() const;
  QString decisionSocket() const;
  QString policyPath() const;
  QString dir() const;
  QString error() const { return error_; }
  static QString binary();

 private:
  bool check_(bool ok);
  std::unique_ptr<sluice::testing::Daemon> daemon_;
  QString error_;
};
