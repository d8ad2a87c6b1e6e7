#include "calendar.h"

#include <date/tz.h>

#include <chrono>
#include <exception>
#include <string>

namespace sluice {
namespace {

using Ms = std::chrono::milliseconds;
constexpr int64_t kHourMs = 3'600'000;
constexpr int64_t kDayMs = 24 * kHourMs;

// The first instant of local day `day` in `zone`: its midnight, or when a daylight-saving
// change skipped midnight, the moment the clocks jumped (the day's first existing instant).
date::sys_time<Ms> day_start(const date::time_zone* zone, date::local_days day) {
  const date::local_info info = zone->get_info(day);
  if (info.result == date::local_info::nonexistent) {
    return std::chrono::time_point_cast<Ms>(info.second.begin);
  }
  // Ambiguous midnight (clocks went back over it): the earlier of the two.
  return std::chrono::time_point_cast<Ms>(zone->to_sys(day, date::choose::earliest));
}

}  // namespace

const date::time_zone* find_time_zone(std::string_view name) {
  try {
    return date::locate_zone(name.empty() ? std::string_view("UTC") : name);
  } catch (const std::exception&) {
    return nullptr;
  }
}

CalendarWindow calendar_window(CalendarPeriod period, const date::time_zone* zone, int64_t now_ms) {
  const date::sys_time<Ms> now{Ms{now_ms}};
  const date::local_days today = date::floor<date::days>(zone->to_local(now));
  date::local_days first = today;
  date::local_days next = today + date::days{1};
  switch (period) {
    case CalendarPeriod::kWeek:
      first = today - (date::weekday{today} - date::Monday);
      next = first + date::days{7};
      break;
    case CalendarPeriod::kMonth: {
      const date::year_month_day ymd{today};
      first = date::local_days{ymd.year() / ymd.month() / 1};
      next = date::local_days{(ymd.year() / ymd.month() + date::months{1}) / 1};
      break;
    }
    case CalendarPeriod::kDay:
    case CalendarPeriod::kNone:
      break;
  }
  const auto start = day_start(zone, first);
  const auto end = day_start(zone, next);
  return {start.time_since_epoch().count(), (end - start).count()};
}

int64_t calendar_window_ms(CalendarPeriod period) {
  switch (period) {
    case CalendarPeriod::kDay:
      return kDayMs + kHourMs;
    case CalendarPeriod::kWeek:
      return 7 * kDayMs + kHourMs;
    case CalendarPeriod::kMonth:
      return 31 * kDayMs + kHourMs;
    case CalendarPeriod::kNone:
      break;
  }
  return 0;
}

std::string_view calendar_name(CalendarPeriod period) {
  switch (period) {
    case CalendarPeriod::kDay:
      return "calendar_day";
    case CalendarPeriod::kWeek:
      return "calendar_week";
    case CalendarPeriod::kMonth:
      return "calendar_month";
    case CalendarPeriod::kNone:
      break;
  }
  return "";
}

CalendarPeriod calendar_from_name(std::string_view name) {
  for (const auto p : {CalendarPeriod::kDay, CalendarPeriod::kWeek, CalendarPeriod::kMonth}) {
    if (calendar_name(p) == name) return p;
  }
  return CalendarPeriod::kNone;
}

}  // namespace sluice
