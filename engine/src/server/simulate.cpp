#include "simulate.h"

#include <algorithm>
#include <boost/unordered/unordered_flat_map.hpp>
#include <boost/unordered/unordered_flat_set.hpp>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "sluice/algorithms.h"
#include "sluice/clock.h"
#include "sluice/engine.h"
#include "sluice/storage.h"

namespace sluice::server {
namespace {

using json = nlohmann::json;

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
struct StringEq {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const noexcept { return a == b; }
};

// The replay's storage: every key's state in a hash map, batches all-or-nothing as every
// plugin decides them (a denied batch changes nothing), answered inside submit().
class ReplayStore {
 public:
  static const sluice_storage_plugin* table() {
    static const sluice_storage_plugin t = [] {
      sluice_storage_plugin x{};
      x.abi_version = SLUICE_ABI_VERSION;
      x.struct_size = sizeof(sluice_storage_plugin);
      x.name = "replay";
      x.version = "1";
      x.open = [](const sluice_host_api* host, const char* const*, const char* const*, size_t,
                  sluice_plugin_handle** out, char*, size_t) {
        *out = reinterpret_cast<sluice_plugin_handle*>(new ReplayStore(host));
        return SLUICE_OK;
      };
      x.submit = [](sluice_plugin_handle* h, const sluice_batch* b, sluice_completion_fn done,
                    void* user) {
        reinterpret_cast<ReplayStore*>(h)->submit(*b);
        done(user, SLUICE_OK, nullptr);
      };
      x.close = [](sluice_plugin_handle* h) { delete reinterpret_cast<ReplayStore*>(h); };
      x.capabilities = SLUICE_CAP_COMPLETES_INLINE;
      return x;
    }();
    return &t;
  }

 private:
  explicit ReplayStore(const sluice_host_api* host) : host_(host) {}

  static bool gating(uint32_t op) {
    return op == SLUICE_OP_CONSUME || op == SLUICE_OP_LEASE_ACQUIRE;
  }

  // Applies one item to a copy of its state; `commit` keeps the result.
  void apply(const sluice_item& item, int64_t now, bool commit, sluice_item_result& result) {
    const std::string_view key(item.key, item.key_len);
    auto it = states_.find(key);
    const std::string* state = it != states_.end() ? &it->second : nullptr;
    scratch_.assign(state != nullptr ? *state : std::string());
    scratch_.resize(std::max<size_t>(item.state_capacity, scratch_.size()));
    int64_t expires = 0;
    const size_t len =
        host_->apply(&item, now, reinterpret_cast<uint8_t*>(scratch_.data()),
                     state != nullptr ? state->size() : 0, commit ? 1 : 0, &result, &expires);
    if (!commit) return;
    if (len == 0) {
      if (it != states_.end()) states_.erase(it);
      return;
    }
    scratch_.resize(len);
    if (it != states_.end()) {
      it->second = scratch_;
    } else {
      states_.emplace(std::string(key), scratch_);
    }
  }

  void submit(const sluice_batch& batch) {
    bool denied = false;
    for (size_t i = 0; i < batch.count; ++i) {
      const sluice_item& item = batch.items[i];
      apply(item, batch.now_ms, false, batch.results[i]);
      if (gating(item.op) && !item.shadow && !batch.results[i].allowed) denied = true;
    }
    if (denied) return;
    for (size_t i = 0; i < batch.count; ++i) {
      const sluice_item& item = batch.items[i];
      if (item.op == SLUICE_OP_PEEK) continue;
      if (gating(item.op) && !batch.results[i].allowed) continue;  // a denied shadow item
      apply(item, batch.now_ms, true, batch.results[i]);
    }
  }

