// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstdint>
#include <string>

namespace moesim {

/** Seconds since the Unix epoch (1970-01-01T00:00:00Z) of an ISO 8601 timestamp with a UTC
 *  designator, e.g. "2024-03-01T00:00:00Z", "2024-03-01 00:00Z", "2024-03-01T01:00:00+01:00" (an
 *  offset is subtracted to give UTC). Proleptic Gregorian calendar, years 0001-9999, no leap seconds
 *  (POSIX time). A timestamp without `Z` or an offset is refused: local time is ambiguous.
 *  Throws moesim::Error whose message says what is wrong (the caller adds file/line/key). */
std::int64_t parse_utc_timestamp_s(const std::string& text);

/** "YYYY-MM-DDTHH:MM:SSZ" for seconds since the Unix epoch (inverse of parse_utc_timestamp_s for years
 *  0001-9999; later years print with more digits). O(1) for any value. */
std::string format_utc_timestamp(std::int64_t epoch_s);

}  // namespace moesim
