// SPDX-License-Identifier: Apache-2.0
// The hourly carbon-intensity series: ISO 8601 parsing, the CSV loader (happy and unhappy paths) and
// the integration of a job's energy over the hours it runs, against hand sums.

#include <catch2/catch.hpp>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>

#include "energy_test_support.hpp"
#include "moesim/core/units.hpp"
#include "moesim/energy/hourly.hpp"

using moesim::Error;
using moesim::InputError;
using moesim::energy::format_utc_timestamp;
using moesim::energy::HourlyIntensity;
using moesim::energy::parse_utc_timestamp_s;
namespace t = moesim::energy::test;

namespace {

// Reference epochs from GNU date (`date -u -d 2024-03-01T00:00:00Z +%s`).
constexpr std::int64_t k20240301 = 1709251200;

InputError csv_error(const std::string& name, const std::string& text) {
  const std::string path = t::write_file(name, text);
  return t::expect_input_error([&] { HourlyIntensity::load(path); });
}

std::string timestamp_error(const std::string& text) {
  try {
    parse_utc_timestamp_s(text);
  } catch (const Error& e) {
    return e.what();
  }
  FAIL("expected moesim::Error for '" << text << "'");
  return "";
}

/** The synthetic fixture's formula (tests/data/energy/README.md), g/kWh, before rounding. */
double synthetic_gross_g(int hour_index) {
  const int d = hour_index % 24, k = hour_index / 24;
  const double pi = std::acos(-1.0);
  return 400.0 + 10.0 * k - (d >= 6 && d < 18 ? 150.0 * std::sin(pi * (d - 6) / 12.0) : 0.0);
}

/** Four hours from 2024-03-01T00:00:00Z: 100, 200, 300, 400 g/kWh (market 10, 20, 30, 40). */
std::string four_hours(bool market) {
  return t::write_file(market ? "four_market.csv" : "four.csv",
                       std::string("timestamp_utc,gco2e_per_kwh") + (market ? ",market_gco2e_per_kwh" : "") + "\n" +
                           "2024-03-01T00:00:00Z,100" + (market ? ",10" : "") + "\n" +
                           "2024-03-01T01:00:00Z,200" + (market ? ",20" : "") + "\n" +
                           "2024-03-01T02:00:00Z,300" + (market ? ",30" : "") + "\n" +
                           "2024-03-01T03:00:00Z,400" + (market ? ",40" : "") + "\n");
}

}  // namespace

