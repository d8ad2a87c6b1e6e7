// Fuzz target: the server's command layer, decision and admin, as a session drives it.
//
// Input layout: byte 0 picks the socket (bit 0: admin) and byte 1 how many seconds the clock
// moves before the requests run (so windows roll, leases and keys expire); the rest is a RESP
// stream. The complete requests go through the server's own Dispatcher (dispatcher.h), as a
// Session hands them over: decisions staged and submitted to a real Engine (an in-process
// store, manual clock), admin commands to a real Admin (policy file in a temporary directory).
//
// Oracles besides the sanitizers:
//   - every command writes exactly one well-formed RESP reply;
//   - on the decision socket nothing but counters changes: the policy (and so its file and
//     version) and the audit log stay as they were;
//   - an accepted SL.CHECK reply has the six documented fields with sane values.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "admin.h"
#include "commands.h"
#include "context.h"
#include "dispatcher.h"
#include "sluice/clock.h"
#include "sluice/engine.h"
#include "sluice/policy.h"
#include "sluice/resp.h"
#include "sluice/storage.h"
#include "sluice/storage_plugin.h"

namespace {

using namespace sluice;
using namespace sluice::server;

// Every algorithm, tiers with overrides and an unlimited one, API keys, warm-up, a shadow limit.
constexpr std::string_view kPolicy = R"(version: 1
default_tier: free
on_storage_failure: fail_open
unknown_resource: deny
lease_ttl: 10s
tiers:
  free: {multiplier: 1}
  premium:
    multiplier: 5
    overrides:
      chat: {limits: {per_minute: 7}}
  internal: {unlimited: true}
api_keys:
  pk: premium
  ik: internal
resources:
  predict:
    limits:
      - {name: per_minute, algorithm: fixed_window, limit: 10, window: 1m}
      - {name: per_day, algorithm: fixed_window, limit: 1000, window: 1d, shadow: true}
  chat:
    limits:
      - {name: per_minute, algorithm: sliding_window, limit: 5, window: 1m}
      - {name: smooth, algorithm: sliding_window_counter, limit: 20, window: 10s}
  generate:
    limits:
      - {name: tokens, algorithm: token_bucket, limit: 1000, window: 1m, burst: 2000, cost: tokens}
      - {name: pace, algorithm: gcra, limit: 10, window: 1s, burst: 3}
  heavy:
    limits:
      - {name: slots, algorithm: concurrency, limit: 2, window: 30s}
    warmup: {factor: 0.5, duration: 1m, start: cold}
  free-for-all:
    limits: []
)";

// A small in-process storage plugin: the state of each key in a std::string, all-or-nothing
// batches under one mutex. The memory plugin keeps its states in pages it maps itself, where
// LeakSanitizer cannot see the pointers, so every input that stores an out-of-line state would
// be reported as a leak; this store keeps the target on what it fuzzes, the command layer.
struct TinyStore;
TinyStore* last_opened = nullptr;  // the store the last Storage::open_table made

struct TinyStore {
  const sluice_host_api* host = nullptr;
  std::mutex mu;
  std::unordered_map<std::string, std::string> states;

  static bool gating(uint32_t op) {
    return op == SLUICE_OP_CONSUME || op == SLUICE_OP_LEASE_ACQUIRE;
  }

  void apply(const sluice_item& item, int64_t now, int commit, sluice_item_result& result) {
    const std::string key(item.key, item.key_len);
    std::string& state = states[key];
    std::string buf = state;
    buf.resize(std::max<size_t>(item.state_capacity, state.size()));
    int64_t expires = 0;
    const size_t len = host->apply(&item, now, reinterpret_cast<uint8_t*>(buf.data()), state.size(),
                                   commit, &result, &expires);
    if (len > buf.size()) fail();  // the host wrote past the capacity it asked for
    if (commit) {
      buf.resize(len);
      state = std::move(buf);
    }
    if (state.empty()) states.erase(key);
  }

  void clear() {
    std::lock_guard lock(mu);
    states.clear();
  }

  void submit(const sluice_batch& batch) {
    std::lock_guard lock(mu);
    bool denied = false;
    for (size_t i = 0; i < batch.count; ++i) {
      const sluice_item& item = batch.items[i];
      apply(item, batch.now_ms, 0, batch.results[i]);
      if (gating(item.op) && !item.shadow && !batch.results[i].allowed) denied = true;
    }
    if (denied) return;
    for (size_t i = 0; i < batch.count; ++i) {
      const sluice_item& item = batch.items[i];
      if (item.op == SLUICE_OP_PEEK) continue;
      if (gating(item.op) && !batch.results[i].allowed) continue;  // a denied shadow item
      apply(item, batch.now_ms, 1, batch.results[i]);
    }
  }

  [[noreturn]] static void fail() { __builtin_trap(); }
};

