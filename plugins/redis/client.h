// The Redis plugin's transport: a few pipelined connections, each driven by its own thread,
// and the circuit breaker that fails batches at once while Redis is unreachable.
//
// Threading: submit() runs on the host's threads and only encodes and enqueues; completions
// run on a connection's thread. No lock is held while a completion runs, so a completion may
// submit again.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "config.h"
#include "sluice/storage_plugin.h"

namespace sluice::redis_plugin {

class Connection;
class ClusterRouter;
struct Request;

// Redis Cluster: what a connection hands back when a node redirects a call (MOVED, ASK) or
// asks to try again (TRYAGAIN, CLUSTERDOWN), and whom it tells that its node went down.
// Called on the connections' threads with no lock held.
class Router {
 public:
  virtual ~Router() = default;
  // Takes `request` (still counted in flight): routes it again or completes it with an error.
  // `from` is the node that answered `error`.
  virtual void reroute(std::unique_ptr<Request> request, std::string_view error,
                       const HostPort& from) = 0;
  virtual void node_down() = 0;
};

// What the connections share: configuration, the script, counters and the host's logger.
struct Shared {
  Config config;
  const sluice_host_api* host = nullptr;
  Router* router = nullptr;  // Cluster mode only
  std::atomic<int64_t> in_flight{0};
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> timeouts{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<uint64_t> script_reloads{0};
  std::atomic<uint64_t> script_calls{0};

  void log(int level, const std::string& message) const;
  // Completes a request that leaves the plugin with an error, keeping the counters right.
  void fail(std::unique_ptr<Request> request, sluice_status status, const std::string& message);
};

class Client {
 public:
  explicit Client(Config config, const sluice_host_api* host);
  ~Client();  // stops every connection; what is pending completes with an error
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Tries every connection once. Returns false with `error` set only for mistakes that
  // retrying cannot fix (rejected password, missing database, script refused); an
  // unreachable Redis is logged and retried in the background.
  bool start(std::string& error);

  void submit(const sluice_batch& batch, sluice_completion_fn done, void* user_data);
  // Record operations (ABI 1.4): commands of their own on the same connections, routed by
  // their key's slot in Cluster mode; they complete like batches, on a connection's thread.
  void record_put(std::string_view key, std::string_view value, int64_t expires_at_ms,
                  int64_t now_ms, sluice_record_fn done, void* user_data);
  void record_get(std::string_view key, int64_t now_ms, sluice_record_fn done, void* user_data);
  void record_delete(std::string_view key, int64_t now_ms, sluice_record_fn done, void* user_data);
  std::string stats_json() const;

 private:
  // Hands an encoded request to a connection (or the Cluster router), or completes it with an
  // error (too many in flight, circuit open).
  void dispatch(std::unique_ptr<Request> request);
  std::unique_ptr<Request> record_request(sluice_record_fn done, void* user_data);
  Shared shared_;
  std::vector<std::unique_ptr<Connection>> connections_;  // one Redis, or Sentinel's master
  std::unique_ptr<ClusterRouter> cluster_;                // Redis Cluster
  std::atomic<uint32_t> next_{0};

  // Sentinel mode: asks the Sentinels every few hundred milliseconds where the master is, so
  // that a switch is followed even while the old master still accepts writes.
  void watch_sentinels();
  std::mutex watch_mu_;
  std::condition_variable watch_wake_;
  bool watch_stopping_ = false;  // protected by watch_mu_
  std::thread watcher_;
};

}  // namespace sluice::redis_plugin
