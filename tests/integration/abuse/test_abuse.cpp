// Hostile and broken clients against a real sluiced: oversized frames, absurd declared
// lengths, deep nesting, binary garbage, thousands of connections, half-sent frames left open
// and clients that never read. After each, a well-behaved client must be served, and the
// daemon's resident memory must stay within a bound that follows from its caps
// (docs/hardening.md has the formula and the figures these tests print).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "abuse_support.h"

namespace sluice::testing {
namespace {

using namespace std::chrono_literals;
using resp::Value;

constexpr const char* kPolicy = R"(version: 1
default_tier: free
unknown_resource: deny
tiers:
  free: {multiplier: 1}
resources:
  predict:
    limits:
      - {name: per_day, algorithm: fixed_window, limit: 1000000000, window: 1d}
)";

// Closes every descriptor it holds when it goes out of scope.
struct Sockets {
  std::vector<int> fds;
  ~Sockets() { close_all(); }
  void close_all() {
    for (int fd : fds) ::close(fd);
    fds.clear();
  }
};

class Abuse : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { raise_fd_limit(); }

  void start(std::vector<std::string> args = {}) {
    daemon_ = std::make_unique<Daemon>(kPolicy, std::move(args));
    ASSERT_TRUE(daemon_->ok()) << daemon_->log();
    // Warm the daemon up so that the baseline includes what a working daemon always holds.
    Latency warm = decision_latency(*daemon_, 2000, "predict", "warmup");
    ASSERT_EQ(warm.errors, 0);
    baseline_kib_ = rss_kib(daemon_->pid());
  }

  // The daemon still answers decisions, correctly, to a client that behaves.
  void expect_served() {
    Client c = daemon_->client();
    Value v = call(c, {"SL.CHECK", "predict", "good-client"});
    ASSERT_EQ(v.type, Value::Type::kArray) << v.to_string() << "\n" << daemon_->log();
    EXPECT_EQ(v.elements[0].integer, 1);
    EXPECT_EQ(call(c, {"PING"}).str, "PONG");
  }

  long growth_kib() const { return rss_kib(daemon_->pid()) - baseline_kib_; }
  void slow_and_never_reading_clients(bool fast);

  std::unique_ptr<Daemon> daemon_;
  long baseline_kib_ = 0;
};

// A request larger than --max-frame-bytes is refused with a protocol error and its connection
// closed before the daemon has buffered more than the cap.
TEST_F(Abuse, OversizedFrameIsRefusedAtTheCap) {
  start({"--max-frame-bytes", "65536"});
  const int fd = connect_raw(daemon_->socket_path());
  ASSERT_GE(fd, 0);
  std::thread writer([fd] {
    std::string frame = "*2\r\n$4\r\nECHO\r\n$8000000\r\n";
    send_all(fd, frame);
    const std::string chunk(65536, 'x');
    for (int i = 0; i < 122; ++i) {
      if (!send_all(fd, chunk)) break;  // the daemon closed: the rest is never read
    }
  });
  bool eof = false;
  const std::string got = read_until_eof(fd, 10s, eof);
  writer.join();
  ::close(fd);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got.rfind("-ERR protocol error", 0), 0u) << got;
  expect_served();
  if (kBoundsApply) {
    EXPECT_LT(growth_kib(), 8 * 1024);
  }
}

// Declared lengths are checked before anything is allocated for them: absurd, negative and
// over-the-cap bulk and array lengths close the connection at once, and a hundred clients
// that declare 15 MB (under the 16 MiB cap) but send 1 KB cost only what they sent.
TEST_F(Abuse, HugeDeclaredLengthsAllocateNothing) {
  start();
  // The stream cannot be resynchronised after these: an error, then the connection closes.
  const std::vector<std::string> fatal = {
      "*1\r\n$9223372036854775807\r\n",
      "*1\r\n$99999999999999999999999\r\n",
      "*9223372036854775807\r\n",
      "*1\r\n$-2\r\n",
      "*1\r\n$17000000\r\n",
      "*2000000\r\n",
      "*1\r\n$4\r\nPINGxx\r\n",
      "*1\r\n:5\r\n",
  };
  for (const auto& f : fatal) {
    const int fd = connect_raw(daemon_->socket_path());
    ASSERT_GE(fd, 0);
    send_all(fd, f);
    bool eof = false;
    const std::string got = read_until_eof(fd, 5s, eof);
    ::close(fd);
    EXPECT_TRUE(eof) << "frame not refused: " << f;
    EXPECT_EQ(got.rfind("-ERR", 0), 0u) << f << " -> " << got;
  }
  // As in Redis, a negative count is an empty request and a line that is not an array is an
  // inline command: skipped or answered, and the connection goes on.
  for (const std::string f : {"*-7\r\n", "$5\r\nhello\r\n"}) {
    Client c = daemon_->client();
    ASSERT_TRUE(c.send(f + "PING\r\n"));
    Value v;
    for (int replies = 0; replies < 3 && v.str != "PONG"; ++replies) {
      ASSERT_TRUE(c.read(v)) << c.error();
      EXPECT_TRUE(v.is_error() || v.str == "PONG") << v.to_string();
    }
    EXPECT_EQ(v.str, "PONG") << f;
  }
  Sockets held;
  const std::string head = "*2\r\n$4\r\nECHO\r\n$15000000\r\n" + std::string(1024, 'y');
  for (int i = 0; i < 100; ++i) {
    held.fds.push_back(connect_raw(daemon_->socket_path()));
    ASSERT_GE(held.fds.back(), 0);
    ASSERT_TRUE(send_all(held.fds.back(), head));
  }
  std::this_thread::sleep_for(300ms);
  expect_served();
  const long growth = growth_kib();
  std::printf("[abuse] 100 clients declaring 15 MB each: RSS growth %ld KiB\n", growth);
  // 100 x (4 KiB buffer + session): nowhere near 1.5 GB
  if (kBoundsApply) {
    EXPECT_LT(growth, 16 * 1024);
  }
}

