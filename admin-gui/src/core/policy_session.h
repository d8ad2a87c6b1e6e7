// The conversation about the policy between a PolicyDocument and the engine: fetch the
// running policy on (re)connect, SL.POLICY APPLY ... EXPECT <base version>, turn INVALID into
// field errors and CONFLICT into a reload-and-reapply offer, SL.POLICY RELOAD, SL.WARMUP, and
// the engine's identity for the status bar (SL.INFO). Everything is asynchronous: signals say
// how a request ended; nothing here waits.
#pragma once

#include <QMap>
#include <QObject>
#include <QString>
#include <QStringList>
#include <functional>

#include "core/admin_client.h"
#include "core/engine_replies.h"
#include "core/policy_document.h"

namespace sluice::admin {

class PolicySession : public QObject {
  Q_OBJECT
 public:
  PolicySession(AdminClient* client, PolicyDocument* document, QObject* parent = nullptr);

  AdminClient* client() const { return client_; }
  PolicyDocument* document() const { return doc_; }
  bool applying() const { return applying_; }
  // SL.INFO fields (version, storage, policy_version, ...), refreshed on connect and by stats.
  const QMap<QString, QString>& engineInfo() const { return info_; }

  // Sends the draft: APPLY <yaml> EXPECT <base version>.
  void apply();
  // After a conflict: fetch the running policy and replay the draft's edits on top of it.
  void reloadAndReapply();
  // Fetch the running policy (a clean draft follows it).
  void refresh();
  // SL.POLICY RELOAD: the engine re-reads its policy file.
  void reloadEngineFile();
  // SL.WARMUP resource START|READY|STATUS; `done` gets the state (nullopt) or an error.
  void warmup(const QString& resource, const QString& action, QObject* context,
              std::function<void(std::optional<WarmupState>, QString error)> done);
  // Engine facts reported by SL.STATS's "server" object.
  void updateInfo(const QMap<QString, QString>& info);

 signals:
  void infoChanged();
  void policyLoaded(quint64 version);
  void busyChanged(bool applying);
  void applied(quint64 version);
  void applyRejected(const QString& message);  // INVALID (errors are on the document) or other
  void conflict(quint64 runningVersion, const QString& message);
  void rebased(const QStringList& editsThatNoLongerApply);
  // sluiced restarted (SL.INFO `instance` changed): `version` runs now; a dirty draft was
  // replayed on top of it (`editsThatNoLongerApply` as for rebased()).
  void restarted(quint64 version, const QStringList& editsThatNoLongerApply);
  void notice(const QString& message);  // anything else worth a line in the status bar
  // Someone else applied `version` while the draft (based on an older one) has edits: what
  // they changed, from the draft's base to what runs now. Once per version.
  void movedOn(quint64 version, const QStringList& theirChanges);

 private:
  void onConnected_();
  void onRestarted_();
  void fetchPolicy_(std::function<void(const RunningPolicy&, PolicySpec)> then);
  void setApplying_(bool on);

  AdminClient* client_;
  PolicyDocument* doc_;
  bool applying_ = false;
  quint64 movedOnTold_ = 0;  // the running version movedOn() was last emitted for
  QMap<QString, QString> info_;
};

}  // namespace sluice::admin
