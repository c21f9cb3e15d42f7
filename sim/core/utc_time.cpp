// SPDX-License-Identifier: Apache-2.0
// ISO 8601 UTC timestamps: a hand-written parser (no locale, no time zone database) and its inverse.
#include "moesim/core/utc_time.hpp"

#include <cctype>
#include <optional>

#include <fmt/format.h>

#include "moesim/core/error.hpp"

namespace moesim {

namespace {

constexpr std::int64_t kSecondsPerHour = 3600;   // definition of the hour
constexpr std::int64_t kSecondsPerDay = 86400;   // definition of the day (POSIX time: no leap seconds)
constexpr int kMinYear = 1;                      // range this parser accepts (4-digit years)
constexpr int kMaxYear = 9999;

bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int days_in_month(int y, int m) {
  static constexpr int kDays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : kDays[m - 1];
}

/** Leap years in [1, y] (y >= 0). */
std::int64_t leap_years_through(std::int64_t y) { return y / 4 - y / 100 + y / 400; }

/** Days from 1970-01-01 to January 1st of year y (negative before 1970). */
std::int64_t days_before_year(int y) {
  return 365 * (static_cast<std::int64_t>(y) - 1970) + leap_years_through(y - 1) - leap_years_through(1969);
}

std::int64_t days_from_civil(int y, int m, int d) {
  std::int64_t days = days_before_year(y);
  for (int k = 1; k < m; ++k) days += days_in_month(y, k);
  return days + d - 1;
}

/** Reads exactly `n` digits at `pos`; nullopt when they are not all digits. */
std::optional<int> digits(const std::string& s, std::size_t& pos, std::size_t n) {
  if (pos + n > s.size()) return std::nullopt;
  int v = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const char c = s[pos + k];
    if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    v = v * 10 + (c - '0');
  }
  pos += n;
  return v;
}

bool expect_char(const std::string& s, std::size_t& pos, char c) {
  if (pos < s.size() && s[pos] == c) {
    ++pos;
    return true;
  }
  return false;
}

[[noreturn]] void bad_timestamp(const std::string& text, const std::string& why) {
  throw Error(fmt::format("'{}' is not an ISO 8601 UTC timestamp ({}); expected e.g. 2024-03-01T00:00:00Z", text, why));
}

std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

}  // namespace

std::int64_t parse_utc_timestamp_s(const std::string& text) {
  const std::string s = trim(text);
  if (s.empty()) bad_timestamp(text, "empty");
  std::size_t pos = 0;
  const auto year = digits(s, pos, 4);
  if (!year || !expect_char(s, pos, '-')) bad_timestamp(text, "the date must be YYYY-MM-DD");
  const auto month = digits(s, pos, 2);
  if (!month || !expect_char(s, pos, '-')) bad_timestamp(text, "the date must be YYYY-MM-DD");
  const auto day = digits(s, pos, 2);
  if (!day) bad_timestamp(text, "the date must be YYYY-MM-DD");
  if (*year < kMinYear || *year > kMaxYear) bad_timestamp(text, "year out of range");
  if (*month < 1 || *month > 12) bad_timestamp(text, fmt::format("month {} is not 01..12", *month));
  if (*day < 1 || *day > days_in_month(*year, *month))
    bad_timestamp(text, fmt::format("day {} does not exist in {:04d}-{:02d}", *day, *year, *month));
  if (pos == s.size()) bad_timestamp(text, "no time of day: add THH:MM:SSZ");
  if (s[pos] != 'T' && s[pos] != 't' && s[pos] != ' ') bad_timestamp(text, "expected 'T' between date and time");
  ++pos;
  const auto hour = digits(s, pos, 2);
  if (!hour || !expect_char(s, pos, ':')) bad_timestamp(text, "the time must be HH:MM[:SS]");
  const auto minute = digits(s, pos, 2);
  if (!minute) bad_timestamp(text, "the time must be HH:MM[:SS]");
  int second = 0;
  if (expect_char(s, pos, ':')) {
    const auto sec = digits(s, pos, 2);
    if (!sec) bad_timestamp(text, "the time must be HH:MM[:SS]");
    second = *sec;
    if (expect_char(s, pos, '.')) {
      const std::size_t start = pos;
      while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
        if (s[pos] != '0') bad_timestamp(text, "fractional seconds are not supported (hourly data is whole seconds)");
        ++pos;
      }
      if (pos == start) bad_timestamp(text, "no digits after the decimal point");
    }
  }
  if (*hour > 23) bad_timestamp(text, fmt::format("hour {} is not 00..23", *hour));
  if (*minute > 59) bad_timestamp(text, fmt::format("minute {} is not 00..59", *minute));
  if (second > 59) bad_timestamp(text, fmt::format("second {} is not 00..59 (leap seconds are not supported)", second));
  std::int64_t offset_s = 0;
  if (pos == s.size()) bad_timestamp(text, "no time zone: append Z for UTC, local times are ambiguous");
  if (s[pos] == 'Z' || s[pos] == 'z') {
    ++pos;
  } else if (s[pos] == '+' || s[pos] == '-') {
    const int sign = s[pos] == '+' ? 1 : -1;
    ++pos;
    const auto oh = digits(s, pos, 2);
    expect_char(s, pos, ':');
    const auto om = digits(s, pos, 2);
    if (!oh || !om || *oh > 23 || *om > 59) bad_timestamp(text, "the UTC offset must be +HH:MM or -HH:MM");
    offset_s = sign * (static_cast<std::int64_t>(*oh) * kSecondsPerHour + *om * 60);
  } else {
    bad_timestamp(text, "expected Z or a UTC offset after the time");
  }
  if (pos != s.size()) bad_timestamp(text, fmt::format("unexpected text '{}' at the end", s.substr(pos)));
  const std::int64_t local_s = days_from_civil(*year, *month, *day) * kSecondsPerDay +
                               static_cast<std::int64_t>(*hour) * kSecondsPerHour + *minute * 60 + second;
  return local_s - offset_s;  // 01:00+01:00 is 00:00Z
}

std::string format_utc_timestamp(std::int64_t epoch_s) {
  std::int64_t days = epoch_s / kSecondsPerDay;
  std::int64_t rem = epoch_s % kSecondsPerDay;
  if (rem < 0) {
    rem += kSecondsPerDay;
    --days;
  }
  // civil_from_days (H. Hinnant, "chrono-Compatible Low-Level Date Algorithms"): O(1) for any day count, so a
  // timestamp thousands of years away costs no more than today's (a year-by-year search took minutes).
  days += 719468;  // days from 0000-03-01 to 1970-01-01
  const std::int64_t era = (days >= 0 ? days : days - 146096) / 146097;  // 400-year eras of 146097 days
  const std::int64_t doe = days - era * 146097;
  const std::int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const std::int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const std::int64_t mp = (5 * doy + 2) / 153;
  const std::int64_t d = doy - (153 * mp + 2) / 5 + 1;
  const std::int64_t m = mp < 10 ? mp + 3 : mp - 9;
  const std::int64_t y = yoe + era * 400 + (m <= 2 ? 1 : 0);
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z", y, m, d, rem / kSecondsPerHour,
                     rem % kSecondsPerHour / 60, rem % 60);
}

}  // namespace moesim