TEST_CASE("energy::parse_utc_timestamp_s: ISO 8601 UTC to Unix seconds", "[energy][hourly]") {
  SECTION("known epochs (from GNU date)") {
    CHECK(parse_utc_timestamp_s("1970-01-01T00:00:00Z") == 0);
    CHECK(parse_utc_timestamp_s("2024-03-01T00:00:00Z") == k20240301);
    CHECK(parse_utc_timestamp_s("2000-02-29T12:34:56Z") == 951827696);
    CHECK(parse_utc_timestamp_s("1969-12-31T23:00:00Z") == -3600);
    CHECK(parse_utc_timestamp_s("2100-03-01T00:00:00Z") == 4107542400);
    CHECK(parse_utc_timestamp_s("1900-01-01T00:00:00Z") == -2208988800);
    CHECK(parse_utc_timestamp_s("2024-12-31T23:59:59Z") == 1735689599);
    CHECK(parse_utc_timestamp_s("0001-01-01T00:00:00Z") == -62135596800);
    CHECK(parse_utc_timestamp_s("9999-12-31T23:59:59Z") == 253402300799);
  }
  SECTION("accepted spellings: space, no seconds, zero fraction, offsets, lower-case") {
    CHECK(parse_utc_timestamp_s("2024-03-01 00:00:00Z") == k20240301);
    CHECK(parse_utc_timestamp_s("2024-03-01T00:00Z") == k20240301);
    CHECK(parse_utc_timestamp_s("2024-03-01T00:00:00.000Z") == k20240301);
    CHECK(parse_utc_timestamp_s("2024-03-01T01:00:00+01:00") == k20240301);
    CHECK(parse_utc_timestamp_s("2024-02-29T19:00:00-0500") == k20240301);
    CHECK(parse_utc_timestamp_s("2024-03-01t00:00:00z") == k20240301);
    CHECK(parse_utc_timestamp_s("  2024-03-01T00:00:00Z ") == k20240301);
  }
  SECTION("refused, each with its reason") {
    CHECK(t::contains(timestamp_error("2024-03-01T00:00:00"), "no time zone"));
    CHECK(t::contains(timestamp_error("2024-03-01"), "no time of day"));
    CHECK(t::contains(timestamp_error("2023-02-29T00:00:00Z"), "day 29 does not exist in 2023-02"));
    CHECK(t::contains(timestamp_error("2100-02-29T00:00:00Z"), "day 29 does not exist"));
    CHECK(t::contains(timestamp_error("2024-13-01T00:00:00Z"), "month 13"));
    CHECK(t::contains(timestamp_error("2024-03-01T24:00:00Z"), "hour 24"));
    CHECK(t::contains(timestamp_error("2024-03-01T00:60:00Z"), "minute 60"));
    CHECK(t::contains(timestamp_error("2024-12-31T23:59:60Z"), "leap seconds"));
    CHECK(t::contains(timestamp_error("2024-3-1T00:00:00Z"), "YYYY-MM-DD"));
    CHECK(t::contains(timestamp_error("2024-03-01T00:00:00.5Z"), "fractional seconds"));
    CHECK(t::contains(timestamp_error("2024-03-01T00:00:00Zjunk"), "unexpected text 'junk'"));
    CHECK(t::contains(timestamp_error("2024-03-01T00:00:00+1"), "UTC offset"));
    CHECK(t::contains(timestamp_error("1709251200"), "YYYY-MM-DD"));
    CHECK(t::contains(timestamp_error(""), "empty"));
  }
}

TEST_CASE("energy::format_utc_timestamp: inverse of the parser", "[energy][hourly]") {
  CHECK(format_utc_timestamp(0) == "1970-01-01T00:00:00Z");
  CHECK(format_utc_timestamp(k20240301) == "2024-03-01T00:00:00Z");
  CHECK(format_utc_timestamp(-3600) == "1969-12-31T23:00:00Z");
  CHECK(format_utc_timestamp(951827696) == "2000-02-29T12:34:56Z");
  // Round trip every 7 h 13 min 17 s from 1899 to 2201: crosses every month end and leap rule.
  int checked = 0;
  for (std::int64_t s = parse_utc_timestamp_s("1899-12-31T00:00:00Z"); s < parse_utc_timestamp_s("2201-01-01T00:00:00Z");
       s += 7 * 3600 + 13 * 60 + 17) {
    const std::string text = format_utc_timestamp(s);
    if (parse_utc_timestamp_s(text) != s) FAIL("round trip failed at " << s << " -> " << text);
    ++checked;
  }
  CHECK(checked > 360000);
}

TEST_CASE("energy::HourlyIntensity: loads the synthetic fixture exactly as its formula says", "[energy][hourly]") {
  const HourlyIntensity h = HourlyIntensity::load(t::data("hourly_synthetic.csv"));
  REQUIRE(h.hours() == 96);
  CHECK(h.first_hour_utc_s() == k20240301);
  CHECK(h.end_utc_s() == k20240301 + 96 * 3600);
  CHECK(h.covered_range() == "2024-03-01T00:00:00Z to 2024-03-05T00:00:00Z (96 hours)");
  REQUIRE(h.has_market());
  for (int k = 0; k < 96; ++k) {
    // The file rounds to 0.1 g/kWh; values are stored in kg/kWh.
    const double g = h.gross_kgco2e_per_kwh()[k] * 1000.0;
    CHECK(g == Approx(synthetic_gross_g(k)).margin(0.05 + 1e-9));
    CHECK(h.market_kgco2e_per_kwh()[k] * 1000.0 == Approx(0.25 * g).margin(0.05 + 1e-9));
  }
}

