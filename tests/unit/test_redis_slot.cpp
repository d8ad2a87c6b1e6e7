// The Redis plugin's own Cluster routing: CRC16, hash tags, slots, addresses and redirections.
#include <gtest/gtest.h>

#include "slot.h"

namespace sluice::redis_plugin {
namespace {

// The check value of CRC16-CCITT (XModem), which Redis Cluster's specification quotes.
TEST(RedisSlot, Crc16MatchesTheXModemCheckValue) {
  EXPECT_EQ(crc16("123456789"), 0x31C3);
  EXPECT_EQ(crc16(""), 0);
  EXPECT_EQ(crc16(std::string_view("\0", 1)), 0);
  EXPECT_EQ(crc16("A"), 0x58E5);
}

// Slots as a real redis-server's CLUSTER KEYSLOT gives them.
TEST(RedisSlot, SlotsMatchClusterKeyslot) {
  EXPECT_EQ(key_slot("foo"), 12182);
  EXPECT_EQ(key_slot("bar"), 5061);
  EXPECT_EQ(key_slot("hello"), 866);
  EXPECT_EQ(key_slot("sluice:{chat:alice}per_minute#fw"), key_slot("chat:alice"));
  EXPECT_EQ(key_slot("sluice:{chat:alice}per_minute#fw"), 4013);
}

// Redis's rules: the first '{', the first '}' after it, and only a non-empty tag counts.
TEST(RedisSlot, HashTagFollowsRedisRules) {
  EXPECT_EQ(hash_tag("{user1000}.following"), "user1000");
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(hash_tag("foo{}{bar}"), "foo{}{bar}");
  EXPECT_EQ(hash_tag("foo{{bar}}zap"), "{bar");
  EXPECT_EQ(hash_tag("foo{bar}{zap}"), "bar");
  EXPECT_EQ(hash_tag("no tag"), "no tag");
  EXPECT_EQ(hash_tag("open{only"), "open{only");
  // A subject holding '}' still keeps every key of one request in one slot: they share the
  // whole "{resource:subject" prefix.
  EXPECT_EQ(key_slot("p:{r:a}b}x#fw"), key_slot("p:{r:a}b}y#gcra"));
}

// Addresses: host and port, IPv6 in brackets; anything else is refused.
TEST(RedisSlot, HostPortParsing) {
  HostPort hp;
  ASSERT_TRUE(parse_host_port("127.0.0.1:7000", hp));
  EXPECT_EQ(hp.host, "127.0.0.1");
  EXPECT_EQ(hp.port, 7000);
  ASSERT_TRUE(parse_host_port("[::1]:7001", hp));
  EXPECT_EQ(hp.host, "::1");
  EXPECT_EQ(hp.port, 7001);
  EXPECT_EQ(hp.name(), "[::1]:7001");
  for (const char* bad : {"", "localhost", "host:", ":7000", "host:0", "host:65536", "host:70x",
                          "::1:7000", "[::1]7000", "[::1]", "a b:1"}) {
    EXPECT_FALSE(parse_host_port(bad, hp)) << bad;
  }
  std::vector<HostPort> list;
  std::string error;
  ASSERT_TRUE(parse_host_port_list("127.0.0.1:7000, 127.0.0.1:7001,[::1]:7002", list, error));
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[2].name(), "[::1]:7002");
  EXPECT_FALSE(parse_host_port_list("127.0.0.1:7000,nohost", list, error));
  EXPECT_NE(error.find("'nohost'"), std::string::npos) << error;
  EXPECT_FALSE(parse_host_port_list("", list, error));
  EXPECT_FALSE(parse_host_port_list("127.0.0.1:7000,", list, error));
}

// MOVED and ASK, including Redis 7's empty host and IPv6; other errors are not redirections.
TEST(RedisSlot, RedirectParsing) {
  auto moved = parse_redirect("MOVED 3999 127.0.0.1:6381");
  ASSERT_TRUE(moved);
  EXPECT_FALSE(moved->ask);
  EXPECT_EQ(moved->slot, 3999);
  EXPECT_EQ(moved->to, (HostPort{"127.0.0.1", 6381}));
  auto ask = parse_redirect("ASK 16383 ::1:7002");
  ASSERT_TRUE(ask);
  EXPECT_TRUE(ask->ask);
  EXPECT_EQ(ask->slot, 16383);
  EXPECT_EQ(ask->to, (HostPort{"::1", 7002}));
  auto unknown_host = parse_redirect("MOVED 0 :7003");
  ASSERT_TRUE(unknown_host);
  EXPECT_EQ(unknown_host->to.host, "");
  EXPECT_EQ(unknown_host->to.port, 7003);
  for (const char* other :
       {"ERR unknown", "MOVED", "MOVED 16384 h:1", "MOVED x h:1", "MOVED 1 h", "ASK 1 h:0",
        "TRYAGAIN Multiple keys request", "CLUSTERDOWN The cluster is down"}) {
    EXPECT_FALSE(parse_redirect(other)) << other;
  }
}

}  // namespace
}  // namespace sluice::redis_plugin
