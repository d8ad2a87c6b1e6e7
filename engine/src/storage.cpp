#include "sluice/storage.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <filesystem>

#include "sluice/algorithms.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

std::string executable_dir() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : exe.parent_path().string();
}

// Which file to dlopen for `name_or_path`; empty when nothing exists.
std::string resolve(std::string_view name_or_path, const std::vector<std::string>& dirs) {
  if (name_or_path.find('/') != std::string_view::npos) return std::string(name_or_path);
  for (const auto& dir : dirs) {
    for (const auto& file :
         {fmt::format("{}.so", name_or_path), fmt::format("libsluice_{}.so", name_or_path)}) {
      fs::path p = fs::path(dir) / file;
      std::error_code ec;
      if (fs::is_regular_file(p, ec)) return p.string();
    }
  }
  return {};
}

}  // namespace

std::vector<std::string> Storage::default_plugin_dirs() {
  std::vector<std::string> dirs;
  if (const char* env = std::getenv("SLUICE_PLUGIN_DIR"); env && *env) dirs.emplace_back(env);
  auto exe = executable_dir();
  if (!exe.empty())
    dirs.push_back(
        (fs::path(exe) / ".." / "lib" / "sluice" / "plugins").lexically_normal().string());
  return dirs;
}

Result<std::unique_ptr<Storage>> Storage::load(std::string_view name_or_path,
                                               const std::vector<std::string>& plugin_dirs,
                                               const StorageConfig& config) {
  std::string path = resolve(name_or_path, plugin_dirs);
  if (path.empty() || !fs::exists(path)) {
    std::string searched;
    for (const auto& d : plugin_dirs) searched += (searched.empty() ? "" : ", ") + d;
    return Status::NotFound(fmt::format(
        "storage plugin '{}' not found (looked for {}.so and libsluice_{}.so in: {})", name_or_path,
        name_or_path, name_or_path, searched.empty() ? "no directories" : searched));
  }
  void* dl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char* why = dlerror();
    return Status::Unavailable(
        fmt::format("cannot load storage plugin {}: {}", path, why ? why : "unknown error"));
  }
  auto entry = reinterpret_cast<sluice_plugin_entry_fn>(dlsym(dl, SLUICE_PLUGIN_ENTRY_SYMBOL));
  if (!entry) {
    dlclose(dl);
    return Status::Invalid(fmt::format("{} is not a sluice storage plugin: it does not export {}",
                                       path, SLUICE_PLUGIN_ENTRY_SYMBOL));
  }
  auto opened = open_table(entry(), config);
  if (!opened.ok()) {
    dlclose(dl);
    return Status(
        opened.status().code() == StatusCode::kInvalid
            ? Status::Invalid(fmt::format("{}: {}", path, opened.status().message()))
            : Status::Unavailable(fmt::format("{}: {}", path, opened.status().message())));
  }
  auto storage = std::move(opened).value();
  storage->dl_ = dl;
  storage->path_ = path;
  return storage;
}

Result<std::unique_ptr<Storage>> Storage::open_table(const sluice_storage_plugin* table,
                                                     const StorageConfig& config) {
  if (!table) return Status::Invalid("the plugin's entry point returned no function table");
  const uint32_t major = table->abi_version >> 16;
  if (major != SLUICE_ABI_VERSION_MAJOR) {
    return Status::Invalid(fmt::format(
        "plugin built for storage ABI {}.{}, but this sluice speaks ABI {}.{}", major,
        table->abi_version & 0xffff, SLUICE_ABI_VERSION_MAJOR, SLUICE_ABI_VERSION_MINOR));
  }
  // Fields up to `close` are required in ABI 1.
  if (table->struct_size < offsetof(sluice_storage_plugin, close) + sizeof(table->close) ||
      !table->open || !table->submit || !table->close) {
    return Status::Invalid(
        "plugin function table is incomplete (open, submit and close are required)");
  }
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : config) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  std::array<char, 512> err{};
  sluice_plugin_handle* handle = nullptr;
  sluice_status st = table->open(algo::host_api(), keys.data(), values.data(), config.size(),
                                 &handle, err.data(), err.size());
  if (st != SLUICE_OK || !handle) {
    err.back() = '\0';
    std::string msg = err[0] ? err.data() : "the plugin refused to open without saying why";
    return st == SLUICE_ERR_INVALID ? Status::Invalid(msg) : Status::Unavailable(msg);
  }
  std::unique_ptr<Storage> s(new Storage());
  s->table_ = table;
  s->handle_ = handle;
  s->name_ = table->name ? table->name : "unnamed";
  s->version_ = table->version ? table->version : "";
  s->path_ = "(in process)";
  if (table->struct_size >= offsetof(sluice_storage_plugin, capabilities) + sizeof(uint64_t))
    s->completes_inline_ = (table->capabilities & SLUICE_CAP_COMPLETES_INLINE) != 0;
  if (table->struct_size >= offsetof(sluice_storage_plugin, prefetch) + sizeof(table->prefetch))
    s->prefetch_ = table->prefetch;
  // Records need all three functions; a plugin with only some of them keeps none.
  if (table->struct_size >=
          offsetof(sluice_storage_plugin, record_delete) + sizeof(table->record_delete) &&
      table->record_put != nullptr && table->record_get != nullptr &&
      table->record_delete != nullptr) {
    s->record_put_ = table->record_put;
    s->record_get_ = table->record_get;
    s->record_delete_ = table->record_delete;
  }
  return s;
}

Storage::~Storage() {
  if (table_ && handle_) table_->close(handle_);
  if (dl_) dlclose(dl_);
}

Status Storage::flush(int64_t timeout_ms) {
  if (!table_->flush) return Status::Ok();
  std::array<char, 512> err{};
  sluice_status st = table_->flush(handle_, timeout_ms, err.data(), err.size());
  err.back() = '\0';
  if (st == SLUICE_OK) return Status::Ok();
  return st == SLUICE_ERR_TIMEOUT ? Status::Timeout(err.data()) : Status::Unavailable(err.data());
}

std::string Storage::stats_json() const {
  if (!table_->stats_json) return "{}";
  std::string out(256, '\0');
  size_t need = table_->stats_json(handle_, out.data(), out.size());
  if (need >= out.size()) {
    out.assign(need + 1, '\0');
    need = table_->stats_json(handle_, out.data(), out.size());
  }
  out.resize(std::min(need, out.size() - 1));
  return out;
}

}  // namespace sluice