TEST_CASE("energy::HourlyIntensity: accepts CRLF, a BOM, quotes, any column order and offsets", "[energy][hourly]") {
  const std::string path = t::write_file("tolerant.csv",
                                         "\xEF\xBB\xBF# comment\r\n"
                                         "\"gco2e_per_kwh\", Timestamp_UTC\r\n"
                                         "\r\n"
                                         "120.5,2024-03-01T01:00:00+01:00\r\n"
                                         "\"130\",2024-03-01T01:00:00Z\r\n"
                                         "# a comment between rows\r\n"
                                         "0,2024-03-01T02:00:00Z\r\n");
  const HourlyIntensity h = HourlyIntensity::load(path);
  REQUIRE(h.hours() == 3);
  CHECK(h.first_hour_utc_s() == k20240301);
  CHECK_FALSE(h.has_market());
  CHECK(h.gross_kgco2e_per_kwh()[0] == Approx(0.1205));
  CHECK(h.gross_kgco2e_per_kwh()[1] == Approx(0.130));
  CHECK(h.gross_kgco2e_per_kwh()[2] == 0.0);
}

TEST_CASE("energy::HourlyIntensity: plausible low-carbon series are accepted", "[energy][hourly]") {
  SECTION("all hours zero (direct emissions of an all-hydro grid)") {
    const auto p = t::write_file("zeros.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,0\n2024-03-01T01:00:00Z,0\n");
    CHECK(HourlyIntensity::load(p).hours() == 2);
  }
  SECTION("median below 2 g/kWh but gas-fired hours above it") {
    const auto p = t::write_file("mostly_zero.csv",
                                 "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,0\n2024-03-01T01:00:00Z,0.5\n"
                                 "2024-03-01T02:00:00Z,45\n");
    CHECK(HourlyIntensity::load(p).hours() == 3);
  }
}

