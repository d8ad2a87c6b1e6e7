// Calendar windows: local days, ISO weeks and months in real time zones, across
// daylight-saving changes, month lengths and leap years (engine/src/calendar.h).
#include <date/date.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "calendar.h"

namespace sluice {
namespace {

constexpr int64_t kHour = 3'600'000;

// ms since the epoch of a UTC date and time.
int64_t utc(int y, unsigned m, unsigned d, int hour = 0, int minute = 0) {
  const auto day = date::sys_days{date::year{y} / m / d};
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             (day + std::chrono::hours{hour} + std::chrono::minutes{minute}).time_since_epoch())
      .count();
}

CalendarWindow window(CalendarPeriod p, const std::string& zone, int64_t now) {
  const date::time_zone* z = find_time_zone(zone);
  EXPECT_NE(z, nullptr) << zone;
  return calendar_window(p, z, now);
}

TEST(Calendar, UtcDayIsMidnightToMidnight) {
  const auto w = window(CalendarPeriod::kDay, "", utc(2026, 12, 4, 21, 30));
  EXPECT_EQ(w.start_ms, utc(2026, 12, 4));
  EXPECT_EQ(w.length_ms, 24 * kHour);
  // Midnight itself starts the new day.
  EXPECT_EQ(window(CalendarPeriod::kDay, "UTC", utc(2026, 12, 5)).start_ms, utc(2026, 12, 5));
}

TEST(Calendar, LocalDayFollowsTheZoneOffset) {
  // 23:30 UTC on 4 December is already 5 December in Berlin (UTC+1) and still 4 December
  // in New York (UTC-5).
  const int64_t now = utc(2026, 12, 4, 23, 30);
  const auto berlin = window(CalendarPeriod::kDay, "Europe/Berlin", now);
  EXPECT_EQ(berlin.start_ms, utc(2026, 12, 4, 23));
  const auto new_york = window(CalendarPeriod::kDay, "America/New_York", now);
  EXPECT_EQ(new_york.start_ms, utc(2026, 12, 4, 5));
  EXPECT_EQ(new_york.length_ms, 24 * kHour);
}

TEST(Calendar, DaylightSavingDaysLast23And25Hours) {
  // Berlin: clocks go forward on 29 March 2026 and back on 25 October 2026.
  const auto spring = window(CalendarPeriod::kDay, "Europe/Berlin", utc(2026, 3, 29, 12));
  EXPECT_EQ(spring.start_ms, utc(2026, 3, 28, 23));  // local midnight, still UTC+1
  EXPECT_EQ(spring.length_ms, 23 * kHour);
  const auto autumn = window(CalendarPeriod::kDay, "Europe/Berlin", utc(2026, 10, 25, 12));
  EXPECT_EQ(autumn.start_ms, utc(2026, 10, 24, 22));  // local midnight, still UTC+2
  EXPECT_EQ(autumn.length_ms, 25 * kHour);
  // The next day starts exactly where the short one ends.
  const auto after =
      window(CalendarPeriod::kDay, "Europe/Berlin", spring.start_ms + spring.length_ms);
  EXPECT_EQ(after.start_ms, spring.start_ms + spring.length_ms);
  EXPECT_EQ(after.length_ms, 24 * kHour);
}

TEST(Calendar, WeeksStartOnMonday) {
  // Friday 4 December 2026; the ISO week began on Monday 30 November.
  const auto w = window(CalendarPeriod::kWeek, "UTC", utc(2026, 12, 4, 10));
  EXPECT_EQ(w.start_ms, utc(2026, 11, 30));
  EXPECT_EQ(w.length_ms, 7 * 24 * kHour);
  // A Monday belongs to its own week, a Sunday to the one before.
  EXPECT_EQ(window(CalendarPeriod::kWeek, "UTC", utc(2026, 12, 7)).start_ms, utc(2026, 12, 7));
  EXPECT_EQ(window(CalendarPeriod::kWeek, "UTC", utc(2026, 12, 6, 23, 59)).start_ms,
            utc(2026, 11, 30));
  // The week with the autumn change in Berlin lasts an hour more.
  EXPECT_EQ(window(CalendarPeriod::kWeek, "Europe/Berlin", utc(2026, 10, 22)).length_ms,
            7 * 24 * kHour + kHour);
}

TEST(Calendar, MonthsHaveTheirOwnLengths) {
  const auto dec = window(CalendarPeriod::kMonth, "UTC", utc(2026, 12, 4));
  EXPECT_EQ(dec.start_ms, utc(2026, 12, 1));
  EXPECT_EQ(dec.length_ms, 31 * 24 * kHour);
  EXPECT_EQ(window(CalendarPeriod::kMonth, "UTC", utc(2027, 2, 14)).length_ms, 28 * 24 * kHour);
  EXPECT_EQ(window(CalendarPeriod::kMonth, "UTC", utc(2028, 2, 29, 23)).length_ms, 29 * 24 * kHour);
  EXPECT_EQ(window(CalendarPeriod::kMonth, "UTC", utc(2026, 4, 30)).length_ms, 30 * 24 * kHour);
  // March in Berlin loses an hour; the month starts at local midnight of the 1st.
  const auto march = window(CalendarPeriod::kMonth, "Europe/Berlin", utc(2026, 3, 15));
  EXPECT_EQ(march.start_ms, utc(2026, 2, 28, 23));
  EXPECT_EQ(march.length_ms, 31 * 24 * kHour - kHour);
  // The year turns: December's end is January's start.
  EXPECT_EQ(dec.start_ms + dec.length_ms, utc(2027, 1, 1));
}

TEST(Calendar, MidnightThatDoesNotExistStartsTheDayWhenTheClocksJump) {
  // Havana moves its clocks from 00:00 to 01:00 on the second Sunday of March (8 March
  // 2026): that day has no midnight and starts at 01:00 local time, 05:00 UTC.
  const auto w = window(CalendarPeriod::kDay, "America/Havana", utc(2026, 3, 8, 12));
  EXPECT_EQ(w.start_ms, utc(2026, 3, 8, 5));
  EXPECT_EQ(w.length_ms, 23 * kHour);
}

TEST(Calendar, NamesAndZones) {
  EXPECT_EQ(calendar_from_name("calendar_month"), CalendarPeriod::kMonth);
  EXPECT_EQ(calendar_from_name("calendar_year"), CalendarPeriod::kNone);
  EXPECT_EQ(calendar_name(CalendarPeriod::kWeek), "calendar_week");
  EXPECT_EQ(find_time_zone("Mars/Olympus_Mons"), nullptr);
  EXPECT_NE(find_time_zone("Asia/Kolkata"), nullptr);
  EXPECT_GE(calendar_window_ms(CalendarPeriod::kDay), 25 * kHour);
}

}  // namespace
}  // namespace sluice
