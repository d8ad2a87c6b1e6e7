#include "client.h"

#include <chrono>
#include <cstdio>

#include "cluster.h"
#include "connection.h"
#include "request.h"
#include "sentinel.h"

namespace sluice::redis_plugin {
namespace {

// How often the Sentinels are asked where the master is, besides every reconnection; a switch
// is followed once most of them name the new master.
constexpr int64_t kSentinelPollMs = 500;

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

const char* breaker_name(Breaker b) {
  switch (b) {
    case Breaker::kClosed:
      return "closed";
    case Breaker::kHalfOpen:
      return "half_open";
    case Breaker::kOpen:
      return "open";
  }
  return "open";
}

}  // namespace

void Shared::log(int level, const std::string& message) const {
  if (host != nullptr && host->log != nullptr) host->log(level, message.c_str());
}

void Shared::fail(std::unique_ptr<Request> request, sluice_status status,
                  const std::string& message) {
  errors.fetch_add(1, std::memory_order_relaxed);
  if (status == SLUICE_ERR_TIMEOUT) timeouts.fetch_add(1, std::memory_order_relaxed);
  in_flight.fetch_sub(1, std::memory_order_relaxed);
  request->complete(status, message.c_str());
}

Client::Client(Config config, const sluice_host_api* host) {
  shared_.config = std::move(config);
  shared_.host = host;
  if (shared_.config.mode == Mode::kCluster) {
    cluster_ = std::make_unique<ClusterRouter>(shared_);
    shared_.router = cluster_.get();
    return;
  }
  for (int i = 0; i < shared_.config.connections; ++i) {
    connections_.push_back(std::make_unique<Connection>(shared_, i));
  }
}

Client::~Client() {
  {
    std::lock_guard lock(watch_mu_);
    watch_stopping_ = true;
  }
  watch_wake_.notify_all();
  if (watcher_.joinable()) watcher_.join();
  connections_.clear();
  cluster_.reset();
}

bool Client::start(std::string& error) {
  if (cluster_ != nullptr) return cluster_->start(error);
  for (auto& c : connections_) {
    if (!c->start(error)) return false;
  }
  if (shared_.config.mode == Mode::kSentinel) watcher_ = std::thread([this] { watch_sentinels(); });
  return true;
}

void Client::watch_sentinels() {
  std::unique_lock lock(watch_mu_);
  while (!watch_wake_.wait_for(lock, std::chrono::milliseconds(kSentinelPollMs),
                               [this] { return watch_stopping_; })) {
    lock.unlock();
    HostPort master;
    if (ask_sentinel_majority(shared_.config, master)) {
      // Only connections elsewhere move, and only to a server that says it is the master:
      // a majority can lag behind the Sentinel that led a failover.
      bool asked = false, is_master = false;
      for (auto& c : connections_) {
        if (!c->up_elsewhere(master)) continue;
        if (!asked) {
          is_master = answers_as_master(shared_.config, master);
          asked = true;
        }
        if (is_master) c->follow_master(master);
      }
    }
    lock.lock();
  }
}

void Client::submit(const sluice_batch& batch, sluice_completion_fn done, void* user_data) {
  shared_.batches.fetch_add(1, std::memory_order_relaxed);
  if (batch.count == 0) {
    if (done != nullptr) done(user_data, SLUICE_OK, nullptr);
    return;
  }
  auto request = std::make_unique<Request>();
  request->done = done;
  request->user_data = user_data;
  std::string error;
  if (!encode_request(shared_.config, batch, *request, error)) {
    shared_.errors.fetch_add(1, std::memory_order_relaxed);
    request->complete(SLUICE_ERR_INVALID, error.c_str());
    return;
  }
  dispatch(std::move(request));
}

std::unique_ptr<Request> Client::record_request(sluice_record_fn done, void* user_data) {
  auto request = std::make_unique<Request>();
  request->record_done = done;
  request->user_data = user_data;
  return request;
}

void Client::record_put(std::string_view key, std::string_view value, int64_t expires_at_ms,
                        int64_t now_ms, sluice_record_fn done, void* user_data) {
  auto request = record_request(done, user_data);
  encode_record_put(shared_.config, key, value, expires_at_ms, now_ms, *request);
  dispatch(std::move(request));
}

void Client::record_get(std::string_view key, int64_t now_ms, sluice_record_fn done,
                        void* user_data) {
  auto request = record_request(done, user_data);
  encode_record_get(shared_.config, key, now_ms, *request);
  dispatch(std::move(request));
}

void Client::record_delete(std::string_view key, int64_t now_ms, sluice_record_fn done,
                           void* user_data) {
  auto request = record_request(done, user_data);
  encode_record_delete(shared_.config, key, now_ms, *request);
  dispatch(std::move(request));
}

void Client::dispatch(std::unique_ptr<Request> request) {
  if (shared_.in_flight.fetch_add(1, std::memory_order_relaxed) >= shared_.config.max_in_flight) {
    shared_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    shared_.errors.fetch_add(1, std::memory_order_relaxed);
    const std::string message = "redis plugin: " + std::to_string(shared_.config.max_in_flight) +
                                " batches are already waiting for Redis (max_in_flight).";
    request->complete(SLUICE_ERR_UNAVAILABLE, message.c_str());
    return;
  }
  request->deadline_ms = steady_ms() + shared_.config.command_timeout_ms;
  if (cluster_ != nullptr) {
    if (request->cross_slot) {
      shared_.fail(std::move(request), SLUICE_ERR_INVALID,
                   "redis plugin: the keys of one batch hash to different Redis Cluster slots; "
                   "give them one {hash tag}.");
      return;
    }
    cluster_->route(request);
    return;
  }
  // Round-robin over the connections whose circuit is closed.
  const size_t n = connections_.size();
  const size_t first = next_.fetch_add(1, std::memory_order_relaxed) % n;
  for (size_t i = 0; i < n; ++i) {
    if (connections_[(first + i) % n]->enqueue(request)) return;
  }
  shared_.in_flight.fetch_sub(1, std::memory_order_relaxed);
  shared_.errors.fetch_add(1, std::memory_order_relaxed);
  const std::string message =
      "redis plugin: Redis at " + connections_[first]->where() +
      " is unavailable (circuit open: " + connections_[first]->down_reason() + ").";
  request->complete(SLUICE_ERR_UNAVAILABLE, message.c_str());
}

std::string Client::stats_json() const {
  if (cluster_ != nullptr) return cluster_->stats_json();
  int up = 0;
  for (const auto& c : connections_) up += c->breaker() == Breaker::kClosed ? 1 : 0;
  const Breaker overall =
      up > 0 ? Breaker::kClosed
             : (connections_.front()->breaker() == Breaker::kHalfOpen ? Breaker::kHalfOpen
                                                                      : Breaker::kOpen);
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "{\"connected\":%s,\"connections\":%zu,\"connections_up\":%d,\"breaker\":\"%s\","
                "\"in_flight\":%lld,\"batches\":%llu,\"script_calls\":%llu,\"errors\":%llu,"
                "\"timeouts\":%llu,\"reconnects\":%llu,\"script_reloads\":%llu,\"clock\":\"%s\","
                "\"mode\":\"%s\"}",
                up > 0 ? "true" : "false", connections_.size(), up, breaker_name(overall),
                static_cast<long long>(shared_.in_flight.load()),
                static_cast<unsigned long long>(shared_.batches.load()),
                static_cast<unsigned long long>(shared_.script_calls.load()),
                static_cast<unsigned long long>(shared_.errors.load()),
                static_cast<unsigned long long>(shared_.timeouts.load()),
                static_cast<unsigned long long>(shared_.reconnects.load()),
                static_cast<unsigned long long>(shared_.script_reloads.load()),
                shared_.config.engine_clock ? "engine" : "redis",
                shared_.config.mode == Mode::kSentinel ? "sentinel" : "single");
  return buf;
}

}  // namespace sluice::redis_plugin