TEST_CASE("energy::HourlyIntensity: malformed series name file, line, column and the fix", "[energy][hourly]") {
  SECTION("missing hour: the gap is named") {
    const std::string file = t::data("bad/gap.csv");
    const auto e = t::expect_input_error([&] { HourlyIntensity::load(file); });
    CHECK(e.file() == file);
    CHECK(e.line() == 6);
    CHECK(e.column() == 1);
    CHECK(e.key() == "timestamp_utc");
    CHECK(t::contains(e.message(), "gap: the hour 2024-03-01T02:00:00Z is missing (between line 5 and line 6)"));
    CHECK(t::contains(e.what(), file + ":6:1: timestamp_utc: gap"));
  }
  SECTION("several missing hours: the range is named") {
    const auto e = csv_error("gap3.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,1\n2024-03-01T04:00:00Z,2\n");
    CHECK(e.line() == 3);
    CHECK(t::contains(e.message(), "3 hours missing, 2024-03-01T01:00:00Z to 2024-03-01T03:00:00Z"));
  }
  SECTION("wrong unit in the header: kg per kWh") {
    const std::string file = t::data("bad/kg_column.csv");
    const auto e = t::expect_input_error([&] { HourlyIntensity::load(file); });
    CHECK(e.line() == 3);
    CHECK(e.column() == 15);
    CHECK(e.key() == "kgco2e_per_kwh");
    CHECK(t::contains(e.message(), "wrong unit: expected gco2e_per_kwh (grams per kWh)"));
  }
  SECTION("wrong unit in the values: kg per kWh under the gram header") {
    const std::string file = t::data("bad/kg_values.csv");
    const auto e = t::expect_input_error([&] { HourlyIntensity::load(file); });
    CHECK(e.line() == 3);
    CHECK(e.key() == "gco2e_per_kwh");
    CHECK(t::contains(e.message(), "median 0.4 g/kWh"));
    CHECK(t::contains(e.message(), "suggest kg/kWh was given"));
  }
  SECTION("wrong unit in the values: g per MWh (too large)") {
    const auto e = csv_error("mwh.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,412000\n");
    CHECK(e.line() == 2);
    CHECK(e.column() == 22);
    CHECK(t::contains(e.message(), "implausible intensity 412000 g/kWh"));
  }
  SECTION("unsorted timestamps") {
    const std::string file = t::data("bad/unsorted.csv");
    const auto e = t::expect_input_error([&] { HourlyIntensity::load(file); });
    CHECK(e.line() == 6);
    CHECK(t::contains(e.message(), "timestamps not increasing: 2024-03-01T00:00:00Z comes after 2024-03-01T01:00:00Z (line 5)"));
  }
  SECTION("duplicate timestamp") {
    const auto e = csv_error("dup.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,1\n2024-03-01T00:00:00Z,2\n");
    CHECK(e.line() == 3);
    CHECK(t::contains(e.message(), "duplicate timestamp 2024-03-01T00:00:00Z (also on line 2)"));
  }
  SECTION("the same instant written with an offset is a duplicate too") {
    const auto e = csv_error("dup_offset.csv",
                             "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,1\n2024-03-01T01:00:00+01:00,2\n");
    CHECK(t::contains(e.message(), "duplicate timestamp"));
  }
  SECTION("not hourly (half-hour rows)") {
    const auto e = csv_error("half.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,1\n2024-03-01T00:30:00Z,2\n");
    CHECK(t::contains(e.message(), "not hourly: 2024-03-01T00:30:00Z is 1800 s after"));
  }
  SECTION("bad timestamp") {
    const auto e = csv_error("badts.csv", "timestamp_utc,gco2e_per_kwh\n2024-02-30T00:00:00Z,1\n");
    CHECK(e.line() == 2);
    CHECK(e.column() == 1);
    CHECK(e.key() == "timestamp_utc");
    CHECK(t::contains(e.message(), "day 30 does not exist in 2024-02"));
  }
  SECTION("local timestamp without a zone") {
    const auto e = csv_error("local.csv", "gco2e_per_kwh,timestamp_utc\n10,2024-03-01 00:00:00\n");
    CHECK(e.column() == 4);
    CHECK(t::contains(e.message(), "no time zone"));
  }
  SECTION("negative value") {
    const auto e = csv_error("neg.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,-5\n");
    CHECK(e.line() == 2);
    CHECK(e.column() == 22);
    CHECK(e.key() == "gco2e_per_kwh");
    CHECK(t::contains(e.message(), "negative intensity -5 g/kWh"));
  }
  SECTION("negative market value") {
    const auto e = csv_error("negm.csv",
                             "timestamp_utc,gco2e_per_kwh,market_gco2e_per_kwh\n2024-03-01T00:00:00Z,5,-1\n");
    CHECK(e.key() == "market_gco2e_per_kwh");
    CHECK(e.column() == 24);
  }
  SECTION("non-numeric values") {
    CHECK(t::contains(csv_error("abc.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,abc\n").message(),
                      "'abc' is not a number"));
    CHECK(t::contains(csv_error("nan.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,nan\n").message(),
                      "'nan' is not a number"));
    CHECK(t::contains(csv_error("unit.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,400g\n").message(),
                      "'400g' is not a number"));
    CHECK(t::contains(csv_error("empty_cell.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,\n").message(),
                      "empty cell"));
  }
  SECTION("unknown, missing and duplicate columns") {
    auto e = csv_error("unknown.csv", "timestamp_utc,gco2e_per_kwh,region\n2024-03-01T00:00:00Z,1,x\n");
    CHECK(e.key() == "region");
    CHECK(t::contains(e.message(), "unknown column; allowed: timestamp_utc, gco2e_per_kwh, market_gco2e_per_kwh"));
    e = csv_error("datetime.csv", "datetime,gco2e_per_kwh\n2024-03-01T00:00:00Z,1\n");
    CHECK(t::contains(e.message(), "expected timestamp_utc"));
    e = csv_error("market_kg.csv", "timestamp_utc,gco2e_per_kwh,market_kgco2e_per_kwh\n2024-03-01T00:00:00Z,1,1\n");
    CHECK(t::contains(e.message(), "expected market_gco2e_per_kwh"));
    e = csv_error("missing.csv", "timestamp_utc\n2024-03-01T00:00:00Z\n");
    CHECK(e.key() == "gco2e_per_kwh");
    CHECK(t::contains(e.message(), "missing column"));
    e = csv_error("missing_ts.csv", "gco2e_per_kwh\n5\n");
    CHECK(e.key() == "timestamp_utc");
    e = csv_error("twice.csv", "timestamp_utc,gco2e_per_kwh,gco2e_per_kwh\n2024-03-01T00:00:00Z,1,1\n");
    CHECK(e.column() == 29);
    CHECK(t::contains(e.message(), "duplicate column"));
  }
  SECTION("no header, empty file, header only") {
    auto e = csv_error("noheader.csv", "2024-03-01T00:00:00Z,1\n2024-03-01T01:00:00Z,1\n");
    CHECK(e.line() == 1);
    CHECK(t::contains(e.message(), "no header"));
    e = csv_error("empty.csv", "");
    CHECK(e.line() == 1);
    CHECK(t::contains(e.message(), "empty file"));
    e = csv_error("comments_only.csv", "# nothing here\n\n");
    CHECK(t::contains(e.message(), "empty file"));
    e = csv_error("header_only.csv", "# c\ntimestamp_utc,gco2e_per_kwh\n");
    CHECK(e.line() == 2);
    CHECK(t::contains(e.message(), "no data rows"));
  }
  SECTION("ragged row and unterminated quote") {
    auto e = csv_error("ragged.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z,1,2\n");
    CHECK(e.line() == 2);
    CHECK(t::contains(e.message(), "expected 2 cells as in the header (line 1), found 3"));
    e = csv_error("quote.csv", "timestamp_utc,gco2e_per_kwh\n\"2024-03-01T00:00:00Z,1\n");
    CHECK(t::contains(e.message(), "unterminated quoted cell"));
  }
  SECTION("unreadable file is a plain error naming it") {
    const std::string missing = (t::temp_dir() / "does_not_exist.csv").string();
    CHECK(t::contains(t::expect_plain_error([&] { HourlyIntensity::load(missing); }), "cannot read the hourly intensity CSV '" + missing));
  }
}

