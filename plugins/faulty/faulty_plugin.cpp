// faulty: a forwarding storage plugin for fault injection. It loads another plugin (the
// "inner" one) through the same C ABI the host uses, forwards every call to it, and on the way
// adds latency, fails a seeded share of the batches, or holds them unanswered (a hung backend).
// Nothing here ever blocks the caller: delayed and held batches wait on the plugin's own
// thread, exactly like a remote backend's replies would.
//
// Configuration (--storage-config KEY=VALUE; docs/hardening.md has the table):
//   inner=NAME|PATH      the wrapped plugin (required); a name is looked up as NAME.so and
//                        libsluice_NAME.so in inner_dir, beside faulty.so, and $SLUICE_PLUGIN_DIR
//   inner_dir=DIR        where to look first
//   inner.KEY=VALUE      passed to the inner plugin as KEY=VALUE
//   latency_ms=N         every batch reaches the inner plugin N ms late
//   fail_rate=P          a share P (0..1) of batches fails with SLUICE_ERR_UNAVAILABLE
//   fail_status=S        unavailable (default), timeout or internal
//   seed=N               seed of the failure draw (default 1): the same seed fails the same
//                        submissions
//   hang=0|1             hold every batch unanswered until hang is lifted (then they are
//                        forwarded) or the plugin is closed (then they fail)
//   control_file=PATH    re-read every 20 ms; its KEY=VALUE lines (latency_ms, fail_rate,
//                        fail_status, hang) replace the settings above while the daemon runs
#include <dlfcn.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <mutex>
#include <queue>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <vector>

#include "sluice/storage_plugin.h"

namespace {

using Clock = std::chrono::steady_clock;

void write_error(char* err, size_t err_len, const std::string& message) {
  if (err == nullptr || err_len == 0) return;
  const size_t n = std::min(err_len - 1, message.size());
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

// The settings that may change while running (control_file).
struct Faults {
  int64_t latency_ms = 0;
  double fail_rate = 0.0;
  sluice_status fail_status = SLUICE_ERR_UNAVAILABLE;
  bool hang = false;
};

// Applies one fault setting; false with `error` set when the key is one but the value is bad,
// and `known` false when the key is not a fault setting.
bool set_fault(Faults& f, std::string_view key, std::string_view value, bool& known,
               std::string& error) {
  known = true;
  auto bad = [&](std::string_view want) {
    error = "faulty plugin: " + std::string(key) + " must be " + std::string(want) + ", got '" +
            std::string(value) + "'.";
    return false;
  };
  if (key == "latency_ms") {
    int64_t v = -1;
    auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc() || p != value.data() + value.size() || v < 0 || v > 3'600'000) {
      return bad("a number of milliseconds from 0 to 3600000");
    }
    f.latency_ms = v;
  } else if (key == "fail_rate") {
    char* end = nullptr;
    const std::string s(value);
    const double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || !(v >= 0.0 && v <= 1.0)) {
      return bad("a fraction from 0 to 1");
    }
    f.fail_rate = v;
  } else if (key == "fail_status") {
    if (value == "unavailable") {
      f.fail_status = SLUICE_ERR_UNAVAILABLE;
    } else if (value == "timeout") {
      f.fail_status = SLUICE_ERR_TIMEOUT;
    } else if (value == "internal") {
      f.fail_status = SLUICE_ERR_INTERNAL;
    } else {
      return bad("unavailable, timeout or internal");
    }
  } else if (key == "hang") {
    if (value != "0" && value != "1") return bad("0 or 1");
    f.hang = value == "1";
  } else {
    known = false;
  }
  return true;
}

// splitmix64: the n-th draw depends on the seed and n only, so a run is reproducible.
double uniform(uint64_t seed, uint64_t n) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (n + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (1.0 / 9007199254740992.0);
}

std::string own_directory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&write_error), &info) == 0 || info.dli_fname == nullptr) {
    return {};
  }
  std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

bool is_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

// One batch the plugin holds: due to be forwarded at `due`, or held while hanging.
struct Pending {
  Clock::time_point due;
  uint64_t order;  // ties keep submission order
  const sluice_batch* batch;
  sluice_completion_fn done;
  void* user;
  bool fail;  // the draw said this batch fails (after its latency)
  bool operator>(const Pending& o) const { return due != o.due ? due > o.due : order > o.order; }
};

class Faulty {
 public:
  ~Faulty() { close(); }