// Nested arrays are not a request: the first nested header ends the connection, however deep.
TEST_F(Abuse, DeeplyNestedArraysAreRefused) {
  start();
  std::string nested;
  for (int i = 0; i < 100000; ++i) nested += "*1\r\n";
  for (const std::string& f : {nested, std::string("*2\r\n*2\r\n$1\r\na\r\n")}) {
    const int fd = connect_raw(daemon_->socket_path());
    ASSERT_GE(fd, 0);
    std::thread writer([fd, &f] { send_all(fd, f); });
    bool eof = false;
    const std::string got = read_until_eof(fd, 5s, eof);
    writer.join();
    ::close(fd);
    EXPECT_TRUE(eof);
    EXPECT_EQ(got.rfind("-ERR protocol error", 0), 0u) << got;
  }
  expect_served();
  if (kBoundsApply) {
    EXPECT_LT(growth_kib(), 8 * 1024);
  }
}

// Random bytes on many connections at once: each is answered with errors or closed, none
// disturbs the others, and nothing is kept once they are gone.
TEST_F(Abuse, BinaryGarbageIsHarmless) {
  start();
  std::mt19937_64 rng(20261125);
  std::vector<std::thread> writers;
  std::vector<int> fds;
  for (int i = 0; i < 32; ++i) {
    std::string garbage(256 * 1024, '\0');
    for (char& ch : garbage) ch = static_cast<char>(rng());
    const int fd = connect_raw(daemon_->socket_path());
    ASSERT_GE(fd, 0);
    fds.push_back(fd);
    writers.emplace_back([fd, g = std::move(garbage)] {
      send_all(fd, g);
      ::shutdown(fd, SHUT_WR);
    });
  }
  for (int fd : fds) {
    bool eof = false;
    read_until_eof(fd, 10s, eof);
    EXPECT_TRUE(eof);
  }
  for (auto& t : writers) t.join();
  for (int fd : fds) ::close(fd);
  expect_served();
  EXPECT_EQ(wait_for_connections(*daemon_, 0), 0);
  if (kBoundsApply) {
    EXPECT_LT(growth_kib(), 16 * 1024);
  }
}

// Four thousand idle connections: the daemon holds them all, keeps serving, and lets go of
// them (and their memory) when they close.
TEST_F(Abuse, ThousandsOfConnections) {
  start();
  Sockets conns;
  for (int i = 0; i < 4000; ++i) {
    const int fd = connect_raw(daemon_->socket_path());
    ASSERT_GE(fd, 0) << "connection " << i << ": " << std::strerror(errno);
    conns.fds.push_back(fd);
  }
  EXPECT_EQ(wait_for_connections(*daemon_, 4000), 4000);
  const long held = growth_kib();
  const Latency lat = decision_latency(*daemon_, 2000, "predict", "good");
  std::printf(
      "[abuse] 4000 idle connections: RSS growth %ld KiB (%.1f KiB each); p50 %.0f us "
      "p99 %.0f us\n",
      held, held / 4000.0, lat.p50_us, lat.p99_us);
  EXPECT_EQ(lat.errors, 0);
  // docs/operations.md: about 5 KiB per idle connection
  if (kBoundsApply) {
    EXPECT_LT(held, 4000 * 16);
  }
  conns.close_all();
  EXPECT_EQ(wait_for_connections(*daemon_, 0), 0);
  expect_served();
}

