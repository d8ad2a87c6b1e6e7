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

  // Find or create the series of (resource, tier, rule). The pointer stays valid for the
  // lifetime of Stats (series are never removed, so reloads keep history). Takes a mutex:
  // call when a policy is installed, not per decision.
  Series* series(std::string_view resource, std::string_view tier, std::string_view rule);

  // Hot path: count one outcome at time now_ms.
  static void record(Series* series, Outcome outcome, int64_t now_ms);
  void record_blocked(std::string_view resource, std::string_view subject);
  void record_latency_ns(int64_t ns);

  // JSON document (schema in docs/protocol.md, "SL.STATS"): totals per series, per-second
  // buckets for the last `seconds` seconds (<= kWindowSeconds), top blocked subjects,
  // latency histogram. `extra_members`, when not empty, is appended to the top-level object
  // as is (already-encoded members such as `"server":{...}`).
  std::string to_json(int64_t now_ms, int seconds = 60,
                      std::string_view extra_members = {}) const;
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