TEST_CASE("energy::HourlyIntensity: integrate weighs partial hours by their overlap", "[energy][hourly]") {
  const HourlyIntensity h = HourlyIntensity::load(four_hours(true));
  const double kwh_j = moesim::units::kJoulesPerKwh;

  SECTION("00:30 to 03:00 at 1 kW: 0.5 kWh x 100 g + 1 kWh x 200 g + 1 kWh x 300 g") {
    const auto e = h.integrate(k20240301 + 1800, 9000.0, 2.5 * kwh_j);
    CHECK(e.gross_kgco2e == Approx(0.5 * 0.1 + 1.0 * 0.2 + 1.0 * 0.3));  // 0.55 kg
    REQUIRE(e.market_kgco2e);
    CHECK(*e.market_kgco2e == Approx(0.5 * 0.01 + 1.0 * 0.02 + 1.0 * 0.03));
    CHECK(e.energy_j == Approx(2.5 * kwh_j));
    CHECK(e.first_hour == 0);
    CHECK(e.hours_touched == 3);
  }
  SECTION("01:15 to 02:45: two partial hours of 45 min") {
    const auto e = h.integrate(k20240301 + 4500, 5400.0, 3.0 * kwh_j);  // 2 kW
    CHECK(e.gross_kgco2e == Approx(1.5 * 0.2 + 1.5 * 0.3));
    CHECK(e.first_hour == 1);
    CHECK(e.hours_touched == 2);
  }
  SECTION("inside one hour") {
    const auto e = h.integrate(k20240301 + 2 * 3600 + 600, 60.0, 1000.0);
    CHECK(e.gross_kgco2e == Approx(1000.0 / kwh_j * 0.3));
    CHECK(e.hours_touched == 1);
  }
  SECTION("the whole series, ending exactly at its end") {
    const auto e = h.integrate(k20240301, 4 * 3600.0, 4.0 * kwh_j);
    CHECK(e.gross_kgco2e == Approx(0.1 + 0.2 + 0.3 + 0.4));
    CHECK(e.hours_touched == 4);
  }
  SECTION("zero duration gives zero emissions") {
    const auto e = h.integrate(k20240301 + 3600, 0.0, 0.0);
    CHECK(e.gross_kgco2e == 0.0);
    CHECK(e.hours_touched == 0);
  }
  SECTION("no market column: no market figure") {
    const HourlyIntensity g = HourlyIntensity::load(four_hours(false));
    CHECK_FALSE(g.integrate(k20240301, 3600.0, kwh_j).market_kgco2e.has_value());
  }
}

