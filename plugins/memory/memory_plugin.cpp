// The C ABI face of the memory store: configuration, the entry table, and the boundary where
// C++ exceptions become status codes.
#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "memory_store.h"
#include "sluice/storage_plugin.h"

namespace sluice::memory_plugin {
namespace {

constexpr uint32_t kMaxShards = 65536;

void write_error(char* err, size_t err_len, const std::string& message) {
  if (err == nullptr || err_len == 0) return;
  std::snprintf(err, err_len, "%s", message.c_str());
}

bool parse_unsigned(std::string_view text, uint64_t min, uint64_t max, uint64_t& out) {
  uint64_t v = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (ec != std::errc() || ptr != end || text.empty() || v < min || v > max) return false;
  out = v;
  return true;
}

// Four shards per hardware thread, at least 16: few enough that a million keys make tables of
// over 2 MiB, which huge pages can back (a lookup then rarely misses the TLB), and enough that
// threads seldom wait for each other's shard.
uint32_t default_shards() {
  const unsigned threads = std::thread::hardware_concurrency();
  return std::clamp<uint32_t>(4 * threads, 16, kMaxShards);
}

// Parses KEY=VALUE pairs into options; on failure `error` holds one sentence.
bool parse_options(const char* const* keys, const char* const* values, size_t count,
                   StoreOptions& options, std::string& error) {
  for (size_t i = 0; i < count; ++i) {
    const std::string_view key = keys[i] != nullptr ? keys[i] : "";
    const std::string_view value = values[i] != nullptr ? values[i] : "";
    uint64_t v = 0;
    if (key == "shards") {
      if (!parse_unsigned(value, 1, kMaxShards, v)) {
        error = "memory plugin: shards must be an integer from 1 to " + std::to_string(kMaxShards) +
                ", not '" + std::string(value) + "'.";
        return false;
      }
      options.shards = static_cast<uint32_t>(v);
    } else if (key == "max_keys") {
      if (!parse_unsigned(value, 0, UINT64_MAX, v)) {
        error = "memory plugin: max_keys must be a non-negative integer (0 = no cap), not '" +
                std::string(value) + "'.";
        return false;
      }
      options.max_keys = v;
    } else if (key == "sweep_slots") {
      if (!parse_unsigned(value, 0, 4096, v)) {
        error = "memory plugin: sweep_slots must be an integer from 0 to 4096, not '" +
                std::string(value) + "'.";
        return false;
      }
      options.sweep_slots = static_cast<uint32_t>(v);
    } else {
      error = "memory plugin: unknown configuration key '" + std::string(key) +
              "' (known keys: shards, max_keys, sweep_slots).";
      return false;
    }
  }
  return true;
}

sluice_status open_store(const sluice_host_api* host, const char* const* config_keys,
                         const char* const* config_values, size_t count, sluice_plugin_handle** out,
                         char* err, size_t err_len) {
  if (out == nullptr) {
    write_error(err, err_len, "memory plugin: open was given no place for the handle.");
    return SLUICE_ERR_INVALID;
  }
  *out = nullptr;
  if (host == nullptr || (host->abi_version >> 16) != SLUICE_ABI_VERSION_MAJOR ||
      host->struct_size < offsetof(sluice_host_api, apply) + sizeof host->apply ||
      host->apply == nullptr) {
    write_error(err, err_len,
                "memory plugin: the host API is missing or has an incompatible ABI version.");
    return SLUICE_ERR_INVALID;
  }
  if (count != 0 && (config_keys == nullptr || config_values == nullptr)) {
    write_error(err, err_len, "memory plugin: the configuration has no key or value array.");
    return SLUICE_ERR_INVALID;
  }
  StoreOptions options;
  options.shards = default_shards();
  std::string error;
  if (!parse_options(config_keys, config_values, count, options, error)) {
    write_error(err, err_len, error);
    return SLUICE_ERR_INVALID;
  }
  try {
    // A per-instance seed, so that nobody outside can craft subjects that share a counter.
    std::random_device rd;
    const uint64_t seed = (uint64_t{rd()} << 32) ^ rd();
    *out = reinterpret_cast<sluice_plugin_handle*>(new Store(host, options, seed));
    return SLUICE_OK;
  } catch (const std::exception& e) {
    write_error(err, err_len, std::string("memory plugin: cannot open: ") + e.what() + ".");
    return SLUICE_ERR_INTERNAL;
  }
}

void submit_batch(sluice_plugin_handle* handle, const sluice_batch* batch,
                  sluice_completion_fn done, void* user_data) {
  sluice_status status = SLUICE_OK;
  std::string error;
  if (handle == nullptr || batch == nullptr) {
    status = SLUICE_ERR_INVALID;
    error = "memory plugin: submit was given no handle or no batch.";
  } else {
    try {
      status = reinterpret_cast<Store*>(handle)->submit(*batch, error);
    } catch (const std::bad_alloc&) {
      status = SLUICE_ERR_UNAVAILABLE;
      error = "memory plugin: out of memory.";
    } catch (const std::exception& e) {
      status = SLUICE_ERR_INTERNAL;
      error = std::string("memory plugin: ") + e.what() + ".";
    }
  }
  if (done != nullptr) done(user_data, status, status == SLUICE_OK ? nullptr : error.c_str());
}

sluice_status flush_store(sluice_plugin_handle* /*handle*/, int64_t /*timeout_ms*/, char* /*err*/,
                          size_t /*err_len*/) {
  return SLUICE_OK;  // nothing is durable, so nothing is buffered
}

size_t store_stats(sluice_plugin_handle* handle, char* buf, size_t buf_len) {
  if (handle == nullptr) return 0;
  const Store::Counters c = reinterpret_cast<Store*>(handle)->counters();
  char local[256];
  const int n = std::snprintf(
      local, sizeof local,
      "{\"keys\":%llu,\"evictions\":%llu,\"expired\":%llu,\"shards\":%llu,\"table_bytes\":%llu}",
      static_cast<unsigned long long>(c.keys), static_cast<unsigned long long>(c.evictions),
      static_cast<unsigned long long>(c.expired), static_cast<unsigned long long>(c.shards),
      static_cast<unsigned long long>(c.table_bytes));
  if (n < 0) return 0;
  if (buf != nullptr && buf_len != 0) std::snprintf(buf, buf_len, "%s", local);
  return static_cast<size_t>(n);
}

void close_store(sluice_plugin_handle* handle) { delete reinterpret_cast<Store*>(handle); }

void prefetch_batch(sluice_plugin_handle* handle, const sluice_batch* batch) {
  if (handle != nullptr && batch != nullptr) reinterpret_cast<Store*>(handle)->prefetch(*batch);
}

// Records: bounds checked here, values copied out of the table so that `done` runs with no
// lock held (it may well put or submit again).
bool record_args_ok(sluice_plugin_handle* handle, const char* key, size_t key_len, size_t value_len,
                    sluice_record_fn done, void* user_data) {
  const char* problem = nullptr;
  if (handle == nullptr || (key == nullptr && key_len > 0)) {
    problem = "memory plugin: a record operation was given no handle or no key.";
  } else if (key_len == 0 || key_len > SLUICE_RECORD_MAX_KEY) {
    problem = "memory plugin: a record key must be 1 to 256 bytes.";
  } else if (value_len > SLUICE_RECORD_MAX_VALUE) {
    problem = "memory plugin: a record value must be at most 65536 bytes.";
  }
  if (problem != nullptr && done != nullptr) {
    done(user_data, SLUICE_ERR_INVALID, problem, nullptr, 0);
  }
  return problem == nullptr;
}

// A value goes to `done` from a buffer of the calling thread, one per nesting level (`done` may
// call again, and the outer value must stay valid): nothing is allocated once the buffers are
// as large as the values, and no lock is held while `done` runs.
class ValueBuffer {
 public:
  ValueBuffer() : buffer_(take()) {}
  ~ValueBuffer() { --levels().depth; }
  ValueBuffer(const ValueBuffer&) = delete;
  ValueBuffer& operator=(const ValueBuffer&) = delete;
  std::string& get() { return buffer_; }

