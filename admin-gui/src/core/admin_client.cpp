#include "core/admin_client.h"

namespace sluice::admin {

resp::Value makeErrorValue(const QString& text) {
  resp::Value v;
  v.type = resp::Value::Type::kError;
  v.str = text.toStdString();
  return v;
}

AdminClient::AdminClient(QObject* parent) : QObject(parent), socket_(new QLocalSocket(this)) {
  clock_.start();
  // A stats reply is one large bulk string; the codec's caps still bound a broken peer.
  limits_.max_frame_bytes = 64u << 20;
  limits_.max_bulk_bytes = 64u << 20;
  reconnectTimer_.setSingleShot(true);
  connect(&reconnectTimer_, &QTimer::timeout, this, [this] {
    if (wanted_ && state_ == State::kDisconnected) connectToEngine();
  });
  timeoutTimer_.setInterval(1000);
  connect(&timeoutTimer_, &QTimer::timeout, this, &AdminClient::checkTimeouts_);
  connect(socket_, &QLocalSocket::connected, this, [this] {
    backoffMs_ = 250;
    lastError_.clear();
    in_.clear();
    inStart_ = 0;
    setState_(State::kConnected);
    timeoutTimer_.start();
    emit connected();
  });
  connect(socket_, &QLocalSocket::readyRead, this, &AdminClient::onReadyRead_);
  connect(socket_, &QLocalSocket::errorOccurred, this, &AdminClient::onError_);
  connect(socket_, &QLocalSocket::disconnected, this, &AdminClient::onDisconnected_);
  // A failed attempt goes Connecting -> Unconnected without disconnected(); this catches both.
  connect(socket_, &QLocalSocket::stateChanged, this, [this](QLocalSocket::LocalSocketState s) {
    if (s == QLocalSocket::UnconnectedState) onDisconnected_();
  });
}

AdminClient::~AdminClient() {
  wanted_ = false;
  socket_->disconnect(this);
  socket_->abort();
}

void AdminClient::setSocketPath(const QString& path) {
  if (path == path_) return;
  path_ = path;
  if (state_ != State::kDisconnected) {
    socket_->abort();
    connectToEngine();
  }
}

void AdminClient::connectToEngine() {
  wanted_ = true;
  reconnectTimer_.stop();
  if (state_ != State::kDisconnected) return;
  if (path_.isEmpty()) {
    lastError_ = tr("No admin socket chosen.");
    emit disconnected(lastError_);
    return;
  }
  setState_(State::kConnecting);
  socket_->connectToServer(path_);
}

void AdminClient::disconnectFromEngine() {
  wanted_ = false;
  reconnectTimer_.stop();
  socket_->abort();
  if (state_ != State::kDisconnected) {
    setState_(State::kDisconnected);
    failAll_(tr("disconnected"));
    emit disconnected(tr("Disconnected."));
  }
}

void AdminClient::setState_(State s) {
  if (s == state_) return;
  state_ = s;
  emit stateChanged(s);
}

void AdminClient::send(std::vector<std::string> args, QObject* context, Callback done) {
  Pending p{QPointer<QObject>(context), context != nullptr, std::move(done), clock_.elapsed()};
  if (state_ != State::kConnected) {
    const QString reason = QStringLiteral("DISCONNECTED not connected to %1").arg(path_);
    QTimer::singleShot(
        0, this, [p = std::move(p), reason]() mutable { deliver_(p, makeErrorValue(reason)); });
    return;
  }
  const std::string frame = resp::encode_command(args);
  socket_->write(frame.data(), static_cast<qint64>(frame.size()));
  pending_.push_back(std::move(p));
}

void AdminClient::deliver_(Pending& p, const resp::Value& v) {
  if (p.hasContext && p.context.isNull()) return;
  if (p.done) p.done(v);
}

void AdminClient::onReadyRead_() {
  const QByteArray bytes = socket_->readAll();
  in_.append(bytes.constData(), static_cast<size_t>(bytes.size()));
  while (inStart_ < in_.size()) {
    resp::Value v;
    const std::string_view view(in_.data() + inStart_, in_.size() - inStart_);
    const resp::ParseResult r = resp::parse_value(view, limits_, v);
    if (r.status == resp::ParseStatus::kIncomplete) break;
    if (r.status == resp::ParseStatus::kError) {
      lastError_ = tr("The engine at %1 sent bytes that are not RESP (%2); reconnecting.")
                       .arg(path_, QString::fromUtf8(r.error.data(),
                                                     static_cast<qsizetype>(r.error.size())));
      socket_->abort();
      return;
    }
    inStart_ += r.consumed;
    // NOPERM: a uid the daemon does not admit (sent before it closes), or admin commands on
    // the decision socket. Either way this socket is of no use; say why and drop it.
    const bool refused = v.is_error() && v.error_code() == "NOPERM";
    if (refused)
      lastError_ = tr("The engine at %1 refused this connection: %2")
                       .arg(path_, QString::fromStdString(v.str));
    if (!pending_.empty()) {
      Pending p = std::move(pending_.front());
      pending_.pop_front();
      deliver_(p, v);
    }
    if (refused) {
      socket_->abort();
      return;
    }
    // A callback may have disconnected us (and cleared the buffer).
    if (state_ != State::kConnected) return;
  }
  if (inStart_ == in_.size()) {
    in_.clear();
    inStart_ = 0;
  } else if (inStart_ > (1u << 20)) {
    in_.erase(0, inStart_);
    inStart_ = 0;
  }
}

QString AdminClient::describeSocketError(QLocalSocket::LocalSocketError error, const QString& path,
                                         const QString& qtMessage) {
  switch (error) {
    case QLocalSocket::ServerNotFoundError:
      return tr("sluiced is not running at %1 (no such socket). Start it with "
                "\"sluiced --admin-socket %1\" or choose another socket.")
          .arg(path);
    case QLocalSocket::ConnectionRefusedError:
      return tr("The engine refused the connection at %1: nothing is accepting on it "
                "(a stale socket file, or sluiced is shutting down).")
          .arg(path);
    case QLocalSocket::SocketAccessError:
      return tr("Permission denied on %1: the admin socket is open only to the user sluiced "
                "runs as. Run sluice-admin as that user.")
          .arg(path);
    case QLocalSocket::PeerClosedError:
      return tr("The engine at %1 closed the connection.").arg(path);
    case QLocalSocket::SocketTimeoutError:
      return tr("The engine at %1 did not answer in time.").arg(path);
    default:
      return tr("Cannot use the admin socket %1: %2").arg(path, qtMessage);
  }
}

void AdminClient::onError_(QLocalSocket::LocalSocketError error) {
  // A refusal by SO_PEERCRED arrives as an error reply; keep that sentence over "closed".
  if (!(error == QLocalSocket::PeerClosedError && !lastError_.isEmpty()))
    lastError_ = describeSocketError(error, path_, socket_->errorString());
}

void AdminClient::onDisconnected_() {
  if (state_ == State::kDisconnected) return;
  timeoutTimer_.stop();
  setState_(State::kDisconnected);
  if (lastError_.isEmpty()) lastError_ = tr("The engine at %1 closed the connection.").arg(path_);
  failAll_(lastError_);
  emit disconnected(lastError_);
  scheduleReconnect_();
}

void AdminClient::failAll_(const QString& reason) {
  auto pending = std::move(pending_);
  pending_.clear();
  in_.clear();
  inStart_ = 0;
  const resp::Value v = makeErrorValue(QStringLiteral("DISCONNECTED ") + reason);
  for (auto& p : pending) deliver_(p, v);
}

void AdminClient::scheduleReconnect_() {
  if (!wanted_ || !autoReconnect_) return;
  reconnectTimer_.start(backoffMs_);
  backoffMs_ = std::min(backoffMs_ * 2, 5000);
}

void AdminClient::checkTimeouts_() {
  if (pending_.empty()) return;
  if (clock_.elapsed() - pending_.front().sentAtMs > requestTimeoutMs_) {
    lastError_ = describeSocketError(QLocalSocket::SocketTimeoutError, path_, {});
    socket_->abort();
    onDisconnected_();
  }
}

}  // namespace sluice::admin