TEST_CASE("energy::HourlyIntensity: a run outside the series is an error naming both ranges", "[energy][hourly]") {
  const HourlyIntensity h = HourlyIntensity::load(four_hours(false));
  SECTION("runs past the end by one second") {
    const std::string msg = t::expect_plain_error([&] { h.integrate(k20240301 + 2 * 3600, 2 * 3600.0 + 1.0, 1.0); });
    CHECK(t::contains(msg, "covers 2024-03-01T00:00:00Z to 2024-03-01T04:00:00Z (4 hours)"));
    CHECK(t::contains(msg, "the job runs from 2024-03-01T02:00:00Z to 2024-03-01T04:00:01Z"));
    CHECK(t::contains(msg, "needing 2024-03-01T02:00:00Z to 2024-03-01T05:00:00Z"));
    CHECK(t::contains(msg, "never wraps or extrapolates"));
  }
  SECTION("starts before the first hour") {
    const std::string msg = t::expect_plain_error([&] { h.integrate(k20240301 - 1, 60.0, 1.0); });
    CHECK(t::contains(msg, "the job runs from 2024-02-29T23:59:59Z"));
    CHECK(t::contains(msg, "needing 2024-02-29T23:00:00Z to 2024-03-01T01:00:00Z"));
  }
  SECTION("starts after the last hour") {
    CHECK(t::contains(t::expect_plain_error([&] { h.integrate(k20240301 + 10 * 3600, 60.0, 1.0); }), "covers"));
  }
  SECTION("the check before a simulation, whose duration is not known yet, names the start alone (no '0 h' run)") {
    const std::string msg = t::expect_plain_error([&] { h.integrate(k20240301 + 10 * 3600, 0.0, 0.0); });
    CHECK(t::contains(msg, "the job starts at 2024-03-01T10:00:00Z (energy.start_time_utc), outside it"));
    CHECK_FALSE(t::contains(msg, "0 h)"));
  }
  SECTION("negative duration") {
    CHECK(t::contains(t::expect_plain_error([&] { h.integrate(k20240301, -1.0, 1.0); }), "not a finite number >= 0"));
  }
}

