// sluiced's network side: a fixed pool of Asio threads, one io_context each; the decision and
// admin Unix-socket acceptors hand connections round-robin to them; one session per
// connection parses every complete RESP frame in its buffer, decides, and writes the replies
// of a batch with one write. See docs/operations.md for the life cycle and the caps.
#pragma once

#include <memory>

#include "context.h"
#include "sluice/status.h"

namespace sluice::server {

class Server {
 public:
  // `context` (engine, admin, options) must outlive the server.
  explicit Server(ServerContext& context);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds both sockets (a stale socket file is removed; a live one is refused), the metrics
  // endpoint when asked, and starts the worker threads. Nothing is served before this returns.
  Status start();

  // Serves on the calling thread (admin sessions, signals, metrics) until SIGTERM/SIGINT or
  // stop(), then shuts down gracefully: stop accepting, answer what was received, flush the
  // storage plugin. SIGHUP reloads the policy file.
  void run();

  // Begins the graceful shutdown from any thread.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice::server
