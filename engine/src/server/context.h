// What every part of the server shares: the engine, the administrator, the options and a few
// live counters. One instance per daemon, created by sluiced's main and outliving the server.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "sluice/engine.h"
#include "sluice/resp.h"

namespace sluice::server {

class Admin;

struct ServerOptions {
  std::string socket_path = "./run/sluice.sock";
  std::string admin_socket_path = "./run/admin.sock";
  std::vector<uid_t> admin_allow_uids;  // besides the daemon's own uid and root
  std::string metrics_listen;           // HOST:PORT, empty = no HTTP endpoint
  size_t threads = 0;                   // 0 = one per core
  resp::Limits limits;                  // frame, argument and bulk caps
  size_t max_connections = 16384;       // decision sessions
  size_t max_admin_connections = 64;    // admin sessions, counted apart: decision clients that
                                        // fill their cap never lock operators out
  size_t max_metrics_connections = 64;  // HTTP connections to --metrics-listen
  int64_t idle_timeout_s = 300;         // 0 = never close idle connections
  size_t max_output_bytes = 1u << 20;   // per connection: unread replies before reading stops
  size_t max_inflight = 1024;           // per connection: decisions waiting for storage
  int64_t shutdown_grace_ms = 5000;     // SIGTERM: time given to finish what was received
};

class Recorder;
class WaitQueue;

struct ServerContext {
  Engine* engine = nullptr;
  Admin* admin = nullptr;        // null in tests that only serve decisions
  Recorder* recorder = nullptr;  // null when recording is off (--record-seconds 0)
  WaitQueue* waits = nullptr;    // WAIT requests' queues; null: WAIT answers at once
  ServerOptions options;
  size_t threads = 1;                          // resolved thread count
  std::atomic<size_t> connections{0};          // decision and admin sessions
  std::atomic<size_t> admin_connections{0};    // of which admin sessions
  std::atomic<size_t> metrics_connections{0};  // HTTP connections to the metrics endpoint
  std::atomic<size_t> connection_peak{0};      // most sessions open at once since the last trim
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  // Random at start: tells a restarted daemon apart from the same one whose policy someone
  // else changed (SL.INFO `instance`, SL.STATS `server.instance`).
  std::string instance_id = new_instance_id();

  int64_t uptime_s() const {
    return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                            started)
        .count();
  }
  // SL.INFO: "key:value" lines.
  std::string info_text() const;
  // 16 hex digits from the system's random source.
  static std::string new_instance_id();
};

}  // namespace sluice::server
