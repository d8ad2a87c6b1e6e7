#include "admin.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "context.h"
#include "recorder.h"
#include "simulate.h"
#include "sluice/stats.h"
#include "wait_queue.h"

namespace sluice::server {
namespace {

using nlohmann::json;

std::string errno_text() { return std::strerror(errno); }

std::string utc_now_iso() {
  const auto now = std::chrono::system_clock::now();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms.count() % 1000);
}

// Runs a decision on the calling thread and waits for it (admin commands only).
void decide_blocking(Engine& engine, DecisionKind kind, const DecisionRequest& request,
                     DecisionCall& call) {
  struct Wait {
    Mutex mu;
    std::condition_variable cv;
    bool done SLUICE_GUARDED_BY(mu) = false;
  } wait;
  engine.decide(
      kind, request, call,
      [](void* user, DecisionCall&) {
        auto* w = static_cast<Wait*>(user);
        MutexLock lock(w->mu);
        w->done = true;
        w->cv.notify_one();
      },
      &wait);
  MutexLock lock(wait.mu);
  while (!wait.done) lock.wait(wait.cv);
}

void write_status_error(resp::Writer& out, const Status& s) {
  out.error(error_code_for(s.code()), s.message());
}

}  // namespace

std::vector<std::string> summarize_changes(std::vector<std::string> changes,
                                           std::string_view policy_text) {
  constexpr size_t kListed = 100;
  if (changes.size() > kListed) {
    const size_t more = changes.size() - kListed;
    changes.resize(kListed);
    changes.push_back(fmt::format("... and {} more changes", more));
  }
  const XXH128_hash_t h = XXH3_128bits(policy_text.data(), policy_text.size());
  changes.push_back(fmt::format("policy text: {} bytes, xxh3-128 {:016x}{:016x}",
                                policy_text.size(), h.high64, h.low64));
  return changes;
}

std::string one_line(const std::string& text) {
  std::string out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (!out.empty()) out += "; ";
    out += line;
  }
  return out;
}

Result<LoadedPolicy> load_policy_file(const std::string& path, uint64_t version) {
  Result<std::string> text = read_policy_file(path);
  if (!text.ok()) return text.status();
  LoadedPolicy loaded;
  loaded.text = std::move(text).value();
  PolicyParseResult parsed = parse_policy(loaded.text, path);
  if (!parsed.ok()) return Status::Invalid(parsed.error_text());
  auto compiled = CompiledPolicy::compile(std::move(*parsed.policy), version);
  if (!compiled.ok()) return compiled.status();
  loaded.compiled = std::move(compiled).value();
  return loaded;
}

StagedFile::~StagedFile() {
  if (!temp_.empty()) ::unlink(temp_.c_str());
}

namespace {
// The directory a file is replaced in (a temporary there, then a rename and a sync of it).
std::filesystem::path directory_of(const std::string& path) {
  const std::filesystem::path target(path);
  return target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
}
}  // namespace

Status StagedFile::stage(std::string_view text) {
  namespace fs = std::filesystem;
  const fs::path target(path_);
  const fs::path dir = directory_of(path_);
  // Built by appending: at -O3, g++ 12 reports a false -Wrestrict inside libstdc++ for
  // `"." + std::string + "..."`.
  std::string name = ".";
  name += target.filename().string();
  name += ".tmp.XXXXXX";
  std::string tmpl = (dir / name).string();
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) {
    return Status::Unavailable(
        fmt::format("cannot create a temporary file in {}: {}", dir.string(), errno_text()));
  }
  temp_ = tmpl;  // removed by the destructor unless committed
  auto fail = [&](std::string_view what) {
    Status s = Status::Unavailable(fmt::format("cannot {} {}: {}", what, tmpl, errno_text()));
    ::close(fd);
    return s;
  };
  // Keep the mode of the file being replaced (mkstemp creates 0600).
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && ::fchmod(fd, st.st_mode & 07777) != 0) {
    return fail("set the mode of");
  }
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write");
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0) {
    return Status::Unavailable(fmt::format("cannot close {}: {}", tmpl, errno_text()));
  }
  return Status::Ok();
}

Status StagedFile::commit() {
  if (::rename(temp_.c_str(), path_.c_str()) != 0) {
    return Status::Unavailable(
        fmt::format("cannot rename {} to {}: {}", temp_, path_, errno_text()));
  }
  temp_.clear();
  const int dfd = ::open(directory_of(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);  // best effort: some file systems refuse fsync on directories
    ::close(dfd);
  }
  return Status::Ok();
}

// ---- audit log ------------------------------------------------------------------------------

