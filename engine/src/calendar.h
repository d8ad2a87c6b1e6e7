// Calendar windows: the bounds of the local day, ISO week or month around an instant, in a
// time zone from the system's tz database (Howard Hinnant's date library). Used by the policy
// (zone names, the window's longest length) and by the engine (every decision on a calendar
// limit asks for the current window).
#pragma once

#include <cstdint>
#include <string_view>

#include "sluice/policy.h"

namespace sluice {

struct CalendarWindow {
  int64_t start_ms = 0;   // local midnight starting the period, ms since the epoch
  int64_t length_ms = 0;  // until the next period's local midnight
};

// The zone called `name` ("" is UTC); nullptr when the tz database has no such zone.
const date::time_zone* find_time_zone(std::string_view name);

// The period of `period` (not kNone) containing `now_ms` in `zone`. Where local midnight does
// not exist (a daylight-saving change at midnight), the period starts when the day does.
CalendarWindow calendar_window(CalendarPeriod period, const date::time_zone* zone, int64_t now_ms);

// The longest a period can last (a 25-hour day, a week with a 25-hour day, 31 days and an
// hour): what a calendar limit's window_ms holds in the spec.
int64_t calendar_window_ms(CalendarPeriod period);

// "calendar_day" etc.; "" for kNone.
std::string_view calendar_name(CalendarPeriod period);
// The period named `name`, or kNone.
CalendarPeriod calendar_from_name(std::string_view name);

}  // namespace sluice