const sluice_storage_plugin* tiny_store_table() {
  static const sluice_storage_plugin table = {
      SLUICE_ABI_VERSION,
      sizeof(sluice_storage_plugin),
      "tiny",
      "1",
      [](const sluice_host_api* host, const char* const*, const char* const*, size_t,
         sluice_plugin_handle** out, char*, size_t) {
        auto* store = new TinyStore();
        store->host = host;
        last_opened = store;
        *out = reinterpret_cast<sluice_plugin_handle*>(store);
        return SLUICE_OK;
      },
      [](sluice_plugin_handle* h, const sluice_batch* batch, sluice_completion_fn done,
         void* user) {
        reinterpret_cast<TinyStore*>(h)->submit(*batch);
        done(user, SLUICE_OK, nullptr);
      },
      nullptr,
      nullptr,
      [](sluice_plugin_handle* h) { delete reinterpret_cast<TinyStore*>(h); },
      // It answers inside submit(), as the memory plugin does: the engine then runs no
      // storage watchdog thread (whose locals LeakSanitizer's exit check once reported as
      // leaked, with the engine still alive at exit).
      SLUICE_CAP_COMPLETES_INLINE,
  };
  return &table;
}

struct World {
  World() {
    spdlog::set_level(spdlog::level::off);
    char tmpl[] = "/dev/shm/sluice-fuzz-XXXXXX";
    const char* made = ::mkdtemp(tmpl);
    if (made == nullptr) std::abort();
    dir = made;
    policy_path = dir + "/policy.yaml";
    std::ofstream(policy_path) << kPolicy;
    auto loaded = load_policy_file(policy_path, 1);
    if (!loaded.ok()) std::abort();
    base = loaded.value().compiled;
    make_engine();
    // The audit log's file is not what is fuzzed; /dev/null keeps millions of runs off the disk
    // (its entries are still kept in memory and served by SL.AUDIT).
    audit = std::make_unique<AuditLog>("/dev/null");
  }
  void make_engine() {
    context.engine = nullptr;
    engine.reset();
    auto storage = Storage::open_table(tiny_store_table(), {});
    if (!storage.ok()) std::abort();
    EngineOptions options;
    options.clock = &clock;
    store = last_opened;
    engine = std::make_unique<Engine>(std::move(storage).value(), base, options);
    context.engine = engine.get();
  }
  ~World() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  std::string read_policy_file() const {
    std::ifstream in(policy_path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // Each input starts from the same policy, so that a crash reproduces from its input alone.
  // An input that changed the policy gets a fresh engine: statistics keep a series for every
  // resource x tier x rule a policy ever named, and across millions of inputs those would
  // pile up (and make every SL.STATS slower).
  void restore() {
    if (engine->policy() != base) {
      make_engine();
      std::ofstream(policy_path, std::ios::trunc) << kPolicy;
    }
  }

  ManualClock clock;
  TinyStore* store = nullptr;  // owned by the engine's storage
  std::string dir, policy_path;
  std::shared_ptr<const CompiledPolicy> base;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<AuditLog> audit;
  ServerContext context;
};

World* the_world = nullptr;

World& world() {
  if (the_world == nullptr) {
    the_world = new World();
    // Torn down before LeakSanitizer's check at exit (atexit handlers run in reverse order of
    // registration, and the sanitizer registered its own first): whatever is still allocated
    // then was lost by an input, not held by the engine.
    std::atexit([] {
      delete the_world;
      the_world = nullptr;
    });
  }
  return *the_world;
}

// SLUICE_FUZZ_TRACE=1 prints every reply: for triaging a crashing input by hand.
bool trace() {
  static const bool on = std::getenv("SLUICE_FUZZ_TRACE") != nullptr;
  return on;
}

[[noreturn]] void fail() { __builtin_trap(); }

// Exactly one complete reply, and for an accepted decision the documented shape.
void check_reply(Command command, const std::string& out, const resp::Limits& limits) {
  resp::Value v;
  const auto r = resp::parse_value(out, limits, v);
  if (r.status != resp::ParseStatus::kComplete || r.consumed != out.size()) fail();
  if (v.is_error()) {
    if (v.error_code().empty()) fail();
    return;
  }
  if (command == Command::kCheck || command == Command::kPeek || command == Command::kAcquire) {
    const size_t base = command == Command::kAcquire ? 8 : 6;
    // A request with WAIT gets two more: the time it waited and how the wait ended.
    if (v.type != resp::Value::Type::kArray ||
        (v.elements.size() != base + 3 && v.elements.size() != base + 5)) {
      fail();
    }
    const auto& e = v.elements;
    if (e.size() == base + 5) {
      if (command == Command::kPeek) fail();
      if (e[base + 3].type != resp::Value::Type::kInteger || e[base + 3].integer < 0) fail();
      if (e[base + 4].type != resp::Value::Type::kBulk) fail();
    }
    for (size_t i = 0; i < 5; ++i)
      if (e[i].type != resp::Value::Type::kInteger) fail();
    if (e[0].integer != 0 && e[0].integer != 1) fail();
    if (e[0].integer == 1 && e[4].integer != 0) fail();  // retry-after only when denied
    // docs/protocol.md: -1 means unlimited (limit, remaining) or never (retry-after).
    if (e[1].integer < -1 || e[2].integer < -1 || e[3].integer < 0 || e[4].integer < -1) fail();
    if (e[0].integer == 1 && e[1].integer >= 0 && e[2].integer > e[1].integer) fail();
    if (e[5].type != resp::Value::Type::kBulk || e[5].str.empty()) fail();
    // Then the tier, the deciding limit's window, and each limit's
    // [name, limit, remaining, reset_after_ms, window_ms]; the window is the listed deciding
    // limit's, and 0 when no limit decided.
    if (e[base].type != resp::Value::Type::kBulk) fail();
    if (e[base + 1].type != resp::Value::Type::kInteger || e[base + 1].integer < 0) fail();
    if (e[base + 2].type != resp::Value::Type::kArray) fail();
    int64_t window = 0;
    for (const auto& l : e[base + 2].elements) {
      if (l.type != resp::Value::Type::kArray || l.elements.size() != 5) fail();
      if (l.elements[0].type != resp::Value::Type::kBulk || l.elements[0].str.empty()) fail();
      for (size_t i = 1; i < 5; ++i)
        if (l.elements[i].type != resp::Value::Type::kInteger || l.elements[i].integer < 0) fail();
      if (l.elements[0].str == e[5].str) window = l.elements[4].integer;
    }
    if (e[base + 1].integer != window) fail();
  }
}

// The Dispatcher's owner: the store completes every decision inline, so nothing is ever left
// waiting on another thread.
struct InlineOwner final : Dispatcher::Owner {
  void hold() override { fail(); }
  void wake() override { fail(); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  World& w = world();
  w.restore();
  const bool admin = (data[0] & 1) != 0;
  w.clock.advance(int64_t{data[1]} * 1000);

  resp::Limits limits;
  limits.max_frame_bytes = 1 << 16;
  limits.max_bulk_bytes = 1 << 16;
  limits.max_args = 64;
  resp::Limits reply_limits;  // replies may be larger than requests (SL.STATS, SL.POLICY GET)

  std::string buffer(reinterpret_cast<const char*>(data + 2), size - 2);
  std::span<char> rest(buffer.data(), buffer.size());
  std::vector<std::string_view> argv;
  std::string out;
  const uint64_t version_before = w.engine->policy()->version();
  // Every entry carries its time to the millisecond, so an append changes the last one.
  const std::vector<std::string> audit_before = w.audit->last(1);
  Admin admin_layer(*w.engine, w.policy_path, std::string(kPolicy), *w.audit);
  admin_layer.set_context(&w.context);
  w.context.admin = &admin_layer;
  InlineOwner owner;
  Dispatcher dispatcher(w.context, admin, Peer{0, 1}, out, owner);
  // As a Session does: every complete frame of a read goes to the dispatcher, which stages
  // decisions; what is staged is submitted when the read is exhausted, or at a QUIT or a
  // malformed frame. A zero-length argv (an empty array) is skipped.
  std::vector<Command> commands;
  while (!rest.empty() && commands.size() < 32 && !dispatcher.quit_requested()) {
    const auto r = resp::parse_command(rest, limits, argv);
    if (r.status == resp::ParseStatus::kIncomplete) break;
    if (r.status == resp::ParseStatus::kError) {
      dispatcher.protocol_error(r.error);
      commands.push_back(Command::kUnknown);
      break;
    }
    rest = rest.subspan(r.consumed);
    if (argv.empty()) continue;
    commands.push_back(lookup_command(argv[0]));
    dispatcher.execute(argv);
  }
  dispatcher.submit_staged();
  if (dispatcher.pending() != 0) fail();  // an inline store leaves nothing waiting
  if (trace()) std::fprintf(stderr, "%s\n", out.c_str());
  // Exactly one reply per request, in request order.
  std::string_view replies(out);
  for (const Command command : commands) {
    resp::Value v;
    const auto r = resp::parse_value(replies, reply_limits, v);
    if (r.status != resp::ParseStatus::kComplete) fail();
    check_reply(command, std::string(replies.substr(0, r.consumed)), reply_limits);
    replies.remove_prefix(r.consumed);
  }
  if (!replies.empty()) fail();
  w.context.admin = nullptr;
  // Counters start empty for every input (a crash reproduces from its input alone), and what
  // an input stored it also frees, so LeakSanitizer's per-input check only runs for real
  // imbalances.
  w.store->clear();
  if (!admin) {
    if (w.engine->policy()->version() != version_before) fail();
    if (w.engine->policy() != w.base) fail();
    if (w.audit->last(1) != audit_before) fail();
  }
  return 0;
}