AuditLog::AuditLog(std::string path) : path_(std::move(path)) {
  std::ifstream in(path_, std::ios::binary);
  std::string line;
  // `start`: where the line just read begins in the file.
  for (std::streamoff start = 0; std::getline(in, line); start = in.tellg()) {
    if (in.eof()) {
      // No newline after it: a daemon killed while appending this entry (SIGKILL can stop a
      // write at a page boundary of the file). The entry never completed; it is cut off, so
      // that the next one starts on a line of its own and the log stays whole JSON lines.
      if (::truncate(path_.c_str(), start) == 0) {
        spdlog::warn("audit log {}: removed an entry cut short by a crash ({} bytes)", path_,
                     line.size());
      } else {
        torn_tail_ = true;
        spdlog::warn("audit log {}: an entry cut short by a crash cannot be removed ({})", path_,
                     errno_text());
      }
      break;
    }
    if (line.empty()) continue;
    json entry = json::parse(line, nullptr, false);
    if (!entry.is_discarded() && entry.contains("new_version") &&
        entry["new_version"].is_number_unsigned()) {
      last_version_ = std::max(last_version_, entry["new_version"].get<uint64_t>());
    }
    recent_.push_back(std::move(line));
    if (recent_.size() > kKeptInMemory) recent_.pop_front();
  }
}

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status AuditLog::append(const std::string& json_line) {
  MutexLock lock(mu_);
  recent_.push_back(json_line);
  if (recent_.size() > kKeptInMemory) recent_.pop_front();
  json entry = json::parse(json_line, nullptr, false);
  if (!entry.is_discarded() && entry.contains("new_version")) {
    last_version_ = std::max(last_version_, entry["new_version"].get<uint64_t>());
  }
  if (fd_ < 0 && !open_failed_) {
    // Opened on first use, so that a daemon that fails to start leaves no file behind.
    fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd_ < 0) {
      open_failed_ = true;
      spdlog::warn("audit log {} cannot be opened ({}); audit entries are kept in memory only",
                   path_, errno_text());
    }
  }
  if (fd_ < 0) return Status::Unavailable("audit log is not writable: " + path_);
  // After a torn entry that could not be cut off, the first entry starts a line of its own.
  const std::string line = (std::exchange(torn_tail_, false) ? "\n" : "") + json_line + "\n";
  // O_APPEND makes one write of one line atomic with respect to other appenders.
  if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
      ::fdatasync(fd_) != 0) {
    return Status::Unavailable(fmt::format("cannot append to {}: {}", path_, errno_text()));
  }
  return Status::Ok();
}

std::vector<std::string> AuditLog::last(size_t n) const {
  MutexLock lock(mu_);
  n = std::min(n, recent_.size());
  return {recent_.end() - static_cast<std::ptrdiff_t>(n), recent_.end()};
}

// ---- admin ----------------------------------------------------------------------------------

Admin::Admin(Engine& engine, std::string policy_path, std::string policy_text, AuditLog& audit)
    : engine_(engine),
      policy_path_(std::move(policy_path)),
      audit_log_(audit),
      policy_text_(std::move(policy_text)) {}

uint64_t Admin::version() const { return engine_.policy()->version(); }

void Admin::record(const Peer& peer, std::string_view command, uint64_t old_version,
                   uint64_t new_version, const std::vector<std::string>& changes) {
  json entry{{"time", utc_now_iso()},
             {"uid", peer.uid},
             {"pid", peer.pid},
             {"command", command},
             {"old_version", old_version},
             {"new_version", new_version},
             {"changes", changes}};
  // Subjects and resource names are client bytes: invalid UTF-8 is replaced, never thrown.
  Status s = audit_log_.append(entry.dump(-1, ' ', false, json::error_handler_t::replace));
  if (!s.ok()) spdlog::warn("audit: {}", s.message());
  spdlog::info("admin change command=\"{}\" uid={} old_version={} new_version={} changes={}",
               command, peer.uid, old_version, new_version, changes.size());
}

