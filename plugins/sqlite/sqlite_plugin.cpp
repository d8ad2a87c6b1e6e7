// The C ABI face of the SQLite plugin: the entry point and its function table.
#include <exception>
#include <memory>
#include <string>

#include "config.h"
#include "sluice/storage_plugin.h"
#include "store.h"

struct sluice_plugin_handle {
  std::unique_ptr<sluice::sqlite_plugin::Store> store;
};

namespace {

using sluice::sqlite_plugin::Config;
using sluice::sqlite_plugin::Store;

void write_error(char* err, size_t err_len, const std::string& message) {
  if (err == nullptr || err_len == 0) return;
  const size_t n = std::min(message.size(), err_len - 1);
  message.copy(err, n);
  err[n] = '\0';
}

sluice_status open_instance(const sluice_host_api* host, const char* const* keys,
                            const char* const* values, size_t count, sluice_plugin_handle** out,
                            char* err, size_t err_len) {
  try {
    if (out == nullptr) return SLUICE_ERR_INVALID;
    *out = nullptr;
    if (host == nullptr || host->apply == nullptr ||
        host->struct_size < offsetof(sluice_host_api, log) + sizeof(host->log) ||
        (host->abi_version >> 16) != SLUICE_ABI_VERSION_MAJOR) {
      write_error(err, err_len,
                  "sqlite storage: the host did not pass a usable host table (ABI version " +
                      std::to_string(SLUICE_ABI_VERSION_MAJOR) + " expected).");
      return SLUICE_ERR_INVALID;
    }
    if (count > 0 && (keys == nullptr || values == nullptr)) {
      write_error(err, err_len, "sqlite storage: the configuration arrays are missing.");
      return SLUICE_ERR_INVALID;
    }
    Config config;
    if (auto e = sluice::sqlite_plugin::parse_config(keys, values, count, config)) {
      write_error(err, err_len, *e);
      return SLUICE_ERR_INVALID;
    }
    auto handle = std::make_unique<sluice_plugin_handle>();
    handle->store = std::make_unique<Store>(host, std::move(config));
    handle->store->start();
    *out = handle.release();
    return SLUICE_OK;
  } catch (const std::exception& e) {
    write_error(err, err_len, std::string("sqlite storage: cannot open: ") + e.what() + ".");
    return SLUICE_ERR_INTERNAL;
  }
}

void submit_batch(sluice_plugin_handle* handle, const sluice_batch* batch,
                  sluice_completion_fn done, void* user_data) {
  if (handle == nullptr || batch == nullptr ||
      (batch->count > 0 && (batch->items == nullptr || batch->results == nullptr))) {
    done(user_data, SLUICE_ERR_INVALID, "sqlite storage: submit was given no batch.");
    return;
  }
  try {
    handle->store->submit(*batch, done, user_data);
  } catch (const std::exception& e) {
    // Only allocation can throw, and it throws before `done` runs or the batch is queued.
    const std::string message = std::string("sqlite storage: ") + e.what() + ".";
    done(user_data, SLUICE_ERR_INTERNAL, message.c_str());
  }
}

sluice_status flush_instance(sluice_plugin_handle* handle, int64_t timeout_ms, char* err,
                             size_t err_len) {
  if (handle == nullptr) return SLUICE_ERR_INVALID;
  try {
    std::string message;
    const sluice_status status = handle->store->flush(timeout_ms, message);
    if (status != SLUICE_OK) write_error(err, err_len, message);
    return status;
  } catch (const std::exception& e) {
    write_error(err, err_len, std::string("sqlite storage: ") + e.what() + ".");
    return SLUICE_ERR_INTERNAL;
  }
}

size_t stats_instance(sluice_plugin_handle* handle, char* buf, size_t buf_len) {
  if (handle == nullptr) return 0;
  try {
    const std::string json = handle->store->stats_json();
    write_error(buf, buf_len, json);
    return json.size();
  } catch (const std::exception&) {
    return 0;
  }
}

void close_instance(sluice_plugin_handle* handle) { delete handle; }

// Records: bounds and arguments checked here, the rest in the store.
const char* record_problem(sluice_plugin_handle* handle, const char* key, size_t key_len,
                           const uint8_t* value, size_t value_len) {
  if (handle == nullptr || (key == nullptr && key_len > 0) || (value == nullptr && value_len > 0))
    return "sqlite storage: a record operation was given no handle, key or value.";
  if (key_len == 0 || key_len > SLUICE_RECORD_MAX_KEY)
    return "sqlite storage: a record key must be 1 to 256 bytes.";
  if (value_len > SLUICE_RECORD_MAX_VALUE)
    return "sqlite storage: a record value must be at most 65536 bytes.";
  return nullptr;
}

template <typename Op>
void record_call(sluice_record_fn done, void* user_data, const char* problem, Op op) {
  if (problem != nullptr) return done(user_data, SLUICE_ERR_INVALID, problem, nullptr, 0);
  try {
    op();
  } catch (const std::exception& e) {
    // Only allocation can throw, before `done` runs or the operation is queued.
    const std::string message = std::string("sqlite storage: ") + e.what() + ".";
    done(user_data, SLUICE_ERR_INTERNAL, message.c_str(), nullptr, 0);
  }
}

void put_record(sluice_plugin_handle* handle, const char* key, size_t key_len, const uint8_t* value,
                size_t value_len, int64_t expires_at_ms, int64_t now_ms, sluice_record_fn done,
                void* user_data) {
  record_call(done, user_data, record_problem(handle, key, key_len, value, value_len), [&] {
    handle->store->record_put(std::string_view(key, key_len),
                              std::string_view(reinterpret_cast<const char*>(value), value_len),
                              expires_at_ms, now_ms, done, user_data);
  });
}

void get_record(sluice_plugin_handle* handle, const char* key, size_t key_len, int64_t now_ms,
                sluice_record_fn done, void* user_data) {
  record_call(done, user_data, record_problem(handle, key, key_len, nullptr, 0), [&] {
    handle->store->record_get(std::string_view(key, key_len), now_ms, done, user_data);
  });
}

void delete_record(sluice_plugin_handle* handle, const char* key, size_t key_len, int64_t now_ms,
                   sluice_record_fn done, void* user_data) {
  record_call(done, user_data, record_problem(handle, key, key_len, nullptr, 0), [&] {
    handle->store->record_delete(std::string_view(key, key_len), now_ms, done, user_data);
  });
}

const sluice_storage_plugin kTable = {
    SLUICE_ABI_VERSION,
    sizeof(sluice_storage_plugin),
    "sqlite",
    "1.0.0",
    open_instance,
    submit_batch,
    flush_instance,
    stats_instance,
    close_instance,
    0,        // capabilities: commit mode completes on the writer's thread
    nullptr,  // prefetch
    put_record,
    get_record,
    delete_record,
};

}  // namespace

extern "C" SLUICE_PLUGIN_EXPORT const sluice_storage_plugin* sluice_storage_plugin_entry(void) {
  return &kTable;
}
