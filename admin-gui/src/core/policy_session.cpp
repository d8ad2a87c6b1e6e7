#include "core/policy_session.h"

#include "core/policy_names.h"

namespace sluice::admin {

PolicySession::PolicySession(AdminClient* client, PolicyDocument* document, QObject* parent)
    : QObject(parent), client_(client), doc_(document) {
  connect(client_, &AdminClient::connected, this, &PolicySession::onConnected_);
  connect(client_, &AdminClient::disconnected, this, [this] { setApplying_(false); });
}

void PolicySession::onConnected_() {
  client_->send({"SL.INFO"}, this, [this](const resp::Value& r) {
    if (r.is_error()) {
      // NOPERM: the daemon refuses this user and closes; keep its sentence for the status bar.
      if (r.error_code() != "DISCONNECTED") emit notice(QString::fromStdString(r.str));
      return;
    }
    QMap<QString, QString> info = parseInfo(r);
    const QString before = info_.value(QStringLiteral("instance"));
    for (auto it = info.cbegin(); it != info.cend(); ++it) info_.insert(it.key(), it.value());
    emit infoChanged();
    const QString now = info_.value(QStringLiteral("instance"));
    if (!before.isEmpty() && !now.isEmpty() && before != now) onRestarted_();
  });
  refresh();
}

void PolicySession::onRestarted_() {
  // Not someone else's apply: the daemon started again (with the policy it starts with). A
  // clean draft follows it through refresh(); a dirty one is replayed on top of what now runs,
  // so applying it is not reported as a conflict.
  fetchPolicy_([this](const RunningPolicy& running, PolicySpec spec) {
    QStringList failed;
    if (doc_->isDirty()) failed = doc_->rebase(std::move(spec), running.version, running.yaml);
    emit restarted(running.version, failed);
  });
}

void PolicySession::updateInfo(const QMap<QString, QString>& info) {
  bool changed = false;
  for (auto it = info.cbegin(); it != info.cend(); ++it) {
    if (info_.value(it.key()) != it.value()) {
      info_.insert(it.key(), it.value());
      changed = true;
    }
  }
  if (changed) emit infoChanged();
  // Someone else applied: a clean draft follows the engine without the user asking.
  bool ok = false;
  const quint64 v = info.value(QStringLiteral("policy_version")).toULongLong(&ok);
  if (!ok || !doc_->baseVersion() || *doc_->baseVersion() == v || applying_) return;
  if (!doc_->isDirty()) {
    refresh();
    return;
  }
  // A draft with edits stays on its base (Apply will ask), but says at once what the other
  // writer changed.
  if (movedOnTold_ == v) return;
  movedOnTold_ = v;
  fetchPolicy_([this, base = doc_->base()](const RunningPolicy& running, PolicySpec spec) {
    emit movedOn(running.version, policyDiff(base, spec));
  });
}

void PolicySession::fetchPolicy_(std::function<void(const RunningPolicy&, PolicySpec)> then) {
  client_->send({"SL.POLICY", "GET"}, this, [this, then = std::move(then)](const resp::Value& r) {
    if (r.is_error()) {
      if (r.error_code() != "DISCONNECTED")
        emit notice(tr("Could not read the running policy: %1").arg(QString::fromStdString(r.str)));
      return;
    }
    auto running = parsePolicyGet(r);
    if (!running) {
      emit notice(tr("The engine answered SL.POLICY GET with %1")
                      .arg(QString::fromStdString(r.to_string())));
      return;
    }
    PolicyParseResult parsed = parse_policy(running->yaml, "<running policy>");
    if (!parsed.ok()) {
      emit notice(tr("The running policy cannot be read: %1")
                      .arg(QString::fromStdString(parsed.error_text())));
      return;
    }
    then(*running, std::move(*parsed.policy));
  });
}

void PolicySession::refresh() {
  fetchPolicy_([this](const RunningPolicy& running, PolicySpec spec) {
    info_.insert(QStringLiteral("policy_version"), QString::number(running.version));
    emit infoChanged();
    doc_->setRunning(std::move(spec), running.version, running.yaml);
    emit policyLoaded(running.version);
  });
}

void PolicySession::setApplying_(bool on) {
  if (on == applying_) return;
  applying_ = on;
  emit busyChanged(on);
}

void PolicySession::apply() {
  if (applying_) return;
  std::vector<std::string> args{"SL.POLICY", "APPLY", doc_->draftYaml()};
  if (doc_->baseVersion()) {
    args.emplace_back("EXPECT");
    args.push_back(std::to_string(*doc_->baseVersion()));
  }
  const std::string sent = args[2];
  setApplying_(true);
  client_->send(std::move(args), this, [this, sent](const resp::Value& r) {
    setApplying_(false);
    if (r.type == resp::Value::Type::kInteger) {
      const auto version = static_cast<quint64>(r.integer);
      doc_->markApplied(version, sent);
      info_.insert(QStringLiteral("policy_version"), QString::number(version));
      emit infoChanged();
      emit applied(version);
      return;
    }
    if (!r.is_error()) {
      emit applyRejected(
          tr("Unexpected reply to SL.POLICY APPLY: %1").arg(QString::fromStdString(r.to_string())));
      return;
    }
    const auto code = r.error_code();
    if (code == "CONFLICT") {
      emit conflict(conflictingVersion(r.str).value_or(0), errorMessage(r));
    } else if (code == "INVALID") {
      doc_->setEngineErrors(parseInvalid(r.str, sent));
      emit applyRejected(tr("The engine refused the draft: %1").arg(errorMessage(r)));
    } else {
      emit applyRejected(tr("Apply failed: %1").arg(QString::fromStdString(r.str)));
    }
  });
}

void PolicySession::reloadAndReapply() {
  fetchPolicy_([this](const RunningPolicy& running, PolicySpec spec) {
    info_.insert(QStringLiteral("policy_version"), QString::number(running.version));
    emit infoChanged();
    const QStringList failed = doc_->rebase(std::move(spec), running.version, running.yaml);
    emit rebased(failed);
  });
}

void PolicySession::reloadEngineFile() {
  client_->send({"SL.POLICY", "RELOAD"}, this, [this](const resp::Value& r) {
    if (r.is_error()) {
      emit notice(
          tr("The engine could not reload its policy file: %1").arg(QString::fromStdString(r.str)));
      return;
    }
    emit notice(tr("The engine reloaded its policy file (version %1).").arg(r.integer));
    refresh();
  });
}

void PolicySession::warmup(const QString& resource, const QString& action, QObject* context,
                           std::function<void(std::optional<WarmupState>, QString)> done) {
  client_->send({"SL.WARMUP", resource.toStdString(), action.toStdString()}, context,
                [done = std::move(done)](const resp::Value& r) {
                  if (r.is_error()) return done(std::nullopt, QString::fromStdString(r.str));
                  done(parseWarmupStatus(r), QString());
                });
}

}  // namespace sluice::admin
