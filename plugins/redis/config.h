// The Redis plugin's configuration: parsed from the host's KEY=VALUE pairs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "slot.h"

namespace sluice::redis_plugin {

// One Redis (url/host/port/socket), a Redis Cluster (seed nodes) or a master that Redis
// Sentinel watches (asked of the Sentinels at every connection).
enum class Mode { kSingle, kCluster, kSentinel };

struct Config {
  Mode mode = Mode::kSingle;
  std::vector<HostPort> cluster_seeds;  // cluster=: any nodes of the cluster
  std::vector<HostPort> sentinels;      // sentinel=
  std::string master_name;              // master=: the name the Sentinels monitor
  std::string sentinel_user, sentinel_password;

  // Where Redis is: a Unix socket when socket_path is set, TCP otherwise. In Sentinel mode,
  // the master last resolved; in Cluster mode, unused.
  std::string host = "127.0.0.1";
  int port = 6379;
  std::string socket_path;
  std::string user;      // ACL user; empty = "default" (password-only AUTH)
  std::string password;  // empty = no AUTH
  int db = 0;

  int64_t connect_timeout_ms = 200;
  int64_t command_timeout_ms = 200;
  // Reconnect attempts back off from 10 ms doubling up to this.
  int64_t reconnect_max_ms = 200;

  std::string prefix = "sluice:";
  int connections = 1;
  // Batches folded into one script call (1 = one call per request; keeps every call on one
  // Redis Cluster slot).
  int coalesce = 64;
  // Script calls in flight per connection before a call waits to be full: batches that
  // arrive meanwhile wait for the next reply (or for `coalesce` of them) and go out together,
  // so the busier Redis is, the more decisions share each call's fixed cost. 2 keeps the next
  // call queued in Redis while the reply of the previous one travels back.
  int pipeline = 2;
  // Batches queued or in flight at most; beyond it batches fail at once (backpressure).
  int64_t max_in_flight = 100000;
  // Time of the decisions: Redis TIME (instances with skewed clocks agree) or the engine's.
  bool engine_clock = false;
  // Keys live this long past the moment their state equals a fresh key.
  int64_t ttl_grace_ms = 1000;

  // "unix:///tmp/r.sock?db=1" or "127.0.0.1:6379/0", for messages; "Redis Cluster
  // (seeds ...)" or "the master 'name' of Sentinels ..." in the other modes.
  std::string endpoint() const;
};

// Parses `count` pairs. On failure returns false and sets `error` to one sentence naming the
// offending key.
bool parse_config(const char* const* keys, const char* const* values, size_t count, Config& out,
                  std::string& error);

}  // namespace sluice::redis_plugin
