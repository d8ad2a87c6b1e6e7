#include "sentinel.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <string_view>
#include <vector>

namespace sluice::redis_plugin {
namespace {

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};

timeval to_timeval(int64_t ms) {
  return timeval{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>((ms % 1000) * 1000)};
}

std::unique_ptr<redisReply, ReplyDeleter> command(redisContext* c,
                                                  const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return std::unique_ptr<redisReply, ReplyDeleter>(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data())));
}

// One Sentinel's answer: true with `master` set; false with `why`, and `unknown` when the
// Sentinel answered that it monitors no such master.
bool ask_one(const Config& config, const HostPort& sentinel, HostPort& master, std::string& why,
             bool& unknown) {
  unknown = false;
  std::unique_ptr<redisContext, ContextDeleter> ctx(redisConnectWithTimeout(
      sentinel.host.c_str(), sentinel.port, to_timeval(config.connect_timeout_ms)));
  if (!ctx || ctx->err != 0) {
    why = ctx ? ctx->errstr : "out of memory";
    return false;
  }
  redisSetTimeout(ctx.get(), to_timeval(config.command_timeout_ms));
  if (!config.sentinel_password.empty()) {
    auto auth = config.sentinel_user.empty()
                    ? command(ctx.get(), {"AUTH", config.sentinel_password})
                    : command(ctx.get(), {"AUTH", config.sentinel_user, config.sentinel_password});
    if (!auth || auth->type == REDIS_REPLY_ERROR) {
      why = auth ? "refused AUTH: " + std::string(auth->str, auth->len) : ctx->errstr;
      return false;
    }
  }
  auto reply = command(ctx.get(), {"SENTINEL", "get-master-addr-by-name", config.master_name});
  if (!reply) {
    why = ctx->errstr;
    return false;
  }
  if (reply->type == REDIS_REPLY_NIL) {
    why = "monitors no master named '" + config.master_name + "'";
    unknown = true;
    return false;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    why = std::string(reply->str, reply->len);
    return false;
  }
  if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
      reply->element[0]->type != REDIS_REPLY_STRING ||
      reply->element[1]->type != REDIS_REPLY_STRING) {
    why = "answered SENTINEL get-master-addr-by-name with something other than [host, port]";
    return false;
  }
  const std::string host(reply->element[0]->str, reply->element[0]->len);
  const std::string_view port(reply->element[1]->str, reply->element[1]->len);
  int p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (host.empty() || ec != std::errc() || end != port.data() + port.size() || p < 1 || p > 65535) {
    why = "named the master at '" + host + ":" + std::string(port) + "', which is not HOST:PORT";
    return false;
  }
  master = HostPort{host, p};
  return true;
}

}  // namespace

bool ask_sentinel_majority(const Config& config, HostPort& master) {
  std::vector<std::pair<HostPort, size_t>> votes;
  for (const auto& sentinel : config.sentinels) {
    HostPort named;
    std::string why;
    bool unknown = false;
    if (!ask_one(config, sentinel, named, why, unknown)) continue;
    auto it =
        std::find_if(votes.begin(), votes.end(), [&](const auto& v) { return v.first == named; });
    if (it == votes.end()) {
      votes.emplace_back(named, 1);
    } else {
      ++it->second;
    }
  }
  for (const auto& [named, count] : votes) {
    if (2 * count > config.sentinels.size()) {
      master = named;
      return true;
    }
  }
  return false;
}

bool answers_as_master(const Config& config, const HostPort& node) {
  std::unique_ptr<redisContext, ContextDeleter> ctx(
      redisConnectWithTimeout(node.host.c_str(), node.port, to_timeval(config.connect_timeout_ms)));
  if (!ctx || ctx->err != 0) return false;
  redisSetTimeout(ctx.get(), to_timeval(config.command_timeout_ms));
  if (!config.password.empty()) {
    auto auth = config.user.empty() ? command(ctx.get(), {"AUTH", config.password})
                                    : command(ctx.get(), {"AUTH", config.user, config.password});
    if (!auth) return false;
    if (auth->type == REDIS_REPLY_ERROR) return true;  // cannot ask: the Sentinels' word stands
  }
  auto role = command(ctx.get(), {"ROLE"});
  if (!role) return false;
  if (role->type == REDIS_REPLY_ERROR) return true;  // ROLE refused (an ACL): cannot tell
  return role->type == REDIS_REPLY_ARRAY && role->elements > 0 &&
         role->element[0]->type == REDIS_REPLY_STRING &&
         std::string_view(role->element[0]->str, role->element[0]->len) == "master";
}

bool ask_sentinels(const Config& config, size_t first, HostPort& master, std::string& error,
                   bool& fatal) {
  std::string answers;
  bool any_reached = false, all_unknown = true;
  const size_t n = config.sentinels.size();
  for (size_t i = 0; i < n; ++i) {
    const HostPort& sentinel = config.sentinels[(first + i) % n];
    std::string why;
    bool unknown = false;
    if (ask_one(config, sentinel, master, why, unknown)) return true;
    answers += (answers.empty() ? "" : "; ") + sentinel.name() + " " + why;
    any_reached = any_reached || unknown;
    all_unknown = all_unknown && unknown;
  }
  fatal = !any_reached || all_unknown;
  error = "cannot be found: no Sentinel named it (" + answers + ")";
  return false;
}

}  // namespace sluice::redis_plugin
