// WAIT through a real sluiced: a waiter is admitted when a slot is released, denied at its
// deadline, keeps its place in a pipeline, leaves its queue when its connection closes, and bad
// WAIT input gets clear errors. Timings are loose here (a shared CI machine); the tight figures
// are printed by bench/bench_wait.cpp.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "sluiced_fixture.h"

namespace sluice::testing {
namespace {

using resp::Value;
using Clock = std::chrono::steady_clock;

constexpr const char* kPolicy = R"(default_tier: free
tiers:
  free: {}
  premium: {priority: 10}
resources:
  gpu:
    limits:
      - {name: slots, algorithm: concurrency, limit: 1, window: 1m, per: resource}
    queue: {max_wait: 10s, max_waiters: 3}
  rate:
    limits:
      - {name: per_second, algorithm: fixed_window, limit: 1, window: 1s}
  hourly:
    limits:
      - {name: per_hour, algorithm: sliding_window, limit: 1, window: 1h}
  pool:
    limits:
      - {name: slots, algorithm: concurrency, limit: 1, window: 1m, per: resource}
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

bool allowed(const Value& v) {
  return v.type == Value::Type::kArray && v.elements.size() >= 6 && v.elements[0].integer == 1;
}
// The two fields a request with WAIT adds at the end of its reply.
std::string outcome(const Value& v) {
  return v.type == Value::Type::kArray && v.elements.size() >= 2 ? v.elements.back().str : "?";
}
int64_t waited_ms(const Value& v) {
  return v.type == Value::Type::kArray && v.elements.size() >= 2
             ? v.elements[v.elements.size() - 2].integer
             : -1;
}
int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

class Wait : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<Daemon>(kPolicy);  // two worker threads
    ASSERT_TRUE(daemon_->ok()) << daemon_->log();
    holder_ = daemon_->client();
    Value lease = call(holder_, {"SL.ACQUIRE", "gpu", "holder"});
    ASSERT_TRUE(allowed(lease)) << lease.to_string();
    lease_ = lease.elements[6].str;
  }
  nlohmann::json queue_stats() {
    Client admin = daemon_->client(true);
    Value v = call(admin, {"SL.STATS"});
    return nlohmann::json::parse(v.str)["queues"];
  }
  std::unique_ptr<Daemon> daemon_;
  Client holder_;
  std::string lease_;
};

// A waiter with WAIT 5000 on a held one-slot limit is admitted soon after the release.
TEST_F(Wait, AdmittedWhenTheSlotIsReleased) {
  Client waiter = daemon_->client();
  ASSERT_TRUE(waiter.send(command({"SL.ACQUIRE", "gpu", "w", "WAIT", "5000"})));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // it is queued by now
  const auto released = Clock::now();
  ASSERT_EQ(call(holder_, {"SL.RELEASE", lease_}).integer, 1);
  Value v;
  ASSERT_TRUE(waiter.read(v)) << waiter.error();
  const int64_t after_release = ms_since(released);
  ASSERT_TRUE(allowed(v)) << v.to_string();
  EXPECT_EQ(outcome(v), "admitted");
  EXPECT_EQ(v.elements.size(), 13u);        // SL.ACQUIRE's 11 and the two WAIT fields
  EXPECT_FALSE(v.elements[6].str.empty());  // the lease
  EXPECT_GE(waited_ms(v), 90);
  EXPECT_LT(after_release, 1000) << "admitted " << after_release << " ms after the release";
  const auto q = queue_stats()["gpu"];
  EXPECT_EQ(q["admitted"], 1);
  EXPECT_EQ(q["waiting"], 0);
}

// WAIT 300 on a slot nobody releases: a denial at the deadline, saying so.
TEST_F(Wait, DeniedAtTheDeadline) {
  Client waiter = daemon_->client();
  const auto sent = Clock::now();
  Value v = call(waiter, {"SL.ACQUIRE", "gpu", "w", "WAIT", "300"});
  const int64_t took = ms_since(sent);
  EXPECT_FALSE(allowed(v)) << v.to_string();
  EXPECT_EQ(outcome(v), "deadline");
  EXPECT_EQ(v.elements[5].str, "slots");
  EXPECT_GT(v.elements[4].integer, 0);  // retry_after
  EXPECT_GE(took, 250);
  EXPECT_LT(took, 2000);
  EXPECT_EQ(queue_stats()["gpu"]["expired"], 1);
}

