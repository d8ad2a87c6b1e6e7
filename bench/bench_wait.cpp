// WAIT's figures through a real sluiced (this build tree's, two worker threads, memory plugin):
//   - wake-up latency: from sending SL.RELEASE of a one-slot limit's holder to the waiter's
//     admission reply, p50 / p99 / max over many rounds;
//   - the memory of 10,000 waiters: the daemon's RSS with 100 connections open, then with each
//     holding 100 pipelined SL.ACQUIRE … WAIT requests, per waiter;
//   - how long the queue takes to let go of them when their connections close.
// Usage: bench_wait [rounds] (default 500).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "sluiced_fixture.h"

namespace {

using sluice::Client;
using sluice::resp::Value;
using sluice::testing::Daemon;
using Clock = std::chrono::steady_clock;

constexpr const char* kPolicy = R"(default_tier: free
tiers:
  free: {}
resources:
  gpu:
    limits:
      - {name: slots, algorithm: concurrency, limit: 1, window: 1m, per: resource}
  hold:
    limits:
      - {name: slots, algorithm: concurrency, limit: 1, window: 10m, per: resource}
    queue: {max_wait: 10m, max_waiters: 20000}
)";

std::string command(std::initializer_list<std::string_view> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (auto a : args) {
    out += "$" + std::to_string(a.size()) + "\r\n";
    out += a;
    out += "\r\n";
  }
  return out;
}

long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return -1;
}

size_t waiting(Daemon& d, const char* resource) {
  Client admin = d.client(true);
  Value v = sluice::testing::call(admin, {"SL.STATS"});
  auto j = nlohmann::json::parse(v.str, nullptr, false);
  if (j.is_discarded() || !j["queues"].contains(resource)) return 0;
  return j["queues"][resource]["waiting"].get<size_t>();
}

double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

int fail(const std::string& what) {
  std::fprintf(stderr, "bench_wait: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 500;
  Daemon d(kPolicy);
  if (!d.ok()) return fail("sluiced did not start:\n" + d.log());

  // ---- wake-up latency after a release ---------------------------------------------------
  Client holder = d.client();
  Client waiter = d.client();
  std::vector<double> latency_us;
  for (int i = 0; i < rounds; ++i) {
    Value lease = sluice::testing::call(holder, {"SL.ACQUIRE", "gpu", "holder"});
    if (lease.elements.size() < 7 || lease.elements[0].integer != 1) {
      return fail("the holder was not admitted: " + lease.to_string());
    }
    waiter.send(command({"SL.ACQUIRE", "gpu", "waiter", "WAIT", "5000"}));
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // queued by now
    const auto released = Clock::now();
    holder.send(command({"SL.RELEASE", lease.elements[6].str}));
    Value admitted;
    if (!waiter.read(admitted)) return fail("no reply: " + waiter.error());
    const auto woken = Clock::now();
    Value released_reply;
    holder.read(released_reply);
    if (admitted.elements.empty() || admitted.elements[0].integer != 1) {
      return fail("the waiter was not admitted: " + admitted.to_string());
    }
    latency_us.push_back(std::chrono::duration<double, std::micro>(woken - released).count());
    sluice::testing::call(waiter, {"SL.RELEASE", admitted.elements[6].str});
  }
  // For scale: one PING round trip on the same machine and connection.
  std::vector<double> ping_us;
  for (int i = 0; i < rounds; ++i) {
    const auto sent = Clock::now();
    sluice::testing::call(waiter, {"PING"});
    ping_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - sent).count());
  }
  std::printf("wake-up after release (%d rounds, 2 worker threads, memory plugin):\n", rounds);
  std::printf(
      "  p50 %.0f us  p99 %.0f us  max %.0f us   (a PING round trip: p50 %.0f us, p99 %.0f us)\n",
      percentile(latency_us, 0.5), percentile(latency_us, 0.99), percentile(latency_us, 1.0),
      percentile(ping_us, 0.5), percentile(ping_us, 0.99));

  // ---- memory of 10,000 waiters ----------------------------------------------------------
  constexpr int kConnections = 100, kPerConnection = 100;
  Value held = sluice::testing::call(holder, {"SL.ACQUIRE", "hold", "holder"});
  std::vector<Client> clients;
  clients.reserve(kConnections);
  for (int c = 0; c < kConnections; ++c) {
    clients.push_back(d.client());
    if (sluice::testing::call(clients.back(), {"PING"}).str != "PONG") return fail("no PONG");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const long before = rss_kib(d.pid());
  for (int c = 0; c < kConnections; ++c) {
    std::string pipeline;
    for (int i = 0; i < kPerConnection; ++i) {
      const std::string subject = "s" + std::to_string(c * kPerConnection + i);
      pipeline += command({"SL.ACQUIRE", "hold", subject, "WAIT", "600000"});
    }
    clients[c].send(pipeline);
  }
  const size_t total = static_cast<size_t>(kConnections) * kPerConnection;
  const auto queued_from = Clock::now();
  while (waiting(d, "hold") < total && Clock::now() - queued_from < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const size_t held_now = waiting(d, "hold");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const long after = rss_kib(d.pid());
  std::printf("%zu waiters held (%d connections x %d pipelined):\n", held_now, kConnections,
              kPerConnection);
  std::printf(
      "  sluiced RSS %ld KiB with the connections open, %ld KiB with the waiters: "
      "+%ld KiB, %.0f bytes per waiter\n",
      before, after, after - before,
      static_cast<double>(after - before) * 1024.0 / static_cast<double>(total));

  const auto closing = Clock::now();
  clients.clear();
  while (waiting(d, "hold") > 0 && Clock::now() - closing < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::printf("  all %zu removed %.0f ms after their connections closed (polled every ~1 ms)\n",
              total, std::chrono::duration<double, std::milli>(Clock::now() - closing).count());
  return held_now == total ? 0 : 1;
}
