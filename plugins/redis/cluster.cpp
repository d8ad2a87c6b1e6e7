#include "cluster.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "connection.h"

namespace sluice::redis_plugin {
namespace {

// MOVED/ASK hops one request may take: more means the nodes disagree, not a migration.
constexpr int kMaxRedirects = 5;
// TRYAGAIN/CLUSTERDOWN: the next attempt after this long, until the request's deadline.
constexpr int64_t kRetryMs = 10;
// Slot maps are fetched at most this often when asked for (MOVED, a node down) ...
constexpr int64_t kMinRefreshGapMs = 50;
// ... every this long while a master is unreachable (a replica may be promoted) ...
constexpr int64_t kDownRefreshMs = 100;
// ... and otherwise every this long (nodes added, slots moved without a request noticing).
constexpr int64_t kIdleRefreshMs = 10000;

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

timeval to_timeval(int64_t ms) {
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

ReplyPtr command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return ReplyPtr(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data())));
}

// One node in CLUSTER SLOTS: [host, port, id, ...]. A node that does not know its address
// answers "" or "?": it is at the address that was asked.
bool read_node(const redisReply& r, const HostPort& asked, HostPort& out) {
  if (r.type != REDIS_REPLY_ARRAY || r.elements < 2 || r.element[0]->type != REDIS_REPLY_STRING ||
      r.element[1]->type != REDIS_REPLY_INTEGER || r.element[1]->integer < 1 ||
      r.element[1]->integer > 65535) {
    return false;
  }
  out.host.assign(r.element[0]->str, r.element[0]->len);
  if (out.host.empty() || out.host == "?") out.host = asked.host;
  out.port = static_cast<int>(r.element[1]->integer);
  return true;
}

bool contains(const std::vector<HostPort>& list, const HostPort& hp) {
  return std::find(list.begin(), list.end(), hp) != list.end();
}

}  // namespace

ClusterRouter::ClusterRouter(Shared& shared) : shared_(shared), slot_owner_(kSlotCount, -1) {}

ClusterRouter::~ClusterRouter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::vector<std::unique_ptr<Node>> nodes;
  {
    std::lock_guard lock(mu_);
    nodes.swap(nodes_);
    std::fill(slot_owner_.begin(), slot_owner_.end(), -1);
  }
  nodes.clear();  // fails what they hold; a redirection meanwhile finds no node and fails
  std::deque<Parked> parked;
  {
    std::lock_guard lock(mu_);
    parked.swap(parked_);
  }
  for (auto& p : parked) {
    shared_.fail(std::move(p.request), SLUICE_ERR_UNAVAILABLE,
                 "redis plugin: the storage is closing.");
  }
}

bool ClusterRouter::start(std::string& error) {
  Topology topology;
  std::string why;
  if (!discover(topology, why)) {
    error = "redis plugin: no seed of " + shared_.config.endpoint() +
            " answered CLUSTER SLOTS: " + why + ".";
    return false;
  }
  if (!install(topology, error)) return false;
  refreshes_.fetch_add(1, std::memory_order_relaxed);
  thread_ = std::thread([this] { run(); });
  return true;
}

