#include "config.h"

#include <charconv>
#include <string_view>
#include <vector>

namespace sluice::redis_plugin {
namespace {

constexpr std::string_view kKnownKeys =
    "url, socket, host, port, user, password, db, connect_timeout_ms, command_timeout_ms, "
    "reconnect_max_ms, prefix, connections, coalesce, pipeline, max_in_flight, clock, "
    "ttl_grace_ms, cluster, sentinel, master, sentinel_user, sentinel_password";

std::string names(const std::vector<HostPort>& list) {
  std::string s;
  for (const auto& hp : list) s += (s.empty() ? "" : ",") + hp.name();
  return s;
}

bool parse_int(std::string_view text, int64_t min, int64_t max, int64_t& out) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end || v < min || v > max) return false;
  out = v;
  return true;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding for the user and password parts of a URL.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size()) return false;
    const int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

std::string bad_url(std::string_view url, std::string_view why) {
  return "redis plugin: url '" + std::string(url) + "' " + std::string(why) +
         " (expected redis://[user:password@]host[:port][/db] or unix:///path[?db=N]).";
}

bool parse_url(std::string_view url, Config& c, std::string& error) {
  constexpr std::string_view kTcp = "redis://", kUnix = "unix://";
  if (url.starts_with(kUnix)) {
    std::string_view rest = url.substr(kUnix.size());
    const size_t q = rest.find('?');
    std::string_view query = q == std::string_view::npos ? "" : rest.substr(q + 1);
    rest = rest.substr(0, q);
    if (rest.empty() || rest.front() != '/') {
      error = bad_url(url, "has no absolute socket path");
      return false;
    }
    c.socket_path = std::string(rest);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? "" : query.substr(amp + 1);
      int64_t v = 0;
      if (pair.starts_with("db=") && parse_int(pair.substr(3), 0, 1 << 20, v)) {
        c.db = static_cast<int>(v);
      } else {
        error = bad_url(url, "has an unknown or invalid query part '" + std::string(pair) + "'");
        return false;
      }
    }
    return true;
  }
  if (!url.starts_with(kTcp)) {
    error = bad_url(url, "has an unknown scheme");
    return false;
  }
  std::string_view rest = url.substr(kTcp.size());
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  const std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  const size_t at = authority.rfind('@');
  if (at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const size_t colon = userinfo.find(':');
    std::string user, password;
    if (!percent_decode(userinfo.substr(0, colon), user) ||
        (colon != std::string_view::npos &&
         !percent_decode(userinfo.substr(colon + 1), password))) {
      error = bad_url(url, "has a malformed %-escape in its user or password");
      return false;
    }
    if (colon == std::string_view::npos) {
      c.password = user;  // redis://secret@host: a password alone
    } else {
      c.user = user;
      c.password = password;
    }
  }
  std::string_view host = authority, port;
  if (authority.starts_with('[')) {  // [::1]:6379
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      error = bad_url(url, "has an unterminated [IPv6] host");
      return false;
    }
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        error = bad_url(url, "has text after its [IPv6] host");
        return false;
      }
      port = after.substr(1);
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) {
    error = bad_url(url, "has no host");
    return false;
  }
  c.host = std::string(host);
  c.socket_path.clear();
  int64_t v = 0;
  if (!port.empty()) {
    if (!parse_int(port, 1, 65535, v)) {
      error = bad_url(url, "has an invalid port '" + std::string(port) + "'");
      return false;
    }
    c.port = static_cast<int>(v);
  }
  if (!path.empty()) {
    if (!parse_int(path, 0, 1 << 20, v)) {
      error = bad_url(url, "has an invalid database number '" + std::string(path) + "'");
      return false;
    }
    c.db = static_cast<int>(v);
  }
  return true;
}

// One way to find Redis: a server, a cluster, or Sentinels, each complete.
bool choose_mode(Config& c, bool single_keys, std::string& error) {
  const bool cluster = !c.cluster_seeds.empty(), sentinel = !c.sentinels.empty();
  if (cluster && sentinel) {
    error =
        "redis plugin: cluster and sentinel cannot be used together (Redis Cluster fails over "
        "by itself; Sentinel watches a master without Cluster).";
    return false;
  }
  if ((cluster || sentinel) && single_keys) {
    error = std::string("redis plugin: ") + (cluster ? "cluster" : "sentinel") +
            " finds the servers itself; remove url, socket, host and port.";
    return false;
  }
  if (sentinel && c.master_name.empty()) {
    error =
        "redis plugin: sentinel needs master=NAME, the name the Sentinels monitor (as in "
        "'sentinel monitor NAME host port quorum').";
    return false;
  }
  if (!sentinel && !c.master_name.empty()) {
    error = "redis plugin: master names a master of Redis Sentinel; it needs sentinel=HOST:PORT.";
    return false;
  }
  if (!sentinel && (!c.sentinel_password.empty() || !c.sentinel_user.empty())) {
    error = "redis plugin: sentinel_user and sentinel_password need sentinel=HOST:PORT.";
    return false;
  }
  if (cluster && c.db != 0) {
    error = "redis plugin: Redis Cluster has only database 0, not db " + std::to_string(c.db) + ".";
    return false;
  }
  c.mode = cluster ? Mode::kCluster : sentinel ? Mode::kSentinel : Mode::kSingle;
  return true;
}

}  // namespace

