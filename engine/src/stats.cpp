#include "sluice/stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>
#include <vector>

#include "sluice/mutex.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace sluice {

namespace {
constexpr int kOutcomes = 4;
constexpr int kLatencyBuckets = 40;  // bucket i counts latencies in [2^(i-1), 2^i) ns

struct Bucket {
  std::atomic<int64_t> second{-1};
  std::array<std::atomic<uint32_t>, kOutcomes> count{};
};

const char* outcome_name(int i) {
  static constexpr const char* kNames[kOutcomes] = {"allowed", "denied", "shadow_denied",
                                                    "storage_errors"};
  return kNames[i];
}
}  // namespace

class Stats::Series {
 public:
  Series(std::string r, std::string t, std::string u, uint64_t created)
      : resource(std::move(r)), tier(std::move(t)), rule(std::move(u)), seq(created) {}
  ~Series() { delete[] ring_.load(std::memory_order_acquire); }
  Series(const Series&) = delete;
  Series& operator=(const Series&) = delete;

  void record(Outcome outcome, int64_t now_ms, uint32_t n) {
    const int o = static_cast<int>(outcome);
    total[o].fetch_add(n, std::memory_order_relaxed);
    const int64_t sec = now_ms / 1000;
    Bucket& b = ring()[static_cast<size_t>(sec % kWindowSeconds)];
    int64_t seen = b.second.load(std::memory_order_acquire);
    if (seen != sec) {
      // The first recorder of a new second recycles the bucket. A count racing with the reset
      // may be lost; totals stay exact, the per-second view is best effort.
      if (seen < sec && b.second.compare_exchange_strong(seen, sec, std::memory_order_acq_rel)) {
        for (auto& c : b.count) c.store(0, std::memory_order_relaxed);
      } else if (seen > sec) {
        return;  // a recorder with an older timestamp than the bucket: too late for the view
      }
    }
    b.count[o].fetch_add(n, std::memory_order_relaxed);
  }

  uint32_t at(int64_t sec, int o) const {
    const Bucket* r = ring_.load(std::memory_order_acquire);
    if (r == nullptr) return 0;
    const Bucket& b = r[static_cast<size_t>(sec % kWindowSeconds)];
    return b.second.load(std::memory_order_acquire) == sec
               ? b.count[o].load(std::memory_order_relaxed)
               : 0;
  }
  bool counted() const {
    for (const auto& t : total)
      if (t.load(std::memory_order_relaxed) != 0) return true;
    return false;
  }

  const std::string resource, tier, rule;
  const uint64_t seq;  // creation order: readers list series in it
  std::array<std::atomic<uint64_t>, kOutcomes> total{};

 private:
  // The per-second buckets (21 KiB), allocated by the first recorder: a policy with a
  // hundred thousand resources costs this only for the series that count something.
  Bucket* ring() {
    Bucket* r = ring_.load(std::memory_order_acquire);
    if (r != nullptr) return r;
    auto* fresh = new Bucket[kWindowSeconds];
    if (ring_.compare_exchange_strong(r, fresh, std::memory_order_acq_rel)) return fresh;
    delete[] fresh;  // another thread installed its ring first
    return r;
  }

  std::atomic<Bucket*> ring_{nullptr};
};

struct Stats::Impl {
  // Series by "resource\x1ftier\x1frule"; an entry whose series has been released expires
  // and is swept out as new series are created.
  mutable Mutex series_mu;
  std::unordered_map<std::string, std::weak_ptr<Series>> series SLUICE_GUARDED_BY(series_mu);
  size_t created_since_sweep SLUICE_GUARDED_BY(series_mu) = 0;
  uint64_t created SLUICE_GUARDED_BY(series_mu) = 0;

