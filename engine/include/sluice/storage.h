// A storage plugin, loaded and opened: the C++ face of the C ABI in storage_plugin.h.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sluice/export.h"
#include "sluice/status.h"
#include "sluice/storage_plugin.h"

namespace sluice {

using StorageConfig = std::vector<std::pair<std::string, std::string>>;  // KEY=VALUE pairs

class SLUICE_API Storage {
 public:
  // Load `name_or_path` and open it with `config`.
  //  - a path (contains '/') is loaded as is;
  //  - a name ("memory") is looked up in each of `plugin_dirs` as NAME.so, then
  //    libsluice_NAME.so.
  // dlopen(RTLD_NOW | RTLD_LOCAL); refuses a missing file, a missing entry symbol, an ABI
  // major version mismatch, a too-small table or a failing open with one clear sentence.
  static Result<std::unique_ptr<Storage>> load(std::string_view name_or_path,
                                               const std::vector<std::string>& plugin_dirs,
                                               const StorageConfig& config);

  // Open a plugin table that is already in the process (tests, wrappers).
  static Result<std::unique_ptr<Storage>> open_table(const sluice_storage_plugin* table,
                                                     const StorageConfig& config);

  // Directories searched by default: $SLUICE_PLUGIN_DIR, then ../lib/sluice/plugins from the
  // running executable's folder (the installed layout, and the build tree's: build/bin and
  // build/lib/sluice/plugins).
  static std::vector<std::string> default_plugin_dirs();

  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  // Thread-safe. `done` runs exactly once, inline or on the plugin's thread.
  void submit(const sluice_batch& batch, sluice_completion_fn done, void* user_data) {
    table_->submit(handle_, &batch, done, user_data);
  }
  // Tells the plugin that `batch` will be submitted soon (ABI 1.2; nothing when the plugin
  // has no prefetch). Changes nothing, never calls back.
  void prefetch(const sluice_batch& batch) const {
    if (prefetch_ != nullptr) prefetch_(handle_, &batch);
  }
  // Records (ABI 1.4; see storage_plugin.h): present when the plugin has all three
  // functions. Each `done` runs exactly once, inline or on the plugin's thread; `key` and
  // `value` need only live during the call. Only call them when supports_records().
  bool supports_records() const { return record_put_ != nullptr; }
  void record_put(std::string_view key, std::string_view value, int64_t expires_at_ms,
                  int64_t now_ms, sluice_record_fn done, void* user_data) {
    record_put_(handle_, key.data(), key.size(), reinterpret_cast<const uint8_t*>(value.data()),
                value.size(), expires_at_ms, now_ms, done, user_data);
  }
  void record_get(std::string_view key, int64_t now_ms, sluice_record_fn done, void* user_data) {
    record_get_(handle_, key.data(), key.size(), now_ms, done, user_data);
  }
  void record_delete(std::string_view key, int64_t now_ms, sluice_record_fn done, void* user_data) {
    record_delete_(handle_, key.data(), key.size(), now_ms, done, user_data);
  }
  Status flush(int64_t timeout_ms);
  std::string stats_json() const;
  std::string_view name() const { return name_; }
  // The plugin promised that submit() always completes before returning (ABI 1.1).
  bool completes_inline() const { return completes_inline_; }
  std::string_view version() const { return version_; }
  const std::string& path() const { return path_; }

 private:
  Storage() = default;
  void* dl_ = nullptr;  // dlopen handle; null for open_table
  const sluice_storage_plugin* table_ = nullptr;
  sluice_plugin_handle* handle_ = nullptr;
  std::string name_, version_, path_;
  bool completes_inline_ = false;
  void (*prefetch_)(sluice_plugin_handle*, const sluice_batch*) = nullptr;
  decltype(sluice_storage_plugin::record_put) record_put_ = nullptr;
  decltype(sluice_storage_plugin::record_get) record_get_ = nullptr;
  decltype(sluice_storage_plugin::record_delete) record_delete_ = nullptr;
};

}  // namespace sluice
