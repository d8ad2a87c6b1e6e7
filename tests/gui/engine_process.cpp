#include "engine_process.h"

#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include "sluiced_fixture.h"

namespace {
QString q(const std::string& s) { return QString::fromStdString(s); }
}  // namespace

EngineProcess::EngineProcess() = default;

EngineProcess::~EngineProcess() { stop(); }

QString EngineProcess::binary() { return q(sluice::testing::Daemon::binary()); }

bool EngineProcess::start(const QString& policyYaml, const QStringList& extraArgs) {
  std::vector<std::string> args;
  for (const QString& a : extraArgs) args.push_back(a.toStdString());
  daemon_ = std::make_unique<sluice::testing::Daemon>(policyYaml.toStdString(), std::move(args));
  return check_(daemon_->ok());
}

void EngineProcess::stop() {
  if (daemon_) daemon_->stop(SIGTERM, std::chrono::seconds(5));
}

bool EngineProcess::restart() { return check_(daemon_ && daemon_->restart()); }

bool EngineProcess::check_(bool ok) {
  if (ok) {
    error_.clear();
  } else {
    error_ = daemon_
                 ? QStringLiteral("sluiced did not come up; its log:\n%1").arg(q(daemon_->log()))
                 : QStringLiteral("sluiced was never started");
  }
  return ok;
}

QString EngineProcess::adminSocket() const {
  return daemon_ ? q(daemon_->admin_socket_path()) : QString();
}
QString EngineProcess::decisionSocket() const {
  return daemon_ ? q(daemon_->socket_path()) : QString();
}
QString EngineProcess::policyPath() const {
  return daemon_ ? q(daemon_->policy_path()) : QString();
}
QString EngineProcess::dir() const { return daemon_ ? q(daemon_->dir()) : QString(); }
