// Live statistics: per resource x tier x rule counters in 1-second buckets for the last
// 15 minutes, totals, the most blocked subjects (space-saving sketch, bounded memory), and
// a decision-latency histogram. Recording is lock-free for counters; the top-subjects
// sketch takes a mutex only on denials.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "sluice/export.h"

namespace sluice {

enum class Outcome { kAllowed, kDenied, kShadowDenied, kStorageError };

class SLUICE_API Stats {
 public:
  static constexpr int kWindowSeconds = 900;  // 15 minutes of 1-second buckets
  static constexpr int kTopSubjects = 64;     // entries kept by the space-saving sketch

  class Series;  // counters of one resource x tier x rule

  Stats();
  ~Stats();
  Stats(const Stats&) = delete;
  Stats& operator=(const Stats&) = delete;

  // Find or create the series of (resource, tier, rule). A series lives while someone holds
  // it (the engine's policy snapshots do): the statistics of a resource that left the policy
  // are released with the last snapshot that had it. Takes a mutex and a hash lookup: call
  // when a series is first needed, not per decision.
  std::shared_ptr<Series> series(std::string_view resource, std::string_view tier,
                                 std::string_view rule);
  // Series alive now (tests and memory accounting).
  size_t series_count() const;
  // What a series counts.
  struct SeriesKey {
    std::string_view resource, tier, rule;
  };
  static SeriesKey key_of(const Series& series);

  // Hot path: count one outcome at time now_ms. A series' 15 minutes of buckets are
  // allocated when it records for the first time.
  static void record(Series* series, Outcome outcome, int64_t now_ms);
  void record_blocked(std::string_view resource, std::string_view subject);
  void record_latency_ns(int64_t ns);

  // JSON document (schema in docs/protocol.md, "SL.STATS"): totals per series, per-second
  // buckets for the last `seconds` seconds (<= kWindowSeconds), top blocked subjects,
  // latency histogram. `extra_members`, when not empty, is appended to the top-level object
  // as is (already-encoded members such as `"server":{...}`).
  std::string to_json(int64_t now_ms, int seconds = 60, std::string_view extra_members = {}) const;
  // Prometheus text exposition format (totals, histogram).
  std::string to_prometheus() const;

  struct Totals {
    uint64_t allowed = 0, denied = 0, shadow_denied = 0, storage_errors = 0;
  };
  Totals totals() const;  // sum over all series
  Totals totals(std::string_view resource, std::string_view tier, std::string_view rule) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sluice
