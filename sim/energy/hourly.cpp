// SPDX-License-Identifier: Apache-2.0
// Hourly grid carbon-intensity series: a hand-written ISO 8601 (UTC) parser, a small CSV reader and
// the integration of a job's energy over the hours it runs (at constant power, or with the shape of a power profile).
#include "moesim/energy/hourly.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "moesim/core/error.hpp"
#include "moesim/core/units.hpp"

namespace moesim::energy {

namespace {

constexpr std::int64_t kSecondsPerHour = 3600;   // definition of the hour

// Plausibility bounds for hourly gCO2e/kWh (a guard against unit mistakes, not physics):
// the highest annual average in the shipped grid data is 1306.3 g/kWh (Ember, TKM, profiles/grid/ember/);
// the lowest Electricity Maps zone average is 15 g/kWh (SE-SE1, profiles/grid/electricity_maps/).
// Above 2000 g/kWh is ~1.5x the dirtiest annual grid (g/MWh or lb/MWh were probably given); a non-zero
// series with every hour below 2 g/kWh is 7x below the cleanest zone (kg/kWh was probably given).
constexpr double kMaxPlausibleGramsPerKwh = 2000.0;
constexpr double kMinPlausibleTypicalGramsPerKwh = 2.0;

constexpr const char* kTimestampColumn = "timestamp_utc";
constexpr const char* kGrossColumn = "gco2e_per_kwh";
constexpr const char* kMarketColumn = "market_gco2e_per_kwh";
constexpr const char* kHeaderHint = "timestamp_utc,gco2e_per_kwh[,market_gco2e_per_kwh]";

std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

/** One CSV cell and the 1-based column it starts at. */
struct Cell {
  std::string text;
  int column = 0;
};

/** Splits one line into cells (RFC 4180 quoting within a line: "a, b", "" for a quote). Cells are
 *  trimmed. Throws InputError on an unterminated quote. */
std::vector<Cell> split_line(const std::string& file, int line_no, const std::string& line) {
  std::vector<Cell> cells;
  std::size_t i = 0;
  while (true) {
    Cell c;
    c.column = static_cast<int>(i) + 1;
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            c.text += '"';
            i += 2;
            continue;
          }
          ++i;
          closed = true;
          break;
        }
        c.text += line[i++];
      }
      if (!closed) throw InputError(file, line_no, c.column, "", "unterminated quoted cell");
      while (i < line.size() && line[i] != ',') {
        if (!std::isspace(static_cast<unsigned char>(line[i])))
          throw InputError(file, line_no, static_cast<int>(i) + 1, "", "text after a closing quote");
        ++i;
      }
    } else {
      while (i < line.size() && line[i] != ',') c.text += line[i++];
    }
    c.text = trim(c.text);
    cells.push_back(std::move(c));
    if (i >= line.size()) break;
    ++i;  // the comma
  }
  return cells;
}

/** Why a header name is not accepted, with the most likely fix. */
std::string explain_unknown_column(const std::string& name) {
  const std::string n = lower(name);
  const bool carbon = n.find("co2") != std::string::npos || n.find("carbon") != std::string::npos ||
                      n.find("intensity") != std::string::npos || n.find("emission") != std::string::npos;
  if (carbon && n.find("market") != std::string::npos)
    return fmt::format("wrong unit or name: expected {} (market-based, grams CO2e per kWh)", kMarketColumn);
  // 1 lb = 0.45359237 kg (international pound, 1959), so 1 lb/MWh = 0.4536 g/kWh.
  if (carbon)
    return fmt::format("wrong unit: expected {} (grams per kWh); convert the values (kg/kWh x 1000, "
                       "lb/MWh x 0.4536)",
                       kGrossColumn);
  if (n.find("time") != std::string::npos || n.find("date") != std::string::npos || n.find("hour") != std::string::npos)
    return fmt::format("unknown column: expected {} (ISO 8601 UTC, the start of the hour, e.g. 2024-03-01T00:00:00Z)",
                       kTimestampColumn);
  return fmt::format("unknown column; allowed: {}, {}, {}", kTimestampColumn, kGrossColumn, kMarketColumn);
}

bool looks_like_timestamp(const std::string& s) {
  try {
    parse_utc_timestamp_s(s);
    return true;
  } catch (const Error&) {
    return false;
  }
}

