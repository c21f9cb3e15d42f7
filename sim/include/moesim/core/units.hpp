// SPDX-License-Identifier: Apache-2.0
#pragma once
/** Unit conversions. Everything inside moesim is SI (s, J, W, B, FLOP, kg); these constants are
 *  used only where values enter or leave (scenario files, profiles, reports, the store). */
namespace moesim::units {

inline constexpr double kSecondsPerHour = 3600.0;          // definition of the hour
inline constexpr double kSecondsPerDay = 86400.0;          // definition of the day
inline constexpr double kJoulesPerKwh = 3.6e6;             // 1 kWh = 1000 W x 3600 s
inline constexpr double kJoulesPerMwh = 3.6e9;             // 1 MWh = 1e6 W x 3600 s
inline constexpr double kKgPerTonne = 1000.0;              // metric tonne
inline constexpr double kGramsPerKg = 1000.0;
inline constexpr double kBitsPerByte = 8.0;
inline constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;  // binary gibibyte (IEC 80000-13)
inline constexpr double kGB = 1e9;                         // decimal gigabyte (SI)

inline constexpr double joules_to_kwh(double j) { return j / kJoulesPerKwh; }
inline constexpr double joules_to_mwh(double j) { return j / kJoulesPerMwh; }
inline constexpr double seconds_to_days(double s) { return s / kSecondsPerDay; }
inline constexpr double kg_to_tonnes(double kg) { return kg / kKgPerTonne; }

}  // namespace moesim::units