// Replies keep request order: a PING pipelined behind a waiting request waits behind it.
TEST_F(Wait, PipelinedRequestsKeepTheirOrder) {
  Client c = daemon_->client();
  ASSERT_TRUE(c.send(command({"SL.ACQUIRE", "gpu", "w", "WAIT", "5000"}) + command({"PING"})));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(call(holder_, {"SL.RELEASE", lease_}).integer, 1);
  Value first, second;
  ASSERT_TRUE(c.read(first));
  ASSERT_TRUE(c.read(second));
  EXPECT_TRUE(allowed(first)) << first.to_string();
  EXPECT_EQ(second.str, "PONG");
}

// A waiter whose connection closes leaves the queue at once.
TEST_F(Wait, AClosedConnectionLeavesTheQueue) {
  {
    Client gone = daemon_->client();
    ASSERT_TRUE(gone.send(command({"SL.ACQUIRE", "gpu", "gone", "WAIT", "10000"})));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_EQ(queue_stats()["gpu"]["waiting"], 1);
  }
  const auto closed = Clock::now();
  while (queue_stats()["gpu"]["waiting"] != 0 && ms_since(closed) < 2000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(queue_stats()["gpu"]["waiting"], 0);
  // The slot is still the holder's: nobody was admitted in the closed waiter's name.
  Client other = daemon_->client();
  EXPECT_FALSE(allowed(call(other, {"SL.ACQUIRE", "gpu", "x"})));
}

// A connection that has stopped reading (its waiters fill --max-inflight) still leaves the
// queue at once when it closes.
TEST(WaitThrottled, AClosedThrottledConnectionLeavesTheQueue) {
  Daemon d(kPolicy, {"--max-inflight", "4"});
  ASSERT_TRUE(d.ok()) << d.log();
  Client holder = d.client();
  ASSERT_TRUE(allowed(call(holder, {"SL.ACQUIRE", "gpu", "holder"})));
  auto waiting = [&] {
    Client admin = d.client(true);
    return nlohmann::json::parse(call(admin, {"SL.STATS"}).str)["queues"]["gpu"]["waiting"];
  };
  {
    Client c = d.client();
    std::string pipeline;
    for (int i = 0; i < 3; ++i) pipeline += command({"SL.ACQUIRE", "gpu", "w", "WAIT", "10000"});
    ASSERT_TRUE(c.send(pipeline + command({"PING"}) + command({"PING"})));
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    EXPECT_EQ(waiting(), 3);
  }
  const auto closed = Clock::now();
  while (waiting() != 0 && ms_since(closed) < 3000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(waiting(), 0);
  EXPECT_LT(ms_since(closed), 2000);
}

// A throttled client that shuts down its sending side but reads on loses nothing: its waiter is
// answered "closed" at once, and the requests still unread in the socket are read and answered
// once the replies drain.
TEST(WaitThrottled, AHalfClosedThrottledClientGetsEveryReply) {
  Daemon d(kPolicy, {"--max-inflight", "4"});
  ASSERT_TRUE(d.ok()) << d.log();
  Client holder = d.client();
  ASSERT_TRUE(allowed(call(holder, {"SL.ACQUIRE", "gpu", "holder"})));
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", d.socket_path().c_str());
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  std::string pipeline = command({"SL.ACQUIRE", "gpu", "w", "WAIT", "10000"});
  for (int i = 0; i < 50; ++i) pipeline += command({"PING"});
  ASSERT_EQ(::send(fd, pipeline.data(), pipeline.size(), 0), static_cast<ssize_t>(pipeline.size()));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(::shutdown(fd, SHUT_WR), 0);
  std::string in;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) in.append(buf, static_cast<size_t>(n));
  ::close(fd);
  std::vector<Value> replies;
  std::string_view rest(in);
  while (!rest.empty()) {
    Value v;
    const auto r = resp::parse_value(rest, resp::Limits{}, v);
    ASSERT_EQ(r.status, resp::ParseStatus::kComplete) << rest;
    replies.push_back(std::move(v));
    rest.remove_prefix(r.consumed);
  }
  ASSERT_EQ(replies.size(), 51u);
  EXPECT_FALSE(allowed(replies[0]));
  EXPECT_EQ(outcome(replies[0]), "closed");
  EXPECT_EQ(replies[50].str, "PONG");
}

// /metrics shows each resource's queue: its length, outcomes and the wait-time histogram.
TEST(WaitMetrics, QueuesOnTheMetricsEndpoint) {
  int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(probe);
  Daemon d(kPolicy, {"--metrics-listen", "127.0.0.1:" + std::to_string(ntohs(addr.sin_port))});
  ASSERT_TRUE(d.ok()) << d.log();
  Client c = d.client();
  ASSERT_TRUE(allowed(call(c, {"SL.ACQUIRE", "gpu", "holder"})));
  EXPECT_EQ(outcome(call(c, {"SL.ACQUIRE", "gpu", "w", "WAIT", "50"})), "deadline");
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const std::string req = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  ::send(fd, req.data(), req.size(), 0);
  std::string body;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof(buf), 0)) > 0) body.append(buf, static_cast<size_t>(n));
  ::close(fd);
  for (const char* line : {"sluice_queue_waiting{resource=\"gpu\"} 0\n",
                           "sluice_queue_expired_total{resource=\"gpu\"} 1\n",
                           "sluice_queue_admitted_total{resource=\"gpu\"} 0\n",
                           "sluice_queue_wait_seconds_bucket{resource=\"gpu\",le=\"+Inf\"} 1\n",
                           "sluice_queue_wait_seconds_count{resource=\"gpu\"} 1\n",
                           "# TYPE sluice_queue_wait_seconds histogram\n"}) {
    EXPECT_NE(body.find(line), std::string::npos) << line << body;
  }
}

