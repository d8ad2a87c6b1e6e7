#include "config.h"

#include <charconv>
#include <string_view>

namespace sluice::sqlite_plugin {
namespace {

std::optional<std::string> parse_int(std::string_view key, std::string_view text, int64_t min,
                                     int64_t max, int64_t& out) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    return "sqlite storage: " + std::string(key) + "=" + std::string(text) +
           " is not a whole number between " + std::to_string(min) + " and " + std::to_string(max) +
           ".";
  }
  out = v;
  return std::nullopt;
}

std::optional<std::string> parse_bool(std::string_view key, std::string_view text, bool& out) {
  if (text == "1" || text == "true" || text == "yes" || text == "on") {
    out = true;
  } else if (text == "0" || text == "false" || text == "no" || text == "off") {
    out = false;
  } else {
    return "sqlite storage: " + std::string(key) + "=" + std::string(text) +
           " must be true or false.";
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> parse_config(const char* const* keys, const char* const* values,
                                        size_t count, Config& out) {
  constexpr int64_t kHour = 3'600'000;
  for (size_t i = 0; i < count; ++i) {
    const std::string_view key = keys[i] ? keys[i] : "";
    const std::string_view value = values[i] ? values[i] : "";
    std::optional<std::string> err;
    if (key == "path") {
      if (value.empty()) return "sqlite storage: path= must name the database file.";
      out.path = value;
    } else if (key == "durability") {
      if (value == "interval") {
        out.durability = Durability::kInterval;
      } else if (value == "commit") {
        out.durability = Durability::kCommit;
      } else {
        return "sqlite storage: durability=" + std::string(value) +
               " is unknown; use interval or commit.";
      }
    } else if (key == "interval_ms") {
      err = parse_int(key, value, 1, kHour, out.interval_ms);
    } else if (key == "synchronous") {
      if (value != "off" && value != "normal" && value != "full" && value != "extra") {
        return "sqlite storage: synchronous=" + std::string(value) +
               " is unknown; use off, normal, full or extra.";
      }
      out.synchronous = value;
    } else if (key == "busy_timeout_ms") {
      err = parse_int(key, value, 0, kHour, out.busy_timeout_ms);
    } else if (key == "exclusive") {
      err = parse_bool(key, value, out.exclusive_lock);
    } else if (key == "expiry_batch") {
      err = parse_int(key, value, 1, 1'000'000, out.expiry_batch);
    } else if (key == "retry_max_ms") {
      err = parse_int(key, value, 1, kHour, out.retry_max_ms);
    } else if (key == "checkpoint_pages") {
      err = parse_int(key, value, 1, 1 << 24, out.checkpoint_pages);
    } else if (key == "cache_mb") {
      err = parse_int(key, value, 1, 1 << 20, out.cache_mb);
    } else if (key == "fold_mb") {
      err = parse_int(key, value, 1, 1 << 20, out.fold_mb);
    } else if (key == "fold_interval_ms") {
      err = parse_int(key, value, 1, kHour, out.fold_interval_ms);
    } else if (key == "max_size_mb") {
      err = parse_int(key, value, 0, int64_t{1} << 30, out.max_size_mb);
    } else {
      return "sqlite storage: unknown setting '" + std::string(key) +
             "'; known settings are path, durability, interval_ms, synchronous, "
             "busy_timeout_ms, exclusive, expiry_batch, retry_max_ms, max_size_mb, cache_mb, "
             "checkpoint_pages, fold_mb and fold_interval_ms.";
    }
    if (err) return err;
  }
  if (out.path.empty()) {
    return "sqlite storage: path= is required (for example path=/var/lib/sluice/counters.db).";
  }
  if (out.synchronous.empty()) {
    out.synchronous = out.durability == Durability::kCommit ? "full" : "normal";
  }
  return std::nullopt;
}

}  // namespace sluice::sqlite_plugin