/** An intensity cell in g/kWh: finite, >= 0, <= kMaxPlausibleGramsPerKwh. */
double parse_intensity(const std::string& file, int line_no, const Cell& c, const std::string& column) {
  if (c.text.empty())
    throw InputError(file, line_no, c.column, column,
                     "empty cell: every hour needs a value (moesim does not interpolate; fill gaps at the source)");
  // A decimal number only: strtod alone would also take hexadecimal ("0x1p4"), "inf" and "nan".
  const bool decimal = std::all_of(c.text.begin(), c.text.end(), [](char ch) {
    return std::isdigit(static_cast<unsigned char>(ch)) || ch == '.' || ch == 'e' || ch == 'E' || ch == '+' || ch == '-';
  });
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(c.text.c_str(), &end);
  if (!decimal || end != c.text.c_str() + c.text.size() || errno == ERANGE || !std::isfinite(v))
    throw InputError(file, line_no, c.column, column,
                     fmt::format("'{}' is not a number (expected grams CO2e per kWh, e.g. 412.5)", c.text));
  if (v < 0.0)
    throw InputError(file, line_no, c.column, column,
                     fmt::format("negative intensity {} g/kWh: expected a value >= 0", c.text));
  if (v > kMaxPlausibleGramsPerKwh)
    throw InputError(file, line_no, c.column, column,
                     fmt::format("implausible intensity {} g/kWh (above {} g/kWh; the highest annual grid average in "
                                 "the shipped data is 1306 g/kWh): check the unit, the column is grams CO2e per kWh "
                                 "(not g/MWh or lb/MWh)",
                                 c.text, kMaxPlausibleGramsPerKwh));
  return v;
}

/** Refuses a non-zero series whose every value is below kMinPlausibleTypicalGramsPerKwh (kg/kWh given). */
void check_not_kilograms(const std::string& file, int header_line, int column, const std::string& name,
                         std::vector<double> grams) {
  const double max = *std::max_element(grams.begin(), grams.end());
  if (!(max > 0.0 && max < kMinPlausibleTypicalGramsPerKwh)) return;
  const std::size_t mid = grams.size() / 2;
  std::nth_element(grams.begin(), grams.begin() + static_cast<std::ptrdiff_t>(mid), grams.end());
  throw InputError(file, header_line, column, name,
                   fmt::format("implausible magnitudes: median {:.4g} g/kWh and every value below {} g/kWh (maximum "
                               "{:.4g}) suggest kg/kWh was given; the column is grams CO2e per kWh (multiply kg/kWh "
                               "by 1000)",
                               grams[mid], kMinPlausibleTypicalGramsPerKwh, max));
}

}  // namespace

std::int64_t HourlyIntensity::end_utc_s() const {
  return first_hour_utc_s_ + static_cast<std::int64_t>(hours()) * kSecondsPerHour;
}

std::string HourlyIntensity::covered_range() const {
  return fmt::format("{} to {} ({} hours)", format_utc_timestamp(first_hour_utc_s_), format_utc_timestamp(end_utc_s()),
                     hours());
}

