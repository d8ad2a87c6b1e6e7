/*
 * sluice storage plugin ABI — plain C, versioned, stable.
 *
 * A storage plugin is a shared library that keeps rate-limit state (counters, buckets,
 * logs, leases) for the engine. It exports exactly one symbol, SLUICE_PLUGIN_ENTRY_SYMBOL,
 * which returns a table of functions (sluice_storage_plugin). The table starts with its ABI
 * version and its size and only ever grows at the end; the host refuses a plugin whose major
 * version differs or whose table is smaller than the fields it needs.
 *
 * The algorithms are not implemented by plugins. The host hands every plugin a table of pure
 * state transitions (sluice_host_api): a plugin stores opaque state blobs by key and applies
 * the host's transitions under its own atomicity. A plugin that cannot run host code next to
 * its data (Redis) runs the same algorithms in its backend; the conformance suite in
 * tests/conformance proves that every plugin gives the same answers.
 *
 * Since ABI 1.4 a plugin may also keep small opaque records with an expiry (record_put,
 * record_get, record_delete): the engine keeps its leases there, so that a lease granted by one
 * sluiced can be charged and released by another one on the same storage, or by the same one
 * after a restart.
 *
 * Rules of the boundary:
 *   - no C++ types and no exceptions cross it; handles are opaque;
 *   - errors are a code (sluice_status) plus a message written into the caller's buffer;
 *   - time is passed in by the host (now_ms); plugins never read a clock for decisions
 *     unless their configuration says so (the Redis plugin may use the server's TIME);
 *   - memory passed in by the host stays valid until the completion callback has returned.
 */
#ifndef SLUICE_STORAGE_PLUGIN_H
#define SLUICE_STORAGE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SLUICE_ABI_VERSION_MAJOR 1u
#define SLUICE_ABI_VERSION_MINOR 4u
#define SLUICE_ABI_VERSION ((SLUICE_ABI_VERSION_MAJOR << 16) | SLUICE_ABI_VERSION_MINOR)

/* The one exported symbol: `const sluice_storage_plugin* sluice_storage_plugin_entry(void);` */
#define SLUICE_PLUGIN_ENTRY_SYMBOL "sluice_storage_plugin_entry"

#if defined(_WIN32)
#define SLUICE_PLUGIN_EXPORT __declspec(dllexport)
#else
#define SLUICE_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* ---- status codes ------------------------------------------------------------------- */
typedef enum sluice_status {
  SLUICE_OK = 0,
  SLUICE_ERR_INVALID = 1,     /* bad argument or configuration */
  SLUICE_ERR_UNAVAILABLE = 2, /* backend unreachable, circuit open, disk full, locked, ... */
  SLUICE_ERR_TIMEOUT = 3,     /* backend did not answer in time */
  SLUICE_ERR_CORRUPT = 4,     /* stored data cannot be read */
  SLUICE_ERR_INTERNAL = 5
} sluice_status;

/* ---- algorithms ----------------------------------------------------------------------- */
typedef enum sluice_algorithm {
  SLUICE_ALG_FIXED_WINDOW = 1,
  SLUICE_ALG_SLIDING_WINDOW = 2,         /* exact log of admissions */
  SLUICE_ALG_SLIDING_WINDOW_COUNTER = 3, /* two windows, weighted; O(1) */
  SLUICE_ALG_TOKEN_BUCKET = 4,
  SLUICE_ALG_GCRA = 5,
  SLUICE_ALG_CONCURRENCY = 6, /* in-flight leases, each with an expiry */
  /* ABI 1.3: a fixed window whose bounds the host gives with every item, for calendar periods
   * (a local day, week or month: 23- or 25-hour days at daylight-saving changes, months of 28
   * to 31 days). The current window starts at `burst` (ms since the epoch) and lasts
   * `window_ms`; otherwise it is fixed_window. */
  SLUICE_ALG_CALENDAR_WINDOW = 7
} sluice_algorithm;

/* The effective parameters of one limit for one request (after tier and warm-up). */
typedef struct sluice_limit_params {
  uint32_t algorithm; /* sluice_algorithm */
  uint32_t reserved;  /* zero */
  int64_t limit;      /* admissions (in cost units) per window; in-flight for concurrency */
  int64_t window_ms;  /* window, refill period (token bucket: `limit` per window), or lease TTL */
  int64_t burst;      /* token bucket capacity / GCRA burst; 0 = same as limit;
                         calendar_window: the current window's start, ms since the epoch */
} sluice_limit_params;