  // The series alive now, in creation order, for readers; taken under series_mu, used
  // outside it.
  std::vector<std::shared_ptr<Series>> live() const {
    std::vector<std::shared_ptr<Series>> out;
    {
      MutexLock lock(series_mu);
      out.reserve(series.size());
      for (const auto& [key, weak] : series)
        if (auto s = weak.lock()) out.push_back(std::move(s));
    }
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a->seq < b->seq; });
    return out;
  }

  struct TopEntry {
    std::string resource, subject;
    uint64_t count = 0, error = 0;
    uint64_t hash = 0;       // of (resource, subject): the scan compares strings only on a match
    std::string tier, rule;  // of the latest denial (who-is-blocked-now buckets only)
  };
  mutable Mutex top_mu;
  // Space-saving sketch, at most kTopSubjects entries.
  std::vector<TopEntry> top SLUICE_GUARDED_BY(top_mu);

  // Who is blocked now: one sketch per 10-second bucket, with the tier and rule of each
  // subject's last denial in it. `bucket` is the bucket's number (now_ms / 10 s); a slot
  // whose number is not one of the last kRecentBuckets is stale and reused.
  struct RecentBucket {
    int64_t bucket = -1;
    uint64_t denials = 0;
    std::vector<TopEntry> entries;
  };
  std::array<RecentBucket, kRecentBuckets> recent SLUICE_GUARDED_BY(top_mu);

  std::array<std::atomic<uint64_t>, kLatencyBuckets> latency{};
};

Stats::Stats() : impl_(std::make_unique<Impl>()) {}
Stats::~Stats() = default;

std::shared_ptr<Stats::Series> Stats::series(std::string_view resource, std::string_view tier,
                                             std::string_view rule) {
  std::string key;
  key.reserve(resource.size() + tier.size() + rule.size() + 2);
  key.append(resource).append(1, '\x1f').append(tier).append(1, '\x1f').append(rule);
  MutexLock lock(impl_->series_mu);
  auto& series = impl_->series;
  auto [it, inserted] = series.try_emplace(std::move(key));
  if (!inserted) {
    if (auto alive = it->second.lock()) return alive;
  }
  auto created = std::make_shared<Series>(std::string(resource), std::string(tier),
                                          std::string(rule), ++impl_->created);
  it->second = created;
  // Sweeping once the creations since the last sweep outnumber the entries keeps the map
  // within twice the live series at O(1) amortized per creation.
  if (++impl_->created_since_sweep > series.size() / 2 + 64) {
    std::erase_if(series, [](const auto& entry) { return entry.second.expired(); });
    impl_->created_since_sweep = 0;
  }
  return created;
}

size_t Stats::series_count() const { return impl_->live().size(); }

Stats::SeriesKey Stats::key_of(const Series& series) {
  return {series.resource, series.tier, series.rule};
}

void Stats::record(Series* series, Outcome outcome, int64_t now_ms, uint32_t n) {
  if (series) series->record(outcome, now_ms, n);
}

namespace {

// Space-saving: count one occurrence of (resource, subject) in a sketch of at most
// kTopSubjects entries; a newcomer replaces the smallest counter and inherits its count as
// possible over-estimate (`error`). Returns the subject's entry.
template <typename Entry>
Entry& count_in_sketch(std::vector<Entry>& sketch, uint64_t hash, std::string_view resource,
                       std::string_view subject) {
  for (auto& e : sketch) {
    if (e.hash == hash && e.subject == subject && e.resource == resource) {
      ++e.count;
      return e;
    }
  }
  if (sketch.size() < static_cast<size_t>(Stats::kTopSubjects)) {
    Entry& e = sketch.emplace_back();
    e.resource.assign(resource);
    e.subject.assign(subject);
    e.count = 1;
    e.hash = hash;
    return e;
  }
  auto& min = *std::min_element(sketch.begin(), sketch.end(),
                                [](const auto& a, const auto& b) { return a.count < b.count; });
  min.resource.assign(resource);
  min.subject.assign(subject);
  min.hash = hash;
  min.error = min.count;
  ++min.count;
  return min;
}

}  // namespace

void Stats::record_blocked(std::string_view resource, std::string_view subject,
                           std::string_view tier, std::string_view rule, int64_t now_ms) {
  // Hashed before the lock: a denial storm from many threads serialises on top_mu, so the
  // time inside it is kept to two scans of 64 integers.
  const uint64_t hash = XXH3_64bits_withSeed(subject.data(), subject.size(),
                                             XXH3_64bits(resource.data(), resource.size()));
  const int64_t bucket = std::max<int64_t>(now_ms, 0) / (kRecentBucketSeconds * 1000);
  MutexLock lock(impl_->top_mu);
  count_in_sketch(impl_->top, hash, resource, subject);
  auto& slot = impl_->recent[static_cast<size_t>(bucket % kRecentBuckets)];
  if (slot.bucket != bucket) {
    slot.bucket = bucket;
    slot.denials = 0;
    slot.entries.clear();
  }
  ++slot.denials;
  auto& entry = count_in_sketch(slot.entries, hash, resource, subject);
  if (entry.tier != tier) entry.tier.assign(tier);
  if (entry.rule != rule) entry.rule.assign(rule);
}