// A flood of connections that each made the daemon buffer 30 KB: once they have closed, what
// their buffers took goes back to the system instead of staying in the allocator's arenas.
TEST_F(Abuse, AFloodGivesItsMemoryBackWhenItCloses) {
  constexpr int kConnections = 2000;
  start();
  const std::string half =
      "*3\r\n$8\r\nSL.CHECK\r\n$7\r\npredict\r\n$40000\r\n" + std::string(30'000, 'x');
  Sockets conns;
  for (int i = 0; i < kConnections; ++i) {
    const int fd = connect_raw(daemon_->socket_path());
    ASSERT_GE(fd, 0) << "connection " << i << ": " << std::strerror(errno);
    conns.fds.push_back(fd);
    ASSERT_TRUE(send_all(fd, half));
  }
  EXPECT_EQ(wait_for_connections(*daemon_, kConnections), kConnections);
  // The daemon has read what was sent once its resident size stops growing.
  long held = growth_kib();
  for (int i = 0; i < 50; ++i) {
    std::this_thread::sleep_for(100ms);
    const long now = growth_kib();
    if (now <= held + 256 && held > kConnections * 16) break;
    held = std::max(held, now);
  }
  conns.close_all();
  EXPECT_EQ(wait_for_connections(*daemon_, 0), 0);
  long left = growth_kib();
  for (int i = 0; i < 20 && left > held / 10; ++i) {
    std::this_thread::sleep_for(100ms);
    left = growth_kib();
  }
  std::printf(
      "[abuse] %d connections holding 30 KB half-sent frames: RSS growth %ld KiB; after "
      "they closed %ld KiB (%.0f %%)\n",
      kConnections, held, left, held > 0 ? 100.0 * left / held : 0.0);
  EXPECT_GT(held, kConnections * 16) << "the flood did not make the daemon buffer its frames";
  if (kBoundsApply) {
    EXPECT_LT(left, held / 10) << "the flood's buffers stayed resident after it closed";
  }
  expect_served();
}

// The issue's yardstick: 1 000 clients that left a frame half-sent and 1 000 that send and
// never read. The never-readers are paused at --max-output-bytes each, so memory is bounded
// by the caps, and a well-behaved client is still served. With `fast`, its p99 must also be
// under 2 ms: a timing check, run by scripts/bench (label perf), not by scripts/test.
void Abuse::slow_and_never_reading_clients(bool fast) {
  constexpr size_t kMaxOutput = 64 * 1024;
  start({"--max-output-bytes", std::to_string(kMaxOutput)});
  Sockets slow, deaf;
  const std::string half = "*3\r\n$8\r\nSL.CHECK\r\n$7\r\npredict\r\n$20\r\nslow-cli";
  for (int i = 0; i < 1000; ++i) {
    const int fd = connect_raw(daemon_->socket_path());
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, half));
    slow.fds.push_back(fd);
  }
  // 950 send ECHOs of 8 KiB (replies as large as the requests, so their output fills fast)
  // and 50 send decisions; none of them reads. Two rounds fill what the first left room for.
  const std::string payload(8192, 'e');
  const std::string echo = resp::encode_command({"ECHO", payload});
  std::string checks;
  for (int i = 0; i < 200; ++i) checks += resp::encode_command({"SL.CHECK", "predict", "deaf"});
  for (int i = 0; i < 1000; ++i) {
    const int fd = connect_raw(daemon_->socket_path(), true);
    ASSERT_GE(fd, 0);
    deaf.fds.push_back(fd);
  }
  size_t sent = 0;
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < deaf.fds.size(); ++i) {
      sent += send_until_full(deaf.fds[i], i < 950 ? echo : checks, 4u << 20);
    }
    std::this_thread::sleep_for(500ms);
  }
  EXPECT_EQ(wait_for_connections(*daemon_, 2000), 2000);
  const long growth = growth_kib();
  // Two cores are shared with whatever else the machine runs: a run that a neighbour's burst
  // spoiled is measured again (at most three runs; each is printed).
  Latency lat;
  for (int attempt = 0; attempt < 3; ++attempt) {
    lat = decision_latency(*daemon_, 5000, "predict", "good");
    std::printf("[abuse] run %d: p99 %.0f us\n", attempt + 1, lat.p99_us);
    if (lat.errors != 0 || lat.p99_us < 2000.0 || !kBoundsApply || !fast) break;
  }
  const long growth_after = growth_kib();
  std::printf(
      "[abuse] 1000 half-frame + 1000 never-reading clients (%.0f MiB sent to them, "
      "max-output %zu KiB): RSS baseline %ld KiB, growth %ld KiB; well-behaved client "
      "p50 %.0f us, p99 %.0f us, max %.0f us over 5000 decisions\n",
      sent / 1048576.0, kMaxOutput / 1024, baseline_kib_, growth_after, lat.p50_us, lat.p99_us,
      lat.max_us);
  EXPECT_EQ(lat.errors, 0);
  if (kBoundsApply && fast) {
    EXPECT_LT(lat.p99_us, 2000.0);
  }
  // Bound (docs/hardening.md): per never-reader 2 x max-output (the reply buffer and the write
  // in flight) + 64 KiB of input and session; per half-frame client 16 KiB.
  const long bound_kib = 1000 * static_cast<long>(2 * kMaxOutput / 1024 + 64) + 1000 * 16;
  if (kBoundsApply) {
    EXPECT_LT(std::max(growth, growth_after), bound_kib);
  }
  slow.close_all();
  deaf.close_all();
  EXPECT_EQ(wait_for_connections(*daemon_, 0), 0);
  expect_served();
}

TEST_F(Abuse, SlowAndNeverReadingClientsAreBounded) { slow_and_never_reading_clients(false); }

class AbusePerf : public Abuse {};
TEST_F(AbusePerf, SlowAndNeverReadingClientsLeaveOthersFast) {
  slow_and_never_reading_clients(true);
}

}  // namespace
}  // namespace sluice::testing