HourlyIntensity HourlyIntensity::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(fmt::format("cannot read the hourly intensity CSV '{}'", path));
  std::stringstream buf;
  buf << in.rdbuf();
  std::string content = buf.str();
  if (content.rfind("\xEF\xBB\xBF", 0) == 0) content.erase(0, 3);  // UTF-8 byte-order mark
  // Line ends: LF, CRLF or a lone CR (classic Mac OS, some spreadsheet exports) each end a line.
  std::string normalised;
  normalised.reserve(content.size());
  for (std::size_t k = 0; k < content.size(); ++k) {
    if (content[k] == '\r') {
      normalised += '\n';
      if (k + 1 < content.size() && content[k + 1] == '\n') ++k;
    } else {
      normalised += content[k];
    }
  }
  content = std::move(normalised);

  HourlyIntensity h;
  h.file_ = path;
  std::size_t ts_col = 0, gross_col = 0, market_col = 0;
  bool have_ts = false, have_gross = false, have_market = false;
  std::size_t columns = 0;
  int header_line = 0, gross_header_column = 0, market_header_column = 0;
  std::vector<double> gross_g, market_g;
  std::int64_t previous_s = 0;
  int previous_line = 0;

  std::istringstream lines(content);
  std::string line;
  int line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    const std::vector<Cell> cells = split_line(path, line_no, line);

    if (header_line == 0) {
      header_line = line_no;
      columns = cells.size();
      if (looks_like_timestamp(cells[0].text))
        throw InputError(path, line_no, 1, "",
                         fmt::format("no header: the first line is data; expected a header line '{}'", kHeaderHint));
      for (std::size_t k = 0; k < cells.size(); ++k) {
        const std::string name = lower(cells[k].text);
        const auto take = [&](bool& have, std::size_t& col, const char* wanted) {
          if (have)
            throw InputError(path, line_no, cells[k].column, wanted, "duplicate column");
          have = true;
          col = k;
        };
        if (name.empty()) throw InputError(path, line_no, cells[k].column, "", "empty column name in the header");
        if (name == kTimestampColumn) {
          take(have_ts, ts_col, kTimestampColumn);
        } else if (name == kGrossColumn) {
          take(have_gross, gross_col, kGrossColumn);
          gross_header_column = cells[k].column;
        } else if (name == kMarketColumn) {
          take(have_market, market_col, kMarketColumn);
          market_header_column = cells[k].column;
        } else {
          throw InputError(path, line_no, cells[k].column, cells[k].text, explain_unknown_column(cells[k].text));
        }
      }
      if (!have_ts)
        throw InputError(path, line_no, 1, kTimestampColumn, fmt::format("missing column (the header must be '{}')", kHeaderHint));
      if (!have_gross)
        throw InputError(path, line_no, 1, kGrossColumn, fmt::format("missing column (the header must be '{}')", kHeaderHint));
      continue;
    }

    if (cells.size() != columns)
      throw InputError(path, line_no, 1, "",
                       fmt::format("expected {} cells as in the header (line {}), found {}", columns, header_line, cells.size()));
    const Cell& ts = cells[ts_col];
    std::int64_t t_s = 0;
    try {
      t_s = parse_utc_timestamp_s(ts.text);
    } catch (const Error& e) {
      throw InputError(path, line_no, ts.column, kTimestampColumn, e.what());
    }
    if (gross_g.empty()) {
      h.first_hour_utc_s_ = t_s;
    } else {
      const std::int64_t step = t_s - previous_s;
      if (step == 0)
        throw InputError(path, line_no, ts.column, kTimestampColumn,
                         fmt::format("duplicate timestamp {} (also on line {})", format_utc_timestamp(t_s), previous_line));
      if (step < 0)
        throw InputError(path, line_no, ts.column, kTimestampColumn,
                         fmt::format("timestamps not increasing: {} comes after {} (line {}); sort the rows by {}",
                                     format_utc_timestamp(t_s), format_utc_timestamp(previous_s), previous_line,
                                     kTimestampColumn));
      if (step % kSecondsPerHour != 0)
        throw InputError(path, line_no, ts.column, kTimestampColumn,
                         fmt::format("not hourly: {} is {} s after the previous row {} (line {}); rows must be exactly "
                                     "3600 s apart",
                                     format_utc_timestamp(t_s), step, format_utc_timestamp(previous_s), previous_line));
      if (step > kSecondsPerHour) {
        const std::int64_t missing = step / kSecondsPerHour - 1;
        const std::string first_missing = format_utc_timestamp(previous_s + kSecondsPerHour);
        throw InputError(
            path, line_no, ts.column, kTimestampColumn,
            missing == 1
                ? fmt::format("gap: the hour {} is missing (between line {} and line {}); moesim does not interpolate",
                              first_missing, previous_line, line_no)
                : fmt::format("gap: {} hours missing, {} to {} (between line {} and line {}); moesim does not "
                              "interpolate",
                              missing, first_missing, format_utc_timestamp(t_s - kSecondsPerHour), previous_line, line_no));
      }
    }
    previous_s = t_s;
    previous_line = line_no;
    gross_g.push_back(parse_intensity(path, line_no, cells[gross_col], kGrossColumn));
    if (have_market) market_g.push_back(parse_intensity(path, line_no, cells[market_col], kMarketColumn));
  }

  if (header_line == 0)
    throw InputError(path, 1, 0, "",
                     fmt::format("empty file: expected a header line '{}' and one row per hour", kHeaderHint));
  if (gross_g.empty()) throw InputError(path, header_line, 0, "", "no data rows after the header");
  check_not_kilograms(path, header_line, gross_header_column, kGrossColumn, gross_g);
  if (have_market) check_not_kilograms(path, header_line, market_header_column, kMarketColumn, market_g);

  h.gross_kgco2e_per_kwh_.reserve(gross_g.size());
  for (double g : gross_g) h.gross_kgco2e_per_kwh_.push_back(g / units::kGramsPerKg);
  for (double g : market_g) h.market_kgco2e_per_kwh_.push_back(g / units::kGramsPerKg);
  return h;
}

HourlyEmissions HourlyIntensity::integrate(std::int64_t start_utc_s, double duration_s, double energy_j) const {
  return integrate(start_utc_s, 0.0, duration_s, energy_j, PowerProfile{});
}

