// A connection to sluiced's admin socket: RESP2 over QLocalSocket, the project's codec
// (sluice/resp.h) for both directions, replies matched to requests in order (RESP
// pipelining). Never blocks: every request completes through a callback on the GUI thread.
// Reconnects by itself with backoff while auto-reconnect is on, and turns socket errors into
// sentences an administrator can act on.
#pragma once

#include <QElapsedTimer>
#include <QLocalSocket>
#include <QObject>
#include <QPointer>
#include <QString>
#include <QTimer>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "sluice/resp.h"

namespace sluice::admin {

class AdminClient : public QObject {
  Q_OBJECT
 public:
  enum class State { kDisconnected, kConnecting, kConnected };
  Q_ENUM(State)
  using Callback = std::function<void(const resp::Value& reply)>;

  explicit AdminClient(QObject* parent = nullptr);
  ~AdminClient() override;

  void setSocketPath(const QString& path);
  QString socketPath() const { return path_; }
  void setAutoReconnect(bool on) { autoReconnect_ = on; }
  // A request that gets no reply within this long drops the connection (a hung daemon).
  void setRequestTimeout(int ms) { requestTimeoutMs_ = ms; }

  void connectToEngine();
  void disconnectFromEngine();
  State state() const { return state_; }
  // Why the last attempt failed or the connection ended; empty while all is well.
  QString lastError() const { return lastError_; }

  // Sends one command. `done` runs once with the reply, or with an error reply
  // "DISCONNECTED ..." when the connection ends first. Nothing is sent while disconnected:
  // `done` then runs on the next event-loop turn. Skipped when `context` is gone.
  void send(std::vector<std::string> args, QObject* context, Callback done);
  int pending() const { return static_cast<int>(pending_.size()); }

  // The sentence shown when the socket could not be used.
  static QString describeSocketError(QLocalSocket::LocalSocketError error, const QString& path,
                                     const QString& qtMessage);

 signals:
  void stateChanged(sluice::admin::AdminClient::State state);
  void connected();
  // The connection ended or an attempt failed; `reason` is for the status bar.
  void disconnected(const QString& reason);

 private:
  struct Pending {
    QPointer<QObject> context;
    bool hasContext;
    Callback done;
    qint64 sentAtMs;
  };
  void setState_(State s);
  void onReadyRead_();
  void onError_(QLocalSocket::LocalSocketError error);
  void onDisconnected_();
  void failAll_(const QString& reason);
  void scheduleReconnect_();
  void checkTimeouts_();
  static void deliver_(Pending& p, const resp::Value& v);

  QLocalSocket* socket_;
  QString path_;
  State state_ = State::kDisconnected;
  QString lastError_;
  bool autoReconnect_ = true;
  bool wanted_ = false;  // the user asked to be connected
  int backoffMs_ = 250;
  int requestTimeoutMs_ = 15000;
  QTimer reconnectTimer_;
  QTimer timeoutTimer_;
  QElapsedTimer clock_;
  std::string in_;
  size_t inStart_ = 0;  // parsed prefix of in_, dropped in chunks to avoid quadratic erases
  std::deque<Pending> pending_;
  resp::Limits limits_;
};

// An error reply made on this side ("DISCONNECTED not connected to ...").
resp::Value makeErrorValue(const QString& text);

}  // namespace sluice::admin