bool ClusterRouter::discover(Topology& out, std::string& error) {
  const Config& c = shared_.config;
  std::vector<HostPort> candidates, down;
  {
    std::lock_guard lock(mu_);
    // Masters that answer first, from a rotating start: a dead one would cost a timeout.
    for (size_t i = 0; i < nodes_.size(); ++i) {
      const Node& n = *nodes_[(discover_from_ + i) % nodes_.size()];
      (n.connection->breaker() == Breaker::kClosed ? candidates : down).push_back(n.address);
    }
    ++discover_from_;
    for (const auto& r : replicas_) down.push_back(r);
  }
  for (const auto& s : c.cluster_seeds) {
    if (!contains(candidates, s)) candidates.push_back(s);
  }
  for (const auto& d : down) {
    if (!contains(candidates, d)) candidates.push_back(d);
  }
  error.clear();
  for (const auto& node : candidates) {
    auto fail = [&](const std::string& why) {
      error += (error.empty() ? "" : "; ") + node.name() + " " + why;
    };
    std::unique_ptr<redisContext, ContextDeleter> ctx(
        redisConnectWithTimeout(node.host.c_str(), node.port, to_timeval(c.connect_timeout_ms)));
    if (!ctx || ctx->err != 0) {
      fail(ctx ? ctx->errstr : "out of memory");
      continue;
    }
    redisSetTimeout(ctx.get(), to_timeval(c.command_timeout_ms));
    if (!c.password.empty()) {
      ReplyPtr auth = c.user.empty() ? command(ctx.get(), {"AUTH", c.password})
                                     : command(ctx.get(), {"AUTH", c.user, c.password});
      if (!auth || auth->type == REDIS_REPLY_ERROR) {
        fail(auth ? "refused AUTH: " + std::string(auth->str, auth->len) : ctx->errstr);
        continue;
      }
    }
    ReplyPtr slots = command(ctx.get(), {"CLUSTER", "SLOTS"});
    if (!slots) {
      fail(ctx->errstr);
      continue;
    }
    if (slots->type == REDIS_REPLY_ERROR) {
      fail("answered " + std::string(slots->str, slots->len));
      continue;
    }
    Topology t;
    bool well_formed = slots->type == REDIS_REPLY_ARRAY;
    for (size_t i = 0; well_formed && i < slots->elements; ++i) {
      const redisReply& e = *slots->element[i];
      SlotRange range;
      well_formed =
          e.type == REDIS_REPLY_ARRAY && e.elements >= 3 &&
          e.element[0]->type == REDIS_REPLY_INTEGER && e.element[1]->type == REDIS_REPLY_INTEGER &&
          e.element[0]->integer >= 0 && e.element[0]->integer <= e.element[1]->integer &&
          e.element[1]->integer < kSlotCount && read_node(*e.element[2], node, range.master);
      if (!well_formed) break;
      range.first = static_cast<uint16_t>(e.element[0]->integer);
      range.last = static_cast<uint16_t>(e.element[1]->integer);
      t.ranges.push_back(range);
      for (size_t j = 3; j < e.elements; ++j) {
        HostPort replica;
        if (read_node(*e.element[j], node, replica) && !contains(t.replicas, replica)) {
          t.replicas.push_back(replica);
        }
      }
    }
    if (!well_formed) {
      fail("answered CLUSTER SLOTS with an unexpected shape");
      continue;
    }
    if (t.ranges.empty()) {  // a node that has not joined, or a cluster not set up yet
      fail("serves no slots (is the cluster created?)");
      continue;
    }
    out = std::move(t);
    return true;
  }
  return false;
}

bool ClusterRouter::install(const Topology& topology, std::string& error) {
  std::vector<HostPort> masters, known;
  for (const auto& r : topology.ranges) {
    if (!contains(masters, r.master)) masters.push_back(r.master);
  }
  {
    std::lock_guard lock(mu_);
    for (const auto& n : nodes_) known.push_back(n->address);
  }
  // Connecting takes time: not under the lock, and before the map names the new masters.
  std::vector<std::unique_ptr<Node>> fresh;
  for (const auto& m : masters) {
    if (contains(known, m)) continue;
    auto node = std::make_unique<Node>();
    node->address = m;
    int id = 0;
    {
      std::lock_guard lock(mu_);
      id = next_node_id_++;
    }
    node->connection = std::make_unique<Connection>(shared_, id, m);
    std::string why;
    if (!node->connection->start(why)) {
      error = why;
      if (thread_.joinable()) {  // after start: log, leave its slots unserved, try again later
        shared_.log(3, why);
        continue;
      }
      return false;
    }
    fresh.push_back(std::move(node));
  }
  std::vector<std::unique_ptr<Node>> dropped;
  bool changed = false;
  {
    std::lock_guard lock(mu_);
    std::vector<std::unique_ptr<Node>> nodes;
    for (const auto& m : masters) {
      for (auto* pool : {&nodes_, &fresh}) {
        auto it = std::find_if(pool->begin(), pool->end(),
                               [&](const auto& n) { return n != nullptr && n->address == m; });
        if (it != pool->end()) {
          nodes.push_back(std::move(*it));
          break;
        }
      }
    }
    for (auto& n : nodes_) {
      if (n != nullptr) dropped.push_back(std::move(n));
    }
    changed = !dropped.empty() || nodes.size() != nodes_.size();
    std::vector<int> owner(kSlotCount, -1);
    for (const auto& r : topology.ranges) {
      auto it = std::find_if(nodes.begin(), nodes.end(),
                             [&](const auto& n) { return n->address == r.master; });
      if (it == nodes.end()) continue;  // a master that refused us: its slots stay unserved
      for (int s = r.first; s <= r.last; ++s) {
        changed = changed || slot_owner_[static_cast<size_t>(s)] < 0;
        owner[static_cast<size_t>(s)] = static_cast<int>(it - nodes.begin());
      }
    }
    nodes_ = std::move(nodes);
    slot_owner_ = std::move(owner);
    replicas_ = topology.replicas;
  }
  if (changed) {
    std::string list;
    for (const auto& m : masters) list += (list.empty() ? "" : ", ") + m.name();
    shared_.log(1, "redis plugin: Redis Cluster masters: " + list + ".");
  }
  dropped.clear();
  return true;
}

