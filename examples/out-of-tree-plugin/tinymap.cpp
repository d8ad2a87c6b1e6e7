// tinymap: the smallest useful sluice storage plugin. It keeps every key's state blob in one
// std::unordered_map behind one mutex and lets the host's transitions (host->apply) do the
// rate limiting, so it gives the same answers as the shipped plugins for every algorithm.
// It forgets a key once the host says its state has expired. Everything it uses comes from
// sluice/storage_plugin.h; see docs/plugins.md for the contract.
#include <sluice/storage_plugin.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

struct Entry {
  std::vector<uint8_t> state;
  int64_t expires_at_ms = 0;
};

struct Store {
  const sluice_host_api* host = nullptr;
  std::mutex mu;
  std::unordered_map<std::string, Entry> entries;  // guarded by mu
};

bool is_admission(uint32_t op) { return op == SLUICE_OP_CONSUME || op == SLUICE_OP_LEASE_ACQUIRE; }

// Runs one item's transition against the stored state; commits only when asked.
void apply_item(Store& store, const sluice_item& item, int64_t now_ms, bool commit,
                sluice_item_result* result) {
  const std::string key(item.key, item.key_len);
  auto found = store.entries.find(key);
  std::vector<uint8_t> state(item.state_capacity);
  size_t len = 0;
  if (found != store.entries.end() && found->second.expires_at_ms > now_ms) {
    len = found->second.state.size();
    std::memcpy(state.data(), found->second.state.data(), len);
  }
  int64_t expires_at_ms = 0;
  const size_t new_len =
      store.host->apply(&item, now_ms, state.data(), len, commit ? 1 : 0, result, &expires_at_ms);
  if (!commit) return;
  state.resize(new_len);
  store.entries[key] = Entry{std::move(state), expires_at_ms};
}

sluice_status tinymap_open(const sluice_host_api* host, const char* const*, const char* const*,
                           size_t, sluice_plugin_handle** out, char*, size_t) {
  auto* store = new Store;
  store->host = host;
  *out = reinterpret_cast<sluice_plugin_handle*>(store);
  return SLUICE_OK;
}

// All or nothing: every item is first decided without committing; if a non-shadow admission
// is denied nothing changes, otherwise each item is applied for real.
void tinymap_submit(sluice_plugin_handle* handle, const sluice_batch* batch,
                    sluice_completion_fn done, void* user_data) {
  auto& store = *reinterpret_cast<Store*>(handle);
  {
    std::lock_guard lock(store.mu);
    bool denied = false;
    for (size_t i = 0; i < batch->count; ++i) {
      const sluice_item& item = batch->items[i];
      apply_item(store, item, batch->now_ms, false, &batch->results[i]);
      if (is_admission(item.op) && !item.shadow && !batch->results[i].allowed) denied = true;
    }
    for (size_t i = 0; i < batch->count && !denied; ++i) {
      const sluice_item& item = batch->items[i];
      if (item.op == SLUICE_OP_PEEK) continue;
      if (item.op == SLUICE_OP_RESET) {
        store.entries.erase(std::string(item.key, item.key_len));
        continue;
      }
      apply_item(store, item, batch->now_ms, true, &batch->results[i]);
    }
  }
  done(user_data, SLUICE_OK, nullptr);
}

void tinymap_close(sluice_plugin_handle* handle) { delete reinterpret_cast<Store*>(handle); }

const sluice_storage_plugin kPlugin = {
    SLUICE_ABI_VERSION,
    sizeof(sluice_storage_plugin),
    "tinymap",
    "1.0",
    tinymap_open,
    tinymap_submit,
    nullptr,  // flush: nothing is buffered
    nullptr,  // stats_json
    tinymap_close,
    SLUICE_CAP_COMPLETES_INLINE,
    nullptr,  // prefetch
};

}  // namespace

extern "C" SLUICE_PLUGIN_EXPORT const sluice_storage_plugin* sluice_storage_plugin_entry(void) {
  return &kPlugin;
}