HourlyEmissions HourlyIntensity::integrate(std::int64_t start_utc_s, double offset_s, double duration_s, double energy_j,
                                           const PowerProfile& profile) const {
  if (!std::isfinite(duration_s) || duration_s < 0.0)
    throw Error(fmt::format("hourly intensity: job duration {} s is not a finite number >= 0", duration_s));
  if (!std::isfinite(offset_s) || offset_s < 0.0)
    throw Error(fmt::format("hourly intensity: the run's start, {} s after energy.start_time_utc, is not a finite number >= 0",
                            offset_s));
  if (profile.t_s.size() != profile.w.size())
    throw Error(fmt::format("hourly intensity: a power profile of {} times and {} powers (internal error)", profile.t_s.size(),
                            profile.w.size()));
  const double hour_s = static_cast<double>(kSecondsPerHour);
  const double t0 = static_cast<double>(start_utc_s - first_hour_utc_s_) + offset_s;  // seconds into the series
  const double t1 = t0 + duration_s;
  const double span = static_cast<double>(hours()) * hour_s;
  if (t0 < 0.0 || t1 > span) {
    // Times as text, from doubles: a duration of any size (1e12 days) must give this message, not an integer
    // overflow; beyond the parser's years they read "after 9999".
    const auto utc = [](double epoch_s, bool up) {
      constexpr double kLast = 253402300799.0;  // 9999-12-31T23:59:59Z
      return epoch_s > kLast ? std::string("after 9999-12-31T23:59:59Z")
                             : format_utc_timestamp(static_cast<std::int64_t>(up ? std::ceil(epoch_s) : std::floor(epoch_s)));
    };
    const double first_s = static_cast<double>(first_hour_utc_s_);
    const double run_start_s = static_cast<double>(start_utc_s) + offset_s;
    // The run's start, and how it follows from energy.start_time_utc when it is later (a serving window).
    const std::string from = utc(run_start_s, false) + (offset_s > 0.0 ? fmt::format(" (energy.start_time_utc + {:g} s)", offset_s) : "");
    if (duration_s == 0.0)  // the check before a simulation: only the start is known
      throw Error(fmt::format(
          "the hourly intensity series {} covers {}, but the job starts at {}{}, outside it: the "
          "series must cover the whole run (moesim never wraps or extrapolates hourly data); supply a series that covers "
          "the start and the run after it, or change energy.start_time_utc",
          file_, covered_range(), from, offset_s > 0.0 ? "" : " (energy.start_time_utc)"));
    throw Error(fmt::format(
        "the hourly intensity series {} covers {}, but the job runs from {} to {} ({:.4g} h), needing {} to {}: the "
        "series must cover the whole run (moesim never wraps or extrapolates hourly data); supply a longer series or "
        "change energy.start_time_utc",
        file_, covered_range(), from, utc(run_start_s + duration_s, true), duration_s / hour_s,
        utc(first_s + std::floor(t0 / hour_s) * hour_s, false), utc(first_s + std::ceil(t1 / hour_s) * hour_s, true)));
  }
  HourlyEmissions out;
  if (has_market()) out.market_kgco2e = 0.0;
  const auto first = static_cast<std::size_t>(std::floor(t0 / hour_s));
  out.first_hour = std::min(first, hours() - 1);
  if (duration_s == 0.0) return out;
  const auto last = std::min(hours(), static_cast<std::size_t>(std::ceil(t1 / hour_s)));  // exclusive
  // What the profile draws in each hour (power x its time in the hour), and over the run.
  std::vector<double> drawn(last > first ? last - first : 0, 0.0);
  double drawn_total = 0.0;
  for (std::size_t i = 0; i < profile.t_s.size(); ++i) {
    const double a = std::max(0.0, profile.t_s[i]);
    const double b = std::min(duration_s, i + 1 < profile.t_s.size() ? profile.t_s[i + 1] : duration_s);
    const double w = profile.w[i];
    if (!(b > a) || !(w > 0.0) || !std::isfinite(w)) continue;
    const double x = t0 + a, y = t0 + b;
    for (auto k = std::max(first, static_cast<std::size_t>(std::floor(x / hour_s))); k < last; ++k) {
      const double lo = std::max(x, static_cast<double>(k) * hour_s), hi = std::min(y, static_cast<double>(k + 1) * hour_s);
      if (!(hi > lo)) break;
      drawn[k - first] += w * (hi - lo);
    }
    drawn_total += w * (b - a);
  }
  const bool shaped = drawn_total > 0.0;
  const double power_w = energy_j / duration_s;  // without a profile, the job draws its average power uniformly
  for (std::size_t k = first; k < last; ++k) {
    const double lo = std::max(t0, static_cast<double>(k) * hour_s);
    const double hi = std::min(t1, static_cast<double>(k + 1) * hour_s);
    if (!(hi > lo)) continue;
    const double e_j = shaped ? energy_j * drawn[k - first] / drawn_total : power_w * (hi - lo);
    const double kwh = units::joules_to_kwh(e_j);
    out.energy_j += e_j;
    out.gross_kgco2e += kwh * gross_kgco2e_per_kwh_[k];
    if (out.market_kgco2e) *out.market_kgco2e += kwh * market_kgco2e_per_kwh_[k];
    ++out.hours_touched;
  }
  return out;
}

}  // namespace moesim::energy