Result<uint64_t> Admin::install_(std::string_view origin, const Peer& peer, std::string text,
                                 const PolicySpec& spec, bool write_file) {
  const auto current = engine_.policy();
  const uint64_t old_version = current->version();
  if (text == policy_text_) return old_version;  // versions change only when the text does
  // All or nothing: the policy is compiled and the new file staged (written, synced) first;
  // the file replaces the old one only once the policy is installed, and a failure at any
  // step, running out of memory included, leaves the running policy, its version and the
  // file as they were.
  try {
    auto compiled = CompiledPolicy::compile(spec, old_version + 1);
    if (!compiled.ok()) return Status::Invalid(compiled.status().message());
    std::vector<std::string> changes =
        summarize_changes(diff_policies(current->spec(), spec), text);
    StagedFile file(policy_path_);
    if (write_file) {
      if (Status staged = file.stage(text); !staged.ok()) return staged;
    }
    engine_.set_policy(std::move(compiled).value());
    if (write_file) {
      if (Status committed = file.commit(); !committed.ok()) {
        engine_.set_policy(current);
        return committed;
      }
    }
    policy_text_ = std::move(text);
    record(peer, origin, old_version, old_version + 1, changes);
    return old_version + 1;
  } catch (const std::bad_alloc&) {
    if (engine_.policy() != current) engine_.set_policy(current);
    return Status::Unavailable(
        "out of memory while installing the policy; the running policy stays");
  }
}

Result<uint64_t> Admin::reload(std::string_view origin, const Peer& peer) {
  Result<uint64_t> result = reload_(origin, peer);
  ::malloc_trim(0);  // as after APPLY: what parsing took goes back to the system
  return result;
}

Result<uint64_t> Admin::reload_(std::string_view origin, const Peer& peer) {
  MutexLock lock(mu_);
  Result<std::string> read = read_policy_file(policy_path_);
  if (!read.ok()) return read.status();
  std::string text = std::move(read).value();
  PolicyParseResult parsed = parse_policy(text, policy_path_);
  if (!parsed.ok()) return Status::Invalid(parsed.error_text());
  return install_(origin, peer, std::move(text), *parsed.policy, false);
}

void Admin::execute(Command command, std::span<const std::string_view> argv, const Peer& peer,
                    resp::Writer& out) {
  switch (command) {
    case Command::kPolicy:
      return policy_(argv, peer, out);
    case Command::kStats:
      return stats_(argv, out);
    case Command::kWarmup:
      return warmup_(argv, peer, out);
    case Command::kInspect:
      return inspect_(argv, out);
    case Command::kReset:
      return reset_(argv, peer, out);
    case Command::kAudit:
      return audit_cmd_(argv, out);
    default:
      out.error(err::kErr, "not an admin command");
  }
}