  sluice_status open(const sluice_host_api* host, const char* const* keys,
                     const char* const* values, size_t count, std::string& error) {
    std::string inner_name, inner_dir;
    std::vector<std::string> inner_keys, inner_values;
    for (size_t i = 0; i < count; ++i) {
      const std::string_view key = keys[i] ? keys[i] : "";
      const std::string_view value = values[i] ? values[i] : "";
      bool known = false;
      if (!set_fault(faults_, key, value, known, error)) return SLUICE_ERR_INVALID;
      if (known) continue;
      if (key == "inner") {
        inner_name = value;
      } else if (key == "inner_dir") {
        inner_dir = value;
      } else if (key.substr(0, 6) == "inner." && key.size() > 6) {
        inner_keys.emplace_back(key.substr(6));
        inner_values.emplace_back(value);
      } else if (key == "seed") {
        auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), seed_);
        if (ec != std::errc() || p != value.data() + value.size()) {
          error = "faulty plugin: seed must be a non-negative integer, got '" + std::string(value) +
                  "'.";
          return SLUICE_ERR_INVALID;
        }
      } else if (key == "control_file") {
        control_file_ = value;
      } else {
        error = "faulty plugin: unknown configuration key '" + std::string(key) +
                "' (known: inner, inner_dir, inner.KEY, latency_ms, fail_rate, fail_status, "
                "seed, hang, control_file).";
        return SLUICE_ERR_INVALID;
      }
    }
    if (inner_name.empty()) {
      error = "faulty plugin: inner=NAME or inner=PATH is required (the plugin to wrap).";
      return SLUICE_ERR_INVALID;
    }
    sluice_status st = load_inner(inner_name, inner_dir, error);
    if (st != SLUICE_OK) return st;
    std::vector<const char*> k, v;
    for (size_t i = 0; i < inner_keys.size(); ++i) {
      k.push_back(inner_keys[i].c_str());
      v.push_back(inner_values[i].c_str());
    }
    char err[512] = {0};
    st = inner_->open(host, k.data(), v.data(), k.size(), &inner_handle_, err, sizeof err);
    if (st != SLUICE_OK || inner_handle_ == nullptr) {
      error = "faulty plugin: the inner plugin '" + inner_name +
              "' refused to open: " + (err[0] ? err : "no reason given");
      inner_handle_ = nullptr;
      return st == SLUICE_OK ? SLUICE_ERR_INTERNAL : st;
    }
    if (!control_file_.empty()) read_control_file();
    thread_ = std::thread([this] { run(); });
    return SLUICE_OK;
  }

  void submit(const sluice_batch* batch, sluice_completion_fn done, void* user) {
    submitted_.fetch_add(1, std::memory_order_relaxed);
    const uint64_t n = draws_.fetch_add(1, std::memory_order_relaxed);
    std::unique_lock lock(mu_);
    const bool fail = faults_.fail_rate > 0.0 && uniform(seed_, n) < faults_.fail_rate;
    if (!closing_ && (faults_.hang || faults_.latency_ms > 0)) {
      Pending p{Clock::now() + std::chrono::milliseconds(faults_.latency_ms),
                order_++,
                batch,
                done,
                user,
                fail};
      if (faults_.hang) {
        held_.push_back(p);
      } else {
        queue_.push(p);
      }
      cv_.notify_one();
      return;
    }
    const sluice_status status = faults_.fail_status;
    lock.unlock();
    if (fail) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      if (done) done(user, status, "faulty plugin: injected failure");
      return;
    }
    inner_->submit(inner_handle_, batch, done, user);
  }

  sluice_status flush(int64_t timeout_ms, char* err, size_t err_len) {
    if (inner_->flush == nullptr) return SLUICE_OK;
    return inner_->flush(inner_handle_, timeout_ms, err, err_len);
  }

  size_t stats_json(char* buf, size_t buf_len) {
    std::string inner = "null";
    if (inner_->stats_json != nullptr) {
      std::vector<char> b(4096);
      size_t need = inner_->stats_json(inner_handle_, b.data(), b.size());
      if (need >= b.size()) {
        b.resize(need + 1);
        need = inner_->stats_json(inner_handle_, b.data(), b.size());
      }
      if (need > 0 && need < b.size()) inner.assign(b.data(), need);
    }
    size_t waiting = 0;
    bool hang = false;
    {
      std::lock_guard lock(mu_);
      waiting = queue_.size() + held_.size();
      hang = faults_.hang;
    }
    std::ostringstream out;
    out << "{\"submitted\":" << submitted_.load() << ",\"failed\":" << failed_.load()
        << ",\"waiting\":" << waiting << ",\"hang\":" << (hang ? "true" : "false")
        << ",\"inner\":" << inner << "}";
    const std::string s = out.str();
    if (buf != nullptr && buf_len > 0) {
      const size_t n = std::min(buf_len - 1, s.size());
      std::memcpy(buf, s.data(), n);
      buf[n] = '\0';
    }
    return s.size();
  }

  // Held and delayed batches fail first, then the inner plugin closes (completing what it
  // has): the ABI promises every batch exactly one completion.
  void close() {
    {
      std::lock_guard lock(mu_);
      if (closing_) return;
      closing_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    std::deque<Pending> left;
    {
      std::lock_guard lock(mu_);
      while (!queue_.empty()) {
        left.push_back(queue_.top());
        queue_.pop();
      }
      for (auto& p : held_) left.push_back(p);
      held_.clear();
    }
    for (const Pending& p : left) {
      if (p.done) p.done(p.user, SLUICE_ERR_UNAVAILABLE, "faulty plugin: closed before answering");
    }
    if (inner_handle_ != nullptr) inner_->close(inner_handle_);
    inner_handle_ = nullptr;
    if (dl_ != nullptr) dlclose(dl_);
    dl_ = nullptr;
  }

 private:
  sluice_status load_inner(const std::string& name, const std::string& dir, std::string& error) {
    std::string path;
    if (name.find('/') != std::string::npos) {
      path = name;
    } else {
      std::vector<std::string> dirs;
      if (!dir.empty()) dirs.push_back(dir);
      if (std::string own = own_directory(); !own.empty()) dirs.push_back(own);
      if (const char* env = std::getenv("SLUICE_PLUGIN_DIR"); env && *env) dirs.emplace_back(env);
      for (const auto& d : dirs) {
        for (const std::string& file : {name + ".so", "libsluice_" + name + ".so"}) {
          if (path.empty() && is_file(d + "/" + file)) path = d + "/" + file;
        }
      }
      if (path.empty()) {
        std::string searched;
        for (const auto& d : dirs) searched += (searched.empty() ? "" : ", ") + d;
        error = "faulty plugin: inner plugin '" + name + "' not found (looked for " + name +
                ".so and libsluice_" + name + ".so in: " + searched + ").";
        return SLUICE_ERR_INVALID;
      }
    }
    dl_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (dl_ == nullptr) {
      const char* why = dlerror();
      error = "faulty plugin: cannot load the inner plugin " + path + ": " +
              (why ? why : "unknown error");
      return SLUICE_ERR_UNAVAILABLE;
    }
    auto entry = reinterpret_cast<sluice_plugin_entry_fn>(dlsym(dl_, SLUICE_PLUGIN_ENTRY_SYMBOL));
    const sluice_storage_plugin* table = entry ? entry() : nullptr;
    if (table == nullptr || (table->abi_version >> 16) != SLUICE_ABI_VERSION_MAJOR ||
        table->struct_size < offsetof(sluice_storage_plugin, close) + sizeof(table->close) ||
        !table->open || !table->submit || !table->close) {
      error = "faulty plugin: " + path + " is not a storage plugin of ABI major version " +
              std::to_string(SLUICE_ABI_VERSION_MAJOR) + " with open, submit and close.";
      dlclose(dl_);
      dl_ = nullptr;
      return SLUICE_ERR_INVALID;
    }
    inner_ = table;
    return SLUICE_OK;
  }

  // The delay thread: forwards batches whose time has come, re-reads the control file, and
  // releases held batches once hang is lifted.
  void run() {
    std::unique_lock lock(mu_);
    auto next_poll = Clock::now();
    while (!closing_) {
      const auto now = Clock::now();
      if (!control_file_.empty() && now >= next_poll) {
        lock.unlock();
        read_control_file();
        lock.lock();
        next_poll = now + std::chrono::milliseconds(20);
      }
      if (!faults_.hang && !held_.empty()) {
        for (auto& p : held_) queue_.push(p);
        held_.clear();
      }
      std::vector<Pending> due;
      while (!queue_.empty() && queue_.top().due <= Clock::now()) {
        due.push_back(queue_.top());
        queue_.pop();
      }
      if (!due.empty()) {
        const sluice_status status = faults_.fail_status;
        lock.unlock();
        for (const Pending& p : due) forward(p, status);
        lock.lock();
        continue;
      }
      auto wake = control_file_.empty() ? Clock::now() + std::chrono::seconds(1) : next_poll;
      if (!queue_.empty()) wake = std::min(wake, queue_.top().due);
      cv_.wait_until(lock, wake);
    }
  }

  void forward(const Pending& p, sluice_status fail_status) {
    if (p.fail) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      if (p.done) p.done(p.user, fail_status, "faulty plugin: injected failure");
      return;
    }
    inner_->submit(inner_handle_, p.batch, p.done, p.user);
  }

  void read_control_file() {
    struct stat st {};
    if (::stat(control_file_.c_str(), &st) != 0) return;
    const auto stamp =
        std::make_tuple(st.st_ino, st.st_size, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
    if (stamp == control_stamp_) return;
    control_stamp_ = stamp;
    std::ifstream in(control_file_);
    std::string line;
    Faults next;
    {
      std::lock_guard lock(mu_);
      next = faults_;
    }
    while (std::getline(in, line)) {
      if (line.empty() || line[0] == '#') continue;
      const size_t eq = line.find('=');
      if (eq == std::string::npos) continue;
      bool known = false;
      std::string error;
      if (!set_fault(next, std::string_view(line).substr(0, eq),
                     std::string_view(line).substr(eq + 1), known, error) ||
          !known) {
        std::fprintf(stderr, "faulty plugin: control file %s: ignoring line '%s'\n",
                     control_file_.c_str(), line.c_str());
      }
    }
    std::lock_guard lock(mu_);
    faults_ = next;
    cv_.notify_all();
  }

  void* dl_ = nullptr;
  const sluice_storage_plugin* inner_ = nullptr;
  sluice_plugin_handle* inner_handle_ = nullptr;
  uint64_t seed_ = 1;
  std::string control_file_;
  std::tuple<ino_t, off_t, time_t, long> control_stamp_{};  // delay thread (and open) only

  std::mutex mu_;  // guards faults_, queue_, held_, order_, closing_
  std::condition_variable cv_;
  Faults faults_;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<>> queue_;
  std::vector<Pending> held_;
  uint64_t order_ = 0;
  bool closing_ = false;
  std::thread thread_;

  std::atomic<uint64_t> draws_{0}, submitted_{0}, failed_{0};
};

