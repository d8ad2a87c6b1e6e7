#include "redis_server.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>
#include <vector>

extern char** environ;

namespace sluice::testing {
namespace {

std::string render(const redisReply* r) {
  if (r == nullptr) return "(no reply)";
  switch (r->type) {
    case REDIS_REPLY_NIL:
      return "(nil)";
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_ARRAY: {
      std::string out;
      for (size_t i = 0; i < r->elements; ++i) {
        if (i > 0) out += '\n';
        out += render(r->element[i]);
      }
      return out;
    }
    default:
      return std::string(r->str, r->len);
  }
}

}  // namespace

RedisServer::RedisServer(std::string socket_path, std::vector<std::string> extra_args)
    : socket_(std::move(socket_path)), extra_args_(std::move(extra_args)) {
  char tmpl[] = "/tmp/sluice-redis-XXXXXX";
  const char* d = mkdtemp(tmpl);
  dir_ = d != nullptr ? d : "/tmp";
  if (socket_.empty()) socket_ = dir_ + "/redis.sock";
}

RedisServer::~RedisServer() {
  kill();
  std::error_code ec;
  if (dir_ != "/tmp") std::filesystem::remove_all(dir_, ec);
}

bool RedisServer::start() {
  if (running()) return true;
  std::filesystem::remove(socket_);
  std::vector<std::string> args = {"redis-server",
                                   "--port",
                                   "0",
                                   "--unixsocket",
                                   socket_,
                                   "--unixsocketperm",
                                   "700",
                                   "--save",
                                   "",
                                   "--appendonly",
                                   "no",
                                   "--daemonize",
                                   "no",
                                   "--dir",
                                   dir_,
                                   "--loglevel",
                                   "warning",
                                   "--logfile",
                                   dir_ + "/redis.log"};
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  if (posix_spawnp(&pid_, "redis-server", nullptr, nullptr, argv.data(), environ) != 0) {
    pid_ = -1;
    return false;
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until) {
    const std::string pong = command("PING");
    if (pong == "PONG" || pong.starts_with("NOAUTH")) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill();
  return false;
}

void RedisServer::kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  ::kill(pid_, SIGCONT);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

void RedisServer::pause() {
  if (pid_ > 0) ::kill(pid_, SIGSTOP);
}

void RedisServer::resume() {
  if (pid_ > 0) ::kill(pid_, SIGCONT);
}

std::string RedisServer::command(const std::string& line) const {
  std::vector<std::string> words;
  std::istringstream in(line);
  for (std::string w; in >> w;) words.push_back(w);
  return command(words);
}

std::string RedisServer::command(const std::vector<std::string>& words) const {
  timeval tv{1, 0};
  redisContext* c = redisConnectUnixWithTimeout(socket_.c_str(), tv);
  if (c == nullptr || c->err != 0) {
    if (c != nullptr) redisFree(c);
    return "(unreachable)";
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  for (const auto& w : words) {
    argv.push_back(w.data());
    lens.push_back(w.size());
  }
  auto* r = static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(words.size()), argv.data(), lens.data()));
  std::string out = render(r);
  if (r != nullptr) freeReplyObject(r);
  redisFree(c);
  return out;
}

}  // namespace sluice::testing
