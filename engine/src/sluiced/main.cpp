// sluiced: the rate-limit daemon. Parses the command line (docs/operations.md lists every
// flag), loads the policy and the storage plugin, and serves the decision and admin sockets
// until SIGTERM/SIGINT.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "admin.h"
#include "context.h"
#include "recorder.h"
#include "server.h"
#include "sluice/engine.h"
#include "sluice/storage.h"

namespace {

namespace fs = std::filesystem;
using sluice::server::Admin;
using sluice::server::AuditLog;
using sluice::server::Peer;
using sluice::server::Server;
using sluice::server::ServerContext;

std::string default_policy_path() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "policies/default.yaml";
  return (exe.parent_path().parent_path() / "share" / "sluice" / "policies" / "default.yaml")
      .lexically_normal()
      .string();
}

// Every connection holds a descriptor: ask for as many as the hard limit allows.
void raise_fd_limit(size_t wanted) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
    ::getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < wanted) {
    spdlog::warn(
        "the descriptor limit is {}; {} connections (decision, admin and metrics caps) "
        "cannot all be served (raise it with ulimit -n)",
        rl.rlim_cur, wanted - 64);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sluiced — policy-driven rate limiting for ML APIs, served over Unix sockets "
      "(RESP2; see docs/protocol.md)"};
  app.set_version_flag("--version", SLUICE_VERSION);
  sluice::server::ServerOptions options;
  int64_t record_seconds = 900;
  int64_t record_max_mb = 64;
  std::string policy_path = default_policy_path();
  std::string storage_name = "memory";
  std::vector<std::string> storage_config, plugin_dirs;
  std::string state_dir = "./run", audit_path, log_level = "info";
  std::vector<uint32_t> allow_uids;

  app.add_option("--policy", policy_path, "policy file (YAML, docs/policy.md)")
      ->capture_default_str();
  app.add_option("--socket", options.socket_path, "decision socket (mode 0660)")
      ->capture_default_str();
  app.add_option("--admin-socket", options.admin_socket_path, "admin socket (mode 0600)")
      ->capture_default_str();
  app.add_option("--storage", storage_name,
                 "storage plugin: a name (memory, sqlite, redis) or a "
                 "path to a .so")
      ->capture_default_str();
  app.add_option("--storage-config", storage_config, "plugin setting KEY=VALUE (repeatable)")
      ->each([](const std::string& kv) {
        if (kv.find('=') == std::string::npos || kv.front() == '=') {
          throw CLI::ValidationError("--storage-config", "wants KEY=VALUE, got '" + kv + "'");
        }
      });
  app.add_option("--plugin-dir", plugin_dirs,
                 "directory searched for plugins before the "
                 "default ones (repeatable)");
  app.add_option("--threads", options.threads, "worker threads (0 = one per core)")
      ->capture_default_str();
  sluice::EngineOptions engine_options;
  app.add_option("--storage-timeout", engine_options.storage_timeout_ms,
                 "ms after which a decision the storage plugin has not answered follows the "
                 "policy's on_storage_failure (0 = wait forever)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--metrics-listen", options.metrics_listen,
                 "serve Prometheus /metrics and /healthz on HOST:PORT (loopback advised)");
  app.add_option("--admin-allow-uid", allow_uids,
                 "uid allowed on the admin socket besides the "
                 "daemon's own and root (repeatable)");
  app.add_option("--state-dir", state_dir,
                 "directory for what sluiced writes (the audit log); "
                 "created if missing, never the policy's directory by default")
      ->capture_default_str();
  app.add_option("--audit-log", audit_path,
                 "audit log of admin changes (default: "
                 "<state-dir>/audit.log)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();
  app.add_option("--max-connections", options.max_connections,
                 "open connections allowed on the decision socket")
      ->capture_default_str();
  app.add_option("--max-admin-connections", options.max_admin_connections,
                 "open connections allowed on the admin socket (counted apart)")
      ->capture_default_str();
  app.add_option("--max-metrics-connections", options.max_metrics_connections,
                 "open HTTP connections allowed on --metrics-listen")
      ->capture_default_str();
  app.add_option("--record-seconds", record_seconds,
                 "keep the decision requests of this many seconds for SL.POLICY SIMULATE "
                 "(0 = record nothing)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{7 * 24 * 3600}));
  app.add_option("--record-max-mb", record_max_mb,
                 "memory the recorded requests may take, in MiB (oldest overwritten first)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{64 * 1024}));
  app.add_option("--idle-timeout", options.idle_timeout_s,
                 "seconds before an idle connection is closed (0 = never)")
      ->capture_default_str();
  app.add_option("--max-frame-bytes", options.limits.max_frame_bytes,
                 "largest request accepted, in bytes")
      ->capture_default_str();
  app.add_option("--max-args", options.limits.max_args, "most arguments in one request")
      ->capture_default_str();
  app.add_option("--max-output-bytes", options.max_output_bytes,
                 "unread reply bytes per connection before its reading pauses")
      ->capture_default_str();
  app.add_option("--max-inflight", options.max_inflight,
                 "decisions per connection waiting for storage before its reading pauses")
      ->capture_default_str();
  app.add_option("--shutdown-grace-ms", options.shutdown_grace_ms,
                 "SIGTERM: time to answer what was received before closing")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (options.max_inflight == 0 || options.max_output_bytes == 0 ||
      options.limits.max_frame_bytes < 64 || options.limits.max_args < 1) {
    std::cerr << "sluiced: --max-inflight, --max-output-bytes, --max-args must be positive and "
                 "--max-frame-bytes at least 64\n";
    return 2;
  }
  options.limits.max_bulk_bytes = options.limits.max_frame_bytes;
  options.admin_allow_uids.assign(allow_uids.begin(), allow_uids.end());

  auto logger = spdlog::stderr_color_mt("sluiced");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));
  ::signal(SIGPIPE, SIG_IGN);
  raise_fd_limit(options.max_connections + options.max_admin_connections +
                 options.max_metrics_connections + 64);

  if (audit_path.empty()) {
    std::error_code ec;
    fs::create_directories(state_dir, ec);
    if (ec) {
      spdlog::error("cannot start: cannot create the state directory {}: {}", state_dir,
                    ec.message());
      return 1;
    }
    audit_path = (fs::path(state_dir) / "audit.log").string();
  }
  AuditLog audit(audit_path);
  const uint64_t version = audit.last_version() + 1;

  auto loaded = sluice::server::load_policy_file(policy_path, version);
  if (!loaded.ok()) {
    spdlog::error("cannot start: the policy {} is refused: {}", policy_path,
                  sluice::server::one_line(loaded.status().message()));
    return 1;
  }
  sluice::StorageConfig config;
  for (const std::string& kv : storage_config) {
    const size_t eq = kv.find('=');
    config.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  std::vector<std::string> dirs = plugin_dirs;
  for (auto& d : sluice::Storage::default_plugin_dirs()) dirs.push_back(std::move(d));
  auto storage = sluice::Storage::load(storage_name, dirs, config);
  if (!storage.ok()) {
    spdlog::error("cannot start: storage plugin '{}': {}", storage_name,
                  storage.status().message());
    return 1;
  }
  spdlog::info("storage plugin {} {} from {}", storage.value()->name(), storage.value()->version(),
               storage.value()->path());

  sluice::Engine engine(std::move(storage).value(), loaded.value().compiled, engine_options);
  Admin admin(engine, policy_path, loaded.value().text, audit);
  ServerContext context;
  context.engine = &engine;
  context.admin = &admin;
  context.options = options;
  admin.set_context(&context);
  std::unique_ptr<sluice::server::Recorder> recorder;
  if (record_seconds > 0) {
    sluice::server::Recorder::Options r;
    r.seconds = record_seconds;
    r.max_bytes = static_cast<size_t>(record_max_mb) << 20;
    // One ring per worker thread and one for the admin thread.
    r.rings = (options.threads > 0 ? options.threads
                                   : std::max(1u, std::thread::hardware_concurrency())) +
              1;
    recorder = std::make_unique<sluice::server::Recorder>(r);
    context.recorder = recorder.get();
  }

  Server server(context);
  sluice::Status started = server.start();
  if (!started.ok()) {
    spdlog::error("cannot start: {}", started.message());
    return 1;
  }
  // Recorded so that versions keep growing across restarts and the log shows who started what.
  admin.record(Peer{::getuid(), ::getpid()}, "start", 0, version,
               {"sluiced started with " + policy_path});
  spdlog::info("policy {} version={}", policy_path, version);
  server.run();
  // Batches a plugin still holds complete now, while the sessions they answer still exist.
  engine.shutdown();
  return 0;
}