void ClusterRouter::route(std::unique_ptr<Request>& request) {
  std::string why;
  {
    std::lock_guard lock(mu_);
    Connection* connection = nullptr;
    if (request->asking) {
      for (const auto& n : nodes_) {
        if (n->address == request->ask_to) connection = n->connection.get();
      }
      if (connection == nullptr)
        why = "slot " + std::to_string(request->slot) + " migrates to " + request->ask_to.name() +
              ", which is not a known master";
    } else {
      const int owner = slot_owner_[request->slot];
      if (owner >= 0) connection = nodes_[static_cast<size_t>(owner)]->connection.get();
      if (connection == nullptr) {
        why = "no master of " + shared_.config.endpoint() + " serves slot " +
              std::to_string(request->slot);
      }
    }
    if (connection != nullptr) {
      if (connection->enqueue(request)) return;
      why = "Redis Cluster node " + connection->where() +
            " is unavailable (circuit open: " + connection->down_reason() + ")";
    }
    refresh_wanted_ = true;
  }
  wake_.notify_one();
  shared_.fail(std::move(request), SLUICE_ERR_UNAVAILABLE, "redis plugin: " + why + ".");
}

void ClusterRouter::reroute(std::unique_ptr<Request> request, std::string_view error,
                            const HostPort& from) {
  auto redirect = parse_redirect(error);
  if (!redirect) {  // TRYAGAIN (a migrating slot), CLUSTERDOWN (a failover under way)
    retries_.fetch_add(1, std::memory_order_relaxed);
    if (error.starts_with("CLUSTERDOWN")) node_down();
    park(std::move(request), steady_ms() + kRetryMs, std::string(error));
    return;
  }
  redirects_.fetch_add(1, std::memory_order_relaxed);
  if (++request->redirects > kMaxRedirects) {
    shared_.fail(std::move(request), SLUICE_ERR_UNAVAILABLE,
                 "redis plugin: Redis Cluster redirected one call more than " +
                     std::to_string(kMaxRedirects) + " times (last: " + std::string(error) + ").");
    return;
  }
  if (redirect->to.host.empty()) redirect->to.host = from.host;
  if (redirect->ask) {
    request->asking = true;
    request->ask_to = redirect->to;
    route(request);
    return;
  }
  bool known = false;
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i]->address == redirect->to) {
        slot_owner_[redirect->slot] = static_cast<int>(i);
        known = true;
      }
    }
    refresh_wanted_ = true;
  }
  wake_.notify_one();
  if (known) {
    route(request);
  } else {  // a master we have no connection to yet: after the next map
    park(std::move(request), steady_ms() + kMinRefreshGapMs, std::string(error));
  }
}

void ClusterRouter::node_down() {
  {
    std::lock_guard lock(mu_);
    refresh_wanted_ = true;
  }
  wake_.notify_one();
}

void ClusterRouter::park(std::unique_ptr<Request> request, int64_t retry_at_ms, std::string why) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      parked_.push_back(Parked{std::move(request), retry_at_ms, std::move(why)});
    }
  }
  if (request != nullptr) {
    shared_.fail(std::move(request), SLUICE_ERR_UNAVAILABLE,
                 "redis plugin: the storage is closing.");
    return;
  }
  wake_.notify_one();
}

