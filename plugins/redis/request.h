// One submitted batch, encoded as the script's KEYS and ARGV (RESP bulk strings), and the
// script call that carries one or more of them; or one record operation (ABI 1.4), a command
// of its own.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config.h"
#include "sluice/storage_plugin.h"

namespace sluice::redis_plugin {

struct Request {
  sluice_item_result* results = nullptr;
  size_t count = 0;
  sluice_completion_fn done = nullptr;
  void* user_data = nullptr;
  int64_t deadline_ms = 0;  // steady clock: when the host stops waiting for it
  size_t key_count = 0;     // one per item, two for concurrency
  std::string keys;         // `key_count` RESP bulk strings
  std::string packed;       // now, count, then 9 numbers per item: little-endian doubles
  size_t lease_count = 0;   // one per concurrency item
  std::string leases;       // `lease_count` RESP bulk strings: the lease ids in decimal
  // Redis Cluster: the slot of every key of the batch (their hash tags agree), and where an
  // ASK redirection sends the next call (`asking`: ASKING first, this once).
  uint16_t slot = 0;
  bool cross_slot = false;  // keys in different slots: a script call cannot take them in Cluster
  bool asking = false;
  HostPort ask_to;
  int redirects = 0;

  // A record operation instead of a batch: its whole RESP command, never folded with others,
  // and the completion that receives the record's value.
  enum class RecordOp { kNone, kPut, kGet, kDelete };
  RecordOp record = RecordOp::kNone;
  std::string command;
  sluice_record_fn record_done = nullptr;
  int64_t record_now_ms = 0;  // the host's now: a record that expired by it is absent

  // Calls `done` (or `record_done`, with no value) once; the request must not be used
  // afterwards.
  void complete(sluice_status status, const char* message);
  // A record operation's success, with the record's value (nullptr: none).
  void complete_record(const char* value, size_t len);
};

// Validates and encodes a batch. Items whose parameters the engine's transitions refuse are
// encoded as invalid (the script denies them the same way); parameters that are valid but
// beyond what Lua's doubles compute exactly make the whole batch fail with `error`.
bool encode_request(const Config& config, const sluice_batch& batch, Request& out,
                    std::string& error);

// The bytes of one item's answer in the script's reply: 5 little-endian doubles.
inline constexpr size_t kReplyItemSize = 5 * sizeof(double);

// Decodes one item's answer; false if a number is not an integer that fits.
bool decode_result(const char* bytes, sluice_item_result& out);

// The RESP command of one script call over `requests` (EVALSHA `sha`, or EVAL `script`).
void encode_call(const Config& config, const std::vector<std::unique_ptr<Request>>& requests,
                 bool eval, std::string_view sha, std::string_view script, std::string& out);

void append_bulk(std::string& out, std::string_view bytes);

// Record operations (ABI 1.4) under config.prefix + `key`. A record's value is stored after its
// expiry (8 bytes, little-endian ms since the epoch), so that it is absent from the host's now
// on, whatever Redis's clock says; the key's Redis TTL (PX, from the host's now, plus
// ttl_grace_ms) only reclaims it. A delete is a small script (GET then DEL, atomically) rather
// than GETDEL, which Redis 6.0 lacks.
void encode_record_put(const Config& config, std::string_view key, std::string_view value,
                       int64_t expires_at_ms, int64_t now_ms, Request& out);
void encode_record_get(const Config& config, std::string_view key, int64_t now_ms, Request& out);
void encode_record_delete(const Config& config, std::string_view key, int64_t now_ms, Request& out);
// The value a GET or the delete script answered (`bytes`, `len`), without its expiry; false
// when it is too short to hold one. `value` is nullptr when the record expired at now_ms.
bool decode_record(const char* bytes, size_t len, int64_t now_ms, const char*& value,
                   size_t& value_len);

}  // namespace sluice::redis_plugin
