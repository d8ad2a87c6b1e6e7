// The C ABI face of the Redis plugin: configuration, the entry table, and the boundary where
// C++ exceptions become status codes.
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>

#include "client.h"
#include "config.h"
#include "sluice/storage_plugin.h"

namespace sluice::redis_plugin {
namespace {

void write_error(char* err, size_t err_len, const std::string& message) {
  if (err == nullptr || err_len == 0) return;
  std::snprintf(err, err_len, "%s", message.c_str());
}

sluice_status open_client(const sluice_host_api* host, const char* const* config_keys,
                          const char* const* config_values, size_t count,
                          sluice_plugin_handle** out, char* err, size_t err_len) {
  if (out == nullptr) {
    write_error(err, err_len, "redis plugin: open was given no place for the handle.");
    return SLUICE_ERR_INVALID;
  }
  *out = nullptr;
  if (host == nullptr || (host->abi_version >> 16) != SLUICE_ABI_VERSION_MAJOR) {
    write_error(err, err_len,
                "redis plugin: the host API is missing or has an incompatible ABI version.");
    return SLUICE_ERR_INVALID;
  }
  if (count != 0 && (config_keys == nullptr || config_values == nullptr)) {
    write_error(err, err_len, "redis plugin: the configuration has no key or value array.");
    return SLUICE_ERR_INVALID;
  }
  Config config;
  std::string error;
  if (!parse_config(config_keys, config_values, count, config, error)) {
    write_error(err, err_len, error);
    return SLUICE_ERR_INVALID;
  }
  try {
    auto client = std::make_unique<Client>(std::move(config), host);
    if (!client->start(error)) {
      write_error(err, err_len, error);
      return SLUICE_ERR_UNAVAILABLE;
    }
    *out = reinterpret_cast<sluice_plugin_handle*>(client.release());
    return SLUICE_OK;
  } catch (const std::exception& e) {
    write_error(err, err_len, std::string("redis plugin: cannot open: ") + e.what() + ".");
    return SLUICE_ERR_INTERNAL;
  }
}

void submit_batch(sluice_plugin_handle* handle, const sluice_batch* batch,
                  sluice_completion_fn done, void* user_data) {
  if (handle == nullptr || batch == nullptr) {
    if (done != nullptr) {
      done(user_data, SLUICE_ERR_INVALID, "redis plugin: submit was given no handle or no batch.");
    }
    return;
  }
  try {
    reinterpret_cast<Client*>(handle)->submit(*batch, done, user_data);
  } catch (const std::bad_alloc&) {
    // Only encoding can throw, and it does so before the batch is handed on.
    if (done != nullptr) done(user_data, SLUICE_ERR_UNAVAILABLE, "redis plugin: out of memory.");
  }
}

size_t client_stats(sluice_plugin_handle* handle, char* buf, size_t buf_len) {
  if (handle == nullptr) return 0;
  try {
    const std::string json = reinterpret_cast<Client*>(handle)->stats_json();
    if (buf != nullptr && buf_len != 0) std::snprintf(buf, buf_len, "%s", json.c_str());
    return json.size();
  } catch (const std::exception&) {
    return 0;
  }
}

void close_client(sluice_plugin_handle* handle) { delete reinterpret_cast<Client*>(handle); }

// Records: bounds and arguments checked here; the client encodes and sends.
const char* record_problem(sluice_plugin_handle* handle, const char* key, size_t key_len,
                           const uint8_t* value, size_t value_len) {
  if (handle == nullptr || (key == nullptr && key_len > 0) || (value == nullptr && value_len > 0))
    return "redis plugin: a record operation was given no handle, key or value.";
  if (key_len == 0 || key_len > SLUICE_RECORD_MAX_KEY)
    return "redis plugin: a record key must be 1 to 256 bytes.";
  if (value_len > SLUICE_RECORD_MAX_VALUE)
    return "redis plugin: a record value must be at most 65536 bytes.";
  return nullptr;
}

template <typename Op>
void record_call(sluice_record_fn done, void* user_data, const char* problem, Op op) {
  if (problem != nullptr) {
    if (done != nullptr) done(user_data, SLUICE_ERR_INVALID, problem, nullptr, 0);
    return;
  }
  try {
    op();
  } catch (const std::bad_alloc&) {
    // Only encoding can throw, and it does so before the operation is handed on.
    if (done != nullptr)
      done(user_data, SLUICE_ERR_UNAVAILABLE, "redis plugin: out of memory.", nullptr, 0);
  }
}

void put_record(sluice_plugin_handle* handle, const char* key, size_t key_len, const uint8_t* value,
                size_t value_len, int64_t expires_at_ms, int64_t now_ms, sluice_record_fn done,
                void* user_data) {
  record_call(done, user_data, record_problem(handle, key, key_len, value, value_len), [&] {
    reinterpret_cast<Client*>(handle)->record_put(
        std::string_view(key, key_len),
        std::string_view(reinterpret_cast<const char*>(value), value_len), expires_at_ms, now_ms,
        done, user_data);
  });
}

void get_record(sluice_plugin_handle* handle, const char* key, size_t key_len, int64_t now_ms,
                sluice_record_fn done, void* user_data) {
  record_call(done, user_data, record_problem(handle, key, key_len, nullptr, 0), [&] {
    reinterpret_cast<Client*>(handle)->record_get(std::string_view(key, key_len), now_ms, done,
                                                  user_data);
  });
}

void delete_record(sluice_plugin_handle* handle, const char* key, size_t key_len, int64_t now_ms,
                   sluice_record_fn done, void* user_data) {
  record_call(done, user_data, record_problem(handle, key, key_len, nullptr, 0), [&] {
    reinterpret_cast<Client*>(handle)->record_delete(std::string_view(key, key_len), now_ms, done,
                                                     user_data);
  });
}

const sluice_storage_plugin kTable = {
    SLUICE_ABI_VERSION,
    sizeof(sluice_storage_plugin),
    "redis",
    "1.0.0",
    &open_client,
    &submit_batch,
    nullptr,  // every decision is written when Redis answers: nothing to flush
    &client_stats,
    &close_client,
    0,        // capabilities: completions run on the connections' threads
    nullptr,  // prefetch: the keys' state is in Redis
    &put_record,
    &get_record,
    &delete_record,
};

}  // namespace
}  // namespace sluice::redis_plugin

extern "C" SLUICE_PLUGIN_EXPORT const sluice_storage_plugin* sluice_storage_plugin_entry(void) {
  return &sluice::redis_plugin::kTable;
}
