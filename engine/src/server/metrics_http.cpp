#include "metrics_http.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "sluice/stats.h"
#include "wait_queue.h"

namespace sluice::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string metrics_text(const ServerContext& context) {
  std::string out = context.engine->stats().to_prometheus();
  out += fmt::format(
      "# HELP sluice_connections Open client connections (decision and admin sockets).\n"
      "# TYPE sluice_connections gauge\nsluice_connections {}\n"
      "# HELP sluice_policy_version Version of the running policy.\n"
      "# TYPE sluice_policy_version gauge\nsluice_policy_version {}\n"
      "# HELP sluice_active_leases Leases held by SL.ACQUIRE and not yet released or expired.\n"
      "# TYPE sluice_active_leases gauge\nsluice_active_leases {}\n"
      "# HELP sluice_uptime_seconds Seconds since sluiced started.\n"
      "# TYPE sluice_uptime_seconds gauge\nsluice_uptime_seconds {}\n",
      context.connections.load(), context.engine->policy()->version(),
      context.engine->active_leases(), context.uptime_s());
  if (context.waits != nullptr) out += wait_stats_prometheus(context.waits->stats());
  return out;
}

namespace {

constexpr auto kTimeout = std::chrono::seconds(10);

class HttpSession : public std::enable_shared_from_this<HttpSession> {
 public:
  HttpSession(tcp::socket socket, ServerContext& context)
      : stream_(std::move(socket)), context_(context) {
    context_.metrics_connections.fetch_add(1, std::memory_order_relaxed);
  }
  ~HttpSession() { context_.metrics_connections.fetch_sub(1, std::memory_order_relaxed); }
  HttpSession(const HttpSession&) = delete;
  HttpSession& operator=(const HttpSession&) = delete;

  void start() { read_(); }

 private:
  void read_() {
    request_ = {};
    stream_.expires_after(kTimeout);
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (ec) return self->close_();
                       self->respond_();
                     });
  }

  void respond_() {
    auto response = std::make_shared<http::response<http::string_body>>();
    response->version(request_.version());
    response->keep_alive(request_.keep_alive());
    response->set(http::field::server, "sluiced");
    const std::string_view target(request_.target().data(), request_.target().size());
    const std::string_view path = target.substr(0, target.find('?'));
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      response->result(http::status::method_not_allowed);
      response->set(http::field::allow, "GET, HEAD");
      response->body() = "only GET and HEAD\n";
    } else if (path == "/metrics") {
      response->result(http::status::ok);
      response->set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      response->body() = metrics_text(context_);
    } else if (path == "/healthz") {
      response->result(http::status::ok);
      response->set(http::field::content_type, "text/plain; charset=utf-8");
      response->body() =
          fmt::format("ok policy_version={}\n", context_.engine->policy()->version());
    } else {
      response->result(http::status::not_found);
      response->set(http::field::content_type, "text/plain; charset=utf-8");
      response->body() = "not found: try /metrics or /healthz\n";
    }
    if (request_.method() == http::verb::head) {
      response->content_length(response->body().size());
      response->body().clear();
    } else {
      response->prepare_payload();
    }
    http::async_write(stream_, *response,
                      [self = shared_from_this(), response](beast::error_code ec, size_t) {
                        if (ec || !response->keep_alive()) return self->close_();
                        self->read_();
                      });
  }

  void close_() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_{8192};
  http::request<http::string_body> request_;
  ServerContext& context_;
};

}  // namespace

struct MetricsServer::Impl : std::enable_shared_from_this<MetricsServer::Impl> {
  Impl(asio::io_context& i, ServerContext& c) : ioc(i), acceptor(i), context(c) {}
  asio::io_context& ioc;
  tcp::acceptor acceptor;
  ServerContext& context;

  asio::steady_timer retry{ioc};
  bool failing = false;  // accept is failing (descriptors exhausted): logged once
  bool full = false;     // at the connection cap: logged once

  // Connections past --max-metrics-connections are closed at once; an idle one is closed
  // after kTimeout. Failing accepts back off and are logged once per episode.
  void accept() {
    acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
      if (ec) {
        if (!self->failing) spdlog::warn("accept on the metrics endpoint failed: {}", ec.message());
        self->failing = true;
        self->retry.expires_after(std::chrono::milliseconds(100));
        self->retry.async_wait([self](beast::error_code tec) {
          if (!tec) self->accept();
        });
        return;
      }
      self->failing = false;
      const size_t cap = self->context.options.max_metrics_connections;
      if (self->context.metrics_connections.load(std::memory_order_relaxed) >= cap) {
        if (!self->full) spdlog::warn("refusing metrics connections: {} is the maximum", cap);
        self->full = true;
        beast::error_code ignored;
        s.close(ignored);
      } else {
        self->full = false;
        std::make_shared<HttpSession>(std::move(s), self->context)->start();
      }
      self->accept();
    });
  }
};

MetricsServer::MetricsServer(asio::io_context& ioc, ServerContext& context)
    : impl_(std::make_shared<Impl>(ioc, context)) {}

MetricsServer::~MetricsServer() { close(); }

Status MetricsServer::listen(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == host_port.size()) {
    return Status::Invalid(fmt::format("--metrics-listen wants HOST:PORT, got '{}'", host_port));
  }
  std::string host = host_port.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const std::string port = host_port.substr(colon + 1);
  beast::error_code ec;
  tcp::resolver resolver(impl_->ioc);
  auto endpoints = resolver.resolve(host, port, tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) {
    return Status::Invalid(
        fmt::format("--metrics-listen {}: {}", host_port, ec ? ec.message() : "no address"));
  }
  const tcp::endpoint ep = endpoints.begin()->endpoint();
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Unavailable(fmt::format("cannot listen on {}: {}", host_port, ec.message()));
  }
  if (!ep.address().is_loopback()) {
    spdlog::warn("metrics endpoint {} is not on a loopback address", host_port);
  }
  spdlog::info("serving metrics on http://{}/metrics", host_port);
  impl_->accept();
  return Status::Ok();
}

void MetricsServer::close() {
  impl_->retry.cancel();
  beast::error_code ec;
  impl_->acceptor.close(ec);
}

}  // namespace sluice::server