std::string Config::endpoint() const {
  if (mode == Mode::kCluster) return "Redis Cluster (seeds " + names(cluster_seeds) + ")";
  if (mode == Mode::kSentinel) {
    return "the master '" + master_name + "' of the Sentinels " + names(sentinels);
  }
  std::string s = socket_path.empty() ? host + ":" + std::to_string(port) : "unix://" + socket_path;
  if (db != 0) s += (socket_path.empty() ? "/" : "?db=") + std::to_string(db);
  return s;
}

bool parse_config(const char* const* keys, const char* const* values, size_t count, Config& c,
                  std::string& error) {
  std::vector<std::pair<std::string_view, std::string_view>> pairs;
  for (size_t i = 0; i < count; ++i) {
    pairs.emplace_back(keys[i] != nullptr ? keys[i] : "", values[i] != nullptr ? values[i] : "");
  }
  // The url first, so that explicit keys refine it whatever their order.
  for (const auto& [key, value] : pairs) {
    if (key == "url" && !parse_url(value, c, error)) return false;
  }
  auto int_option = [&](std::string_view key, std::string_view value, int64_t min, int64_t max,
                        int64_t& out) {
    if (parse_int(value, min, max, out)) return true;
    error = "redis plugin: " + std::string(key) + " must be an integer from " +
            std::to_string(min) + " to " + std::to_string(max) + ", not '" + std::string(value) +
            "'.";
    return false;
  };
  bool single_keys = false;  // a key that names one server: url, socket, host, port
  for (const auto& [key, value] : pairs) {
    int64_t v = 0;
    single_keys = single_keys || key == "url" || key == "socket" || key == "host" || key == "port";
    if (key == "url") {
      continue;
    } else if (key == "cluster" || key == "sentinel") {
      auto& list = key == "cluster" ? c.cluster_seeds : c.sentinels;
      std::string why;
      if (!parse_host_port_list(value, list, why)) {
        error = "redis plugin: " + std::string(key) + " " + why + ".";
        return false;
      }
    } else if (key == "master") {
      if (value.empty()) {
        error = "redis plugin: master must name the master the Sentinels monitor.";
        return false;
      }
      c.master_name = std::string(value);
    } else if (key == "sentinel_user") {
      c.sentinel_user = std::string(value);
    } else if (key == "sentinel_password") {
      c.sentinel_password = std::string(value);
    } else if (key == "socket") {
      if (value.empty() || value.front() != '/') {
        error = "redis plugin: socket must be an absolute path, not '" + std::string(value) + "'.";
        return false;
      }
      c.socket_path = std::string(value);
    } else if (key == "host") {
      if (value.empty()) {
        error = "redis plugin: host must not be empty.";
        return false;
      }
      c.host = std::string(value);
    } else if (key == "port") {
      if (!int_option(key, value, 1, 65535, v)) return false;
      c.port = static_cast<int>(v);
    } else if (key == "user") {
      c.user = std::string(value);
    } else if (key == "password") {
      c.password = std::string(value);
    } else if (key == "db") {
      if (!int_option(key, value, 0, 1 << 20, v)) return false;
      c.db = static_cast<int>(v);
    } else if (key == "connect_timeout_ms") {
      if (!int_option(key, value, 1, 600000, c.connect_timeout_ms)) return false;
    } else if (key == "command_timeout_ms") {
      if (!int_option(key, value, 1, 600000, c.command_timeout_ms)) return false;
    } else if (key == "reconnect_max_ms") {
      if (!int_option(key, value, 1, 600000, c.reconnect_max_ms)) return false;
    } else if (key == "prefix") {
      if (value.find_first_of("{}") != std::string_view::npos) {
        error =
            "redis plugin: prefix must not contain '{' or '}', which would change the keys' "
            "hash tag, but is '" +
            std::string(value) + "'.";
        return false;
      }
      c.prefix = std::string(value);
    } else if (key == "connections") {
      if (!int_option(key, value, 1, 64, v)) return false;
      c.connections = static_cast<int>(v);
    } else if (key == "coalesce") {
      if (!int_option(key, value, 1, 1024, v)) return false;
      c.coalesce = static_cast<int>(v);
    } else if (key == "pipeline") {
      if (!int_option(key, value, 1, 1024, v)) return false;
      c.pipeline = static_cast<int>(v);
    } else if (key == "max_in_flight") {
      if (!int_option(key, value, 1, 100000000, c.max_in_flight)) return false;
    } else if (key == "ttl_grace_ms") {
      if (!int_option(key, value, 0, int64_t{1} << 40, c.ttl_grace_ms)) return false;
    } else if (key == "clock") {
      if (value == "redis") {
        c.engine_clock = false;
      } else if (value == "engine") {
        c.engine_clock = true;
      } else {
        error =
            "redis plugin: clock must be 'redis' or 'engine', not '" + std::string(value) + "'.";
        return false;
      }
    } else {
      error = "redis plugin: unknown configuration key '" + std::string(key) +
              "' (known keys: " + std::string(kKnownKeys) + ").";
      return false;
    }
  }
  return choose_mode(c, single_keys, error);
}

}  // namespace sluice::redis_plugin
