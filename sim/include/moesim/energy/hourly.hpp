// SPDX-License-Identifier: Apache-2.0
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "moesim/core/utc_time.hpp"

namespace moesim::energy {

// The timestamp parser lives in core (the scenario layer checks energy.start_time_utc with it).
using ::moesim::format_utc_timestamp;
using ::moesim::parse_utc_timestamp_s;

/** What integrating a job's energy over an hourly series gives. kg of CO2e. */
struct HourlyEmissions {
  double gross_kgco2e = 0.0;                  ///< sum over hours of energy in the hour x gco2e_per_kwh
  std::optional<double> market_kgco2e;        ///< the same with market_gco2e_per_kwh, when the series has it
  double energy_j = 0.0;                      ///< energy integrated (equals the input; a consistency check)
  std::size_t first_hour = 0;                 ///< index of the first series hour the job overlaps
  std::size_t hours_touched = 0;              ///< series hours with a non-zero overlap (partial ones count)
};

/** How a run draws its energy over time: piecewise-constant power, w[i] from t_s[i] (seconds from the run's start,
 *  increasing) to t_s[i + 1], the last to the run's end. Only its shape is used: HourlyIntensity::integrate spreads a
 *  given energy over the hours in proportion to what the profile draws in each. Empty: constant power. */
struct PowerProfile {
  std::vector<double> t_s;
  std::vector<double> w;
};

/** A user-supplied hourly grid carbon-intensity series (CSV), for time-of-day / start-date studies.
 *
 *  Format (documented in profiles/README.md, "Hourly carbon intensity"):
 *  - optional lines starting with `#` (comments) and blank lines anywhere;
 *  - a header naming the columns `timestamp_utc`, `gco2e_per_kwh` and optionally
 *    `market_gco2e_per_kwh`, in any order, no others;
 *  - one row per hour: `timestamp_utc` is ISO 8601 with `Z` or an offset, the START of the hour the
 *    row covers ([t, t + 1 h)); rows strictly increasing, each exactly 3600 s after the previous
 *    (no gaps, no duplicates); intensities in grams CO2e per kWh, finite and >= 0.
 *  Values are stored in kgCO2e/kWh (÷ 1000), the unit of catalog::DatacenterSpec.
 *  Plausibility checks catch unit mistakes: a value above 2000 g/kWh is refused (the highest annual
 *  average in the shipped grid data is 1306 g/kWh, Ember TKM; g/MWh or lb/MWh give larger numbers),
 *  and a non-zero series whose values are all below 2 g/kWh is refused as probably kg/kWh (the
 *  lowest annual zone average in the shipped Electricity Maps data is 15 g/kWh, SE-SE1).
 *  moesim never ships or invents hourly data: real series come from the sources listed in
 *  profiles/README.md. */
class HourlyIntensity {
 public:
  /** Reads and validates `path`. Every problem is a moesim::InputError naming path:line:column, the
   *  column and what was allowed (see the class comment); an unreadable file is a moesim::Error. */
  static HourlyIntensity load(const std::string& path);

  const std::string& file() const { return file_; }
  /** Start of the first hour, seconds since the Unix epoch (UTC). */
  std::int64_t first_hour_utc_s() const { return first_hour_utc_s_; }
  /** End of the last hour (exclusive): first_hour_utc_s() + hours() x 3600. */
  std::int64_t end_utc_s() const;
  std::size_t hours() const { return gross_kgco2e_per_kwh_.size(); }
  bool has_market() const { return !market_kgco2e_per_kwh_.empty(); }
  /** Location-based intensity of each hour, kgCO2e/kWh. */
  const std::vector<double>& gross_kgco2e_per_kwh() const { return gross_kgco2e_per_kwh_; }
  /** Market-based intensity of each hour, kgCO2e/kWh; empty when the file has no market column. */
  const std::vector<double>& market_kgco2e_per_kwh() const { return market_kgco2e_per_kwh_; }
  /** "<first hour> to <end> (N hours)", for messages and provenance. */
  std::string covered_range() const;

  /** Emissions of `energy_j` drawn at constant power from `start_utc_s` for `duration_s`: each hour's
   *  share is energy_j x (overlap of [start, start + duration) with the hour) / duration_s, times that
   *  hour's intensity; partial first and last hours are weighted by their overlap. The series must
   *  cover the whole interval: otherwise moesim::Error naming the covered and the needed range (the
   *  series is never wrapped around or extrapolated). duration_s = 0 gives zero emissions. */
  HourlyEmissions integrate(std::int64_t start_utc_s, double duration_s, double energy_j) const;
  /** The same for a run from `offset_s` seconds after `start_utc_s` (a serving window after its warm-up) for
   *  duration_s, drawing `energy_j` with the shape of `profile` (times from the run's start, offset_s): each hour's
   *  share is energy_j x (the profile's energy in the hour) / (the profile's energy over the run). An empty profile, or
   *  one that draws nothing, is constant power (the function above). The coverage check and its messages are the
   *  same, with the run's own start and end. */
  HourlyEmissions integrate(std::int64_t start_utc_s, double offset_s, double duration_s, double energy_j,
                            const PowerProfile& profile) const;

 private:
  std::string file_;
  std::int64_t first_hour_utc_s_ = 0;
  std::vector<double> gross_kgco2e_per_kwh_;
  std::vector<double> market_kgco2e_per_kwh_;
};

}  // namespace moesim::energy
