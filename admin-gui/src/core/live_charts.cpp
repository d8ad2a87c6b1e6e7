#include "core/live_charts.h"

#include <QCoreApplication>
#include <QDateTime>
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

namespace sluice::admin {

namespace {
constexpr double kNoValue = std::numeric_limits<double>::quiet_NaN();

QString tr(const char* text) { return QCoreApplication::translate("LiveCharts", text); }

QString clock(int64_t second) {
  return QDateTime::fromSecsSinceEpoch(second).toString(QStringLiteral("HH:mm:ss"));
}

// The values a chart's axis must fit: every curve's, where it has one.
std::vector<double> valuesOf(const ChartData& c) {
  std::vector<double> out;
  for (const auto& curve : c.curves)
    for (double v : curve.y)
      if (!std::isnan(v)) out.push_back(v);
  return out;
}

QString groupName(const std::string& name, SplitBy by) {
  if (!name.empty()) return QString::fromStdString(name);
  return by == SplitBy::kTier ? tr("(no tier)") : tr("(none)");
}

// The groups a split chart draws: the busiest ones on their own, the rest summed.
std::vector<LiveHistory::Group> chooseLines(std::vector<LiveHistory::Group> groups) {
  if (groups.size() <= static_cast<size_t>(kMaxSplitLines)) return groups;
  auto activity = [](const LiveHistory::Group& g) {
    uint64_t n = 0;
    for (const auto& p : g.points) n += p.allowed + p.blocked;
    return n;
  };
  std::stable_sort(groups.begin(), groups.end(),
                   [&](const auto& a, const auto& b) { return activity(a) > activity(b); });
  LiveHistory::Group others{tr("others").toStdString(), groups[kMaxSplitLines - 1].points};
  for (size_t g = kMaxSplitLines; g < groups.size(); ++g)
    for (size_t i = 0; i < others.points.size(); ++i) {
      others.points[i].allowed += groups[g].points[i].allowed;
      others.points[i].blocked += groups[g].points[i].blocked;
      others.points[i].shadow += groups[g].points[i].shadow;
    }
  groups.resize(kMaxSplitLines - 1);
  groups.push_back(std::move(others));
  return groups;
}

void finish(ChartData& c, double floor, double ceiling, bool clip) {
  c.scale = chooseScale(valuesOf(c), floor, ceiling, clip);
}
}  // namespace

double roundUp(double v) {
  if (!(v > 0)) return 1;
  const double power = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0})
    if (m * power >= v * (1 - 1e-9)) return m * power;
  return 10 * power;
}

AxisScale chooseScale(std::vector<double> values, double floor, double ceiling, bool clipBursts) {
  AxisScale s;
  s.top = floor;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.peak = values.back();
  // Nearest rank: the value 95 % of the others are at or below.
  const auto rank = static_cast<size_t>(std::ceil(0.95 * static_cast<double>(values.size())));
  const double typical = values[std::max<size_t>(rank, 1) - 1];
  if (clipBursts && typical > 0 && s.peak > 4 * typical)
    s.top = roundUp(2 * typical);
  else
    s.top = roundUp(s.peak * 1.1);  // a little room above the highest line
  s.top = std::min(std::max(s.top, floor), ceiling);
  s.clipped = s.peak > s.top;
  return s;
}

int ChartData::indexAt(int64_t second) const {
  if (x.empty() || second < x.front() || second >= x.back() + step) return -1;
  return static_cast<int>((second - x.front()) / step);
}

bool ChartData::raised(const ChartCurve& curve, size_t i) const {
  const double v = curve.y[i];
  return !std::isnan(v) && v > 0 && v < minVisibleShare * scale.top;
}

double ChartData::drawnY(const ChartCurve& curve, size_t i) const {
  const double v = curve.y[i];
  if (std::isnan(v)) return v;
  return raised(curve, i) ? minVisibleShare * scale.top : std::min(v, scale.top);
}

QString ChartData::hoverText(int i) const {
  if (i < 0 || static_cast<size_t>(i) >= x.size()) return {};
  const auto at = static_cast<size_t>(i);
  QString text =
      step > 1 ? QStringLiteral("%1–%2").arg(clock(x[at]), clock(x[at] + step - 1)) : clock(x[at]);
  if (!known[at]) return text + QLatin1Char('\n') + tr("no data");
  for (const auto& c : curves) {
    const double v = c.y[at];
    QString line = c.name + QStringLiteral(": ");
    if (std::isnan(v)) {
      line += QStringLiteral("–");
    } else {
      line += QString::number(v, 'f', decimals) + unit;
      if (!c.detail.empty() && !c.detail[at].isEmpty())
        line += QStringLiteral(" (%1)").arg(c.detail[at]);
      if (v > scale.top) line += tr(", above the axis");
      if (raised(c, at)) line += tr(", drawn raised to be seen");
    }
    text += QLatin1Char('\n') + line;
  }
  return text;
}