std::vector<Stats::Blocked> Stats::blocked_now(int64_t now_ms, int seconds,
                                               uint64_t* denials) const {
  // The window is the buckets of the last `seconds` (the current one partly filled). A
  // subject's denials are at least the sum, over the buckets that list it, of count - error;
  // at most that plus its errors plus, for every full bucket that does not list it, the
  // bucket's smallest count (what it could have had there without being listed).
  const int64_t newest = std::max<int64_t>(now_ms, 0) / (kRecentBucketSeconds * 1000);
  const int n = std::clamp(seconds / kRecentBucketSeconds, 1, kRecentBuckets);
  struct Merged {
    Blocked b;
    std::vector<bool> listed;
  };
  std::unordered_map<std::string, Merged> merged;
  std::vector<uint64_t> unlisted_max;  // per bucket: the most an unlisted subject could have
  uint64_t total = 0;
  MutexLock lock(impl_->top_mu);
  for (int i = 0; i < n; ++i) {
    const auto& slot = impl_->recent[static_cast<size_t>((newest - i) % kRecentBuckets)];
    if (newest - i < 0 || slot.bucket != newest - i) {
      unlisted_max.push_back(0);
      continue;
    }
    total += slot.denials;
    uint64_t smallest = 0;
    if (slot.entries.size() >= static_cast<size_t>(kTopSubjects)) {
      smallest = std::min_element(slot.entries.begin(), slot.entries.end(),
                                  [](const auto& a, const auto& b) { return a.count < b.count; })
                     ->count;
    }
    unlisted_max.push_back(smallest);
    for (const auto& e : slot.entries) {
      std::string key = e.resource;
      key.append(1, '\x1f').append(e.subject);
      auto [it, inserted] = merged.try_emplace(std::move(key));
      Merged& m = it->second;
      if (inserted) {
        m.b.resource = e.resource;
        m.b.subject = e.subject;
        m.b.tier = e.tier;  // the newest bucket comes first: its tier and rule are the latest
        m.b.rule = e.rule;
        m.listed.assign(static_cast<size_t>(n), false);
      }
      m.listed[static_cast<size_t>(i)] = true;
      m.b.count += e.count - e.error;
      m.b.error += e.error;
    }
  }
  std::vector<Blocked> out;
  out.reserve(merged.size());
  for (auto& [key, m] : merged) {
    for (int i = 0; i < n; ++i)
      if (!m.listed[static_cast<size_t>(i)]) m.b.error += unlisted_max[static_cast<size_t>(i)];
    out.push_back(std::move(m.b));
  }
  std::sort(out.begin(), out.end(), [](const Blocked& a, const Blocked& b) {
    return a.count != b.count ? a.count > b.count : a.subject < b.subject;
  });
  if (out.size() > static_cast<size_t>(kTopSubjects)) out.resize(kTopSubjects);
  if (denials != nullptr) *denials = total;
  return out;
}

void Stats::record_latency_ns(int64_t ns) {
  const auto v = static_cast<uint64_t>(std::max<int64_t>(ns, 0));
  const int i = std::min<int>(std::bit_width(v), kLatencyBuckets - 1);
  impl_->latency[static_cast<size_t>(i)].fetch_add(1, std::memory_order_relaxed);
}

Stats::Totals Stats::totals() const {
  Totals t;
  for (const auto& s : impl_->live()) {
    t.allowed += s->total[0].load();
    t.denied += s->total[1].load();
    t.shadow_denied += s->total[2].load();
    t.storage_errors += s->total[3].load();
  }
  return t;
}

Stats::Totals Stats::totals(std::string_view resource, std::string_view tier,
                            std::string_view rule) const {
  Totals t;
  for (const auto& s : impl_->live()) {
    if (s->resource != resource || s->tier != tier || s->rule != rule) continue;
    t = {s->total[0].load(), s->total[1].load(), s->total[2].load(), s->total[3].load()};
  }
  return t;
}

