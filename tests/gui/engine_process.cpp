#include "engine_process.h"

#include <QDeadlineTimer>
#include <QFile>
#include <QFileInfo>
#include <QThread>

EngineProcess::EngineProcess() : dir_(QStringLiteral("/tmp/sluice-gui-XXXXXX")) {}
// /tmp rather than TMPDIR: a Unix socket path is limited to 107 bytes.

EngineProcess::~EngineProcess() { stop(); }

QString EngineProcess::binary() { return QStringLiteral(SLUICE_BINARY_DIR "/bin/sluiced"); }

bool EngineProcess::start(const QString& policyYaml, const QStringList& extraArgs) {
  QFile f(policyPath());
  if (!f.open(QIODevice::WriteOnly | QIODevice::Truncate)) {
    error_ = f.errorString();
    return false;
  }
  f.write(policyYaml.toUtf8());
  f.close();
  extra_ = extraArgs;
  return launch_();
}

bool EngineProcess::launch_() {
  if (!QFileInfo::exists(binary())) {
    error_ = QStringLiteral("%1 is not built").arg(binary());
    return false;
  }
  QFile::remove(adminSocket());
  QFile::remove(decisionSocket());
  proc_ = std::make_unique<QProcess>();
  proc_->setProcessChannelMode(QProcess::MergedChannels);
  proc_->setStandardOutputFile(dir_.filePath(QStringLiteral("sluiced.log")), QIODevice::Append);
  QStringList args{QStringLiteral("--policy"),       policyPath(),
                   QStringLiteral("--socket"),       decisionSocket(),
                   QStringLiteral("--admin-socket"), adminSocket(),
                   QStringLiteral("--storage"),      QStringLiteral("memory"),
                   QStringLiteral("--plugin-dir"),   QStringLiteral(SLUICE_PLUGIN_DIR),
                   QStringLiteral("--state-dir"),    dir_.path()};
  args << extra_;
  proc_->start(binary(), args);
  if (!proc_->waitForStarted(5000)) {
    error_ = proc_->errorString();
    return false;
  }
  // The daemon is ready once it has bound its admin socket.
  QDeadlineTimer deadline(10000);
  while (!deadline.hasExpired()) {
    if (QFileInfo::exists(adminSocket()) && QFileInfo::exists(decisionSocket())) return true;
    if (proc_->state() == QProcess::NotRunning) break;
    QThread::msleep(20);
  }
  error_ = QStringLiteral("sluiced did not come up (see %1/sluiced.log)").arg(dir_.path());
  return false;
}

void EngineProcess::stop() {
  if (!proc_) return;
  proc_->terminate();
  if (!proc_->waitForFinished(5000)) {
    proc_->kill();
    proc_->waitForFinished(2000);
  }
  proc_.reset();
}

bool EngineProcess::restart() {
  stop();
  return launch_();
}
