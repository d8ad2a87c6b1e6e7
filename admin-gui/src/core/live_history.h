// What the Live tab shows, independent of Qt widgets: SL.STATS documents (schema in
// docs/protocol.md, produced by engine/src/stats.cpp) parsed into snapshots, and a 15-minute
// per-second history per resource x tier x rule that later, shorter snapshots are merged into
// (the GUI asks only for the seconds it has not seen, so a refresh stays small).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sluice/status.h"

namespace sluice::admin {

// How the Live charts divide the traffic into lines: one total, or one line per model
// (resource), tier or rule.
enum class SplitBy { kNone, kResource, kTier, kRule };

struct StatsTotals {
  uint64_t allowed = 0, denied = 0, shadowDenied = 0, storageErrors = 0;
  StatsTotals& operator+=(const StatsTotals& o) {
    allowed += o.allowed;
    denied += o.denied;
    shadowDenied += o.shadowDenied;
    storageErrors += o.storageErrors;
    return *this;
  }
};

struct StatsSeries {
  std::string resource, tier, rule;
  StatsTotals totals;
  // per second, oldest first: allowed, denied, shadow_denied, storage_errors
  std::array<std::vector<uint32_t>, 4> perSecond;
};

struct TopBlocked {
  std::string resource, subject;
  // Since the engine started: count may over-count by up to error. In a recent window
  // (blocked_now): at least count, at most count + error; tier and rule of the latest denial.
  uint64_t count = 0, error = 0;
  std::string tier, rule;
};

// A resource's WAIT queue (SL.STATS `queues`): waiting now, outcomes since the start, wait
// times of the admitted.
struct QueueStats {
  std::string resource;
  uint64_t waiting = 0, admitted = 0, expired = 0, rejected = 0;
  int64_t waitP50Ms = 0, waitP99Ms = 0, waitMaxMs = 0;
};

struct StatsSnapshot {
  int64_t nowMs = 0;
  int64_t firstSecond = 0;
  int windowSeconds = 0;
  StatsTotals totals;
  std::vector<StatsSeries> series;
  std::vector<TopBlocked> top;  // since the engine started
  // Who is blocked now, by window length in seconds (60, 300, 900); empty from an engine
  // that does not report it.
  std::map<int, std::vector<TopBlocked>> blockedNow;
  std::vector<QueueStats> queues;  // resources a WAIT request has queued for
  uint64_t latencyCount = 0, p50Ns = 0, p99Ns = 0;
  // The decision latency histogram since the engine started: latencyCounts[i] decisions took
  // at most latencyUpperNs[i] ns (empty from an engine that does not report it).
  std::vector<uint64_t> latencyUpperNs, latencyCounts;
  std::map<std::string, std::string> server;  // "server" object: version, storage, ...
};

// Never throws; a document that is not SL.STATS JSON is an Invalid status with the reason.
Result<StatsSnapshot> parseStatsJson(std::string_view json);

// A second is known when an engine reported it while it was running: seconds while the
// engine could not be reached, or before it started, are gaps, never zeros. Totals count since
// the running engine started; after a restart (another `instance`) the counts per second of
// the engine before stay drawn, but what is summed next to the totals (blocked in the last
// minute) counts only the running engine's seconds, so the two always agree.
class LiveHistory {
 public:
  static constexpr int kSeconds = 900;

  LiveHistory() { covered_.fill(-1); }

  struct Point {
    int64_t second;  // unix seconds
    uint64_t allowed, blocked, shadow;
    bool known;  // false: no engine reported this second (a gap in the charts)
  };
  // Consecutive known points: [first, last] index pairs into perSecond()'s result.
  static std::vector<std::pair<size_t, size_t>> knownRuns(const std::vector<Point>& points);
  struct Row {  // one series, with its totals
    std::string resource, tier, rule;
    StatsTotals totals;
    uint64_t blockedLastMinute = 0;
  };

  void merge(const StatsSnapshot& snapshot);
  // The engine cannot be reached at `second` (unix seconds): the history moves on to it, with
  // no data, so the charts show the outage as it lasts.
  void advanceTo(int64_t second);
  bool empty() const { return lastSecond_ < 0; }
  int64_t lastSecond() const { return lastSecond_; }
  // The first second of the running engine (from its uptime; -1 when not reported).
  int64_t engineStart() const { return engineStart_; }
  // When the engine last restarted while watched (its new start); -1 when it has not.
  int64_t restartSecond() const { return restartSecond_; }

  // Per-second sums over the series that match (an empty filter matches all), for the
  // kSeconds seconds up to lastSecond(), oldest first.
  std::vector<Point> perSecond(std::string_view resource, std::string_view tier) const;
  // The same for the last `seconds` seconds (1..kSeconds), one group per model, tier or rule
  // that counted something in them, sorted by name; SplitBy::kNone gives one group named "".
  // Every group has a point for every second; `known` is the same in all of them.
  struct Group {
    std::string name;
    std::vector<Point> points;
  };
  std::vector<Group> grouped(std::string_view resource, std::string_view tier, SplitBy by,
                             int seconds) const;
  // Series that have counted anything, sorted by resource, tier, rule.
  std::vector<Row> rows(std::string_view resource, std::string_view tier) const;
  StatsTotals totals(std::string_view resource, std::string_view tier) const;
  std::vector<std::string> resources() const;
  std::vector<std::string> tiers() const;

 private:
  struct Track {
    std::string resource, tier, rule;
    StatsTotals totals;
    std::array<int64_t, kSeconds> second;                  // which second each slot holds
    std::array<std::array<uint32_t, 3>, kSeconds> counts;  // allowed, denied, shadow
  };
  static bool matches(const Track& t, std::string_view resource, std::string_view tier) {
    return (resource.empty() || t.resource == resource) && (tier.empty() || t.tier == tier);
  }
  Track& track_(const StatsSeries& s);

  std::vector<Track> tracks_;
  int64_t lastSecond_ = -1;
  std::array<int64_t, kSeconds> covered_;  // which second each slot holds data for
  std::string instance_;                   // the engine's `instance` in the last snapshot
  int64_t engineStart_ = -1;
  int64_t restartSecond_ = -1;
};

}  // namespace sluice::admin