/* What an item asks of its limit. */
typedef enum sluice_op {
  SLUICE_OP_CONSUME = 1, /* admit `cost` if the limit allows it, else deny and change nothing */
  SLUICE_OP_PEEK = 2,    /* report what CONSUME would answer; change nothing */
  SLUICE_OP_ADJUST = 3,  /* always applied: add `cost` (may be negative: refund) */
  SLUICE_OP_LEASE_ACQUIRE =
      4, /* concurrency: admit lease `lease_id` of `cost`, expiring at lease_expires_ms */
  SLUICE_OP_LEASE_RELEASE = 5, /* concurrency: drop lease `lease_id` (no-op if gone) */
  SLUICE_OP_RESET = 6          /* forget the key */
} sluice_op;

typedef struct sluice_item {
  const char* key; /* not NUL-terminated; bytes */
  uint32_t key_len;
  uint32_t op; /* sluice_op */
  sluice_limit_params params;
  int64_t cost;
  uint64_t lease_id;        /* LEASE_ACQUIRE / LEASE_RELEASE */
  int64_t lease_expires_ms; /* LEASE_ACQUIRE */
  uint32_t shadow;          /* non-zero: never denies the batch; reported in the result */
  uint32_t state_capacity;  /* upper bound in bytes of this item's state blob */
} sluice_item;

typedef struct sluice_item_result {
  int32_t allowed; /* 1 admitted (or would be), 0 denied */
  int32_t reserved;
  int64_t limit;
  int64_t remaining;
  int64_t reset_after_ms;
  int64_t retry_after_ms; /* 0 when allowed */
} sluice_item_result;

/*
 * A batch holds every limit of one request. CONSUME/LEASE_ACQUIRE items are all-or-nothing:
 * if any non-shadow item is denied, no item changes state. `results` has `count` entries and
 * is written by the plugin before completion.
 */
typedef struct sluice_batch {
  int64_t now_ms;
  size_t count;
  const sluice_item* items;
  sluice_item_result* results;
} sluice_batch;

/* Called exactly once per submitted batch, inline or from the plugin's own thread.
 * `message` is NULL on success, otherwise a human-readable sentence valid during the call. */
typedef void (*sluice_completion_fn)(void* user_data, sluice_status status, const char* message);

/* Completion of a record operation (ABI 1.4), called exactly once, inline or from the plugin's
 * own thread. `message` is NULL on success, otherwise a sentence valid during the call. `value`
 * (value_len bytes) is the record's value, valid during the call; NULL when there is none (and
 * for put, and on failure). */
typedef void (*sluice_record_fn)(void* user_data, sluice_status status, const char* message,
                                 const uint8_t* value, size_t value_len);

/* ---- host services handed to the plugin at open -------------------------------------- */
typedef struct sluice_host_api {
  uint32_t abi_version;
  uint32_t struct_size;

  /* Pure transition. Reads `state` (state_len bytes; 0 = fresh key), fills `result`.
   * When `commit` is non-zero and the op changes state (and for CONSUME/LEASE_ACQUIRE only when
   * allowed), rewrites `state` in place (capacity item->state_capacity) and returns the new
   * length; otherwise returns state_len unchanged. *expires_at_ms receives the time after which
   * the state is equivalent to a fresh key (the plugin may drop it then). */
  size_t (*apply)(const sluice_item* item, int64_t now_ms, uint8_t* state, size_t state_len,
                  int commit, sluice_item_result* result, int64_t* expires_at_ms);

  /* Log a line through the host's logger. level: 0 debug, 1 info, 2 warn, 3 error. */
  void (*log)(int level, const char* message);
} sluice_host_api;

/* ---- the plugin's table --------------------------------------------------------------- */
typedef struct sluice_plugin_handle sluice_plugin_handle; /* opaque */