void ClusterRouter::retry_parked(int64_t now_ms) {
  std::vector<Parked> due;
  {
    std::lock_guard lock(mu_);
    for (auto it = parked_.begin(); it != parked_.end();) {
      if (it->retry_at_ms <= now_ms) {
        due.push_back(std::move(*it));
        it = parked_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& p : due) {
    if (p.request->deadline_ms <= now_ms) {
      shared_.fail(std::move(p.request), SLUICE_ERR_TIMEOUT,
                   "redis plugin: Redis Cluster did not take the call within " +
                       std::to_string(shared_.config.command_timeout_ms) + " ms (" + p.why + ").");
    } else {
      route(p.request);
    }
  }
}

bool ClusterRouter::any_node_down() const {
  for (const auto& n : nodes_) {
    if (n->connection->breaker() != Breaker::kClosed) return true;
  }
  return false;
}

void ClusterRouter::run() {
  int64_t last_refresh = steady_ms();
  std::string last_error;
  for (;;) {
    bool refresh = false;
    {
      std::unique_lock lock(mu_);
      const int64_t now = steady_ms();
      int64_t due = last_refresh + (refresh_wanted_   ? kMinRefreshGapMs
                                    : any_node_down() ? kDownRefreshMs
                                                      : kIdleRefreshMs);
      for (const auto& p : parked_) due = std::min(due, p.retry_at_ms);
      if (!stopping_ && due > now) {
        wake_.wait_for(lock, std::chrono::milliseconds(due - now));
      }
      if (stopping_) return;
      const int64_t after = steady_ms();
      refresh = after >= last_refresh + (refresh_wanted_   ? kMinRefreshGapMs
                                         : any_node_down() ? kDownRefreshMs
                                                           : kIdleRefreshMs);
      if (refresh) refresh_wanted_ = false;
    }
    if (refresh) {
      last_refresh = steady_ms();
      Topology topology;
      std::string error;
      if (discover(topology, error) && install(topology, error)) {
        refreshes_.fetch_add(1, std::memory_order_relaxed);
        last_error.clear();
      } else if (error != last_error) {
        shared_.log(2, "redis plugin: cannot read the Redis Cluster's slot map: " + error + ".");
        last_error = error;
      }
    }
    retry_parked(steady_ms());
  }
}

std::string ClusterRouter::stats_json() const {
  size_t nodes = 0;
  int up = 0;
  {
    std::lock_guard lock(mu_);
    nodes = nodes_.size();
    for (const auto& n : nodes_) up += n->connection->breaker() == Breaker::kClosed ? 1 : 0;
  }
  const char* breaker = nodes > 0 && up == static_cast<int>(nodes) ? "closed"
                        : up > 0                                   ? "half_open"
                                                                   : "open";
  char buf[640];
  std::snprintf(
      buf, sizeof buf,
      "{\"connected\":%s,\"connections\":%zu,\"connections_up\":%d,\"breaker\":\"%s\","
      "\"in_flight\":%lld,\"batches\":%llu,\"script_calls\":%llu,\"errors\":%llu,"
      "\"timeouts\":%llu,\"reconnects\":%llu,\"script_reloads\":%llu,\"clock\":\"%s\","
      "\"mode\":\"cluster\",\"slot_map_refreshes\":%llu,\"redirects\":%llu,\"retries\":%llu}",
      up > 0 ? "true" : "false", nodes, up, breaker,
      static_cast<long long>(shared_.in_flight.load()),
      static_cast<unsigned long long>(shared_.batches.load()),
      static_cast<unsigned long long>(shared_.script_calls.load()),
      static_cast<unsigned long long>(shared_.errors.load()),
      static_cast<unsigned long long>(shared_.timeouts.load()),
      static_cast<unsigned long long>(shared_.reconnects.load()),
      static_cast<unsigned long long>(shared_.script_reloads.load()),
      shared_.config.engine_clock ? "engine" : "redis",
      static_cast<unsigned long long>(refreshes_.load()),
      static_cast<unsigned long long>(redirects_.load()),
      static_cast<unsigned long long>(retries_.load()));
  return buf;
}

}  // namespace sluice::redis_plugin
