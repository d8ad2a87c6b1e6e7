// The optional loopback HTTP endpoint (--metrics-listen HOST:PORT): Prometheus text at
// /metrics and a liveness answer at /healthz, served with Boost.Beast on the control thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <string>

#include "context.h"
#include "sluice/status.h"

namespace sluice::server {

class MetricsServer {
 public:
  MetricsServer(boost::asio::io_context& ioc, ServerContext& context);
  ~MetricsServer();
  // "127.0.0.1:9464", "[::1]:9464" or "localhost:9464".
  Status listen(const std::string& host_port);
  void close();

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

// The /metrics body: the engine's statistics plus server gauges.
std::string metrics_text(const ServerContext& context);

}  // namespace sluice::server