// A premium (priority 10) waiter is served before an earlier free one.
TEST_F(Wait, PriorityGoesFirst) {
  Client free_waiter = daemon_->client();
  Client premium_waiter = daemon_->client();
  ASSERT_TRUE(free_waiter.send(command({"SL.ACQUIRE", "gpu", "f", "WAIT", "5000"})));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(
      premium_waiter.send(command({"SL.ACQUIRE", "gpu", "p", "TIER", "premium", "WAIT", "5000"})));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(call(holder_, {"SL.RELEASE", lease_}).integer, 1);
  Value premium;
  ASSERT_TRUE(premium_waiter.read(premium));
  ASSERT_TRUE(allowed(premium)) << premium.to_string();
  EXPECT_EQ(outcome(premium), "admitted");
  EXPECT_EQ(queue_stats()["gpu"]["waiting"], 1);  // the free waiter still waits
}

// Five waiters of subject x, then one of y, on a one-slot limit; each admitted waiter releases
// at once: y is served first or second, not sixth.
TEST_F(Wait, ASubjectWithOneWaiterIsNotStarved) {
  Value held = call(holder_, {"SL.ACQUIRE", "pool", "holder"});
  ASSERT_TRUE(allowed(held)) << held.to_string();
  const std::vector<std::string> subjects = {"x", "x", "x", "x", "x", "y"};
  std::vector<Client> waiters;
  for (const auto& subject : subjects) {
    waiters.push_back(daemon_->client());
    ASSERT_TRUE(waiters.back().send(command({"SL.ACQUIRE", "pool", subject, "WAIT", "10000"})));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));  // queued in this order
  }
  std::mutex mu;
  std::vector<std::string> order;
  std::vector<std::thread> threads;
  for (size_t i = 0; i < waiters.size(); ++i) {
    threads.emplace_back([&, i] {
      Value v;
      if (!waiters[i].read(v) || !allowed(v)) return;
      {
        std::lock_guard lock(mu);
        order.push_back(subjects[i]);
      }
      call(waiters[i], {"SL.RELEASE", v.elements[6].str});
    });
  }
  ASSERT_EQ(call(holder_, {"SL.RELEASE", held.elements[6].str}).integer, 1);
  for (auto& t : threads) t.join();
  ASSERT_EQ(order.size(), subjects.size());
  const auto y = std::find(order.begin(), order.end(), "y") - order.begin();
  EXPECT_LE(y, 1) << "y was served in place " << y;
}