namespace {
// Upper bound (ns) of latency bucket i.
uint64_t bucket_upper_ns(int i) { return i == 0 ? 0 : (uint64_t{1} << i) - 1; }

uint64_t percentile_ns(const std::array<uint64_t, kLatencyBuckets>& counts, uint64_t n, double q) {
  if (n == 0) return 0;
  const auto rank = static_cast<uint64_t>(q * static_cast<double>(n - 1)) + 1;
  uint64_t seen = 0;
  for (int i = 0; i < kLatencyBuckets; ++i) {
    seen += counts[static_cast<size_t>(i)];
    if (seen >= rank) return bucket_upper_ns(i);
  }
  return bucket_upper_ns(kLatencyBuckets - 1);
}
}  // namespace

namespace {
// A JSON string literal; subjects are whatever bytes clients send, so invalid UTF-8 is
// replaced rather than allowed to make the dump throw.
void append_json_string(std::string& out, std::string_view v) {
  const bool plain = std::all_of(
      v.begin(), v.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
  if (plain) {  // policy names, almost every subject
    out += '"';
    out += v;
    out += '"';
    return;
  }
  out += nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// `sep` (unless 0) then the number: the per-second arrays are most of the document.
void append_number(std::string& out, char sep, uint64_t v) {
  char buf[24];
  char* p = buf;
  if (sep) *p++ = sep;
  p = std::to_chars(p, buf + sizeof buf, v).ptr;
  out.append(buf, static_cast<size_t>(p - buf));
}
}  // namespace

// Written directly rather than through a json document: the per-second arrays hold
// series x 4 x seconds numbers (tens of thousands at 900 s), and a monitor polls this every
// second. Member order follows docs/protocol.md.
std::string Stats::to_json(int64_t now_ms, int seconds, std::string_view extra_members) const {
  seconds = std::clamp(seconds, 1, kWindowSeconds);
  const int64_t last = now_ms / 1000;
  const int64_t first = last - seconds + 1;
  std::string out;
  auto buf = std::back_inserter(out);
  fmt::format_to(buf, R"({{"now_ms":{},"window_seconds":{},"first_second":{},"series":[)", now_ms,
                 seconds, first);
  Totals all;
  {
    const auto live = impl_->live();
    bool first_series = true;
    for (const auto& series : live) {
      const Series& s = *series;
      // docs/protocol.md: a series is listed once it has counted a decision (a policy names
      // every resource x tier x rule up front; most of them may never see traffic).
      std::array<uint64_t, kOutcomes> total{};
      for (size_t o = 0; o < total.size(); ++o) total[o] = s.total[o].load();
      if (std::all_of(total.begin(), total.end(), [](uint64_t v) { return v == 0; })) continue;
      if (!first_series) out += ',';
      first_series = false;
      out += R"({"resource":)";
      append_json_string(out, s.resource);
      out += R"(,"tier":)";
      append_json_string(out, s.tier);
      out += R"(,"rule":)";
      append_json_string(out, s.rule);
      out += R"(,"totals":{)";
      for (int o = 0; o < kOutcomes; ++o) {
        if (o) out += ',';
        out += '"';
        out += outcome_name(o);
        out += "\":";
        append_number(out, 0, total[static_cast<size_t>(o)]);
      }
      out += R"(},"per_second":{)";
      for (int o = 0; o < kOutcomes; ++o) {
        if (o) out += ',';
        out += '"';
        out += outcome_name(o);
        out += "\":[";
        for (int64_t sec = first; sec <= last; ++sec) {
          append_number(out, sec == first ? 0 : ',', s.at(sec, o));
        }
        out += ']';
      }
      out += "}}";
      all.allowed += total[0];
      all.denied += total[1];
      all.shadow_denied += total[2];
      all.storage_errors += total[3];
    }
  }
  fmt::format_to(
      buf, R"(],"totals":{{"allowed":{},"denied":{},"shadow_denied":{},"storage_errors":{}}})",
      all.allowed, all.denied, all.shadow_denied, all.storage_errors);
  out += R"(,"top_blocked":[)";
  {
    MutexLock lock(impl_->top_mu);
    auto entries = impl_->top;
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.count > b.count; });
    bool first_entry = true;
    for (const auto& e : entries) {
      if (!first_entry) out += ',';
      first_entry = false;
      out += R"({"resource":)";
      append_json_string(out, e.resource);
      out += R"(,"subject":)";
      append_json_string(out, e.subject);
      fmt::format_to(buf, R"(,"count":{},"error":{}}})", e.count, e.error);
    }
  }
  out += R"(],"blocked_now":{)";
  bool first_window = true;
  for (const int window : {60, 300, 900}) {
    uint64_t denials = 0;
    const auto blocked = blocked_now(now_ms, window, &denials);
    fmt::format_to(buf, R"({}"{}s":{{"seconds":{},"denials":{},"subjects":[)",
                   first_window ? "" : ",", window, window, denials);
    first_window = false;
    bool first_entry = true;
    for (const auto& b : blocked) {
      out += first_entry ? "" : ",";
      first_entry = false;
      out += R"({"resource":)";
      append_json_string(out, b.resource);
      out += R"(,"subject":)";
      append_json_string(out, b.subject);
      out += R"(,"tier":)";
      append_json_string(out, b.tier);
      out += R"(,"rule":)";
      append_json_string(out, b.rule);
      fmt::format_to(buf, R"(,"count":{},"error":{}}})", b.count, b.error);
    }
    out += "]}";
  }
  std::array<uint64_t, kLatencyBuckets> counts{};
  uint64_t n = 0;
  out += R"(},"latency":{"upper_bound_ns":[)";
  for (int i = 0; i < kLatencyBuckets; ++i) {
    counts[static_cast<size_t>(i)] = impl_->latency[static_cast<size_t>(i)].load();
    n += counts[static_cast<size_t>(i)];
    append_number(out, i ? ',' : 0, bucket_upper_ns(i));
  }
  out += R"(],"counts":[)";
  for (int i = 0; i < kLatencyBuckets; ++i) {
    append_number(out, i ? ',' : 0, counts[static_cast<size_t>(i)]);
  }
  fmt::format_to(buf, R"(],"count":{},"p50_ns":{},"p99_ns":{}}})", n,
                 percentile_ns(counts, n, 0.50), percentile_ns(counts, n, 0.99));
  if (!extra_members.empty()) {
    out += ',';
    out += extra_members;
  }
  out += '}';
  return out;
}