LiveCharts buildLiveCharts(const LiveHistory& history, const LatencyTimeline& latency,
                           const LiveChartOptions& o) {
  LiveCharts out;
  if (history.empty()) return out;
  auto groups = history.grouped(o.resource, o.tier, o.split, o.rangeSeconds);
  bool split = o.split != SplitBy::kNone;
  if (groups.empty()) {
    // Nothing counted in the range: one empty total, so the time axis and the "no data" band
    // still show.
    groups = history.grouped(o.resource, o.tier, SplitBy::kNone, o.rangeSeconds);
    split = false;
  }
  if (split) groups = chooseLines(std::move(groups));
  const auto& base = groups.front().points;
  const size_t n = base.size();

  for (ChartData* c : {&out.allowed, &out.blocked}) {
    c->unit = QStringLiteral("/s");
    for (const auto& p : base) {
      c->x.push_back(p.second);
      c->known.push_back(p.known);
    }
  }
  auto perSecond = [&](ChartData& c, const QString& name,
                       const std::vector<LiveHistory::Point>& points,
                       uint64_t LiveHistory::Point::*field) {
    ChartCurve curve{name, std::vector<double>(n, kNoValue), {}};
    for (size_t i = 0; i < n; ++i)
      if (points[i].known) curve.y[i] = static_cast<double>(points[i].*field);
    c.curves.push_back(std::move(curve));
  };
  for (const auto& g : groups) {
    const QString name = split ? groupName(g.name, o.split) : QString();
    perSecond(out.allowed, split ? name : tr("allowed"), g.points, &LiveHistory::Point::allowed);
    perSecond(out.blocked, split ? name : tr("blocked"), g.points, &LiveHistory::Point::blocked);
  }
  if (!split) perSecond(out.blocked, tr("would block (shadow)"), base, &LiveHistory::Point::shadow);
  finish(out.allowed, 5, std::numeric_limits<double>::infinity(), o.clipBursts);
  finish(out.blocked, 5, std::numeric_limits<double>::infinity(), o.clipBursts);
  out.blocked.minVisibleShare = kMinVisibleBlockedShare;

  // Blocked %: per bucket, so one blocked request of one is not a 100 % spike.
  ChartData& pct = out.blockedPercent;
  pct.step = std::max(1, static_cast<int>(n) / 60);
  pct.unit = QStringLiteral(" %");
  pct.decimals = 1;
  const size_t buckets = (n + static_cast<size_t>(pct.step) - 1) / static_cast<size_t>(pct.step);
  for (size_t b = 0; b < buckets; ++b) {
    pct.x.push_back(base[b * static_cast<size_t>(pct.step)].second);
    bool known = false;
    for (size_t i = b * static_cast<size_t>(pct.step);
         i < std::min(n, (b + 1) * static_cast<size_t>(pct.step)); ++i)
      known = known || base[i].known;
    pct.known.push_back(known);
  }
  for (const auto& g : groups) {
    ChartCurve curve{split ? groupName(g.name, o.split) : tr("blocked"),
                     std::vector<double>(buckets, kNoValue), std::vector<QString>(buckets)};
    for (size_t b = 0; b < buckets; ++b) {
      uint64_t blocked = 0, decided = 0;
      for (size_t i = b * static_cast<size_t>(pct.step);
           i < std::min(n, (b + 1) * static_cast<size_t>(pct.step)); ++i) {
        if (!g.points[i].known) continue;
        blocked += g.points[i].blocked;
        decided += g.points[i].allowed + g.points[i].blocked;
      }
      if (decided == 0) continue;  // nothing decided: no ratio, rather than 0 %
      curve.y[b] = 100.0 * static_cast<double>(blocked) / static_cast<double>(decided);
      curve.detail[b] = tr("%1 of %2").arg(blocked).arg(decided);
    }
    pct.curves.push_back(std::move(curve));
  }
  finish(pct, 1, 100, o.clipBursts);
  pct.minVisibleShare = kMinVisibleBlockedShare;

  // Latency: engine-wide, from the polls' histogram differences.
  ChartData& lat = out.latency;
  lat.unit = QStringLiteral(" µs");
  lat.decimals = 1;
  ChartCurve p50{tr("p50"), std::vector<double>(n, kNoValue), {}};
  ChartCurve p99{tr("p99"), std::vector<double>(n, kNoValue), std::vector<QString>(n)};
  for (size_t i = 0; i < n; ++i) {
    const int64_t sec = base[i].second;
    const LatencyTimeline::Sample* s = latency.at(sec);
    lat.x.push_back(sec);
    lat.known.push_back(s != nullptr);
    if (s == nullptr || s->decisions == 0) continue;
    p50.y[i] = static_cast<double>(s->p50Ns) / 1000.0;
    p99.y[i] = static_cast<double>(s->p99Ns) / 1000.0;
    p99.detail[i] =
        s->to > s->from
            ? tr("%1 decisions in %2–%3").arg(s->decisions).arg(clock(s->from), clock(s->to))
            : tr("%1 decisions").arg(s->decisions);
  }
  lat.curves.push_back(std::move(p50));
  lat.curves.push_back(std::move(p99));
  finish(lat, 1, std::numeric_limits<double>::infinity(), o.clipBursts);
  return out;
}

}  // namespace sluice::admin
