// SPDX-License-Identifier: Apache-2.0
#pragma once
// Checks shared by the report tests: numbers read back from HTML cells (data-value, data-unit), the
// displayed text against the exact value, the expected value of each datacenter column, and a small
// RFC 4180 CSV reader.
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "moesim/store/store.hpp"
#include "report_test_support.hpp"
#include "xml_check.hpp"

namespace moesim::reports::test {

inline double num(const std::string& s) { return std::strtod(s.c_str(), nullptr); }

/** data-value of a cell converted back to SI with its data-unit. */
inline double shown_in_si(const XmlNode& n) { return num(n.attr("data-value")) * unit_divisor(n.attr("data-unit")); }

/** What a datacenter table cell should hold, in SI (independent of the reports code). */
inline double expected_dc(const store::DatacenterResult& d, const std::string& field) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (field == "chips") return d.chips;
  if (field == "share") return d.share;
  if (field == "pue") return d.pue;
  if (field == "gross_intensity") return d.gross_kgco2e_per_kwh;
  if (field == "net_intensity") return d.net_kgco2e_per_kwh ? *d.net_kgco2e_per_kwh : nan;
  if (field == "cfe") return d.cfe_fraction ? *d.cfe_fraction : nan;
  if (field == "it_energy") return d.it_energy_j;
  if (field == "network_energy") return d.network_energy_j;
  if (field == "overhead_energy") return d.facility_energy_j - d.it_energy_j - d.network_energy_j;
  if (field == "facility_energy") return d.facility_energy_j;
  if (field == "co2e_gross") return d.co2e_gross_kg;
  if (field == "co2e_net") return d.co2e_net_kg;
  if (field == "co2e_embodied") return d.embodied_co2e_kg;
  throw std::runtime_error("test: unknown datacenter field " + field);
}

/** A CSV number against the value it was written from: CSV cells carry 12 significant digits (reports/README.md),
 *  so within half a unit of the 12th digit; NaN is an empty cell. */
inline bool csv_same(double got, double want) { return (std::isnan(got) && std::isnan(want)) || close(got, want, 5.000001e-12); }

/** Equal within `rel`, or both NaN. */
inline bool same(double got, double want, double rel = 1e-12) { return (std::isnan(got) && std::isnan(want)) || close(got, want, rel); }

/** The displayed text of a numeric cell agrees with its data-value to the precision shown: within
 *  half a unit of its last digit. */
inline void check_display(const XmlNode& cell) {
  const std::string shown = cell.all_text();
  const double exact = num(cell.attr("data-value"));
  INFO("cell shows '" << shown << "' for " << cell.attr("data-value"));
  if (std::isnan(exact)) {
    CHECK(shown == "\xE2\x80\x93");
    return;
  }
  const std::size_t e = shown.find('e');
  const std::string mantissa = shown.substr(0, e);
  const std::size_t dot = mantissa.find('.');
  const int decimals = dot == std::string::npos ? 0 : static_cast<int>(mantissa.size() - dot - 1);
  const double scale = e == std::string::npos ? 1.0 : std::pow(10.0, std::stoi(shown.substr(e + 1)));
  CHECK(std::fabs(num(shown) - exact) <= 0.5 * std::pow(10.0, -decimals) * scale * (1 + 1e-9));
  CHECK((num(shown) == 0.0) == (exact == 0.0));  // significant digits: a non-zero value never shows as 0
}

/** Rows of an RFC 4180 CSV text (LF line ends), fields unquoted. */
inline std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false, was_quoted = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      if (!field.empty()) throw std::runtime_error("test csv: quote inside an unquoted field");
      quoted = was_quoted = true;
    } else if (c == ',') {
      rows.back().push_back(field);
      field.clear();
      was_quoted = false;
    } else if (c == '\n') {
      rows.back().push_back(field);
      field.clear();
      was_quoted = false;
      rows.emplace_back();
    } else {
      field += c;
    }
  }
  if (!field.empty() || was_quoted) rows.back().push_back(field);
  if (rows.back().empty()) rows.pop_back();
  return rows;
}

}  // namespace moesim::reports::test