 private:
  struct Levels {
    std::deque<std::string> buffers;  // a deque: growing it moves no buffer in use
    size_t depth = 0;
  };
  static Levels& levels() {
    thread_local Levels l;
    return l;
  }
  static std::string& take() {
    Levels& l = levels();
    if (l.depth == l.buffers.size()) l.buffers.emplace_back();
    return l.buffers[l.depth++];
  }
  std::string& buffer_;
};

// `op(buffer)` returns whether the record has a value (then in `buffer`).
template <typename Op>
void run_record(sluice_record_fn done, void* user_data, Op op) {
  bool present = false;
  try {
    ValueBuffer buffer;
    present = op(buffer.get());
    if (done == nullptr) return;
    if (present) {
      return done(user_data, SLUICE_OK, nullptr,
                  reinterpret_cast<const uint8_t*>(buffer.get().data()), buffer.get().size());
    }
  } catch (const std::bad_alloc&) {
    if (done != nullptr) {
      done(user_data, SLUICE_ERR_UNAVAILABLE, "memory plugin: out of memory.", nullptr, 0);
    }
    return;
  }
  done(user_data, SLUICE_OK, nullptr, nullptr, 0);
}

void put_record(sluice_plugin_handle* handle, const char* key, size_t key_len, const uint8_t* value,
                size_t value_len, int64_t expires_at_ms, int64_t now_ms, sluice_record_fn done,
                void* user_data) {
  if (!record_args_ok(handle, key, key_len, value_len, done, user_data)) return;
  if (value == nullptr && value_len > 0) {
    if (done != nullptr)
      done(user_data, SLUICE_ERR_INVALID, "memory plugin: a record put was given no value.",
           nullptr, 0);
    return;
  }
  run_record(done, user_data, [&](std::string&) {
    reinterpret_cast<Store*>(handle)->records().put(
        std::string_view(key, key_len),
        std::string_view(reinterpret_cast<const char*>(value), value_len), expires_at_ms, now_ms);
    return false;
  });
}

void get_record(sluice_plugin_handle* handle, const char* key, size_t key_len, int64_t now_ms,
                sluice_record_fn done, void* user_data) {
  if (!record_args_ok(handle, key, key_len, 0, done, user_data)) return;
  run_record(done, user_data, [&](std::string& out) {
    return reinterpret_cast<Store*>(handle)->records().get(std::string_view(key, key_len), now_ms,
                                                           out);
  });
}

void delete_record(sluice_plugin_handle* handle, const char* key, size_t key_len, int64_t now_ms,
                   sluice_record_fn done, void* user_data) {
  if (!record_args_ok(handle, key, key_len, 0, done, user_data)) return;
  run_record(done, user_data, [&](std::string& out) {
    return reinterpret_cast<Store*>(handle)->records().remove(std::string_view(key, key_len),
                                                              now_ms, out);
  });
}

const sluice_storage_plugin kTable = {
    SLUICE_ABI_VERSION, sizeof(sluice_storage_plugin),
    "memory",           "1.0.0",
    &open_store,        &submit_batch,
    &flush_store,       &store_stats,
    &close_store,       SLUICE_CAP_COMPLETES_INLINE,
    &prefetch_batch,    &put_record,
    &get_record,        &delete_record,
};

}  // namespace
}  // namespace sluice::memory_plugin

extern "C" SLUICE_PLUGIN_EXPORT const sluice_storage_plugin* sluice_storage_plugin_entry(void) {
  return &sluice::memory_plugin::kTable;
}
