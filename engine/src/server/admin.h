// The administrator: everything the admin socket can change or read (policy, warm-up,
// inspection, reset, statistics, audit log), and SIGHUP's reload. Policy changes are
// validated before anything else happens, written to the policy file atomically, swapped into
// the engine, versioned, and appended to the audit log.
//
// Thread safety: every public method may be called from any thread; a mutex serialises policy
// changes (the server runs admin sessions on one thread anyway).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "commands.h"
#include "sluice/engine.h"
#include "sluice/mutex.h"
#include "sluice/policy.h"
#include "sluice/resp.h"
#include "sluice/status.h"

namespace sluice::server {

struct ServerContext;

struct Peer {
  uid_t uid = 0;
  pid_t pid = 0;
};

// What an audit entry says of a policy change: the first 100 changes, how many more there
// were, and the new text's size and digest (an entry never holds the whole text: a policy of
// 100,000 resources once wrote a 14 MB line).
std::vector<std::string> summarize_changes(std::vector<std::string> changes,
                                           std::string_view policy_text);

// Several lines (a policy's problems) as one: the lines joined with "; ". RESP errors and log
// records are one line each.
std::string one_line(const std::string& text);

// A policy file read, validated and compiled.
struct LoadedPolicy {
  std::string text;
  std::shared_ptr<const CompiledPolicy> compiled;
};
// Errors carry every file:line:column message, one per line.
Result<LoadedPolicy> load_policy_file(const std::string& path, uint64_t version);

// A file replaced in two steps, so that it changes only once what it describes has taken
// effect, and a crash leaves either the old or the new file. stage() writes and syncs a
// temporary file in the target's directory (with the mode of the file it will replace);
// commit() renames it over the target and syncs the directory. A staged file that is never
// committed is removed when this object goes away.
class StagedFile {
 public:
  explicit StagedFile(std::string path) : path_(std::move(path)) {}
  ~StagedFile();
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;

  Status stage(std::string_view text);
  Status commit();

 private:
  std::string path_, temp_;  // temp_: the staged file, empty when there is none
};

// Append-only JSON-lines log of admin changes, with the last entries kept in memory.
class AuditLog {
 public:
  static constexpr size_t kKeptInMemory = 1000;
  // Reads an existing log (so SL.AUDIT and versions survive restarts). The file is opened for
  // appending on the first entry; when that fails, entries are kept in memory only.
  explicit AuditLog(std::string path);
  ~AuditLog();
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  Status append(const std::string& json_line);
  std::vector<std::string> last(size_t n) const;
  // The highest new_version recorded, 0 when none.
  uint64_t last_version() const {
    MutexLock lock(mu_);
    return last_version_;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  mutable Mutex mu_;
  int fd_ SLUICE_GUARDED_BY(mu_) = -1;
  bool open_failed_ SLUICE_GUARDED_BY(mu_) = false;
  bool torn_tail_ SLUICE_GUARDED_BY(mu_) = false;  // the file ends in a part of an entry
  std::deque<std::string> recent_ SLUICE_GUARDED_BY(mu_);
  uint64_t last_version_ SLUICE_GUARDED_BY(mu_) = 0;
};

class Admin {
 public:
  // `policy_text` and the engine's current policy are what was loaded from `policy_path`.
  Admin(Engine& engine, std::string policy_path, std::string policy_text, AuditLog& audit);

  void set_context(const ServerContext* context) { context_ = context; }

  // Runs one admin command (argv[0] is its name) and writes its reply.
  void execute(Command command, std::span<const std::string_view> argv, const Peer& peer,
               resp::Writer& out);

  // SL.POLICY RELOAD and SIGHUP: re-read the policy file. On failure the running policy stays
  // and the status carries every file:line:column message.
  Result<uint64_t> reload(std::string_view origin, const Peer& peer);

  uint64_t version() const;

  // Appends one entry to the audit log (and logs it).
  void record(const Peer& peer, std::string_view command, uint64_t old_version,
              uint64_t new_version, const std::vector<std::string>& changes);
  const std::string& policy_path() const { return policy_path_; }

 private:
  Result<uint64_t> install_(std::string_view origin, const Peer& peer, std::string text,
                            const PolicySpec& spec, bool write_file) SLUICE_REQUIRES(mu_);
  Result<uint64_t> reload_(std::string_view origin, const Peer& peer) SLUICE_EXCLUDES(mu_);

  void policy_(std::span<const std::string_view> argv, const Peer& peer, resp::Writer& out);
  void stats_(std::span<const std::string_view> argv, resp::Writer& out);
  void warmup_(std::span<const std::string_view> argv, const Peer& peer, resp::Writer& out);
  void inspect_(std::span<const std::string_view> argv, resp::Writer& out);
  void reset_(std::span<const std::string_view> argv, const Peer& peer, resp::Writer& out);
  void audit_cmd_(std::span<const std::string_view> argv, resp::Writer& out);

  Engine& engine_;
  std::string policy_path_;
  AuditLog& audit_log_;
  const ServerContext* context_ = nullptr;
  mutable Mutex mu_;  // also serialises changes
  std::string policy_text_ SLUICE_GUARDED_BY(mu_);
};

}  // namespace sluice::server