Faulty* as_faulty(sluice_plugin_handle* h) { return reinterpret_cast<Faulty*>(h); }

sluice_status open_faulty(const sluice_host_api* host, const char* const* keys,
                          const char* const* values, size_t count, sluice_plugin_handle** out,
                          char* err, size_t err_len) {
  if (out == nullptr) return SLUICE_ERR_INVALID;
  *out = nullptr;
  if (count != 0 && (keys == nullptr || values == nullptr)) {
    write_error(err, err_len, "faulty plugin: the configuration has no key or value array.");
    return SLUICE_ERR_INVALID;
  }
  try {
    auto* f = new Faulty();
    std::string error;
    const sluice_status st = f->open(host, keys, values, count, error);
    if (st != SLUICE_OK) {
      write_error(err, err_len, error);
      delete f;
      return st;
    }
    *out = reinterpret_cast<sluice_plugin_handle*>(f);
    return SLUICE_OK;
  } catch (const std::exception& e) {
    write_error(err, err_len, std::string("faulty plugin: cannot open: ") + e.what() + ".");
    return SLUICE_ERR_INTERNAL;
  }
}

void submit_faulty(sluice_plugin_handle* h, const sluice_batch* batch, sluice_completion_fn done,
                   void* user) {
  as_faulty(h)->submit(batch, done, user);
}

sluice_status flush_faulty(sluice_plugin_handle* h, int64_t timeout_ms, char* err, size_t err_len) {
  return as_faulty(h)->flush(timeout_ms, err, err_len);
}

size_t stats_faulty(sluice_plugin_handle* h, char* buf, size_t buf_len) {
  return as_faulty(h)->stats_json(buf, buf_len);
}

void close_faulty(sluice_plugin_handle* h) { delete as_faulty(h); }

const sluice_storage_plugin kTable = {
    SLUICE_ABI_VERSION, sizeof(sluice_storage_plugin),
    "faulty",           "0.1.0",
    open_faulty,        submit_faulty,
    flush_faulty,       stats_faulty,
    close_faulty,
};

}  // namespace

extern "C" SLUICE_PLUGIN_EXPORT const sluice_storage_plugin* sluice_storage_plugin_entry(void) {
  return &kTable;
}
