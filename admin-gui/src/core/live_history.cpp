#include "core/live_history.h"

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

namespace sluice::admin {

namespace {
StatsTotals readTotals(const nlohmann::json& j) {
  StatsTotals t;
  t.allowed = j.value("allowed", uint64_t{0});
  t.denied = j.value("denied", uint64_t{0});
  t.shadowDenied = j.value("shadow_denied", uint64_t{0});
  t.storageErrors = j.value("storage_errors", uint64_t{0});
  return t;
}
}  // namespace

Result<StatsSnapshot> parseStatsJson(std::string_view text) {
  using nlohmann::json;
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return Status::Invalid("SL.STATS reply is not a JSON object");
  try {
    StatsSnapshot s;
    s.nowMs = doc.at("now_ms").get<int64_t>();
    s.firstSecond = doc.at("first_second").get<int64_t>();
    s.windowSeconds = doc.at("window_seconds").get<int>();
    if (s.windowSeconds < 0 || s.windowSeconds > LiveHistory::kSeconds)
      return Status::Invalid("SL.STATS window_seconds out of range");
    s.totals = readTotals(doc.at("totals"));
    static constexpr const char* kOutcomes[4] = {"allowed", "denied", "shadow_denied",
                                                 "storage_errors"};
    for (const auto& item : doc.at("series")) {
      StatsSeries series;
      series.resource = item.at("resource").get<std::string>();
      series.tier = item.at("tier").get<std::string>();
      series.rule = item.at("rule").get<std::string>();
      series.totals = readTotals(item.at("totals"));
      const auto& ps = item.at("per_second");
      for (int o = 0; o < 4; ++o) {
        auto it = ps.find(kOutcomes[o]);
        if (it == ps.end()) continue;
        series.perSecond[static_cast<size_t>(o)] = it->get<std::vector<uint32_t>>();
      }
      s.series.push_back(std::move(series));
    }
    if (auto it = doc.find("top_blocked"); it != doc.end()) {
      for (const auto& e : *it)
        s.top.push_back({e.at("resource").get<std::string>(), e.at("subject").get<std::string>(),
                         e.value("count", uint64_t{0}), e.value("error", uint64_t{0})});
    }
    if (auto it = doc.find("blocked_now"); it != doc.end() && it->is_object()) {
      for (const auto& [name, window] : it->items()) {
        auto& rows = s.blockedNow[window.at("seconds").get<int>()];
        for (const auto& e : window.at("subjects"))
          rows.push_back({e.at("resource").get<std::string>(), e.at("subject").get<std::string>(),
                          e.value("count", uint64_t{0}), e.value("error", uint64_t{0}),
                          e.value("tier", std::string()), e.value("rule", std::string())});
      }
    }
    if (auto it = doc.find("queues"); it != doc.end() && it->is_object()) {
      for (const auto& [resource, q] : it->items())
        s.queues.push_back({resource, q.value("waiting", uint64_t{0}),
                            q.value("admitted", uint64_t{0}), q.value("expired", uint64_t{0}),
                            q.value("rejected", uint64_t{0}), q.value("wait_ms_p50", int64_t{0}),
                            q.value("wait_ms_p99", int64_t{0}),
                            q.value("wait_ms_max", int64_t{0})});
    }
    if (auto it = doc.find("latency"); it != doc.end()) {
      s.latencyCount = it->value("count", uint64_t{0});
      s.p50Ns = it->value("p50_ns", uint64_t{0});
      s.p99Ns = it->value("p99_ns", uint64_t{0});
      auto bounds = it->find("upper_bound_ns");
      auto counts = it->find("counts");
      if (bounds != it->end() && counts != it->end()) {
        s.latencyUpperNs = bounds->get<std::vector<uint64_t>>();
        s.latencyCounts = counts->get<std::vector<uint64_t>>();
        if (s.latencyUpperNs.size() != s.latencyCounts.size())
          return Status::Invalid("SL.STATS latency histogram: bounds and counts differ in length");
      }
    }
    if (auto it = doc.find("server"); it != doc.end() && it->is_object()) {
      for (const auto& [k, v] : it->items()) {
        if (v.is_string())
          s.server[k] = v.get<std::string>();
        else if (v.is_number() || v.is_boolean())
          s.server[k] = v.dump();
      }
    }
    return s;
  } catch (const json::exception& e) {
    return Status::Invalid(std::string("SL.STATS reply has an unexpected shape: ") + e.what());
  }
}

LiveHistory::Track& LiveHistory::track_(const StatsSeries& s) {
  for (auto& t : tracks_)
    if (t.resource == s.resource && t.tier == s.tier && t.rule == s.rule) return t;
  Track& t = tracks_.emplace_back();
  t.resource = s.resource;
  t.tier = s.tier;
  t.rule = s.rule;
  t.second.fill(-1);
  return t;
}

void LiveHistory::merge(const StatsSnapshot& snapshot) {
  const int64_t last = snapshot.firstSecond + snapshot.windowSeconds - 1;
  auto field = [&](const char* name) {
    auto it = snapshot.server.find(name);
    return it == snapshot.server.end() ? std::string() : it->second;
  };
  // The engine's counters start at its start; what it reports for earlier seconds is not
  // traffic it saw but time it was not running.
  int64_t start = -1;
  if (const std::string uptime = field("uptime_s"); !uptime.empty()) {
    char* end = nullptr;
    const long long up = std::strtoll(uptime.c_str(), &end, 10);
    // Whole seconds, rounded down: the engine started during this second or the next.
    if (end != uptime.c_str() && up >= 0) start = snapshot.nowMs / 1000 - up - 1;
  }
  const std::string instance = field("instance");
  if (!instance.empty()) {
    if (!instance_.empty() && instance != instance_) {
      // Another engine: its totals start from zero, so the old ones must not linger on series
      // it does not report.
      restartSecond_ = start >= 0 ? start : snapshot.firstSecond;
      for (auto& t : tracks_) t.totals = {};
    }
    instance_ = instance;
  }
  if (start >= 0) engineStart_ = start;
  const int64_t from = std::max<int64_t>({snapshot.firstSecond, start, 0});

  for (const auto& s : snapshot.series) {
    Track& t = track_(s);
    t.totals = s.totals;
    for (int64_t sec = from; sec <= last; ++sec) {
      const auto slot = static_cast<size_t>(sec % kSeconds);
      // An older snapshot arriving late must not overwrite newer seconds.
      if (t.second[slot] > sec) continue;
      t.second[slot] = sec;
      const auto i = static_cast<size_t>(sec - snapshot.firstSecond);
      for (int o = 0; o < 3; ++o) {
        const auto& v = s.perSecond[static_cast<size_t>(o)];
        t.counts[slot][static_cast<size_t>(o)] = i < v.size() ? v[i] : 0;
      }
    }
  }
  for (int64_t sec = from; sec <= last; ++sec) {
    auto& c = covered_[static_cast<size_t>(sec % kSeconds)];
    c = std::max(c, sec);
  }
  lastSecond_ = std::max(lastSecond_, last);
}

void LiveHistory::advanceTo(int64_t second) {
  if (!empty() && second > lastSecond_) lastSecond_ = second;
}

std::vector<std::pair<size_t, size_t>> LiveHistory::knownRuns(const std::vector<Point>& points) {
  std::vector<std::pair<size_t, size_t>> runs;
  for (size_t i = 0; i < points.size(); ++i) {
    if (!points[i].known) continue;
    if (!runs.empty() && runs.back().second + 1 == i) {
      runs.back().second = i;
    } else {
      runs.push_back({i, i});
    }
  }
  return runs;
}

std::vector<LiveHistory::Point> LiveHistory::perSecond(std::string_view resource,
                                                       std::string_view tier) const {
  if (empty()) return {};
  return std::move(grouped(resource, tier, SplitBy::kNone, kSeconds).front().points);
}

std::vector<LiveHistory::Group> LiveHistory::grouped(std::string_view resource,
                                                     std::string_view tier, SplitBy by,
                                                     int seconds) const {
  std::vector<Group> out;
  if (empty()) return out;
  seconds = std::clamp(seconds, 1, kSeconds);
  const int64_t first = lastSecond_ - seconds + 1;
  std::vector<Point> blank;
  blank.reserve(static_cast<size_t>(seconds));
  for (int64_t sec = first; sec <= lastSecond_; ++sec) {
    const bool known = sec >= 0 && covered_[static_cast<size_t>(sec % kSeconds)] == sec;
    blank.push_back({sec, 0, 0, 0, known});
  }
  auto nameOf = [by](const Track& t) -> const std::string& {
    static const std::string kAll;
    switch (by) {
      case SplitBy::kResource:
        return t.resource;
      case SplitBy::kTier:
        return t.tier;
      case SplitBy::kRule:
        return t.rule;
      case SplitBy::kNone:
        break;
    }
    return kAll;
  };
  std::map<std::string, std::vector<Point>> groups;
  if (by == SplitBy::kNone) groups.emplace(std::string(), blank);
  for (const auto& t : tracks_) {
    if (!matches(t, resource, tier)) continue;
    std::vector<Point>* points = nullptr;
    for (int64_t sec = std::max<int64_t>(first, 0); sec <= lastSecond_; ++sec) {
      const auto slot = static_cast<size_t>(sec % kSeconds);
      if (t.second[slot] != sec) continue;
      const auto& c = t.counts[slot];
      // A group is listed once something in the range counted in it.
      if (c[0] + c[1] + c[2] == 0 && by != SplitBy::kNone) continue;
      if (points == nullptr) points = &groups.try_emplace(nameOf(t), blank).first->second;
      Point& p = (*points)[static_cast<size_t>(sec - first)];
      p.allowed += c[0];
      p.blocked += c[1];
      p.shadow += c[2];
    }
  }
  out.reserve(groups.size());
  for (auto& [name, points] : groups) out.push_back({name, std::move(points)});
  return out;
}

std::vector<LiveHistory::Row> LiveHistory::rows(std::string_view resource,
                                                std::string_view tier) const {
  std::vector<Row> out;
  for (const auto& t : tracks_) {
    if (!matches(t, resource, tier)) continue;
    // The engine creates a series for every resource x tier x rule of the policy; most of
    // them never see a request and would bury the ones that do.
    const StatsTotals& n = t.totals;
    if (n.allowed + n.denied + n.shadowDenied + n.storageErrors == 0) continue;
    Row r{t.resource, t.tier, t.rule, t.totals, 0};
    // Only the running engine's seconds: the totals beside this count since it started.
    for (int64_t sec = std::max(lastSecond_ - 59, engineStart_); sec <= lastSecond_; ++sec) {
      if (sec < 0) continue;
      const auto slot = static_cast<size_t>(sec % kSeconds);
      if (t.second[slot] == sec) r.blockedLastMinute += t.counts[slot][1];
    }
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const Row& a, const Row& b) {
    return std::tie(a.resource, a.tier, a.rule) < std::tie(b.resource, b.tier, b.rule);
  });
  return out;
}

StatsTotals LiveHistory::totals(std::string_view resource, std::string_view tier) const {
  StatsTotals sum;
  for (const auto& t : tracks_)
    if (matches(t, resource, tier)) sum += t.totals;
  return sum;
}

std::vector<std::string> LiveHistory::resources() const {
  std::set<std::string> s;
  for (const auto& t : tracks_)
    if (!t.resource.empty()) s.insert(t.resource);
  return {s.begin(), s.end()};
}

std::vector<std::string> LiveHistory::tiers() const {
  std::set<std::string> s;
  for (const auto& t : tracks_)
    if (!t.tier.empty()) s.insert(t.tier);
  return {s.begin(), s.end()};
}

}  // namespace sluice::admin