void Admin::policy_(std::span<const std::string_view> argv, const Peer& peer, resp::Writer& out) {
  constexpr std::string_view kUsage =
      "usage: SL.POLICY GET | VALIDATE yaml | APPLY yaml [EXPECT version] | RELOAD | "
      "SIMULATE yaml [SECONDS n]";
  if (argv.size() < 2) return out.error(err::kWrongArgs, kUsage);
  const std::string_view sub = argv[1];
  // What reading a large policy took, and what a replaced policy held (a small APPLY may
  // replace a large one), goes back to malloc, which keeps it for reuse: give it back to the
  // system once the command is done, so memory returns after a large policy goes.
  struct ReturnFreeMemory {
    bool wanted;
    ~ReturnFreeMemory() {
      if (wanted) ::malloc_trim(0);
    }
  } trim{(argv.size() >= 3 && argv[2].size() > (1u << 20)) || iequals(sub, "APPLY")};
  if (argv.size() >= 3 && argv[2].size() > kMaxPolicyBytes) {
    return out.error(err::kInvalid,
                     fmt::format("the policy is larger than {} bytes", kMaxPolicyBytes));
  }
  if (iequals(sub, "GET") && argv.size() == 2) {
    MutexLock lock(mu_);
    out.array(2);
    out.integer(static_cast<int64_t>(version()));
    out.bulk(policy_text_);
    return;
  }
  if (iequals(sub, "VALIDATE") && argv.size() == 3) {
    PolicyParseResult parsed = parse_policy(argv[2], "<admin>");
    if (!parsed.ok()) {
      return out.error(err::kInvalid, fmt::format("{} problem(s): {}", parsed.errors.size(),
                                                  one_line(parsed.error_text())));
    }
    return out.ok();
  }
  if (iequals(sub, "APPLY") && (argv.size() == 3 || argv.size() == 5)) {
    std::optional<uint64_t> expect;
    if (argv.size() == 5) {
      int64_t v = 0;
      if (!iequals(argv[3], "EXPECT") || !parse_int64(argv[4], v) || v < 0) {
        return out.error(err::kWrongArgs, kUsage);
      }
      expect = static_cast<uint64_t>(v);
    }
    PolicyParseResult parsed = parse_policy(argv[2], "<admin>");
    if (!parsed.ok()) {
      return out.error(err::kInvalid, fmt::format("{} problem(s): {}", parsed.errors.size(),
                                                  one_line(parsed.error_text())));
    }
    MutexLock lock(mu_);
    if (expect && *expect != version()) {
      return out.error(err::kConflict,
                       fmt::format("the running policy is version {}, not {}", version(), *expect));
    }
    auto installed = install_("SL.POLICY APPLY", peer, std::string(argv[2]), *parsed.policy, true);
    if (!installed.ok()) {
      const Status& s = installed.status();
      return out.error(s.code() == StatusCode::kInvalid ? err::kInvalid : err::kErr, s.message());
    }
    return out.integer(static_cast<int64_t>(installed.value()));
  }
  if (iequals(sub, "SIMULATE") && (argv.size() == 3 || argv.size() == 5)) {
    int64_t seconds = 0;  // everything recorded
    if (argv.size() == 5 &&
        (!iequals(argv[3], "SECONDS") || !parse_int64(argv[4], seconds) || seconds < 1)) {
      return out.error(err::kWrongArgs, kUsage);
    }
    const Recorder* recorder = context_ != nullptr ? context_->recorder : nullptr;
    if (recorder == nullptr) {
      return out.error(err::kErr,
                       "recording is off (sluiced --record-seconds 0): nothing to replay");
    }
    PolicyParseResult parsed = parse_policy(argv[2], "<admin>");
    if (!parsed.ok()) {
      return out.error(err::kInvalid, fmt::format("{} problem(s): {}", parsed.errors.size(),
                                                  one_line(parsed.error_text())));
    }
    auto compiled = CompiledPolicy::compile(std::move(*parsed.policy), 0);
    if (!compiled.ok()) return out.error(err::kInvalid, compiled.status().message());
    const int64_t now = engine_.clock().now_ms();
    const Recorder::Copy traffic = recorder->copy(now, seconds);
    std::vector<LiveWarmup> warmups;
    for (const auto& r : engine_.policy()->resources()) {
      if (!r.warmup.enabled) continue;
      const auto status = engine_.warmup_status(r.name);
      if (!status.ok()) continue;
      warmups.push_back(
          {r.name, status.value().warming ? now - status.value().elapsed_ms : int64_t{-1}});
    }
    return out.bulk(simulate(traffic, std::move(compiled).value(), seconds, warmups));
  }
  if (iequals(sub, "RELOAD") && argv.size() == 2) {
    auto reloaded = reload("SL.POLICY RELOAD", peer);
    if (!reloaded.ok()) {
      const Status& s = reloaded.status();
      if (s.code() == StatusCode::kInvalid) {
        spdlog::error("policy reload refused, the running policy stays: {}", one_line(s.message()));
        return out.error(err::kInvalid, one_line(s.message()));
      }
      return out.error(err::kErr, s.message());
    }
    return out.integer(static_cast<int64_t>(reloaded.value()));
  }
  out.error(err::kWrongArgs, kUsage);
}

void Admin::stats_(std::span<const std::string_view> argv, resp::Writer& out) {
  int64_t seconds = 60;
  if (argv.size() > 2 || (argv.size() == 2 && (!parse_int64(argv[1], seconds) || seconds < 1 ||
                                               seconds > Stats::kWindowSeconds))) {
    return out.error(err::kWrongArgs, "usage: SL.STATS [seconds 1..900]");
  }
  json server{{"version", SLUICE_VERSION},
              {"policy_version", version()},
              {"active_leases", engine_.active_leases()},
              {"storage", engine_.storage().name()},
              {"storage_version", engine_.storage().version()}};
  if (context_) {
    server["uptime_s"] = context_->uptime_s();
    server["instance"] = context_->instance_id;
    server["connections"] = context_->connections.load();
    server["threads"] = context_->threads;
  }
  json storage_stats = json::parse(engine_.storage().stats_json(), nullptr, false);
  if (!storage_stats.is_discarded()) server["storage_stats"] = std::move(storage_stats);
  std::string members = "\"server\":" + server.dump(-1, ' ', false, json::error_handler_t::replace);
  // Every resource a WAIT request has queued for since the start (empty without a server).
  members += ",\"queues\":";
  members +=
      wait_stats_json(context_ != nullptr && context_->waits != nullptr ? context_->waits->stats()
                                                                        : std::vector<WaitStats>{});
  out.bulk(engine_.stats().to_json(engine_.clock().now_ms(), static_cast<int>(seconds), members));
}

