#include "sluiced_fixture.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

extern char** environ;

namespace sluice::testing {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

Daemon::Daemon(const std::string& policy_yaml, std::vector<std::string> extra_args,
               std::vector<std::string> launcher)
    : launcher_(std::move(launcher)), extra_args_(std::move(extra_args)) {
  // /tmp rather than TMPDIR: a Unix socket path is limited to 107 bytes.
  char tmpl[] = "/tmp/sluice-it-XXXXXX";
  dir_ = ::mkdtemp(tmpl);
  policy_ = dir_ + "/policy.yaml";
  socket_ = dir_ + "/sluice.sock";
  admin_socket_ = dir_ + "/admin.sock";
  log_ = dir_ + "/sluiced.log";
  write_file(policy_, policy_yaml);
  ok_ = start(extra_args_);
}

Daemon::~Daemon() {
  if (pid_ > 0) stop(SIGKILL);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string Daemon::binary() { return std::string(SLUICE_BINARY_DIR) + "/bin/sluiced"; }

std::string Daemon::plugin_dir() { return SLUICE_PLUGIN_DIR; }

bool Daemon::start(std::vector<std::string> extra_args) {
  std::vector<std::string> args = launcher_;
  args.insert(args.end(), {binary(), "--policy", policy_, "--socket", socket_, "--admin-socket",
                           admin_socket_, "--threads", "2", "--log-level", "info", "--state-dir",
                           dir_, "--plugin-dir", plugin_dir()});
  for (auto& a : extra_args) args.push_back(std::move(a));
  pid_ = spawn(args, log_);
  return pid_ > 0 && wait_ready();
}

bool Daemon::restart() {
  if (pid_ > 0) stop();
  ok_ = start(extra_args_);
  return ok_;
}

pid_t Daemon::spawn(const std::vector<std::string>& args, const std::string& log) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

bool Daemon::wait_ready(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = status;
      pid_ = -1;
      return false;
    }
    // Ready means answering: the kernel accepts a connection as soon as a socket listens, but
    // sluiced reads from it (and has recorded its start in the audit log) only once it runs.
    Client a, b;
    if (a.connect(admin_socket_) && b.connect(socket_)) {
      a.set_timeout(std::max(std::chrono::milliseconds(1),
                             std::chrono::duration_cast<std::chrono::milliseconds>(
                                 deadline - std::chrono::steady_clock::now())));
      resp::Value pong;
      if (a.call({"PING"}, pong)) return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

int Daemon::stop(int sig, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return decode(exit_status_);
  ::kill(pid_, sig);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  pid_ = -1;
  exit_status_ = status;
  return decode(status);
}

void Daemon::signal(int sig) const { ::kill(pid_, sig); }

Client Daemon::client(bool admin) const {
  Client c;
  c.set_timeout(std::chrono::seconds(20));
  c.connect(admin ? admin_socket_ : socket_);
  return c;
}

int Daemon::decode(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

resp::Value call(Client& c, std::initializer_list<std::string_view> args) {
  resp::Value v;
  if (!c.call(args, v)) {
    v.type = resp::Value::Type::kError;
    v.str = "CLIENT " + c.error();
  }
  return v;
}

int sluicectl(const Daemon& d, std::vector<std::string> args, std::string& output) {
  std::vector<std::string> argv = {std::string(SLUICE_BINARY_DIR) + "/bin/sluicectl", "--socket",
                                   d.socket_path(), "--admin-socket", d.admin_socket_path()};
  for (auto& a : args) argv.push_back(std::move(a));
  const std::string log = d.dir() + "/sluicectl.out";
  std::remove(log.c_str());
  const pid_t pid = Daemon::spawn(argv, log);
  int status = 0;
  ::waitpid(pid, &status, 0);
  output = read_file(log);
  return Daemon::decode(status);
}

}  // namespace sluice::testing