namespace {
std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}
}  // namespace

std::string Stats::to_prometheus() const {
  std::string out;
  out +=
      "# HELP sluice_decisions_total Decisions by resource, tier, rule and outcome.\n"
      "# TYPE sluice_decisions_total counter\n";
  {
    for (const auto& series : impl_->live()) {
      const Series& s = *series;
      for (int o = 0; o < kOutcomes; ++o)
        out += fmt::format(
            "sluice_decisions_total{{resource=\"{}\",tier=\"{}\",rule=\"{}\",outcome=\"{}\"}} {}\n",
            escape_label(s.resource), escape_label(s.tier), escape_label(s.rule), outcome_name(o),
            s.total[static_cast<size_t>(o)].load());
    }
  }
  out +=
      "# HELP sluice_decision_latency_seconds Time from request to decision inside the engine.\n"
      "# TYPE sluice_decision_latency_seconds histogram\n";
  uint64_t cumulative = 0;
  double sum_estimate = 0;
  for (int i = 0; i < kLatencyBuckets; ++i) {
    const uint64_t c = impl_->latency[static_cast<size_t>(i)].load();
    cumulative += c;
    sum_estimate += static_cast<double>(c) * static_cast<double>(bucket_upper_ns(i)) * 1e-9;
    if (i == kLatencyBuckets - 1) break;
    out += fmt::format("sluice_decision_latency_seconds_bucket{{le=\"{:.9f}\"}} {}\n",
                       static_cast<double>(bucket_upper_ns(i)) * 1e-9, cumulative);
  }
  out += fmt::format("sluice_decision_latency_seconds_bucket{{le=\"+Inf\"}} {}\n", cumulative);
  out += fmt::format("sluice_decision_latency_seconds_sum {:.9f}\n", sum_estimate);
  out += fmt::format("sluice_decision_latency_seconds_count {}\n", cumulative);
  return out;
}

}  // namespace sluice
