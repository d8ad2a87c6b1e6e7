// Live statistics: per resource x tier x rule counters in 1-second buckets for the last
// 15 minutes, totals, the most blocked subjects (space-saving sketch, bounded memory), and
// a decision-latency histogram. Recording is lock-free for counters; the top-subjects
// sketch takes a mutex only on denials.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/export.h"

namespace sluice {

enum class Outcome { kAllowed, kDenied, kShadowDenied, kStorageError };

class SLUICE_API Stats {
 public:
  static constexpr int kWindowSeconds = 900;  // 15 minutes of 1-second buckets
  static constexpr int kTopSubjects = 64;     // entries kept by the space-saving sketch
  // Who is blocked now: a space-saving sketch of kTopSubjects per 10-second bucket, 90
  // buckets (15 minutes), merged per window when read.
  static constexpr int kRecentBucketSeconds = 10;
  static constexpr int kRecentBuckets = kWindowSeconds / kRecentBucketSeconds;

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
  // `n` outcomes at once: a grant of n requests (SL.ACQUIRE ... COST requests n) is counted as
  // the n requests it admits.
  static void record(Series* series, Outcome outcome, int64_t now_ms, uint32_t n = 1);
  // A denial of `subject` on `resource` at now_ms, by `rule` for `tier`: counted in the
  // all-time sketch and in the 10-second bucket of now_ms (who is blocked now).
  void record_blocked(std::string_view resource, std::string_view subject,
                      std::string_view tier = {}, std::string_view rule = {}, int64_t now_ms = 0);
  void record_latency_ns(int64_t ns);

  // Who is blocked now: the most denied subjects of the last `seconds` (rounded to whole
  // 10-second buckets, the current one partly filled; at most 900), most denied first, at
  // most kTopSubjects. A subject had at least `count` and at most `count + error` denials
  // in the window; errors stay at 0 while a bucket sees at most kTopSubjects subjects, and
  // in all cases the sum of errors is at most `denials` (all denials in the window) /
  // kTopSubjects per listed subject.
  struct Blocked {
    std::string resource, subject, tier, rule;  // tier and rule of its latest denial
    uint64_t count = 0, error = 0;
  };
  std::vector<Blocked> blocked_now(int64_t now_ms, int seconds, uint64_t* denials = nullptr) const;

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
