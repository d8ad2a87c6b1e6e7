#include "slot.h"

#include <array>
#include <charconv>

namespace sluice::redis_plugin {
namespace {

constexpr std::array<uint16_t, 256> make_crc16_table() {
  std::array<uint16_t, 256> table{};
  for (int i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<uint16_t>((crc & 0x8000) != 0 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    table[static_cast<size_t>(i)] = crc;
  }
  return table;
}

constexpr std::array<uint16_t, 256> kCrc16Table = make_crc16_table();

bool parse_port(std::string_view text, int& port) {
  int v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end || v < 1 || v > 65535) return false;
  port = v;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

}  // namespace

uint16_t crc16(std::string_view bytes) {
  uint16_t crc = 0;
  for (const char c : bytes) {
    crc = static_cast<uint16_t>((crc << 8) ^
                                kCrc16Table[((crc >> 8) ^ static_cast<uint8_t>(c)) & 0xff]);
  }
  return crc;
}

std::string_view hash_tag(std::string_view key) {
  const size_t open = key.find('{');
  if (open == std::string_view::npos) return key;
  const size_t close = key.find('}', open + 1);
  if (close == std::string_view::npos || close == open + 1) return key;
  return key.substr(open + 1, close - open - 1);
}

uint16_t key_slot(std::string_view key) { return crc16(hash_tag(key)) & (kSlotCount - 1); }

std::string HostPort::name() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

bool parse_host_port(std::string_view text, HostPort& out) {
  std::string_view host, port;
  if (text.starts_with('[')) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return false;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return false;
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    // An IPv6 address needs brackets, or its last group would read as the port.
    if (host.find(':') != std::string_view::npos) return false;
  }
  if (host.empty() || host.find_first_of(" ,") != std::string_view::npos) return false;
  int p = 0;
  if (!parse_port(port, p)) return false;
  out.host = std::string(host);
  out.port = p;
  return true;
}

bool parse_host_port_list(std::string_view text, std::vector<HostPort>& out, std::string& error) {
  out.clear();
  if (trim(text).empty()) {
    error = "is empty (expected HOST:PORT[,HOST:PORT...])";
    return false;
  }
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = trim(text.substr(0, comma));
    HostPort hp;
    if (!parse_host_port(item, hp)) {
      error = "has '" + std::string(item) +
              "', which is not HOST:PORT (a port from 1 to 65535; [brackets] around IPv6)";
      return false;
    }
    out.push_back(std::move(hp));
    if (comma == std::string_view::npos) return true;
    text.remove_prefix(comma + 1);
  }
}

std::optional<Redirect> parse_redirect(std::string_view error) {
  Redirect r;
  if (error.starts_with("MOVED ")) {
    error.remove_prefix(6);
  } else if (error.starts_with("ASK ")) {
    r.ask = true;
    error.remove_prefix(4);
  } else {
    return std::nullopt;
  }
  const size_t space = error.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  int slot = 0;
  const std::string_view slot_text = error.substr(0, space);
  auto [ptr, ec] = std::from_chars(slot_text.data(), slot_text.data() + slot_text.size(), slot);
  if (ec != std::errc() || ptr != slot_text.data() + slot_text.size() || slot < 0 ||
      slot >= kSlotCount) {
    return std::nullopt;
  }
  r.slot = static_cast<uint16_t>(slot);
  // The address's port follows its last ':'; IPv6 hosts come without brackets here.
  const std::string_view address = error.substr(space + 1);
  const size_t colon = address.rfind(':');
  if (colon == std::string_view::npos || !parse_port(address.substr(colon + 1), r.to.port)) {
    return std::nullopt;
  }
  std::string_view host = address.substr(0, colon);
  if (host.starts_with('[') && host.ends_with(']')) host = host.substr(1, host.size() - 2);
  r.to.host = std::string(host);
  return r;
}

}  // namespace sluice::redis_plugin