void Admin::warmup_(std::span<const std::string_view> argv, const Peer& peer, resp::Writer& out) {
  if (argv.size() != 3) {
    return out.error(err::kWrongArgs, "usage: SL.WARMUP resource START|READY|STATUS");
  }
  const std::string_view resource = argv[1];
  const std::string_view action = argv[2];
  if (iequals(action, "STATUS")) {
    auto st = engine_.warmup_status(resource);
    if (!st.ok()) return write_status_error(out, st.status());
    const WarmupStatus& w = st.value();
    out.array(10);
    out.bulk("enabled");
    out.integer(w.enabled ? 1 : 0);
    out.bulk("warming");
    out.integer(w.warming ? 1 : 0);
    out.bulk("factor");
    out.bulk(fmt::format("{:g}", w.factor));
    out.bulk("elapsed_ms");
    out.integer(w.elapsed_ms);
    out.bulk("remaining_ms");
    out.integer(w.remaining_ms);
    return;
  }
  const bool start = iequals(action, "START");
  if (!start && !iequals(action, "READY")) {
    return out.error(err::kWrongArgs, "usage: SL.WARMUP resource START|READY|STATUS");
  }
  Status s = start ? engine_.warmup_start(resource) : engine_.warmup_ready(resource);
  if (s.ok() && context_ != nullptr && context_->recorder != nullptr) {
    Recorded r;
    r.time_ms = engine_.clock().now_ms();
    r.kind = start ? Recorded::Kind::kWarmupStart : Recorded::Kind::kWarmupReady;
    r.allowed = true;
    r.resource = resource;
    context_->recorder->record(r);
  }
  if (!s.ok()) return write_status_error(out, s);
  const uint64_t v = version();
  record(peer, fmt::format("SL.WARMUP {} {}", resource, start ? "START" : "READY"), v, v,
         {fmt::format("resource {}: warm-up {}", resource, start ? "started" : "ended (ready)")});
  out.ok();
}

void Admin::inspect_(std::span<const std::string_view> argv, resp::Writer& out) {
  constexpr std::string_view kUsage = "usage: SL.INSPECT resource subject [TIER t] [KEY k]";
  DecisionRequest request;
  std::string_view error;
  if (argv.size() < 3 || !parse_decision_args(Command::kPeek, argv, request, error)) {
    return out.error(err::kWrongArgs, kUsage);
  }
  if (!engine_.policy()->find_resource(request.resource) && !engine_.policy()->default_resource()) {
    return out.error(err::kNoResource, fmt::format("unknown resource '{}'", request.resource));
  }
  DecisionCall call;
  decide_blocking(engine_, DecisionKind::kInspect, request, call);
  const Decision& d = call.decision();
  if (d.source == DecisionSource::kError)
    return out.error(error_code_for(d.error), d.error_message);
  out.array(2);
  write_decision_reply(out, Command::kPeek, call);
  out.array(call.limit_count());
  for (size_t i = 0; i < call.limit_count(); ++i) {
    const LimitResult r = call.limit_result(i);
    out.array(7);
    out.bulk(r.rule);
    out.integer(r.shadow ? 1 : 0);
    out.integer(r.result.allowed);
    out.integer(r.result.limit);
    out.integer(r.result.remaining);
    out.integer(r.result.reset_after_ms);
    out.integer(r.result.allowed ? 0 : r.result.retry_after_ms);
  }
}

void Admin::reset_(std::span<const std::string_view> argv, const Peer& peer, resp::Writer& out) {
  if (argv.size() != 3) return out.error(err::kWrongArgs, "usage: SL.RESET resource subject");
  DecisionRequest request;
  request.resource = argv[1];
  request.subject = argv[2];
  if (!engine_.policy()->find_resource(request.resource) && !engine_.policy()->default_resource()) {
    return out.error(err::kNoResource, fmt::format("unknown resource '{}'", request.resource));
  }
  DecisionCall call;
  decide_blocking(engine_, DecisionKind::kReset, request, call);
  const Decision& d = call.decision();
  if (d.source == DecisionSource::kError || d.source == DecisionSource::kStorageFailure) {
    return out.error(error_code_for(d.error), d.error_message);
  }
  const uint64_t v = version();
  record(
      peer, fmt::format("SL.RESET {} {}", request.resource, request.subject), v, v,
      {fmt::format("resource {}: state of subject {} reset", request.resource, request.subject)});
  out.ok();
}

void Admin::audit_cmd_(std::span<const std::string_view> argv, resp::Writer& out) {
  int64_t n = 20;
  if (argv.size() > 2 || (argv.size() == 2 && (!parse_int64(argv[1], n) || n < 1))) {
    return out.error(err::kWrongArgs, "usage: SL.AUDIT [count]");
  }
  const auto entries = audit_log_.last(static_cast<size_t>(n));
  out.array(entries.size());
  for (const auto& e : entries) out.bulk(e);
}

}  // namespace sluice::server