  const sluice_host_api* host_;
  boost::unordered_flat_map<std::string, std::string, StringHash, StringEq> states_;
  std::string scratch_;
};

struct Counts {
  uint64_t requests = 0, denied_now = 0, denied_draft = 0, newly_denied = 0, newly_allowed = 0;
  void add(bool live_allowed, bool draft_allowed) {
    ++requests;
    denied_now += live_allowed ? 0 : 1;
    denied_draft += draft_allowed ? 0 : 1;
    newly_denied += live_allowed && !draft_allowed ? 1 : 0;
    newly_allowed += !live_allowed && draft_allowed ? 1 : 0;
  }
  json to_json() const {
    return {{"requests", requests},
            {"denied_now", denied_now},
            {"denied_draft", denied_draft},
            {"newly_denied", newly_denied},
            {"newly_allowed", newly_allowed}};
  }
};

DecisionKind kind_of(Recorded::Kind k) {
  switch (k) {
    case Recorded::Kind::kPeek:
      return DecisionKind::kPeek;
    case Recorded::Kind::kAcquire:
      return DecisionKind::kAcquire;
    default:
      return DecisionKind::kCheck;
  }
}

}  // namespace

std::string simulate(const Recorder::Copy& traffic, std::shared_ptr<const CompiledPolicy> draft,
                     int64_t seconds, const std::vector<LiveWarmup>& warmups) {
  ManualClock clock(traffic.records.empty() ? 0 : traffic.from_ms);
  auto storage = Storage::open_table(ReplayStore::table(), {});
  if (!storage.ok()) return json{{"error", storage.status().message()}}.dump();
  EngineOptions options;
  options.clock = &clock;
  options.storage_timeout_ms = 0;
  Engine engine(std::move(storage).value(), std::move(draft), options);

  // Each resource's warm-up at the start of the period: the opposite of its first recorded
  // SL.WARMUP, or else what it is live now. (A resource only the draft has starts as the
  // draft says.)
  boost::unordered_flat_map<std::string_view, Recorded::Kind> first_warmup;
  for (const Recorded& r : traffic.records) {
    if (r.kind == Recorded::Kind::kWarmupStart || r.kind == Recorded::Kind::kWarmupReady) {
      first_warmup.try_emplace(r.resource, r.kind);
    }
  }
  for (const LiveWarmup& w : warmups) {
    const auto first = first_warmup.find(std::string_view(w.resource));
    bool warming = w.started_ms >= 0;
    int64_t since = std::min(w.started_ms, traffic.from_ms);
    if (first != first_warmup.end()) {
      warming = first->second == Recorded::Kind::kWarmupReady;
      since = traffic.from_ms;
    }
    clock.set(warming ? since : traffic.from_ms);
    (void)(warming ? engine.warmup_start(w.resource) : engine.warmup_ready(w.resource));
  }
  clock.set(traffic.from_ms);

  Counts total;
  uint64_t errors_draft = 0;
  // "resource\0tier\0rule" -> counts
  boost::unordered_flat_map<std::string, Counts, StringHash, StringEq> breakdown;
  // (resource, subject) -> newly denied
  boost::unordered_flat_map<std::string, uint64_t> newly_denied_by_subject;
  boost::unordered_flat_set<std::string_view> subjects_newly_denied;
  // Live lease id -> the lease the replay granted for the same acquire.
  boost::unordered_flat_map<uint64_t, LeaseToken> leases;
  std::string key;
  DecisionCall call;  // reused: a replay allocates nothing per request once warm

  for (const Recorded& r : traffic.records) {
    clock.set(r.time_ms);
    if (r.kind == Recorded::Kind::kWarmupStart) {
      (void)engine.warmup_start(r.resource);
      continue;
    }
    if (r.kind == Recorded::Kind::kWarmupReady) {
      (void)engine.warmup_ready(r.resource);
      continue;
    }
    if (r.kind == Recorded::Kind::kRelease) {
      auto it = leases.find(r.lease_id);
      if (it == leases.end()) continue;  // the replay never granted it (or it was not recorded)
      (void)engine.release_sync(it->second,
                                r.actual >= 0 ? std::optional<int64_t>(r.actual) : std::nullopt);
      leases.erase(it);
      continue;
    }
    DecisionRequest req;
    req.resource = r.resource;
    req.subject = r.subject;
    req.tier = r.tier;
    req.api_key = r.api_key;
    req.cost = r.cost;
    req.named = r.named;
    req.lease_ttl_ms = r.lease_ttl_ms;
    // The store answers inline: the decision is complete when decide() returns.
    engine.decide(
        kind_of(r.kind), req, call, [](void*, DecisionCall&) {}, nullptr);
    const Decision& d = call.decision();
    if (r.kind == Recorded::Kind::kAcquire && d.allowed && r.lease_id != 0) {
      leases[r.lease_id] = d.lease;
    }
    if (r.kind == Recorded::Kind::kPeek) continue;  // looked, took nothing: not counted
    if (d.source == DecisionSource::kError) ++errors_draft;
    const bool draft_allowed = d.allowed;
    total.add(r.allowed, draft_allowed);
    // The rule that matters: the draft's when it denies, the live one's when only it denied.
    const std::string_view rule = !draft_allowed ? d.rule() : !r.allowed ? r.live_rule : d.rule();
    // The tier as the draft resolves it (from the request's TIER or KEY, or its default).
    const std::string_view tier = !call.tier().empty() ? call.tier() : r.tier;
    key.assign(r.resource).append(1, '\0').append(tier).append(1, '\0').append(rule);
    auto row = breakdown.find(std::string_view(key));
    if (row == breakdown.end()) row = breakdown.emplace(key, Counts{}).first;
    row->second.add(r.allowed, draft_allowed);
    if (r.allowed && !draft_allowed) {
      subjects_newly_denied.insert(r.subject);
      key.assign(r.resource).append(1, '\0').append(r.subject);
      ++newly_denied_by_subject[key];
    }
  }

  json out = total.to_json();
  out["subjects_newly_denied"] = subjects_newly_denied.size();
  out["errors_draft"] = errors_draft;
  out["period"] = {{"from_ms", traffic.from_ms},
                   {"to_ms", traffic.to_ms},
                   {"seconds_requested", seconds},
                   {"counters", "empty at the start of the period"}};
  std::vector<const std::pair<const std::string, Counts>*> sorted;
  for (const auto& entry : breakdown) sorted.push_back(&entry);
  std::sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->first < b->first; });
  json rows = json::array();
  for (const auto* entry : sorted) {
    json row = entry->second.to_json();
    const std::string_view k = entry->first;
    const size_t a = k.find('\0'), b = k.find('\0', a + 1);
    row["resource"] = k.substr(0, a);
    row["tier"] = k.substr(a + 1, b - a - 1);
    row["rule"] = k.substr(b + 1);
    rows.push_back(std::move(row));
  }
  out["breakdown"] = std::move(rows);
  std::vector<std::pair<std::string_view, uint64_t>> top(newly_denied_by_subject.begin(),
                                                         newly_denied_by_subject.end());
  const size_t shown = std::min<size_t>(top.size(), 10);
  std::partial_sort(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(shown), top.end(),
                    [](const auto& a, const auto& b) {
                      return a.second != b.second ? a.second > b.second : a.first < b.first;
                    });
  json top_json = json::array();
  for (size_t i = 0; i < shown; ++i) {
    const auto sep = top[i].first.find('\0');
    top_json.push_back({{"resource", top[i].first.substr(0, sep)},
                        {"subject", top[i].first.substr(sep + 1)},
                        {"newly_denied", top[i].second}});
  }
  out["top_newly_denied"] = std::move(top_json);
  // Subjects are client bytes: invalid UTF-8 is replaced, never thrown.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace sluice::server
