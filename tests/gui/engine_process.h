// A real sluiced for the GUI tests: this build tree's binary and memory plugin, a temporary
// directory with the policy and both sockets; stopped (and the directory removed) on
// destruction.
#pragma once

#include <QProcess>
#include <QString>
#include <QTemporaryDir>
#include <memory>

class EngineProcess {
 public:
  EngineProcess();
  ~EngineProcess();

  // Starts sluiced with `policyYaml`; false (with error()) when it does not come up in 10 s.
  bool start(const QString& policyYaml, const QStringList& extraArgs = {});
  void stop();
  // Restarts on the same sockets and policy file.
  bool restart();

  QString adminSocket() const { return dir_.filePath(QStringLiteral("admin.sock")); }
  QString decisionSocket() const { return dir_.filePath(QStringLiteral("decide.sock")); }
  QString policyPath() const { return dir_.filePath(QStringLiteral("policy.yaml")); }
  QString dir() const { return dir_.path(); }
  QString error() const { return error_; }
  static QString binary();

 private:
  bool launch_();
  QTemporaryDir dir_;
  std::unique_ptr<QProcess> proc_;
  QStringList extra_;
  QString error_;
};