TEST_CASE("energy::HourlyIntensity: time of day changes emissions on the synthetic series", "[energy][hourly]") {
  const HourlyIntensity h = HourlyIntensity::load(t::data("hourly_synthetic.csv"));
  const double kwh_j = moesim::units::kJoulesPerKwh;
  // 12 h at 1 kW on day 2 (k = 1): daytime 06:00-18:00 vs night 18:00-06:00; hand sum of the formula.
  double day_g = 0.0, night_g = 0.0;
  for (int k = 24 + 6; k < 24 + 18; ++k) day_g += std::round(synthetic_gross_g(k) * 10.0) / 10.0;
  for (int k = 24 + 18; k < 24 + 30; ++k) night_g += std::round(synthetic_gross_g(k) * 10.0) / 10.0;
  const auto day = h.integrate(parse_utc_timestamp_s("2024-03-02T06:00:00Z"), 12 * 3600.0, 12.0 * kwh_j);
  const auto night = h.integrate(parse_utc_timestamp_s("2024-03-02T18:00:00Z"), 12 * 3600.0, 12.0 * kwh_j);
  CHECK(day.gross_kgco2e == Approx(day_g / 1000.0).epsilon(1e-6));
  CHECK(night.gross_kgco2e == Approx(night_g / 1000.0).epsilon(1e-6));
  CHECK(day.gross_kgco2e < night.gross_kgco2e);
}

TEST_CASE("energy::HourlyIntensity: inputs from issue 10 (CR line ends, hexadecimal, huge durations)", "[energy][hourly]") {
  SECTION("lone CR line ends (classic Mac OS exports) read like LF, with the right line numbers") {
    const auto path = t::write_file("cr_only.csv", "timestamp_utc,gco2e_per_kwh\r2024-03-01T00:00:00Z,100\r"
                                                   "2024-03-01T01:00:00Z,200\r");
    const HourlyIntensity h = HourlyIntensity::load(path);
    CHECK(h.hours() == 2);
    CHECK(h.gross_kgco2e_per_kwh()[1] == Approx(0.2));
    const auto e = csv_error("cr_only_bad.csv", "timestamp_utc,gco2e_per_kwh\r2024-03-01T00:00:00Z,100\r"
                                                "2024-03-01T01:00:00Z,x\r");
    CHECK(e.line() == 3);  // not the "wrong unit" of a header swallowing every row
    CHECK(e.key() == "gco2e_per_kwh");
    CHECK(t::contains(e.message(), "'x' is not a number"));
  }
  SECTION("hexadecimal, inf and nan are not numbers here") {
    for (const std::string v : {"0x64", "0x1p6", "inf", "nan"}) {
      INFO(v);
      const auto e = csv_error("hex.csv", "timestamp_utc,gco2e_per_kwh\n2024-03-01T00:00:00Z," + v + "\n");
      CHECK(e.line() == 2);
      CHECK(t::contains(e.message(), "'" + v + "' is not a number"));
    }
  }
  SECTION("a duration of 1e12 days is an immediate error, not an overflow or a year-by-year search") {
    const HourlyIntensity h = HourlyIntensity::load(four_hours(false));
    const auto t0 = std::chrono::steady_clock::now();
    std::string msg;
    try {
      h.integrate(k20240301, 1e12 * 86400.0, 1.0);
    } catch (const Error& e) {
      msg = e.what();
    }
    CHECK(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 1.0);
    CHECK(t::contains(msg, "the job runs from 2024-03-01T00:00:00Z to after 9999-12-31T23:59:59Z"));
    CHECK(t::contains(msg, "covers 2024-03-01T00:00:00Z to 2024-03-01T04:00:00Z"));
  }
  SECTION("timestamps far in the future format in constant time") {
    CHECK(format_utc_timestamp(253402300799) == "9999-12-31T23:59:59Z");
    CHECK(format_utc_timestamp(253402300800) == "10000-01-01T00:00:00Z");
    CHECK(format_utc_timestamp(std::numeric_limits<std::int64_t>::max()).size() > 20);  // no overflow, no hang
  }
}
