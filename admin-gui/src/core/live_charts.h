// What the Live tab's charts draw, computed without widgets so it can be tested: for the
// chosen time range, filter and split, the lines (NaN where no engine reported), the axis a
// single burst does not flatten, and the text shown when hovering a point.
#pragma once

#include <QString>
#include <cstdint>
#include <string>
#include <vector>

#include "core/latency_timeline.h"
#include "core/live_history.h"

namespace sluice::admin {

// The top of a chart's value axis. The rule (docs/admin-gui.md, "Live"): the typical level
// is the 95th percentile of the values shown. When clipping is on, that level is above 0 and
// the highest value is more than 4 times it, the axis reaches 2 x the level (rounded up to a
// round number) and the values above it are drawn at the top edge and marked; otherwise the
// axis reaches the highest value (rounded up). Never below `floor`, never above `ceiling`.
struct AxisScale {
  double top = 1;
  bool clipped = false;  // some values are above `top`
  double peak = 0;       // the highest value shown
};
AxisScale chooseScale(std::vector<double> values, double floor, double ceiling, bool clipBursts);
// The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten that is at least `v`.
double roundUp(double v);

struct ChartCurve {
  QString name;
  std::vector<double> y;        // one per point; NaN: no value
  std::vector<QString> detail;  // empty, or one per point (said after the value on hover)
};

struct ChartData {
  std::vector<int64_t> x;   // each point's first second (unix seconds), ascending
  int step = 1;             // seconds each point covers
  std::vector<bool> known;  // an engine reported the point's time (else: a "no data" band)
  std::vector<ChartCurve> curves;
  AxisScale scale;
  QString unit;  // after each value: "/s", "%", " µs"
  int decimals = 0;
  // The blocked charts: a value above 0 is never drawn lower than this share of the axis, so a
  // single denial under an axis a burst of thousands set is still seen (and it is marked as
  // raised); 0: every value is drawn where it is.
  double minVisibleShare = 0;

  // Where point i of `curve` is drawn: NaN for no value; at most the axis' top (clipped values
  // are marked); a value above 0 at least minVisibleShare × top.
  double drawnY(const ChartCurve& curve, size_t i) const;
  // The value is above 0 but too small to see at this scale, so it is drawn raised.
  bool raised(const ChartCurve& curve, size_t i) const;

  // The point covering unix second `second`; -1 outside the chart.
  int indexAt(int64_t second) const;
  // What hovering point `i` shows: its time (a range for points longer than a second), then
  // one line per curve with its value, "no data" for time no engine reported, and a note
  // for values above the axis.
  QString hoverText(int i) const;
};

struct LiveChartOptions {
  std::string resource, tier;  // empty: all
  int rangeSeconds = 900;      // 60, 300 or 900
  SplitBy split = SplitBy::kNone;
  bool clipBursts = true;
};

// The share of the axis below which a blocked value above 0 is drawn raised: 3 % is 3 pixels
// on the smallest chart (150 pixels with its title and axis).
constexpr double kMinVisibleBlockedShare = 0.03;

// Split charts show the most active groups (allowed + blocked in the range) as their own
// lines and sum the rest into one "others" line.
constexpr int kMaxSplitLines = 6;

struct LiveCharts {
  ChartData allowed;         // allowed per second
  ChartData blocked;         // blocked per second (+ shadow limits' "would block" unsplit)
  ChartData blockedPercent;  // blocked / (allowed + blocked) per bucket of range/60 seconds
  ChartData latency;         // decision latency p50/p99 (engine-wide), per second
};
LiveCharts buildLiveCharts(const LiveHistory& history, const LatencyTimeline& latency,
                           const LiveChartOptions& options);

}  // namespace sluice::admin