typedef struct sluice_storage_plugin {
  uint32_t abi_version; /* SLUICE_ABI_VERSION the plugin was built with */
  uint32_t struct_size; /* sizeof(sluice_storage_plugin) as the plugin knows it */
  const char* name;     /* "memory", "sqlite", "redis", ... */
  const char* version;  /* plugin's own version string */

  /* Open an instance. config is `count` KEY=VALUE pairs. On failure returns non-OK and writes
   * one sentence into err (err_len bytes, NUL-terminated). */
  sluice_status (*open)(const sluice_host_api* host, const char* const* config_keys,
                        const char* const* config_values, size_t count, sluice_plugin_handle** out,
                        char* err, size_t err_len);

  /* Submit a batch. Completes through `done` exactly once (possibly before returning).
   * Thread-safe: called concurrently from all server threads. */
  void (*submit)(sluice_plugin_handle* handle, const sluice_batch* batch, sluice_completion_fn done,
                 void* user_data);

  /* Write what is buffered (durability), waiting at most timeout_ms. May be NULL. */
  sluice_status (*flush)(sluice_plugin_handle* handle, int64_t timeout_ms, char* err,
                         size_t err_len);

  /* Statistics as a JSON object (keys, evictions, errors, ...), written into buf.
   * Returns the length needed (excluding NUL). May be NULL. */
  size_t (*stats_json)(sluice_plugin_handle* handle, char* buf, size_t buf_len);

  /* Release everything. Pending batches complete (with an error if they cannot) first. */
  void (*close)(sluice_plugin_handle* handle);

  /* ---- ABI 1.1 (present when struct_size covers it) ---- */
  /* SLUICE_CAP_* bits. */
  uint64_t capabilities;

  /* ---- ABI 1.2 (present when struct_size covers it) ---- */
  /* A hint that `batch` is about to be submitted: the plugin may start bringing its keys'
   * state closer (a CPU prefetch of the table slots, for example) so that the submit finds it
   * in cache. It must not change any state, block, take a lock that submit holds for long, or
   * call back; the batch's memory is only valid during the call. May be NULL. The host may
   * hint several batches before submitting any of them, and may never submit a hinted one. */
  void (*prefetch)(sluice_plugin_handle* handle, const sluice_batch* batch);

  /* ---- ABI 1.4 (present when struct_size covers them) ---- */
  /* Records: small opaque values (at most SLUICE_RECORD_MAX_VALUE bytes, any bytes, NUL
   * included) under keys of at most SLUICE_RECORD_MAX_KEY bytes, each with an expiry in ms
   * since the epoch. A record whose expires_at_ms is at or before the host's now_ms is absent:
   * get does not return it and delete does not hand it back. Keys live in a space of their own
   * as far as the host is concerned; the host keeps them apart from batch keys (the engine's
   * start with "lease:", batch keys with '{').
   *
   * Each call completes through `done` exactly once, inline or on the plugin's own thread, like
   * submit; `key` and `value` are only valid during the call, and the value handed to `done`
   * only during that call. Writes are as durable as the plugin's batches are (a SQLite plugin
   * in commit mode completes a put once it is committed). Thread-safe. All three are NULL in a
   * plugin that cannot keep records, and then the host keeps leases in its own memory. */
  /* Writes (or replaces) the record; done's value is NULL. */
  void (*record_put)(sluice_plugin_handle* handle, const char* key, size_t key_len,
                     const uint8_t* value, size_t value_len, int64_t expires_at_ms, int64_t now_ms,
                     sluice_record_fn done, void* user_data);
  /* Reads the record; done's value is NULL when there is none (or it has expired). */
  void (*record_get)(sluice_plugin_handle* handle, const char* key, size_t key_len, int64_t now_ms,
                     sluice_record_fn done, void* user_data);
  /* Removes the record and hands its value to done (NULL when there was none). Atomic: of two
   * deletes of one record, one receives the value and the other NULL. */
  void (*record_delete)(sluice_plugin_handle* handle, const char* key, size_t key_len,
                        int64_t now_ms, sluice_record_fn done, void* user_data);
} sluice_storage_plugin;

/* Bounds of records (ABI 1.4). */
#define SLUICE_RECORD_MAX_KEY 256u
#define SLUICE_RECORD_MAX_VALUE 65536u

/* submit() always completes before it returns (the callback runs inline). The host then hands
 * the plugin its own buffers; for other plugins it copies the batch so that a decision can be
 * answered at the host's storage timeout while the plugin still holds the batch. */
#define SLUICE_CAP_COMPLETES_INLINE 0x1u

typedef const sluice_storage_plugin* (*sluice_plugin_entry_fn)(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SLUICE_STORAGE_PLUGIN_H */