// Bad WAIT input: clear errors, and the connection goes on working.
TEST_F(Wait, BadInputGetsClearErrors) {
  Client c = daemon_->client();
  Value v = call(c, {"SL.CHECK", "gpu", "x", "WAIT", "-1"});
  EXPECT_TRUE(v.is_error());
  EXPECT_EQ(v.str, "WRONGARGS WAIT must be a whole number of milliseconds from 0 to 3600000");
  v = call(c, {"SL.CHECK", "gpu", "x", "WAIT", "abc"});
  EXPECT_EQ(v.str, "WRONGARGS WAIT must be a whole number of milliseconds from 0 to 3600000");
  v = call(c, {"SL.PEEK", "gpu", "x", "WAIT", "10"});
  EXPECT_EQ(v.str,
            "WRONGARGS WAIT applies to SL.CHECK and SL.ACQUIRE only: SL.PEEK takes nothing to "
            "wait for");
  // Over the resource's max_wait (10 s): denied at once, with the reason.
  const auto sent = Clock::now();
  v = call(c, {"SL.ACQUIRE", "gpu", "x", "WAIT", "60000"});
  EXPECT_LT(ms_since(sent), 1000);
  EXPECT_FALSE(allowed(v));
  EXPECT_EQ(outcome(v), "over_max_wait");
  EXPECT_EQ(call(c, {"PING"}).str, "PONG");
}

// max_waiters (3 here): the fourth waiter is denied at once with queue_full.
TEST_F(Wait, AFullQueueDeniesAtOnce) {
  std::vector<Client> waiters;
  for (int i = 0; i < 3; ++i) {
    waiters.push_back(daemon_->client());
    ASSERT_TRUE(waiters.back().send(command({"SL.ACQUIRE", "gpu", "w", "WAIT", "5000"})));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Client c = daemon_->client();
  Value v = call(c, {"SL.ACQUIRE", "gpu", "late", "WAIT", "5000"});
  EXPECT_FALSE(allowed(v));
  EXPECT_EQ(outcome(v), "queue_full");
  EXPECT_EQ(queue_stats()["gpu"]["rejected"], 1);
}

// A rate limit: the waiter is decided again when its window turns, without any release.
TEST_F(Wait, ARateLimitAdmitsWhenTheWindowTurns) {
  Client c = daemon_->client();
  ASSERT_TRUE(allowed(call(c, {"SL.CHECK", "rate", "x"})));
  Value v = call(c, {"SL.CHECK", "rate", "x", "WAIT", "3000"});
  EXPECT_TRUE(allowed(v)) << v.to_string();
  EXPECT_EQ(outcome(v), "admitted");
  EXPECT_LE(waited_ms(v), 1500);
}

// sluicectl check and acquire take --wait and print how the wait ended.
TEST_F(Wait, SluicectlWaits) {
  std::string out;
  EXPECT_EQ(sluicectl(*daemon_, {"acquire", "gpu", "x", "--wait", "200"}, out), 1) << out;
  EXPECT_NE(out.find("waited_ms="), std::string::npos) << out;
  EXPECT_NE(out.find("wait=deadline"), std::string::npos) << out;
  EXPECT_EQ(call(holder_, {"SL.RELEASE", lease_}).integer, 1);
  EXPECT_EQ(sluicectl(*daemon_, {"check", "gpu", "x", "--wait", "200"}, out), 0) << out;
  EXPECT_NE(out.find("allowed"), std::string::npos) << out;
  // stats lists the queue: one expired waiter.
  EXPECT_EQ(sluicectl(*daemon_, {"stats"}, out), 0) << out;
  EXPECT_NE(out.find("QUEUE"), std::string::npos) << out;
  EXPECT_NE(out.find("gpu"), std::string::npos) << out;
}

// A rate limit that admits again only in an hour: a WAIT of a second cannot help, so the
// denial comes at once.
TEST_F(Wait, ARateLimitBeyondTheWaitDeniesAtOnce) {
  Client c = daemon_->client();
  ASSERT_TRUE(allowed(call(c, {"SL.CHECK", "hourly", "x"})));
  const auto sent = Clock::now();
  Value v = call(c, {"SL.CHECK", "hourly", "x", "WAIT", "1000"});
  EXPECT_LT(ms_since(sent), 500);
  EXPECT_FALSE(allowed(v));
  EXPECT_EQ(outcome(v), "not_waitable");
  EXPECT_GT(v.elements[4].integer, 1000);
}

}  // namespace
}  // namespace sluice::testing
