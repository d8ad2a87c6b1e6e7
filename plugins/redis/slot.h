// Redis Cluster routing, the part that is ours: which slot a key hashes to, where a node lives,
// and what a MOVED or ASK redirection says. Pure functions, unit-tested on their own
// (tests/unit/test_redis_slot.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::redis_plugin {

inline constexpr int kSlotCount = 16384;

// CRC16-CCITT (XModem: polynomial 0x1021, initial value 0), the checksum Redis Cluster hashes
// keys with. crc16("123456789") == 0x31C3.
uint16_t crc16(std::string_view bytes);

// The part of a key Redis Cluster hashes: between the first '{' and the first '}' after it,
// when that is not empty; the whole key otherwise.
std::string_view hash_tag(std::string_view key);

// The slot (0..16383) of a key, as CLUSTER KEYSLOT answers.
uint16_t key_slot(std::string_view key);

// A TCP endpoint.
struct HostPort {
  std::string host;
  int port = 0;
  std::string name() const;  // "127.0.0.1:7000", "[::1]:7000"
  bool operator==(const HostPort&) const = default;
};

// "HOST:PORT", "[V6]:PORT". False for anything else (no port, a port outside 1..65535).
bool parse_host_port(std::string_view text, HostPort& out);

// "HOST:PORT[,HOST:PORT...]" (spaces around commas allowed). On failure, `error` says which
// element is wrong and why; an empty list is an error.
bool parse_host_port_list(std::string_view text, std::vector<HostPort>& out, std::string& error);

// A redirection: "MOVED 3999 127.0.0.1:6381" or "ASK 3999 127.0.0.1:6381". An empty host (a
// node that does not know its own address) means the host of the node that answered.
struct Redirect {
  bool ask = false;  // ASK: this slot is migrating; send ASKING first, and only this once
  uint16_t slot = 0;
  HostPort to;
};

// Parses a redirection error; nullopt for any other error.
std::optional<Redirect> parse_redirect(std::string_view error);

}  // namespace sluice::redis_plugin
