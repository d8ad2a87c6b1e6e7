// Redis Cluster: the slot map, one pipelined connection per master, and the thread that keeps
// the map current.
//
// A request goes to the master of its slot (its keys share one hash tag). MOVED updates the
// slot's owner and asks for a new map; ASK sends the request once to the importing node after
// ASKING; TRYAGAIN and CLUSTERDOWN retry it every few milliseconds until its deadline
// (command_timeout_ms). A connection that goes down asks for a new map, which is then fetched
// every 100 ms until every master answers again, so a promoted replica serves as soon as the
// cluster names it. A slot whose master is down fails at once (circuit open) and the policy's
// on_storage_failure decides.
//
// Threading: route() and reroute() run on the host's and the connections' threads; the
// refresher thread alone replaces the map and creates and destroys connections. mu_ is never
// held while a request completes or a connection is destroyed.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "client.h"
#include "request.h"
#include "slot.h"

namespace sluice::redis_plugin {

class ClusterRouter final : public Router {
 public:
  explicit ClusterRouter(Shared& shared);
  ~ClusterRouter() override;  // stops the refresher, then every connection
  ClusterRouter(const ClusterRouter&) = delete;
  ClusterRouter& operator=(const ClusterRouter&) = delete;

  // Fetches the slot map from the seeds and connects to every master. False with `error` when
  // no seed answers CLUSTER SLOTS (unreachable, or not a cluster) or a master refuses the
  // configuration (password); a master that is merely down is retried in the background.
  bool start(std::string& error);

  // Takes the request (deadline set, counted in flight) or completes it with an error.
  void route(std::unique_ptr<Request>& request);

  void reroute(std::unique_ptr<Request> request, std::string_view error,
               const HostPort& from) override;
  void node_down() override;

  std::string stats_json() const;

 private:
  struct Node {
    HostPort address;
    std::unique_ptr<Connection> connection;
  };
  struct SlotRange {
    uint16_t first = 0, last = 0;
    HostPort master;
  };
  struct Topology {
    std::vector<SlotRange> ranges;
    std::vector<HostPort> replicas;
  };
  struct Parked {
    std::unique_ptr<Request> request;
    int64_t retry_at_ms = 0;
    std::string why;
  };

  // Asks the known masters (those up first), the seeds, then the replicas for CLUSTER SLOTS.
  bool discover(Topology& out, std::string& error);
  // Installs a map: connects to new masters, drops connections to nodes that are no longer.
  // False with `error` only for a master that refuses the configuration (see start).
  bool install(const Topology& topology, std::string& error);
  void run();
  void park(std::unique_ptr<Request> request, int64_t retry_at_ms, std::string why);
  void retry_parked(int64_t now_ms);
  bool any_node_down() const;

  Shared& shared_;

  mutable std::mutex mu_;  // protects everything below but the counters and thread_
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<int> slot_owner_;  // index into nodes_, -1: no master known
  std::vector<HostPort> replicas_;
  std::deque<Parked> parked_;
  bool refresh_wanted_ = false;
  bool stopping_ = false;
  int next_node_id_ = 0;
  size_t discover_from_ = 0;  // rotates the first node asked
  std::condition_variable wake_;

  std::atomic<uint64_t> refreshes_{0}, redirects_{0}, retries_{0};
  std::thread thread_;
};

}  // namespace sluice::redis_plugin
